"""Twilio Media Streams wire format (JSON text frames, 8 kHz μ-law, base64 payloads).

Inbound: `connected`, `start`, `media`, `dtmf`, `mark`, `stop`. Outbound: `media`, `mark`, `clear`.
`media` frames arrive fifty times a second per call, so they take a fast path that slices the
base64 payload out of the text instead of building a dict for every frame.
"""

from __future__ import annotations

import binascii
import functools
import json
from typing import Any

from voicecall.providers.streams import (
    StreamAudio,
    StreamDtmf,
    StreamMark,
    StreamMessage,
    StreamStart,
    StreamStop,
    g711_codec,
)

__all__ = ["TwilioStreamSerializer"]

_MEDIA_PREFIX = '{"event":"media"'
_PAYLOAD_KEY = '"payload":"'


@functools.lru_cache(maxsize=4096)
def _media_prefix(stream_id: str) -> str:
    """The constant head of a stream's outbound media messages (built once per stream)."""
    return f'{{"event":"media","streamSid":{json.dumps(stream_id)},"media":{{"payload":"'


def _decode(payload: str) -> bytes:
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bad base64 media payload: {exc}") from None


class TwilioStreamSerializer:
    """`StreamSerializer` for Twilio `<Connect><Stream>` (bidirectional)."""

    def parse(self, data: str | bytes) -> StreamMessage | None:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if text.startswith(_MEDIA_PREFIX):
            start = text.find(_PAYLOAD_KEY)
            if start >= 0:
                start += len(_PAYLOAD_KEY)
                end = text.find('"', start)
                if end < 0:
                    raise ValueError("unterminated media payload")
                return StreamAudio(_decode(text[start:end]))
        try:
            message: Any = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
        event = message.get("event")
        if event == "media":
            media = message.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            if not isinstance(payload, str):
                raise ValueError("media without a payload")
            return StreamAudio(_decode(payload))
        if event == "start":
            return self._start(message)
        if event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            return StreamMark(str(name)) if name else None
        if event == "dtmf":
            dtmf = message.get("dtmf")
            digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
            return StreamDtmf(str(digit)) if digit else None
        if event == "stop":
            return StreamStop()
        return None  # "connected" and anything newer: nothing to do

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
        b64 = binascii.b2a_base64(payload, newline=False).decode("ascii")
        return f'{_media_prefix(stream_id)}{b64}"}}}}'

    def mark(self, stream_id: str, name: str) -> str:
        return json.dumps({"event": "mark", "streamSid": stream_id, "mark": {"name": name}},
                          separators=(",", ":"))

    def clear(self, stream_id: str) -> str:
        return json.dumps({"event": "clear", "streamSid": stream_id}, separators=(",", ":"))
