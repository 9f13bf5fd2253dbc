"""Speech-to-speech model sessions: what the call-side bridge needs of a provider.

A `RealtimeModel` is one live session with a realtime voice model for one call. The caller's
audio goes in as the carrier's G.711 (`send_audio`); the provider converts it to what its model
takes. What the model does comes back through `RealtimeEvents`: its audio as PCM16LE chunks
(with their sample rate) per response item, voice activity, transcripts of both sides, function
calls, and the end of the session. Nothing here knows about calls or carriers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["FunctionTool", "RealtimeError", "RealtimeEvents", "RealtimeModel", "RealtimeSetup"]

Codec = Literal["ulaw", "alaw"]


class RealtimeError(Exception):
    """A realtime session could not be set up (configuration, connection, handshake)."""


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A function the model may call (its arguments as a JSON Schema object)."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class RealtimeSetup:
    """What one call's session starts with."""

    instructions: str
    tools: tuple[FunctionTool, ...] = ()
    codec: Codec = "ulaw"
    """The carrier's G.711 law (inbound audio arrives in it)."""


def _noop(*_args: Any) -> None:
    return None


@dataclass
class RealtimeEvents:
    """What a session reports; plain callables run on the event loop."""

    on_audio: Callable[[str, int, bytes], None] = _noop
    """`(item_id, sample_rate, pcm16le)`: a piece of the model's spoken answer."""
    on_audio_done: Callable[[str], None] = _noop
    """`item_id`: that answer's audio is complete."""
    on_speech_started: Callable[[], None] = _noop
    """The caller started talking (the provider's voice activity detection): barge-in."""
    on_speech_stopped: Callable[[], None] = _noop
    """The caller stopped talking (the provider's voice activity detection said so just now;
    the turn's latency clock starts here)."""
    on_speech_ended: Callable[[int], None] = _noop
    """The caller's speech ended at this wall-clock time in ms, found in their audio by a
    provider that reports no end of speech (reported when the model's answer starts)."""
    on_user_transcript: Callable[[str], None] = _noop
    """What the caller said in one turn (final)."""
    on_model_transcript: Callable[[str, str], None] = _noop
    """`(item_id, text)`: the words of one model answer (final)."""
    on_function_call: Callable[[str, str, str], None] = _noop
    """`(call_id, name, arguments_json)`: the model calls a tool."""
    on_closed: Callable[[str | None], None] = _noop
    """The session is over: None when it ended normally, else the error."""


class RealtimeModel(Protocol):
    """One call's live session with a realtime voice model."""

    name: str

    async def connect(self) -> None:
        """Open the session and configure it; raises `RealtimeError` when it cannot."""
        ...

    def send_audio(self, g711: bytes) -> None:
        """The caller's audio (the carrier's G.711 at 8 kHz); never blocks."""
        ...

    def say(self, text: str) -> None:
        """Have the model say `text` to the caller (as a response of its own)."""
        ...

    def truncate(self, item_id: str, played_ms: int) -> None:
        """The caller heard only `played_ms` of answer `item_id`: cut the model's memory of it."""
        ...

    def function_result(self, call_id: str, name: str, output: str, *, respond: bool) -> None:
        """The result of a function call; with `respond` the model answers from it at once."""
        ...

    async def close(self) -> None:
        """End the session (idempotent); no events fire afterwards."""
        ...
