"""Deepgram live transcription over WebSocket (`/v1/listen`).

Audio goes out as binary frames (8 kHz mu-law). `Results` messages: interim ones
(`is_final: false`) → `on_partial`; `is_final` segments accumulate until `speech_final` (or an
`UtteranceEnd`), then the joined text → `on_final`. `SpeechStarted` → `on_speech_start`.
A `KeepAlive` is sent after ~8 s without audio; `CloseStream` on close, after which the server's
last results are still read (briefly) before the socket closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection

from voicecall.speech.stt.base import (
    DEFAULT_BACKOFF_S,
    DEFAULT_MAX_QUEUED_BYTES,
    SttCallbacks,
    WebSocketSttSession,
    ws_url,
)

__all__ = ["DEFAULT_DEEPGRAM_BASE_URL", "DEFAULT_DEEPGRAM_MODEL", "DeepgramStt"]

log = logging.getLogger(__name__)

DEFAULT_DEEPGRAM_BASE_URL = "wss://api.deepgram.com/v1/listen"
DEFAULT_DEEPGRAM_MODEL = "nova-2"
KEEPALIVE = json.dumps({"type": "KeepAlive"})
CLOSE_STREAM = json.dumps({"type": "CloseStream"})


class DeepgramStt(WebSocketSttSession):
    """Streaming STT session against Deepgram's live (`listen`) WebSocket API."""

    provider_name = "deepgram"
    drain_on_close_s = 1.5

    def __init__(self, api_key: str, callbacks: SttCallbacks | None = None, *,
                 base_url: str = DEFAULT_DEEPGRAM_BASE_URL, model: str = DEFAULT_DEEPGRAM_MODEL,
                 endpointing_ms: int = 300, language: str = "en-US",
                 keepalive_interval_s: float = 8.0, connect_timeout_s: float = 10.0,
                 backoff: Sequence[float] = DEFAULT_BACKOFF_S,
                 max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES) -> None:
        super().__init__(callbacks, connect_timeout_s=connect_timeout_s, backoff=backoff,
                         max_queued_bytes=max_queued_bytes)
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.endpointing_ms = endpointing_ms
        self.language = language
        self.keepalive_interval_s = keepalive_interval_s
        self.keepalives_sent = 0
        self._segments: list[str] = []

    def query(self) -> dict[str, str]:
        return {
            "encoding": "mulaw",
            "sample_rate": "8000",
            "channels": "1",
            "interim_results": "true",
            "endpointing": str(self.endpointing_ms),
            "vad_events": "true",
            "model": self.model,
            "language": self.language,
        }

    def url(self) -> str:
        base = ws_url(self.base_url)
        return f"{base}{'&' if '?' in base else '?'}{urlencode(self.query())}"

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Token {self.api_key}"}

    async def on_open(self, ws: ClientConnection) -> None:
        self._segments = []

    def encode_audio(self, mulaw: bytes) -> bytes:
        return mulaw

    async def keepalive(self, ws: ClientConnection) -> None:
        if self.keepalive_interval_s <= 0:
            return
        loop = asyncio.get_running_loop()
        while True:
            due = self._last_audio_sent + self.keepalive_interval_s
            now = loop.time()
            if now < due:
                await asyncio.sleep(due - now)
                continue
            await ws.send(KEEPALIVE)
            self.keepalives_sent += 1
            self._last_audio_sent = loop.time()

    async def before_close(self, ws: ClientConnection) -> None:
        await ws.send(CLOSE_STREAM)

    def after_close(self) -> None:
        self._finish_utterance()

    def handle_message(self, message: str | bytes) -> None:
        event = self.json_event(message)
        if event is None:
            return
        kind = event.get("type")
        if kind == "Results":
            self._on_results(event)
        elif kind == "SpeechStarted":
            self._emit(self.callbacks.on_speech_start)
        elif kind == "UtteranceEnd":
            self._finish_utterance()
        elif kind in ("Error", "error"):
            text = event.get("description") or event.get("message") or event.get("err_msg") or "error"
            log.warning("deepgram: error message: %s", text)
            self._emit(self.callbacks.on_error, f"deepgram: {text}")
        else:
            log.debug("deepgram: message %s", kind)

    def _on_results(self, event: dict[str, Any]) -> None:
        transcript = _transcript(event).strip()
        if event.get("is_final"):
            if transcript:
                self._segments.append(transcript)
            if event.get("speech_final"):
                self._emit(self.callbacks.on_speech_end)
                self._finish_utterance()
            elif self._segments and transcript:
                self._emit(self.callbacks.on_partial, " ".join(self._segments))
        elif transcript:
            self._emit(self.callbacks.on_partial, " ".join([*self._segments, transcript]))

    def _finish_utterance(self) -> None:
        text = " ".join(self._segments).strip()
        self._segments = []
        if text:
            self._emit(self.callbacks.on_final, text)


def _transcript(event: Mapping[str, Any]) -> str:
    channel = event.get("channel")
    if not isinstance(channel, dict):
        return ""
    alternatives = channel.get("alternatives")
    if not isinstance(alternatives, list) or not alternatives or not isinstance(alternatives[0], dict):
        return ""
    text = alternatives[0].get("transcript")
    return text if isinstance(text, str) else ""
