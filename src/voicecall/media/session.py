"""One accepted media stream: inbound audio to speech-to-text, outbound playback, carrier marks.

A `StreamSession` is carrier-neutral: the carrier's `StreamSerializer` has already turned each
WebSocket message into a `StreamMessage`, and outbound messages go back through the same
serializer. What the session hears (transcripts, speech starts, keys, the end of the stream) it
reports to its `SessionOwner` (the `MediaHub`), which knows about calls.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Protocol

from voicecall.audio.g711 import alaw_to_ulaw
from voicecall.media.playback import Speech, StreamPlayback, Utterance
from voicecall.providers.streams import (
    StreamAudio,
    StreamCleared,
    StreamDtmf,
    StreamMark,
    StreamMessage,
    StreamSerializer,
    StreamStart,
    StreamStop,
)
from voicecall.shared.error_counts import count_error
from voicecall.speech.stt.base import SttCallbacks, SttSession

__all__ = ["SessionOwner", "StreamConnection", "StreamSession", "sanitize_for_log"]

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sanitize_for_log(text: str, limit: int = 200) -> str:
    """Caller speech as it may appear in a log line: no control characters, at most 200 chars."""
    clean = _CONTROL.sub(" ", text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


class StreamConnection(Protocol):
    """The WebSocket under a session (implemented by the media endpoint)."""

    client_ip: str

    def send_text(self, text: str) -> bool:
        """Send now without blocking; False when the socket is closed (or was closed for
        backpressure)."""
        ...

    def close(self, code: int, reason: str) -> None: ...


class SessionOwner(Protocol):
    """Where a session reports what it hears (the `MediaHub`)."""

    def on_speech_start(self, session: StreamSession) -> None: ...
    def on_speech_end(self, session: StreamSession) -> None: ...
    def on_transcript(self, session: StreamSession, text: str) -> None: ...
    def on_dtmf(self, session: StreamSession, digit: str) -> None: ...
    def on_stream_end(self, session: StreamSession) -> None: ...


class StreamSession:
    """See the module docstring. Created by the hub once a `start` is authorized."""

    def __init__(self, *, call_id: str, start: StreamStart, connection: StreamConnection,
                 serializer: StreamSerializer, speech: Speech, owner: SessionOwner,
                 stt: SttSession | None = None,
                 on_first_frame: Callable[[Utterance], None] | None = None) -> None:
        self.call_id = call_id
        self.provider_call_id = start.call_sid
        self.stream_id = start.stream_id
        self.connection = connection
        self.owner = owner
        self.stt = stt
        self.ended = False
        self.transcripts = 0
        self.playback = StreamPlayback(stream_id=start.stream_id, serializer=serializer,
                                       speech=speech, send=connection.send_text,
                                       on_first_frame=on_first_frame, codec=start.codec)
        self._to_ulaw = alaw_to_ulaw if start.codec == "alaw" else None
        """Speech-to-text takes μ-law: an A-law stream's audio is converted for it."""
        self._stt_task: asyncio.Task[None] | None = None

    def callbacks(self) -> SttCallbacks:
        """The STT callbacks that feed this session (pass them when building its STT session)."""
        return SttCallbacks(on_partial=self._partial, on_final=self._final,
                            on_speech_start=self._speech_start, on_speech_end=self._speech_end,
                            on_error=self._stt_error)

    def start_stt(self) -> None:
        """Connect speech-to-text in the background: playback works even if it fails."""
        if self.stt is not None and self._stt_task is None:
            self._stt_task = asyncio.get_running_loop().create_task(self._connect_stt(),
                                                                   name=f"stt:{self.call_id}")

    async def _connect_stt(self) -> None:
        assert self.stt is not None
        try:
            await self.stt.connect()
        except Exception as exc:
            count_error("stt")
            log.warning("call %s: speech-to-text did not connect: %s", self.call_id, exc)

    # -- inbound --------------------------------------------------------------------------------
    def handle(self, message: StreamMessage) -> None:
        """One parsed inbound message (after `start`)."""
        if isinstance(message, StreamAudio):
            if self.stt is not None:
                payload = message.payload
                self.stt.send_audio(self._to_ulaw(payload) if self._to_ulaw else payload)
        elif isinstance(message, StreamMark):
            self.playback.on_mark(message.name)
        elif isinstance(message, StreamCleared):
            self.playback.on_cleared()
        elif isinstance(message, StreamDtmf):
            self.owner.on_dtmf(self, message.digit)
        elif isinstance(message, StreamStop):
            self.end()
        elif isinstance(message, StreamStart):
            log.debug("call %s: second start on stream %s ignored", self.call_id, self.stream_id)

    def end(self) -> None:
        """The stream stopped or its socket closed: stop playback and STT, tell the owner once."""
        if self.ended:
            return
        self.ended = True
        self.playback.close()
        if self._stt_task is not None and not self._stt_task.done():
            self._stt_task.cancel()
        if self.stt is not None:
            asyncio.get_running_loop().create_task(self._close_stt(), name=f"stt-close:{self.call_id}")
        self.owner.on_stream_end(self)

    async def _close_stt(self) -> None:
        assert self.stt is not None
        try:
            await asyncio.wait_for(self.stt.close(), 5)
        except Exception as exc:
            log.debug("call %s: closing speech-to-text: %s", self.call_id, exc)

    # -- STT callbacks --------------------------------------------------------------------------
    def _partial(self, text: str) -> None:
        log.debug("call %s: partial transcript: %s", self.call_id, sanitize_for_log(text))

    def _final(self, text: str) -> None:
        if not self.ended and text.strip():
            self.transcripts += 1
            self.owner.on_transcript(self, text.strip())

    def _speech_start(self) -> None:
        if not self.ended:
            self.owner.on_speech_start(self)

    def _speech_end(self) -> None:
        if not self.ended:
            self.owner.on_speech_end(self)

    def _stt_error(self, message: str) -> None:
        count_error("stt")
        log.warning("call %s: speech-to-text error: %s", self.call_id, sanitize_for_log(message))
