"""Media streams and calls: which stream belongs to which call, what a stream's events mean for
its call, and playback for the call service.

- `open()` authorizes a stream's `start` with the carrier (live call + per-call token) and
  builds its session (playback on the shared pacer, speech-to-text connected in the background).
- The call service speaks through `enqueue()` (speech and keys, in the order of its speech
  line), which waits a bounded time for the call's stream.
- Caller speech start clears playback at once (barge-in), except while an outbound conversation
  call is still saying its first message; a final transcript becomes a `call.speech` event.
- When a stream ends, the call is ended after a grace period unless a new stream comes for it;
  a call being transferred is kept while the person is dialed or bridged, and its new stream
  gets a full grace period from when the transfer gave the call back (D95).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voicecall.audio.dtmf import dtmf_pcm
from voicecall.audio.pacer import Pacer
from voicecall.calls.events import CallEvent
from voicecall.calls.latency import summarize
from voicecall.calls.machine import transfer_in_progress
from voicecall.calls.model import CallRecord, CallState, EndReason
from voicecall.media.playback import PlaybackError, Speech, Utterance
from voicecall.media.realtime import ModelFactory, RealtimeBridge, RealtimeTools
from voicecall.media.session import StreamConnection, StreamSession, sanitize_for_log
from voicecall.providers.streams import MediaStreams, PlaybackResult, StreamStart
from voicecall.service import CallService
from voicecall.shared.clock import now_ms
from voicecall.speech.stt.base import SttCallbacks, SttSession

__all__ = ["MediaHub", "RealtimeOptions", "SttFactory"]

log = logging.getLogger(__name__)

SttFactory = Callable[[SttCallbacks], SttSession]
Audio = tuple[int, bytes]
"""Ready audio (sample rate, PCM16LE) played instead of synthesized text: key tones."""
DISCONNECT_GRACE_S = 2.0
STREAM_WAIT_S = 10.0
STALL_CHECK_S = 1.0


@dataclass(frozen=True)
class RealtimeOptions:
    """Streams bridged to a realtime voice model instead of speech-to-text (D120)."""

    factory: ModelFactory
    instructions: str
    tools: RealtimeTools | None = None
    stall_s: float = 30.0
    """No caller audio for this long counts as a disconnect (D123)."""
    clock: Callable[[], float] = time.monotonic


def _transfer_changed_at(record: CallRecord) -> int | None:
    """When the call's transfer last changed (its latest `...At` time, ms), if it has one."""
    transfer = record.metadata.get("transfer")
    if not isinstance(transfer, dict):
        return None
    times = [v for k, v in transfer.items()
             if k.endswith("At") and isinstance(v, int) and not isinstance(v, bool)]
    return max(times, default=None)


def _copy(source: asyncio.Future[PlaybackResult], target: asyncio.Future[PlaybackResult]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
        target.exception()
    else:
        target.set_result(source.result())


class MediaHub:
    """See the module docstring. Implements the call service's `MediaPlayer`."""

    def __init__(self, service: CallService, streams: MediaStreams, speech: Speech, *,
                 stt_factory: SttFactory | None = None, grace_s: float = DISCONNECT_GRACE_S,
                 stream_wait_s: float = STREAM_WAIT_S,
                 speech_for: Callable[[CallRecord], Speech] | None = None,
                 realtime: RealtimeOptions | None = None) -> None:
        self.service = service
        self.realtime = realtime
        self._bridges: dict[str, RealtimeBridge] = {}
        self._stall_task: asyncio.Task[None] | None = None
        self.streams = streams
        self.serializer = streams.serializer
        self.speech = speech
        self.speech_for = speech_for or (lambda call: speech)
        """The voice of a call (a `numbers` route may have its own TTS settings)."""
        self.stt_factory = stt_factory
        self.grace_s = grace_s
        self.stream_wait_s = stream_wait_s
        self.pacer = Pacer()
        self._sessions: dict[str, StreamSession] = {}
        self._early: dict[str, list[tuple[str, Audio | None, asyncio.Future[PlaybackResult]]]] = {}
        self._early_timers: dict[str, asyncio.TimerHandle] = {}
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._first_frame_ms: deque[float] = deque(maxlen=10_000)
        self.streams_opened = 0
        self.streams_refused = 0
        self._ended_silence_frames = 0
        self._ended_underrun_frames = 0

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.pacer.start()
        if self.realtime is not None:
            self._stall_task = asyncio.get_running_loop().create_task(self._watch_stalls(),
                                                                      name="voicecall-stall-watch")

    async def _watch_stalls(self) -> None:
        assert self.realtime is not None
        while True:
            await asyncio.sleep(STALL_CHECK_S)
            self.check_stalls(self.realtime.clock())

    def check_stalls(self, now: float) -> int:
        """End the streams of realtime calls whose caller audio stopped `stall_s` ago (a dead
        stream the carrier never closed): each counts as a disconnect, then the grace period."""
        if self.realtime is None:
            return 0
        stalled = [cid for cid, bridge in self._bridges.items()
                   if bridge.stalled(now, self.realtime.stall_s)]
        for cid in stalled:
            session = self._sessions.get(cid)
            if session is None:
                continue
            log.info("call %s: no inbound media for %.0f s; treating the stream as gone", cid,
                     self.realtime.stall_s)
            session.end()
            session.connection.close(1000, "no inbound media")
        return len(stalled)

    async def stop(self) -> None:
        if self._stall_task is not None:
            self._stall_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stall_task
            self._stall_task = None
        for handle in [*self._grace.values(), *self._early_timers.values()]:
            handle.cancel()
        self._grace.clear()
        for call_id in list(self._early):
            self._no_stream(call_id)
        for session in list(self._sessions.values()):
            session.connection.close(1001, "gateway shutting down")
            session.end()
        await self.pacer.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- streams ---------------------------------------------------------------------------------
    def session_for(self, call_id: str) -> StreamSession | None:
        return self._sessions.get(call_id)

    async def open(self, start: StreamStart, query_token: str | None,
                   connection: StreamConnection, *,
                   streams: MediaStreams | None = None) -> StreamSession | None:
        """Authorize `start` and attach a new session to its call; None means "Unknown call".
        `streams` is the stream's own wire format and authorization when it is not the
        carrier's (a browser call, D112)."""
        streams = streams or self.streams
        call_id = await streams.authorize_stream(start, query_token)
        record = self.service.live(call_id) if call_id else None
        if record is None or record.is_terminal:
            self.streams_refused += 1
            return None
        cid = record.call_id
        handle = self._grace.pop(cid, None)
        if handle is not None:
            handle.cancel()
        old = self._sessions.get(cid)
        session = StreamSession(call_id=cid, start=start, connection=connection,
                                serializer=streams.serializer, speech=self.speech_for(record), owner=self,
                                on_first_frame=self._first_frame)
        if self.realtime is not None:
            bridge = RealtimeBridge(service=self.service, session=session, record=record,
                                    factory=self.realtime.factory, instructions=self.realtime.instructions,
                                    tools=self.realtime.tools, clock=self.realtime.clock)
            session.stt = bridge
            self._bridges[cid] = bridge
        elif self.stt_factory is not None:
            try:
                session.stt = self.stt_factory(session.callbacks())
            except Exception as exc:
                log.warning("call %s: speech-to-text unavailable: %s", cid, exc)
        self._sessions[cid] = session
        if old is not None:  # a reconnect replaces the old stream
            old.connection.close(1000, "replaced by a new stream")
            old.end()
        self.pacer.add(session.playback)
        self.streams_opened += 1
        session.start_stt()
        self._flush_early(session)
        log.info("call %s: media stream %s connected from %s", cid, start.stream_id,
                 connection.client_ip)
        return session

    def _first_frame(self, utt: Utterance) -> None:
        if utt.first_tts_byte_at is not None and utt.first_frame_at is not None:
            self._first_frame_ms.append(utt.first_frame_at - utt.first_tts_byte_at)

    def on_stream_end(self, session: StreamSession) -> None:
        self.pacer.remove(session.playback)
        self._ended_silence_frames += session.playback.silence_sent
        self._ended_underrun_frames += session.playback.underrun_frames
        cid = session.call_id
        if self._sessions.get(cid) is not session:
            return  # replaced by a newer stream
        del self._sessions[cid]
        self._bridges.pop(cid, None)
        log.info("call %s: media stream %s ended", cid, session.stream_id)
        record = self.service.live(cid)
        if record is None or record.is_terminal:
            return
        self._arm_grace(cid, self.grace_s)

    def _arm_grace(self, call_id: str, seconds: float) -> None:
        self._grace[call_id] = asyncio.get_running_loop().call_later(
            seconds, self._grace_expired, call_id)

    def _grace_expired(self, call_id: str) -> None:
        self._grace.pop(call_id, None)
        if call_id in self._sessions:
            return
        record = self.service.live(call_id)
        if record is None or record.is_terminal:
            return
        hold_s = self._transfer_hold_s(record)
        if hold_s > 0:
            self._arm_grace(call_id, hold_s)
            return
        log.info("call %s: media stream gone for %.1f s; ending the call", call_id, self.grace_s)
        self._spawn(self.service.end(call_id, EndReason.HANGUP_BOT,
                                     detail="media stream disconnected"), f"end:{call_id}")

    def _transfer_hold_s(self, record: CallRecord) -> float:
        """How much longer a call without a stream waits for one because of its transfer (D95):
        another grace period while the person is dialed or bridged (the carrier has the call),
        and what is left of a grace period counted from the transfer's last change once it gave
        the call back (its new stream is on the way); 0 when nothing is waited for."""
        if transfer_in_progress(record):
            return self.grace_s
        changed = _transfer_changed_at(record)
        if changed is None:
            return 0.0
        return min(self.grace_s, self.grace_s - (now_ms() - changed) / 1000)

    # -- MediaPlayer (for the call service) ------------------------------------------------------
    def handles(self, call: CallRecord) -> bool:
        """Every call of a streaming carrier speaks and listens over its stream."""
        return True

    def enqueue(self, call: CallRecord, text: str) -> asyncio.Future[PlaybackResult]:
        """Queue `text` on the call's stream, or, before the stream is up, until it connects
        (for at most `stream_wait_s`). Order is kept either way."""
        return self._enqueue(call, text, None)

    def _enqueue(self, call: CallRecord, text: str,
                 audio: Audio | None) -> asyncio.Future[PlaybackResult]:
        session = self._sessions.get(call.call_id)
        if session is not None:
            return self._play(session, text, audio)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[PlaybackResult] = loop.create_future()
        self._early.setdefault(call.call_id, []).append((text, audio, fut))
        if call.call_id not in self._early_timers:
            self._early_timers[call.call_id] = loop.call_later(
                self.stream_wait_s, self._no_stream, call.call_id)
        return fut

    def _no_stream(self, call_id: str) -> None:
        self._early_timers.pop(call_id, None)
        for _text, _audio, fut in self._early.pop(call_id, []):
            if not fut.done():
                fut.set_exception(PlaybackError(
                    f"no media stream for the call after {self.stream_wait_s:g} s"))
                fut.exception()

    def _flush_early(self, session: StreamSession) -> None:
        timer = self._early_timers.pop(session.call_id, None)
        if timer is not None:
            timer.cancel()
        for text, audio, fut in self._early.pop(session.call_id, []):
            if fut.done():
                continue
            try:
                source = self._play(session, text, audio)
            except PlaybackError as exc:
                fut.set_exception(exc)
                continue
            source.add_done_callback(functools.partial(_copy, target=fut))

    def _play(self, session: StreamSession, text: str,
              audio: Audio | None) -> asyncio.Future[PlaybackResult]:
        """Text on a realtime call is said by its model; everything else plays on the stream."""
        bridge = self._bridges.get(session.call_id)
        if bridge is not None and audio is None:
            return bridge.say(text)
        return session.playback.play(text, audio=audio).result

    def enqueue_dtmf(self, call: CallRecord, digits: str) -> asyncio.Future[PlaybackResult]:
        """Play `digits` as key tones on the call's stream (in order with speech), waiting for
        the stream like speech does (the keys sent before the first message come at answer)."""
        return self._enqueue(call, f"[keys {digits}]", (8000, dtmf_pcm(digits)))

    # -- what the caller does --------------------------------------------------------------------
    def _greeting_protected(self, record: CallRecord) -> bool:
        """An outbound conversation call's first message is not interrupted (docs/decisions.md D22)."""
        return (record.direction == "outbound" and record.mode == "conversation"
                and record.state == CallState.SPEAKING and bool(record.metadata.get("initialMessage")))

    def on_speech_start(self, session: StreamSession) -> None:
        record = self.service.live(session.call_id)
        if record is None or self._greeting_protected(record):
            return
        if session.playback.clear():
            log.info("call %s: caller started speaking; playback cleared", session.call_id)
            self.service.interrupted(session.call_id)

    def on_speech_end(self, session: StreamSession) -> None:
        self.service.note_speech_end(session.call_id, now_ms())

    def on_transcript(self, session: StreamSession, text: str) -> None:
        record = self.service.live(session.call_id)
        if record is None:
            return
        if self._greeting_protected(record):
            log.info("call %s: transcript during the first message ignored: %s", session.call_id,
                     sanitize_for_log(text))
            return
        if session.playback.clear():
            self.service.interrupted(session.call_id)
        event = CallEvent.model_validate({
            "type": "call.speech", "callId": record.call_id, "providerCallId": session.provider_call_id,
            "transcript": text, "isFinal": True, "timestamp": now_ms(),
            "turnToken": self.service.turn_token(record.call_id),
            "dedupeKey": f"stream-transcript:{session.stream_id}:{session.transcripts}",
        })
        self._spawn(self._apply(event), f"transcript:{record.call_id}")

    def on_dtmf(self, session: StreamSession, digit: str) -> None:
        event = CallEvent.model_validate({
            "type": "call.dtmf", "callId": session.call_id, "providerCallId": session.provider_call_id,
            "digits": digit, "timestamp": now_ms(),
            "dedupeKey": f"stream-dtmf:{session.stream_id}:{time.monotonic_ns()}",
        })
        self._spawn(self._apply(event), f"dtmf:{session.call_id}")

    async def _apply(self, event: CallEvent) -> None:
        try:
            await self.service.apply_events([event])
        except Exception:
            log.exception("call %s: could not apply %s from the media stream", event.call_id, event.type)

    # -- numbers ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        p = self.pacer.stats
        return {
            "activeStreams": len(self._sessions),
            "streamsOpened": self.streams_opened,
            "streamsRefused": self.streams_refused,
            "ttsFirstByteToFirstFrameMs": summarize(self._first_frame_ms),
            # Keep-alive silence sent while speech was due but its audio had not arrived (a TTS
            # that cannot keep up shows here, not as jitter: silence frames are paced too).
            "keepAliveSilenceFrames": self._ended_silence_frames + sum(
                s.playback.silence_sent for s in self._sessions.values()),
            # ...and how many of them fell inside an utterance, after its audio had started: a
            # gap the caller hears (0 when synthesis keeps ahead of playback).
            "underrunFrames": self._ended_underrun_frames + sum(
                s.playback.underrun_frames for s in self._sessions.values()),
            "pacer": {"ticks": p.ticks, "lateTicks": p.late_ticks, "skippedTicks": p.skipped_ticks,
                      "maxLatenessMs": round(p.max_lateness_ms, 3), "framesSent": p.frames_sent,
                      "sinkErrors": p.sink_errors},
        }
