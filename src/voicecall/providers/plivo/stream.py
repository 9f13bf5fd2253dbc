"""Plivo audio-stream wire format (`<Stream bidirectional="true">`, JSON text frames).

Inbound: `start`, `media`, `dtmf`, `playedStream` (a checkpoint has played: our mark),
`clearedAudio`; Plivo sends no `stop`, it closes the socket. Outbound: `playAudio`,
`checkpoint`, `clearAudio`. The gateway asks for 8 kHz μ-law (`contentType` in the XML).
"""

from __future__ import annotations

import binascii
import json
from typing import Any

from voicecall.providers import streams
from voicecall.providers.streams import StreamMessage, g711_codec

__all__ = ["PlivoStreamSerializer", "extra_headers"]

_COMPACT = (",", ":")


def extra_headers(raw: object) -> dict[str, str]:
    """The `extraHeaders` of the stream XML as Plivo repeats them (`k=v` joined by `;` or `,`)."""
    if not isinstance(raw, str):
        return {}
    out: dict[str, str] = {}
    for item in raw.replace(";", ",").split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            out[name.strip()] = value.strip()
    return out


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class PlivoStreamSerializer:
    """`StreamSerializer` for Plivo bidirectional audio streams (8 kHz μ-law)."""

    def parse(self, data: str | bytes) -> StreamMessage | None:
        message = streams.json_object(data)
        event = message.get("event")
        if event == "media":
            return streams.StreamAudio(streams.decode_payload(_object(message.get("media")).get("payload")))
        if event == "start":
            return self._start(message)
        if event == "playedStream":
            name = message.get("name")
            return streams.StreamMark(str(name)) if name else None
        if event == "dtmf":
            digit = _object(message.get("dtmf")).get("digit")
            return streams.StreamDtmf(str(digit)) if digit else None
        if event == "clearedAudio":
            return streams.StreamCleared()
        return None  # anything newer: nothing to do

    @staticmethod
    def _start(message: dict[str, Any]) -> streams.StreamStart:
        start = _object(message.get("start"))
        fmt = _object(start.get("mediaFormat"))
        headers = extra_headers(message.get("extra_headers"))
        rate = fmt.get("sampleRate", 8000)
        encoding = str(fmt.get("encoding") or "audio/x-mulaw")  # the XML asks for μ-law
        return streams.StreamStart(
            call_sid=str(start.get("callId") or "").strip(),
            stream_id=str(start.get("streamId") or message.get("streamId") or ""),
            token=headers.get("token"), custom_parameters=headers,
            encoding=encoding, sample_rate=rate if isinstance(rate, int) else 8000,
            codec=g711_codec(encoding))

    def audio(self, stream_id: str, payload: bytes) -> str:
        b64 = binascii.b2a_base64(payload, newline=False).decode("ascii")
        return json.dumps({"event": "playAudio", "media": {
            "contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": b64}},
            separators=_COMPACT)

    def mark(self, stream_id: str, name: str) -> str:
        return json.dumps({"event": "checkpoint", "streamId": stream_id, "name": name},
                          separators=_COMPACT)

    def clear(self, stream_id: str) -> str:
        return json.dumps({"event": "clearAudio", "streamId": stream_id}, separators=_COMPACT)
