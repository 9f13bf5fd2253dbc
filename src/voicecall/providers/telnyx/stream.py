"""Telnyx media streaming wire format (JSON text frames, `stream_bidirectional_mode: "rtp"`).

Inbound: `connected`, `start` (with `media_format`), `media`, `dtmf`, `mark`, `error`, `stop`,
snake_case and keyed by `stream_id`. Outbound: `media`, `mark` and `clear`, which need no
`stream_id` (one bidirectional stream per call). The codec comes from the `start` frame's
`media_format.encoding` (`PCMU`/`PCMA`, or the older `audio/x-mulaw`/`audio/x-alaw`); any
other encoding refuses the stream rather than being guessed.
"""

from __future__ import annotations

import logging
from typing import Any

from voicecall.providers import stream_json as wire
from voicecall.providers.streams import StreamAudio, StreamMessage, StreamStart, g711_codec

__all__ = ["TelnyxStreamSerializer"]

log = logging.getLogger(__name__)

_MEDIA_PREFIX = '{"event":"media","media":{"payload":"'
_INBOUND_MEDIA_PREFIX = '{"event":"media","sequence_number"'


class TelnyxStreamSerializer:
    """`StreamSerializer` for Telnyx Call Control media streaming (bidirectional RTP mode)."""

    def parse(self, data: str | bytes) -> StreamMessage | None:
        message = wire.read(data, _INBOUND_MEDIA_PREFIX, no_fast_path='"track":"outbound"')
        if isinstance(message, bytes):
            return StreamAudio(message)
        kind = message.get("event")
        if kind == "start":
            return self._start(message)
        if kind == "media":
            if wire.member(message, "media", "track") == "outbound":
                return None  # our own audio, echoed when both tracks are streamed
            b64 = wire.member(message, "media", "payload")
            if not isinstance(b64, str):
                raise ValueError("media without a payload")
            return StreamAudio(wire.decode_payload(b64))
        if kind == "error":
            log.warning("Telnyx media stream error %r: %r", wire.member(message, "payload", "code"),
                        str(wire.member(message, "payload", "title") or "")[:100])
            return None
        return wire.parse_control(message)  # mark, dtmf, stop; "connected" and newer: None

    @staticmethod
    def _start(message: dict[str, Any]) -> StreamStart:
        start = message.get("start")
        start = start if isinstance(start, dict) else {}
        fmt = start.get("media_format")
        fmt = fmt if isinstance(fmt, dict) else {}
        encoding = fmt.get("encoding")
        if not isinstance(encoding, str) or not encoding:
            raise ValueError("start without media_format.encoding: the stream's codec is unknown")
        rate = fmt.get("sample_rate", 8000)
        if rate != 8000:
            raise ValueError(f"unsupported sample rate {rate!r} (8000 only)")
        return StreamStart(
            call_sid=str(start.get("call_control_id") or "").strip(),
            stream_id=str(message.get("stream_id") or ""), encoding=encoding, sample_rate=8000,
            codec=g711_codec(encoding))

    def audio(self, stream_id: str, payload: bytes) -> str:
        return f'{_MEDIA_PREFIX}{wire.encode_payload(payload)}"}}}}'

    def mark(self, stream_id: str, name: str) -> str:
        return wire.compact({"event": "mark", "mark": {"name": name}})

    def clear(self, stream_id: str) -> str:
        return wire.compact({"event": "clear"})
