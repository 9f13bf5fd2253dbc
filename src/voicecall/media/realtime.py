"""A call's media stream bridged to a realtime voice model (docs/decisions.md D120-D124).

`RealtimeBridge` sits where a classic stream has its speech-to-text session: the stream session
hands it the caller's audio (`send_audio`), connects it (`connect`) and closes it (`close`).
Everything the model says is played through the stream's own `StreamPlayback` on the shared
pacer, one utterance per answer, so pacing, marks, `clear` and the stream limits are the phone
path's. The bridge knows no carrier: the caller's audio reaches it as μ-law (a stream in A-law
is converted by its session, D126), and the model's audio goes out in the stream's own law.

- Barge-in: the model's voice activity detection says the caller started talking; playback is
  cleared at once and the model's answer is truncated to what was sent (`frames * 20 ms`); the
  transcript keeps the words of the audio played, of all the model sent for that answer.
- `say` (the service's `speak`, `continue`, the greeting) asks the model to say a text; the
  returned future resolves like any utterance's, once its mark comes back.
- Transcripts of both sides go to the call (the caller's as `call.speech` events, so `continue`
  gets them); a turn's latency runs from the end of the caller's speech (told by the model's
  voice activity detection, or found in the audio by a provider that reports none) to the
  answer's first frame.
- Tools run through `RealtimeTools`; `end_call` ends the call after its last audio has played.
- A model session that ends hangs up the call; an error ends it `error`, after an apology when
  the stream is still up and a voice is configured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from voicecall.calls.events import CallEvent
from voicecall.calls.model import CallRecord, EndReason
from voicecall.media.playback import FRAME_S, PlaybackError, Utterance
from voicecall.providers.streams import PlaybackResult
from voicecall.service import CallService
from voicecall.shared.clock import now_ms
from voicecall.shared.words import played_prefix
from voicecall.speech.realtime.base import FunctionTool, RealtimeEvents, RealtimeModel, RealtimeSetup

if TYPE_CHECKING:
    from voicecall.media.session import StreamSession

__all__ = ["APOLOGY", "ModelFactory", "RealtimeBridge", "RealtimeTools", "ToolResult"]

log = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong on our side. Please call again later. Goodbye."
END_WAIT_S = 30.0
"""The longest `end_call` waits for the model's last words to play."""
APOLOGY_WAIT_S = 10.0

ModelFactory = Callable[[RealtimeSetup, RealtimeEvents], RealtimeModel]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool gave back, and whether the call ends after the model's last words."""

    content: str
    is_error: bool = False
    ends_call: bool = False
    last_words: str | None = None
    end_detail: str = "ended by the agent"


class RealtimeTools(Protocol):
    """The tools a realtime model gets on a call (implemented in the agent layer)."""

    def specs(self, call: CallRecord) -> list[FunctionTool]: ...

    async def run(self, call: CallRecord, name: str, arguments: str) -> ToolResult:
        """Run one call of tool `name`; any failure comes back as an error result."""
        ...


class _Answer:
    """One model answer (a response item) on its way to the caller."""

    __slots__ = ("audio_ms", "chunks", "closed", "item_id", "said", "speech_end_found",
                 "speech_ended_at", "text", "utterance")

    def __init__(self, item_id: str, said: bool, speech_ended_at: int | None,
                 speech_end_found: str) -> None:
        self.item_id = item_id
        self.audio_ms = 0.0
        """How much of the answer's audio came from the model."""
        self.chunks: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.closed = False
        self.said = said
        """Asked for with `say`: the service records what was heard, not the bridge."""
        self.speech_ended_at = speech_ended_at
        self.speech_end_found = speech_end_found
        """`vad`: told by the model's voice activity detection; `audio`: found in the audio."""
        self.text = ""
        self.utterance: Utterance | None = None

    async def stream(self) -> AsyncIterator[tuple[int, bytes]]:
        while (chunk := await self.chunks.get()) is not None:
            yield chunk


class RealtimeBridge:
    """See the module docstring. One per stream session of a realtime call."""

    def __init__(self, *, service: CallService, session: StreamSession, record: CallRecord,
                 factory: ModelFactory, instructions: str, tools: RealtimeTools | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.session = session
        self.call_id = record.call_id
        self.tools = tools
        self.clock = clock
        self.last_inbound = clock()
        setup = RealtimeSetup(instructions=instructions,
                              tools=tuple(tools.specs(record)) if tools is not None else (),
                              codec="ulaw")  # the session hands every stream's audio over as μ-law
        self.model = factory(setup, RealtimeEvents(
            on_audio=self._audio, on_audio_done=self._audio_done,
            on_speech_started=self._speech_started, on_speech_stopped=self._speech_stopped,
            on_speech_ended=self._speech_ended,
            on_user_transcript=self._user_transcript, on_model_transcript=self._model_transcript,
            on_function_call=self._function_call, on_closed=self._closed))
        self._answers: dict[str, _Answer] = {}
        self._says: deque[tuple[str, asyncio.Future[PlaybackResult]]] = deque()
        self._speech_ended_at: int | None = None
        self._speech_end_found = "vad"
        self._closing = False
        self._ending = False
        self._tasks: set[asyncio.Task[object]] = set()
        self.transcripts = 0

    # -- the stream session's side (the SttSession shape) -----------------------------------------
    async def connect(self) -> None:
        try:
            await self.model.connect()
        except Exception as exc:
            log.warning("call %s: realtime model did not connect: %s", self.call_id, exc)
            await self._fail(f"realtime model unavailable: {exc}")
            return
        log.info("call %s: realtime model %s connected", self.call_id, self.model.name)

    def send_audio(self, g711: bytes) -> None:
        self.last_inbound = self.clock()
        if not self._closing:
            self.model.send_audio(g711)

    async def close(self) -> None:
        self._closing = True
        self._drop_says()
        for answer in self._answers.values():
            answer.chunks.put_nowait(None)
        await self.model.close()

    def _drop_says(self) -> None:
        """Texts the model will not say now fail (their `speak` is told why, not left waiting)."""
        for _text, fut in self._says:
            if not fut.done():
                fut.set_exception(PlaybackError("the realtime session closed"))
                fut.exception()
        self._says.clear()

    def stalled(self, now: float, limit_s: float) -> bool:
        """No caller audio for `limit_s` (a stream that is still open but dead)."""
        return now - self.last_inbound >= limit_s

    # -- what the service asks ----------------------------------------------------------------------
    def say(self, text: str) -> asyncio.Future[PlaybackResult]:
        """Have the model say `text`; resolves once it played (or was cut short)."""
        fut: asyncio.Future[PlaybackResult] = asyncio.get_running_loop().create_future()
        if self._closing:
            fut.set_exception(PlaybackError("the realtime session closed"))
            return fut
        self._says.append((text, fut))
        self.model.say(text)
        return fut

    # -- model events ---------------------------------------------------------------------------------
    def _audio(self, item_id: str, rate: int, pcm: bytes) -> None:
        answer = self._answers.get(item_id)
        if answer is None:
            answer = self._start_answer(item_id)
        if not answer.closed:
            answer.audio_ms += len(pcm) / 2 / rate * 1000
            answer.chunks.put_nowait((rate, pcm))

    def _start_answer(self, item_id: str) -> _Answer:
        said = None
        while self._says and said is None:
            text, fut = self._says.popleft()
            if not fut.done():
                said = (text, fut)
        answer = _Answer(item_id, said is not None, self._speech_ended_at, self._speech_end_found)
        self._speech_ended_at = None
        self._answers[item_id] = answer
        try:
            utt = self.session.playback.play(said[0] if said else "", source=answer.stream())
        except PlaybackError as exc:
            answer.closed = True
            if said is not None:
                said[1].set_exception(exc)
                said[1].exception()
            return answer
        answer.utterance = utt
        utt.result.add_done_callback(lambda done: self._played(answer, done, said[1] if said else None))
        return answer

    def _audio_done(self, item_id: str) -> None:
        answer = self._answers.get(item_id)
        if answer is not None:
            answer.chunks.put_nowait(None)

    def _model_transcript(self, item_id: str, text: str) -> None:
        answer = self._answers.get(item_id)
        if answer is None:
            return
        answer.text = text
        utt = answer.utterance
        if utt is not None and not answer.said and not utt.result.done():
            utt.text = text  # the words of the audio, for what a barge-in leaves of them

    def _played(self, answer: _Answer, done: asyncio.Future[PlaybackResult],
                said: asyncio.Future[PlaybackResult] | None) -> None:
        answer.closed = True
        self._answers.pop(answer.item_id, None)
        if done.cancelled():
            return
        error = done.exception()
        result = self._heard(answer, done.result()) if error is None else None
        if said is not None and not said.done():
            if result is None:
                said.set_exception(error or PlaybackError("not played"))
                said.exception()
            else:
                said.set_result(result)
        if result is None:
            return
        if not answer.said and result.played_text:
            self._spawn(self.service.log_bot_speech(self.call_id, result.played_text))
        if answer.speech_ended_at is not None and result.first_frame_at is not None:
            first = int(result.first_frame_at)
            self._spawn(self.service.record_turn(self.call_id, {
                "speechEndedAt": answer.speech_ended_at, "firstAudioAt": first,
                "turnLatencyMs": first - answer.speech_ended_at, "spokenAt": now_ms(),
                "realtime": True, "speechEndFoundBy": answer.speech_end_found}))

    @staticmethod
    def _heard(answer: _Answer, result: PlaybackResult) -> PlaybackResult:
        """An interrupted answer's words in proportion to its audio played, of all the model sent
        (playback alone knows only the audio converted so far, which runs ahead of the caller)."""
        utt = answer.utterance
        if not result.interrupted or utt is None or not answer.audio_ms:
            return result
        played_ms = utt.frames_sent * FRAME_S * 1000
        return replace(result, played_text=played_prefix(utt.text, played_ms / answer.audio_ms))

    def _speech_started(self) -> None:
        """Barge-in: clear the stream now, and tell the model how much of its answer was heard."""
        playback = self.session.playback
        active = playback.active
        heard: tuple[str, int] | None = None
        if active is not None:
            for answer in self._answers.values():
                if answer.utterance is active:
                    heard = (answer.item_id, round(active.frames_sent * FRAME_S * 1000))
        if playback.clear():
            log.info("call %s: caller started speaking; model audio cleared", self.call_id)
            self.service.interrupted(self.call_id)
            if heard is not None:
                self.model.truncate(*heard)

    def _speech_stopped(self) -> None:
        self._note_speech_end(now_ms(), "vad")

    def _speech_ended(self, at_ms: int) -> None:
        self._note_speech_end(at_ms, "audio")

    def _note_speech_end(self, at_ms: int, found_by: str) -> None:
        self._speech_ended_at = at_ms
        self._speech_end_found = found_by
        self.service.note_speech_end(self.call_id, at_ms)

    def _user_transcript(self, text: str) -> None:
        record = self.service.live(self.call_id)
        if record is None:
            return
        self.transcripts += 1
        event = CallEvent.model_validate({
            "type": "call.speech", "callId": record.call_id,
            "providerCallId": self.session.provider_call_id, "transcript": text, "isFinal": True,
            "timestamp": now_ms(), "turnToken": self.service.turn_token(record.call_id),
            "dedupeKey": f"realtime-transcript:{self.session.stream_id}:{self.transcripts}",
        })
        self._spawn(self._apply(event))

    async def _apply(self, event: CallEvent) -> None:
        try:
            await self.service.apply_events([event])
        except Exception:
            log.exception("call %s: could not apply the caller's transcript", self.call_id)

    def _function_call(self, call_id: str, name: str, arguments: str) -> None:
        self._spawn(self._run_tool(call_id, name, arguments))

    async def _run_tool(self, call_id: str, name: str, arguments: str) -> None:
        record = self.service.live(self.call_id)
        if record is None:
            return
        if self.tools is None:
            result = ToolResult(f"no tool named {name!r}", is_error=True)
        else:
            result = await self.tools.run(record, name, arguments)
        if not result.ends_call:
            self.model.function_result(call_id, name, result.content, respond=True)
            return
        self.model.function_result(call_id, name, result.content, respond=False)
        last: asyncio.Task[None] | None = None
        if result.last_words:  # said like any `speak`: in the call's speech line, on its transcript
            last = asyncio.get_running_loop().create_task(self._say_last(result.last_words))
        self._ending = True
        await self._end_after_audio(result.end_detail, last)

    async def _say_last(self, words: str) -> None:
        try:
            await self.service.speak(self.call_id, words)
        except Exception as exc:
            log.info("call %s: last words not said: %s", self.call_id, exc)

    async def _end_after_audio(self, detail: str, last: asyncio.Task[None] | None) -> None:
        """End the call once the answers under way (and `last`, the last words) have played."""
        pending: list[asyncio.Future[Any]] = [
            a.utterance.result for a in self._answers.values() if a.utterance is not None]
        if last is not None:
            pending.append(last)
        if pending:
            await asyncio.wait(pending, timeout=END_WAIT_S)
        if self.service.live(self.call_id) is not None:
            await self.service.end(self.call_id, EndReason.HANGUP_BOT, detail=detail)

    def _closed(self, error: str | None) -> None:
        if self._closing:
            return
        self._closing = True
        if error is None:
            log.info("call %s: the realtime model ended its session; hanging up", self.call_id)
            self._spawn(self._end(EndReason.HANGUP_BOT, "the realtime model ended the session"))
        else:
            log.warning("call %s: realtime model failed: %s", self.call_id, error)
            self._spawn(self._fail(error))

    async def _end(self, reason: EndReason, detail: str) -> None:
        if self._ending:
            return  # end_call is already ending it after its last words
        if self.service.live(self.call_id) is not None:
            await self.service.end(self.call_id, reason, detail=detail)

    async def _fail(self, error: str) -> None:
        """A provider error: apologize while the stream is up (if a voice is configured), then end
        the call `error`."""
        self._closing = True
        self._drop_says()
        if not self.session.ended:
            try:
                playback = self.session.playback
                playback.clear()
                await asyncio.wait_for(playback.play(APOLOGY).result, APOLOGY_WAIT_S)
            except Exception as exc:
                log.info("call %s: apology not played: %s", self.call_id, exc)
        if self.service.live(self.call_id) is not None:
            await self.service.end(self.call_id, EndReason.ERROR, detail=error)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"realtime:{self.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
