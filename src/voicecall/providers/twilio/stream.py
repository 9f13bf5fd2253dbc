"""Twilio Media Streams wire format (JSON text frames, 8 kHz μ-law, base64 payloads).

Inbound: `connected`, `start`, `media`, `dtmf`, `mark`, `stop`. Outbound: `media`, `mark`, `clear`.
`media` frames arrive fifty times a second per call, so they take a fast path that slices the
base64 payload out of the text instead of building a dict for every frame.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from voicecall.providers import stream_json as wire
from voicecall.providers.streams import StreamAudio, StreamMessage, StreamStart, g711_codec

__all__ = ["TwilioStreamSerializer"]

_MEDIA_PREFIX = '{"event":"media"'


@functools.lru_cache(maxsize=4096)
def _media_prefix(stream_id: str) -> str:
    """The constant head of a stream's outbound media messages (built once per stream)."""
    return f'{{"event":"media","streamSid":{json.dumps(stream_id)},"media":{{"payload":"'


class TwilioStreamSerializer:
    """`StreamSerializer` for Twilio `<Connect><Stream>` (bidirectional)."""

    def parse(self, data: str | bytes) -> StreamMessage | None:
        message = wire.read(data, _MEDIA_PREFIX)
        if isinstance(message, bytes):
            return StreamAudio(message)
        event = message.get("event")
        if event == "media":
            payload = wire.member(message, "media", "payload")
            if not isinstance(payload, str):
                raise ValueError("media without a payload")
            return StreamAudio(wire.decode_payload(payload))
        if event == "start":
            return self._start(message)
        return wire.parse_control(message)  # mark, dtmf, stop; "connected" and newer: None

    @staticmethod
    def _start(message: dict[str, Any]) -> StreamStart:
        start = message.get("start")
        if not isinstance(start, dict):
            start = {}
        params = start.get("customParameters")
        custom = {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {}
        raw_fmt = start.get("mediaFormat")
        fmt: dict[str, Any] = raw_fmt if isinstance(raw_fmt, dict) else {}
        stream_sid = start.get("streamSid") or message.get("streamSid") or ""
        rate = fmt.get("sampleRate", 8000)
        encoding = str(fmt.get("encoding") or "audio/x-mulaw")  # Twilio streams μ-law only
        return StreamStart(
            call_sid=str(start.get("callSid") or "").strip(), stream_id=str(stream_sid),
            token=custom.get("token"), custom_parameters=custom, encoding=encoding,
            sample_rate=rate if isinstance(rate, int) else 8000, codec=g711_codec(encoding))

    def audio(self, stream_id: str, payload: bytes) -> str:
        return f'{_media_prefix(stream_id)}{wire.encode_payload(payload)}"}}}}'

    def mark(self, stream_id: str, name: str) -> str:
        return wire.compact({"event": "mark", "streamSid": stream_id, "mark": {"name": name}})

    def clear(self, stream_id: str) -> str:
        return wire.compact({"event": "clear", "streamSid": stream_id})
