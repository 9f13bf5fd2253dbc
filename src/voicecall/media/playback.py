"""Outbound audio of one media stream: a FIFO of utterances, synthesized ahead and paced out.

Each utterance is split at sentence boundaries; its synthesis task streams TTS PCM through a
streaming resampler (filter state kept across chunks), the G.711 encoder and a 20 ms frame
splitter, and queues ready-to-send carrier messages. The shared `Pacer` pulls one frame per tick
(`next_frame`), so the resampling never runs on the pacing path and a slow synthesis never delays
other calls. While an utterance's audio is not there yet, silence keeps the stream alive; its
first audio frame goes out the moment it exists instead of waiting for the next tick.

After an utterance's last frame a mark is sent; its echo means the caller heard it, which is
when `Utterance.result` resolves (notify hang-up waits for that). `clear()` (barge-in) stops the
active utterance within one frame, resolves it with the part that was played, and resolves every
queued one as skipped: nothing waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from voicecall.audio.frames import FRAME_BYTES, FrameSplitter
from voicecall.audio.g711 import ALAW_SILENCE, ULAW_SILENCE, alaw_encode, ulaw_encode
from voicecall.audio.resample import StreamingResampler
from voicecall.providers.streams import Codec, PlaybackResult, StreamSerializer, played_prefix
from voicecall.shared.error_counts import count_error
from voicecall.speech.sentences import SentenceSplitter

__all__ = ["PlaybackError", "Speech", "StreamPlayback", "Utterance", "split_sentences"]

log = logging.getLogger(__name__)

FRAME_S = 0.02
EAGER_AHEAD_FRAMES = 15
"""Below this many queued frames (300 ms) every TTS chunk is converted on arrival."""
BATCH_S = 0.5
"""Above it, TTS audio is converted in batches of this many seconds, and a larger burst in
slices of this size with the event loop free between them (other calls' frames stay on time)."""
READ_AHEAD_FRAMES = 50
"""Synthesis pauses once this many frames (1 s) wait to be played...
While it pauses, the TTS audio waits in the chain's read-ahead, the HTTP client's buffer and the
socket, so when it resumes it takes everything that arrived meanwhile in one piece."""
RESUME_AHEAD_FRAMES = 30
"""...and resumes when playback is down to this many (0.6 s)."""
MARK_GRACE_S = 5.0
"""How long after its last frame an utterance's mark may take to come back before it fails."""


class Speech(Protocol):
    """Text to PCM16LE: `TtsChain.stream` (yields `(sample_rate, pcm)` as audio arrives)."""

    def stream(self, text: str) -> AsyncIterator[tuple[int, bytes]]: ...


class PlaybackError(Exception):
    """The utterance could not be played (synthesis failed, stream closed, mark never came)."""


def split_sentences(text: str) -> list[str]:
    """How an utterance is cut for synthesis (each sentence is one TTS request, pipelined)."""
    cutter = SentenceSplitter()
    return cutter.feed(text) + cutter.flush() or [text]


async def _once(item: tuple[int, bytes]) -> AsyncIterator[tuple[int, bytes]]:
    yield item


def _precise_now_ms() -> float:
    """Wall-clock milliseconds with their fraction: the media hub reports the time from an
    utterance's first TTS byte to its first frame, which is often under a millisecond."""
    return time.time() * 1000


class Utterance:
    """One `play()` request: its audio frames, its state and the future its caller awaits."""

    __slots__ = (
        "audio",
        "done_synth",
        "first_frame_at",
        "first_tts_byte_at",
        "frames",
        "frames_made",
        "frames_sent",
        "mark_timer",
        "result",
        "source",
        "space",
        "task",
        "text",
    )

    def __init__(self, text: str, result: asyncio.Future[PlaybackResult],
                 audio: tuple[int, bytes] | None = None,
                 source: AsyncIterator[tuple[int, bytes]] | None = None) -> None:
        self.text = text
        self.audio = audio
        """Ready PCM `(rate, pcm16le)` to play instead of synthesizing `text` (e.g. key tones)."""
        self.source = source
        """PCM `(rate, pcm16le)` chunks as they arrive, played instead of synthesizing `text`
        (a realtime model's answer, whose words `text` holds once they are known)."""
        self.result = result
        self.frames: deque[str] = deque()
        self.frames_made = 0
        self.frames_sent = 0
        self.done_synth = False
        self.task: asyncio.Task[None] | None = None
        self.mark_timer: asyncio.TimerHandle | None = None
        self.first_tts_byte_at: float | None = None
        self.first_frame_at: float | None = None
        self.space: asyncio.Event | None = None
        """Set while synthesis waits for playback to catch up (read-ahead cap)."""

    def finish(self, *, interrupted: bool = False, skipped: bool = False) -> None:
        if self.result.done():
            return
        if skipped:
            text = ""
        elif interrupted:
            total = self.frames_made if self.done_synth else max(self.frames_made, 1)
            text = played_prefix(self.text, self.frames_sent / total if total else 0.0)
        else:
            text = self.text
        self.result.set_result(PlaybackResult(text, interrupted=interrupted, skipped=skipped,
                                              first_tts_byte_at=self.first_tts_byte_at,
                                              first_frame_at=self.first_frame_at))

    def fail(self, error: BaseException) -> None:
        if not self.result.done():
            self.result.set_exception(error)
            self.result.exception()  # retrieved: an abandoned waiter must not log a warning

    def cancel_work(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.mark_timer is not None:
            self.mark_timer.cancel()
            self.mark_timer = None


class _FrameMaker:
    """One utterance's TTS audio on its way to carrier frames.

    PCM is held, then resampled to 8 kHz by a streaming resampler (its filter state kept across
    chunks), G.711-encoded and cut into 20 ms frames, which go to `emit`. A change of sample
    rate, and the end of each sentence, convert what is held and flush the resampler's tail.
    """

    def __init__(self, encode: Callable[[bytes], bytes], emit: Callable[[list[bytes]], None]) -> None:
        self._encode = encode
        self._emit = emit
        self._splitter = FrameSplitter()
        self._resampler: StreamingResampler | None = None
        self._held: list[bytes] = []
        self.held_bytes = 0
        """How much PCM waits for conversion."""
        self._timer: asyncio.TimerHandle | None = None

    def add(self, rate: int, pcm: bytes) -> None:
        """Hold `pcm` (at `rate` Hz) for conversion."""
        if self._resampler is None or self._resampler.in_rate != rate:
            self.end_segment()
            self._resampler = StreamingResampler(rate, 8000)
        self._held.append(pcm)
        self.held_bytes += len(pcm)

    def convert(self) -> None:
        """Convert everything held, now."""
        self._convert(self._take_held())

    async def convert_in_slices(self, slice_bytes: int) -> None:
        """Convert everything held, `slice_bytes` at a time, letting the event loop run between
        slices (the pacer and other calls' frames stay on time)."""
        data = self._take_held()
        for start in range(0, len(data), slice_bytes):
            if start:
                await asyncio.sleep(0)
            self._convert(data[start:start + slice_bytes])

    def convert_later(self, delay_s: float) -> None:
        """Convert what is held in `delay_s` unless something converts it sooner."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay_s, self.convert)

    def end_segment(self) -> None:
        """Convert what is held and flush the resampler's tail (a sentence or a rate ended)."""
        self.convert()
        if self._resampler is not None:
            self._frames(self._resampler.flush())

    def last_frame(self, pad: bytes) -> bytes | None:
        """The final partial frame, padded with `pad` to full length (None when there is none)."""
        return self._splitter.flush(pad)

    def close(self) -> None:
        """Stop the pending conversion timer, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _take_held(self) -> bytes:
        self.close()  # whoever takes the audio converts it: the timer is no longer needed
        data = b"".join(self._held)
        self._held.clear()
        self.held_bytes = 0
        return data

    def _convert(self, pcm: bytes) -> None:
        if pcm and self._resampler is not None:
            self._frames(self._resampler.process(pcm))

    def _frames(self, pcm8k: bytes) -> None:
        if pcm8k:
            self._emit(self._splitter.push(self._encode(pcm8k)))


class StreamPlayback:
    """The `FrameSink` of one stream (see the module docstring)."""

    def __init__(self, *, stream_id: str, serializer: StreamSerializer, speech: Speech,
                 send: Callable[[str], bool], on_first_frame: Callable[[Utterance], None] | None = None,
                 codec: Codec = "ulaw") -> None:
        self.stream_id = stream_id
        self.serializer = serializer
        self.speech = speech
        self._send = send
        self._on_first_frame = on_first_frame
        self._queue: deque[Utterance] = deque()
        self._active: Utterance | None = None
        self._awaiting_mark: dict[str, Utterance] = {}
        self._mark_seq = 0
        self._closed = False
        silence = ULAW_SILENCE if codec == "ulaw" else ALAW_SILENCE
        self._silence = serializer.audio(stream_id, silence * FRAME_BYTES)
        self._encode = ulaw_encode if codec == "ulaw" else alaw_encode
        self._pad = silence
        self.silence_sent = 0
        """Keep-alive silence frames sent while audio was on its way."""
        self.underrun_frames = 0
        """Of those, the ones sent after an utterance's audio had started: a gap the caller
        hears in the middle of speech (synthesis fell behind playback)."""

    # -- requests -------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while something is playing, queued or waiting for its mark."""
        return self._active is not None or bool(self._queue) or bool(self._awaiting_mark)

    @property
    def active(self) -> Utterance | None:
        """The utterance playing now, if any."""
        return self._active

    def play(self, text: str, *, audio: tuple[int, bytes] | None = None,
             source: AsyncIterator[tuple[int, bytes]] | None = None) -> Utterance:
        """Queue `text` (or ready `audio`, or streamed `source` audio, labelled `text`); await
        `utterance.result` for how it ended."""
        if self._closed:
            raise PlaybackError("the media stream is closed")
        utt = Utterance(text, asyncio.get_running_loop().create_future(), audio, source)
        if self._active is None:
            self._activate(utt)
        else:
            self._queue.append(utt)
            if self._active.done_synth and len(self._queue) == 1:
                self._synthesize(utt)  # synthesize one ahead
        return utt

    def clear(self) -> bool:
        """Barge-in: stop the active utterance, skip the queued ones, tell the carrier to drop its
        buffer. Returns True if anything was playing or queued."""
        active, queued = self._active, list(self._queue)
        self._active = None
        self._queue.clear()
        if active is not None:
            active.cancel_work()
            active.finish(interrupted=True)
        for utt in queued:
            utt.cancel_work()
            utt.finish(skipped=True)
        if active is None and not queued and not self._awaiting_mark:
            return False
        self._send(self.serializer.clear(self.stream_id))
        return True

    def on_mark(self, name: str) -> None:
        """The carrier echoed mark `name`: everything before it has played."""
        utt = self._awaiting_mark.pop(name, None)
        if utt is not None:
            utt.cancel_work()
            utt.finish()

    def on_cleared(self) -> None:
        """The carrier dropped its buffer and will not echo the marks still awaited: those
        utterances end as interrupted (their audio was sent; how much played is unknown)."""
        awaiting, self._awaiting_mark = self._awaiting_mark, {}
        for utt in awaiting.values():
            utt.cancel_work()
            utt.finish(interrupted=True)

    def close(self, reason: str = "the media stream closed") -> None:
        """The stream is gone: every pending utterance fails (its caller is told why)."""
        self._closed = True
        pending = ([self._active] if self._active else []) + list(self._queue) + list(
            self._awaiting_mark.values())
        self._active = None
        self._queue.clear()
        self._awaiting_mark.clear()
        for utt in pending:
            utt.cancel_work()
            utt.fail(PlaybackError(reason))

    # -- FrameSink ------------------------------------------------------------------------------
    def next_frame(self) -> str | None:
        utt = self._active
        if utt is None:
            return None
        if utt.frames:
            return self._take(utt)
        if not utt.done_synth:
            self.silence_sent += 1
            if utt.first_frame_at is not None:
                self.underrun_frames += 1
            return self._silence  # keep-alive while the audio is on its way
        self._end_audio(utt)
        nxt = self._active
        if nxt is not None and nxt.frames:
            return self._take(nxt)
        return self._silence if nxt is not None else None

    def send_frame(self, frame: str) -> None:
        self._send(frame)

    # -- internals ------------------------------------------------------------------------------
    def _take(self, utt: Utterance) -> str:
        utt.frames_sent += 1
        if utt.space is not None and len(utt.frames) <= RESUME_AHEAD_FRAMES:
            utt.space.set()
        if utt.first_frame_at is None:
            utt.first_frame_at = _precise_now_ms()
            if self._on_first_frame is not None:
                self._on_first_frame(utt)
        return utt.frames.popleft()

    def _activate(self, utt: Utterance) -> None:
        self._active = utt
        if utt.task is None:
            self._synthesize(utt)

    def _synthesize(self, utt: Utterance) -> None:
        utt.task = asyncio.get_running_loop().create_task(self._synth(utt), name="voicecall-playback-synth")

    def _end_audio(self, utt: Utterance) -> None:
        """All of `utt` has been sent: mark it, and start the next utterance."""
        self._mark_seq += 1
        name = f"tts-{self._mark_seq}"
        if utt.frames_made == 0:
            utt.fail(PlaybackError("Telephony TTS produced no audio"))
        else:
            self._awaiting_mark[name] = utt
            self._send(self.serializer.mark(self.stream_id, name))
            utt.mark_timer = asyncio.get_running_loop().call_later(
                MARK_GRACE_S, self._mark_timeout, name)
        self._active = None
        if self._queue:
            self._activate(self._queue.popleft())
            if self._queue and self._active is not None and self._active.done_synth:
                self._synthesize(self._queue[0])

    def _mark_timeout(self, name: str) -> None:
        utt = self._awaiting_mark.pop(name, None)
        if utt is not None:
            utt.fail(PlaybackError("Telephony stream playback failed: completion mark not delivered"))

    async def _sentences(self, utt: Utterance) -> AsyncIterator[AsyncIterator[tuple[int, bytes]]]:
        if utt.audio is not None:
            yield _once(utt.audio)
            return
        if utt.source is not None:
            yield utt.source
            return
        for sentence in split_sentences(utt.text):
            yield self.speech.stream(sentence)

    async def _synth(self, utt: Utterance) -> None:
        """Stream the utterance's audio, sentence by sentence, into frames; then start
        synthesizing the next queued utterance."""
        maker = _FrameMaker(self._encode, lambda payloads: self._queue_frames(utt, payloads))
        try:
            async for audio in self._sentences(utt):
                async for rate, pcm in audio:
                    await self._take_chunk(utt, maker, rate, pcm)
                maker.end_segment()
            last = maker.last_frame(self._pad)
            if last is not None:
                self._queue_frames(utt, [last])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._plays_after_failure(utt, maker, exc):
                return
        finally:
            maker.close()
            utt.done_synth = True
        self._synthesize_next(utt)

    def _synthesize_next(self, utt: Utterance) -> None:
        """All of `utt`'s audio is made: if it is the one playing, synthesize the next queued
        utterance meanwhile (one ahead)."""
        nxt = self._queue[0] if self._queue else None
        if utt is self._active and nxt is not None and nxt.task is None:
            self._synthesize(nxt)

    async def _take_chunk(self, utt: Utterance, maker: _FrameMaker, rate: int, pcm: bytes) -> None:
        """Hand one TTS chunk to `maker`. While little is queued, each chunk is converted as it
        arrives (the first frame goes out at once); once playback is safely ahead, chunks are
        converted in half-second batches, and a timer converts a waiting batch before the queue
        runs low, so a pause in the TTS stream never leaves audio waiting while the caller hears
        silence. Once `READ_AHEAD_FRAMES` are queued, reading waits for playback to catch up."""
        if utt.first_tts_byte_at is None:
            utt.first_tts_byte_at = _precise_now_ms()
        maker.add(rate, pcm)
        ahead = len(utt.frames)
        batch_bytes = int(rate * BATCH_S) * 2
        if ahead < EAGER_AHEAD_FRAMES or maker.held_bytes >= batch_bytes:
            await maker.convert_in_slices(batch_bytes)
        else:
            maker.convert_later((ahead - EAGER_AHEAD_FRAMES) * FRAME_S)
        if len(utt.frames) >= READ_AHEAD_FRAMES:
            utt.space = asyncio.Event()
            await utt.space.wait()  # set by `_take` once playback is down to RESUME_AHEAD_FRAMES
            utt.space = None

    def _plays_after_failure(self, utt: Utterance, maker: _FrameMaker, exc: Exception) -> bool:
        """Synthesis failed: what arrived before the failure still plays, and the utterance ends
        where its audio ends (True). With no audio at all, the utterance fails and the next one
        starts (False)."""
        count_error("tts")
        log.warning("stream %s: synthesis failed: %s", self.stream_id, exc)
        maker.convert()
        if utt.frames_made:
            return True
        self._drop(utt)
        utt.fail(PlaybackError(str(exc) or type(exc).__name__))
        return False

    def _drop(self, utt: Utterance) -> None:
        """Remove a failed utterance and move on to the next one."""
        if self._active is utt:
            self._active = None
            if self._queue:
                self._activate(self._queue.popleft())
        else:
            with contextlib.suppress(ValueError):
                self._queue.remove(utt)

    def _queue_frames(self, utt: Utterance, payloads: list[bytes]) -> None:
        if not payloads:
            return
        first = utt.frames_made == 0
        utt.frames.extend(self.serializer.audio(self.stream_id, payload) for payload in payloads)
        utt.frames_made += len(payloads)
        if first and utt is self._active and utt.frames_sent == 0:
            # First audio of the utterance now playing: send it now, not at the next tick.
            self.send_frame(self._take(utt))
