"""Pieces every JSON-over-WebSocket media protocol needs (Twilio's, Telnyx's, Plivo's), kept
once: base64 audio payloads, the fast path for `media` frames, and reading one message within
the JSON budget (D62, `streams.json_object`)."""

from __future__ import annotations

import binascii
import json
from typing import Any

from voicecall.providers.streams import (
    StreamDtmf,
    StreamMark,
    StreamMessage,
    StreamStop,
    decode_payload,
    json_object,
)

__all__ = ["compact", "decode_payload", "encode_payload", "fast_media_payload", "member",
           "parse_control", "read"]

_PAYLOAD_KEY = '"payload":"'


def encode_payload(audio: bytes) -> str:
    return binascii.b2a_base64(audio, newline=False).decode("ascii")


def fast_media_payload(text: str, prefix: str) -> bytes | None:
    """The audio of a `media` frame that starts with `prefix`, sliced out of the text without
    parsing the JSON (fifty frames a second per call); None when the frame is not in that shape,
    so the caller parses it normally."""
    if not text.startswith(prefix):
        return None
    start = text.find(_PAYLOAD_KEY)
    if start < 0:
        return None
    start += len(_PAYLOAD_KEY)
    end = text.find('"', start)
    if end < 0:
        raise ValueError("unterminated media payload")
    return decode_payload(text[start:end])


def member(message: dict[str, Any], section: str, name: str) -> Any:
    """`message[section][name]`, None when either is missing or the section is not an object."""
    inner = message.get(section)
    return inner.get(name) if isinstance(inner, dict) else None


def compact(message: dict[str, Any]) -> str:
    """A message as compact JSON, the way carriers send it."""
    return json.dumps(message, separators=(",", ":"))


def parse_control(message: dict[str, Any]) -> StreamMessage | None:
    """The `mark`, `dtmf` and `stop` events, which carriers spell alike; None for anything else
    (and for a mark or key without a value)."""
    event = message.get("event")
    if event == "mark":
        name = member(message, "mark", "name")
        return StreamMark(str(name)) if name else None
    if event == "dtmf":
        digit = member(message, "dtmf", "digit")
        return StreamDtmf(str(digit)) if digit else None
    return StreamStop() if event == "stop" else None


def read(data: str | bytes, media_prefix: str, *, no_fast_path: str | None = None
         ) -> bytes | dict[str, Any]:
    """One inbound message: the audio of a `media` frame in the usual shape (`media_prefix`,
    fast path, skipped when the text contains `no_fast_path`), else the parsed JSON object."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if no_fast_path is None or no_fast_path not in text:
        audio = fast_media_payload(text, media_prefix)
        if audio is not None:
            return audio
    return json_object(text)
