"""OpenAI Realtime transcription over WebSocket (`/realtime?intent=transcription`), in the
generally available protocol (docs/decisions.md D130: the beta one is gone).

On open the session is configured with a `session.update` of a `transcription` session (G.711
μ-law input as `audio/pcmu`, the transcription model, server VAD); audio goes out as
`input_audio_buffer.append` (base64 mu-law).
Deltas → `on_partial` (cumulative text), `...completed` → `on_final`, `speech_started` →
`on_speech_start`, `error` → `on_error`.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection

from voicecall.speech.stt.base import (
    DEFAULT_BACKOFF_S,
    DEFAULT_MAX_QUEUED_BYTES,
    SttCallbacks,
    WebSocketSttSession,
    ws_url,
)

__all__ = ["DEFAULT_OPENAI_BASE_URL", "DEFAULT_OPENAI_STT_MODEL", "OpenAIRealtimeStt",
           "transcription_session_update"]

log = logging.getLogger(__name__)

DEFAULT_OPENAI_BASE_URL = "wss://api.openai.com/v1"
DEFAULT_OPENAI_STT_MODEL = "gpt-4o-transcribe"


def transcription_session_update(*, model: str, vad_threshold: float, prefix_padding_ms: int,
                                 silence_duration_ms: int) -> dict[str, Any]:
    """The `session.update` event that configures the transcription session, sent on connect."""
    return {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {"input": {
                "format": {"type": "audio/pcmu"},
                "transcription": {"model": model},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": vad_threshold,
                    "prefix_padding_ms": prefix_padding_ms,
                    "silence_duration_ms": silence_duration_ms,
                },
            }},
        },
    }


class OpenAIRealtimeStt(WebSocketSttSession):
    """Streaming STT session against OpenAI's realtime transcription endpoint."""

    provider_name = "openai"

    def __init__(self, api_key: str, callbacks: SttCallbacks | None = None, *,
                 base_url: str = DEFAULT_OPENAI_BASE_URL, model: str = DEFAULT_OPENAI_STT_MODEL,
                 silence_duration_ms: int = 800, vad_threshold: float = 0.5, prefix_padding_ms: int = 300,
                 connect_timeout_s: float = 10.0, backoff: Sequence[float] = DEFAULT_BACKOFF_S,
                 max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES) -> None:
        super().__init__(callbacks, connect_timeout_s=connect_timeout_s, backoff=backoff,
                         max_queued_bytes=max_queued_bytes)
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.silence_duration_ms = silence_duration_ms
        self.vad_threshold = vad_threshold
        self.prefix_padding_ms = prefix_padding_ms
        self._pending = ""

    def url(self) -> str:
        return ws_url(self.base_url) + "/realtime?intent=transcription"

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def session_update(self) -> dict[str, Any]:
        return transcription_session_update(model=self.model, vad_threshold=self.vad_threshold,
                                            prefix_padding_ms=self.prefix_padding_ms,
                                            silence_duration_ms=self.silence_duration_ms)

    async def on_open(self, ws: ClientConnection) -> None:
        self._pending = ""
        await ws.send(json.dumps(self.session_update()))

    def encode_audio(self, mulaw: bytes) -> str:
        return json.dumps({"type": "input_audio_buffer.append",
                           "audio": base64.b64encode(mulaw).decode("ascii")})

    def handle_message(self, message: str | bytes) -> None:
        event = self.json_event(message)
        if event is None:
            return
        kind = event.get("type")
        if kind == "conversation.item.input_audio_transcription.delta":
            delta = event.get("delta")
            if isinstance(delta, str) and delta:
                self._pending += delta
                self._emit(self.callbacks.on_partial, self._pending)
        elif kind == "conversation.item.input_audio_transcription.completed":
            transcript = event.get("transcript")
            self._pending = ""
            if isinstance(transcript, str) and transcript.strip():
                self._emit(self.callbacks.on_final, transcript.strip())
        elif kind == "input_audio_buffer.speech_started":
            self._pending = ""
            self._emit(self.callbacks.on_speech_start)
        elif kind == "input_audio_buffer.speech_stopped":
            self._emit(self.callbacks.on_speech_end)
        elif kind in ("error", "conversation.item.input_audio_transcription.failed"):
            error = event.get("error")
            message_text = error.get("message") if isinstance(error, dict) else None
            text = message_text if isinstance(message_text, str) and message_text else json.dumps(error)
            log.warning("openai: realtime transcription error: %s", text)
            self._emit(self.callbacks.on_error, f"openai: {text}")
        else:
            log.debug("openai: realtime event %s", kind)
