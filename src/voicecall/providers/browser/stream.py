"""The browser call's wire format (D112), one more `StreamSerializer` on the shared pipeline.

Page to gateway: binary frames of 16-bit little-endian PCM, mono, 8 kHz (the page's
AudioWorklet resamples the microphone), turned into μ-law here so speech-to-text hears exactly
what it hears from a phone; text frames `{"event": "mark"|"dtmf"|"stop", ...}`.
Gateway to page: `{"event": "media", "payload": <base64 μ-law>}`, `{"event": "mark", "name"}`
and `{"event": "clear"}`; the page echoes a mark once the audio queued before it has played.
"""

from __future__ import annotations

import binascii
import json

from voicecall.audio.g711 import ulaw_encode
from voicecall.providers.streams import (
    Codec,
    StreamAudio,
    StreamDtmf,
    StreamMark,
    StreamMessage,
    StreamStop,
    json_object,
)

__all__ = ["MAX_AUDIO_BYTES", "BrowserStreamSerializer"]

MAX_AUDIO_BYTES = 16_000
"""The largest PCM frame accepted: one second at 8 kHz (the page sends 20 ms at a time)."""
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class BrowserStreamSerializer:
    """`StreamSerializer` for the console's browser calls."""

    codec: Codec = "ulaw"

    def parse(self, data: str | bytes) -> StreamMessage | None:
        if isinstance(data, bytes):
            if len(data) % 2 or len(data) > MAX_AUDIO_BYTES:
                raise ValueError(f"audio frames are 16-bit PCM of at most {MAX_AUDIO_BYTES} bytes")
            return StreamAudio(ulaw_encode(data)) if data else None
        message = json_object(data)
        event = message.get("event")
        if event == "mark":
            name = message.get("name")
            return StreamMark(name) if isinstance(name, str) and name else None
        if event == "dtmf":
            digit = message.get("digit")
            if not isinstance(digit, str) or digit not in DTMF_DIGITS:
                raise ValueError("dtmf needs one digit of 0-9 * # A-D")
            return StreamDtmf(digit)
        if event == "stop":
            return StreamStop()
        return None

    def audio(self, stream_id: str, payload: bytes) -> str:
        b64 = binascii.b2a_base64(payload, newline=False).decode("ascii")
        return f'{{"event":"media","payload":"{b64}"}}'

    def mark(self, stream_id: str, name: str) -> str:
        return json.dumps({"event": "mark", "name": name}, separators=(",", ":"))

    def clear(self, stream_id: str) -> str:
        return '{"event":"clear"}'
