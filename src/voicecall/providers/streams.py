"""What a carrier's media-stream wire format has to provide: inbound messages parsed into a few
carrier-neutral kinds, and outbound audio / marks / clears rendered back into its format.

Each carrier supplies one `StreamSerializer` (Twilio's, Telnyx's and Plivo's JSON events),
in the shape of Pipecat's per-carrier frame serializers. Everything else about a stream (guards,
STT, playback, pacing, barge-in) is shared.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from voicecall.shared import bounded_json
from voicecall.shared.words import played_prefix

__all__ = [
    "Codec",
    "MediaStreams",
    "PlaybackResult",
    "StreamAudio",
    "StreamCleared",
    "StreamDtmf",
    "StreamMark",
    "StreamMessage",
    "StreamSerializer",
    "StreamStart",
    "StreamStop",
    "decode_payload",
    "g711_codec",
    "json_object",
    "played_prefix",
]


Codec = Literal["ulaw", "alaw"]
"""A G.711 law: μ-law (PCMU) or A-law (PCMA)."""


_G711_NAMES: dict[str, Codec] = {
    "audio/x-mulaw": "ulaw", "pcmu": "ulaw", "mulaw": "ulaw", "ulaw": "ulaw",
    "audio/x-alaw": "alaw", "pcma": "alaw", "alaw": "alaw",
}


def g711_codec(encoding: str) -> Codec:
    """The G.711 law a carrier's encoding name stands for (`audio/x-mulaw`, `PCMU`, `PCMA`, ...);
    ValueError for anything else, since the shared pipeline speaks G.711 only."""
    codec = _G711_NAMES.get(encoding.strip().lower())
    if codec is None:
        raise ValueError(f"unsupported stream encoding {encoding[:40]!r} (PCMU or PCMA only)")
    return codec


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The carrier opened the stream for a call; `token` authenticates it (each call has its own).
    `codec` is the G.711 law of this stream in both directions, as its `start` message says
    (docs/decisions.md D74)."""

    call_sid: str
    stream_id: str
    token: str | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    codec: Codec = "ulaw"


@dataclass(frozen=True, slots=True)
class StreamAudio:
    """One inbound audio chunk (G.711 bytes as sent by the carrier)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class StreamMark:
    """The carrier played everything queued before the mark called `name`."""

    name: str


@dataclass(frozen=True, slots=True)
class StreamDtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class StreamCleared:
    """The carrier dropped its buffered audio after a clear and will not echo the marks still
    awaited (Plivo's `clearedAudio`); a carrier that echoes them (Twilio) never sends this."""


@dataclass(frozen=True, slots=True)
class StreamStop:
    """The carrier closed the stream (the call left `<Connect><Stream>` or hung up)."""


@dataclass(frozen=True, slots=True)
class PlaybackResult:
    """How an utterance ended: fully heard, cut short by barge-in (`interrupted`), or never
    started (`skipped`). `played_text` is what the caller heard (for the transcript)."""

    played_text: str
    interrupted: bool = False
    skipped: bool = False
    first_tts_byte_at: float | None = None
    """Wall-clock ms of the first TTS byte."""
    first_frame_at: float | None = None
    """Wall-clock ms when the first audio frame was sent."""


def decode_payload(payload: object) -> bytes:
    """A base64 media payload (strict); ValueError for anything else, as `parse` must raise."""
    if not isinstance(payload, str):
        raise ValueError("media without a payload")
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bad base64 media payload: {exc}") from None


def json_object(data: str | bytes) -> dict[str, Any]:
    """One JSON text frame as an object, within the nesting and size budget (D62); ValueError
    for anything else."""
    try:
        message: Any = bounded_json.loads(data)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


StreamMessage: TypeAlias = (StreamStart | StreamAudio | StreamMark | StreamDtmf | StreamCleared
                             | StreamStop)


class StreamSerializer(Protocol):
    """One carrier's media-stream wire format. All methods are synchronous and cheap: they run
    for every frame of every stream. The codec is per stream (`StreamStart.codec`)."""

    def parse(self, data: str | bytes) -> StreamMessage | None:
        """The meaning of one inbound WebSocket message; None for messages that need no action
        (`connected`, unknown events). Raises ValueError for malformed input, including a
        `start` whose codec is not G.711 (the caller logs and ignores it: a bad frame is never
        fatal)."""
        ...

    def audio(self, stream_id: str, payload: bytes) -> str:
        """The message carrying one outbound audio frame."""
        ...

    def mark(self, stream_id: str, name: str) -> str:
        """A mark the carrier echoes once the audio queued before it has played."""
        ...

    def clear(self, stream_id: str) -> str:
        """Drop the audio the carrier has buffered (barge-in)."""
        ...


class MediaStreams(Protocol):
    """A carrier's media-stream support, offered by its provider as `provider.media_streams`."""

    serializer: StreamSerializer

    async def authorize_stream(self, start: StreamStart, query_token: str | None) -> str | None:
        """Our call id when `start` belongs to a live call of this carrier and carries that
        call's stream token (constant-time compare); None otherwise."""
        ...
