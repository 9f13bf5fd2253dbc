"""Normalized call events: the one vocabulary every carrier adapter translates into."""

from __future__ import annotations

import math
import uuid
from typing import Any, Literal

from pydantic import Field, field_validator

from voicecall.calls.model import CamelModel, Direction, EndReason

EventType = Literal[
    "call.initiated",
    "call.ringing",
    "call.answered",
    "call.active",
    "call.speaking",
    "call.speech",
    "call.silence",
    "call.dtmf",
    "call.ended",
    "call.error",
    "call.transfer",
]
EVENT_TYPES: frozenset[str] = frozenset(EventType.__args__)  # type: ignore[attr-defined]


TRANSFER_STATUSES = frozenset({"bridged", "completed", "busy", "no-answer", "failed", "canceled"})
"""A transfer's progress (D46): `bridged` when the target answered, `completed` when that bridged
leg is over; the others say why the target was never reached."""


def new_event_id() -> str:
    return str(uuid.uuid4())


class CallEvent(CamelModel):
    """One thing that happened to a call, as reported by a carrier (or the mock).

    `call_id` is our id when the carrier echoes it back, otherwise the carrier's id.
    `dedupe_key` (else `id`) is what makes redelivery of the same event harmless.
    `call.transfer` carries the transfer's progress in `text` (`TRANSFER_STATUSES`).
    """

    type: EventType
    call_id: str
    id: str = Field(default_factory=new_event_id)
    timestamp: int = 0
    dedupe_key: str | None = None
    provider_call_id: str | None = None
    turn_token: str | None = None
    direction: Direction | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    text: str = ""
    transcript: str = ""
    is_final: bool = True
    confidence: float | None = Field(default=None, ge=0, le=1)
    duration_ms: int = 0
    digits: str = ""
    reason: EndReason = EndReason.COMPLETED
    error: str = "unknown error"
    retryable: bool = False

    @field_validator("confidence", mode="before")
    @classmethod
    def _finite_confidence(cls, value: Any) -> Any:
        """A NaN or infinite confidence from a carrier counts as none given."""
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    @property
    def key(self) -> str:
        return self.dedupe_key or self.id
