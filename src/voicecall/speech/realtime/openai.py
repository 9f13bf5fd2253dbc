"""OpenAI's Realtime API over WebSocket (`/v1/realtime`), in its generally available protocol
(docs/decisions.md D130: the beta one, with its `OpenAI-Beta` header, is gone): the carrier's
G.711 goes in and comes out as it is (the session's `audio/pcmu` / `audio/pcma` formats), or,
with `audioFormat: "pcm16"` for a model or compatible server without them, as 24 kHz PCM through
the shared resampler; server-side voice activity detection, transcription of the caller,
function tools, truncation of what was not heard."""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any
from urllib.parse import quote

from voicecall.audio.g711 import alaw_decode, ulaw_decode
from voicecall.audio.resample import StreamingResampler
from voicecall.speech.realtime.base import RealtimeError, RealtimeEvents, RealtimeSetup
from voicecall.speech.realtime.wire import RealtimeSocket, ws_url

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-realtime"
DEFAULT_VOICE = "alloy"
TRANSCRIPTION_MODEL = "whisper-1"
PCM_RATE = 24000
BATCH_BYTES = 320
"""The caller's audio goes out 40 ms (two frames) per message: half the messages of one per
frame, for at most one frame more delay."""
SAY_INSTRUCTIONS = "Say exactly this to the caller, word for word, and nothing else: {text}"

_AUDIO_DELTA = ("response.audio.delta", "response.output_audio.delta")
_AUDIO_DONE = ("response.audio.done", "response.output_audio.done")
_TRANSCRIPT_DONE = ("response.audio_transcript.done", "response.output_audio_transcript.done")


class OpenAIRealtime:
    """See the module docstring. One instance per call."""

    name = "openai"

    def __init__(self, setup: RealtimeSetup, events: RealtimeEvents, *, api_key: str,
                 model: str = DEFAULT_MODEL, voice: str = DEFAULT_VOICE,
                 base_url: str = DEFAULT_BASE_URL, pcm: bool = False) -> None:
        self.setup = setup
        self.events = events
        self.model = model
        self.voice = voice
        self.pcm = pcm
        self.format: dict[str, Any] = (
            {"type": "audio/pcm", "rate": PCM_RATE} if pcm
            else {"type": "audio/pcmu" if setup.codec == "ulaw" else "audio/pcma"})
        self._decode = ulaw_decode if setup.codec == "ulaw" else alaw_decode
        self._upsample = StreamingResampler(8000, PCM_RATE) if pcm else None
        self._pending = bytearray()
        url = f"{ws_url(base_url)}/realtime?model={quote(model)}"
        headers = {"Authorization": f"Bearer {api_key}"}
        self.socket = RealtimeSocket(url, headers, events, self._handle, label="OpenAI realtime")

    def session_config(self) -> dict[str, Any]:
        """The `session.update` body: audio formats, voice, VAD, transcription, tools."""
        return {
            "type": "realtime",
            "model": self.model,
            "output_modalities": ["audio"],
            "instructions": self.setup.instructions,
            "audio": {
                "input": {"format": self.format, "transcription": {"model": TRANSCRIPTION_MODEL},
                          "turn_detection": {"type": "server_vad"}},
                "output": {"format": self.format, "voice": self.voice},
            },
            "tools": [{"type": "function", "name": t.name, "description": t.description,
                       "parameters": t.parameters} for t in self.setup.tools],
            "tool_choice": "auto",
        }

    async def connect(self) -> None:
        await self.socket.open()
        first = await self.socket.receive_one()
        if first.get("type") != "session.created":
            await self.socket.close()
            raise RealtimeError(f"OpenAI realtime: expected session.created, got {_describe(first)}")
        await self.socket.send_now({"type": "session.update", "session": self.session_config()})
        self.socket.run()

    def send_audio(self, g711: bytes) -> None:
        if self._upsample is not None:
            self._pending += self._upsample.process(self._decode(g711).tobytes())
        else:
            self._pending += g711
        if len(self._pending) >= BATCH_BYTES * (6 if self.pcm else 1):
            self.socket.send({"type": "input_audio_buffer.append",
                              "audio": base64.b64encode(self._pending).decode("ascii")})
            self._pending.clear()

    def say(self, text: str) -> None:
        self.socket.send({"type": "response.create",
                          "response": {"instructions": SAY_INSTRUCTIONS.format(text=text)}})

    def truncate(self, item_id: str, played_ms: int) -> None:
        self.socket.send({"type": "conversation.item.truncate", "item_id": item_id,
                          "content_index": 0, "audio_end_ms": max(0, played_ms)})

    def function_result(self, call_id: str, name: str, output: str, *, respond: bool) -> None:
        self.socket.send({"type": "conversation.item.create",
                          "item": {"type": "function_call_output", "call_id": call_id, "output": output}})
        if respond:
            self.socket.send({"type": "response.create"})

    async def close(self) -> None:
        await self.socket.close()

    # -- server events ---------------------------------------------------------------------------
    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        ev = self.events
        if kind in _AUDIO_DELTA:
            try:
                audio = base64.b64decode(str(message.get("delta", "")), validate=True)
            except (binascii.Error, ValueError):
                log.warning("OpenAI realtime: audio delta that is not base64")
                return
            if self.pcm:
                ev.on_audio(str(message.get("item_id", "")), PCM_RATE, audio)
            else:
                ev.on_audio(str(message.get("item_id", "")), 8000, self._decode(audio).tobytes())
        elif kind in _AUDIO_DONE:
            ev.on_audio_done(str(message.get("item_id", "")))
        elif kind == "input_audio_buffer.speech_started":
            ev.on_speech_started()
        elif kind == "input_audio_buffer.speech_stopped":
            ev.on_speech_stopped()
        elif kind == "conversation.item.input_audio_transcription.completed":
            text = str(message.get("transcript") or "").strip()
            if text:
                ev.on_user_transcript(text)
        elif kind in _TRANSCRIPT_DONE:
            text = str(message.get("transcript") or "").strip()
            if text:
                ev.on_model_transcript(str(message.get("item_id", "")), text)
        elif kind == "response.output_item.done":
            item = message.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                ev.on_function_call(str(item.get("call_id", "")), str(item.get("name", "")),
                                    str(item.get("arguments") or "{}"))
        elif kind == "error":
            log.warning("OpenAI realtime error event: %s", _describe(message))


def _describe(message: dict[str, Any]) -> str:
    error = message.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "error")[:200]
    return str(message.get("type") or "a message without a type")[:200]
