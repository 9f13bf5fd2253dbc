"""The persisted call record and its vocabulary (states, end reasons, transcript)."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticSerializationError

_SURROGATE = re.compile("[\ud800-\udfff]")


class CallState(StrEnum):
    """Where a call is. The first six are live; the rest are terminal and absorbing."""

    INITIATED = "initiated"
    RINGING = "ringing"
    ANSWERED = "answered"
    ACTIVE = "active"
    SPEAKING = "speaking"
    LISTENING = "listening"
    COMPLETED = "completed"
    HANGUP_USER = "hangup-user"
    HANGUP_BOT = "hangup-bot"
    TIMEOUT = "timeout"
    ERROR = "error"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"
    TRANSFERRED = "transferred"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


class EndReason(StrEnum):
    """Why a call ended; the same ten values as the terminal states."""

    COMPLETED = "completed"
    HANGUP_USER = "hangup-user"
    HANGUP_BOT = "hangup-bot"
    TIMEOUT = "timeout"
    ERROR = "error"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"
    TRANSFERRED = "transferred"
    """Bridged to a person by a transfer (D46), and that leg is over."""


LIVE_ORDER: tuple[CallState, ...] = (
    CallState.INITIATED,
    CallState.RINGING,
    CallState.ANSWERED,
    CallState.ACTIVE,
    CallState.SPEAKING,
    CallState.LISTENING,
)
TERMINAL_STATES: frozenset[CallState] = frozenset(CallState(r.value) for r in EndReason)

Direction = Literal["inbound", "outbound"]
Speaker = Literal["bot", "user", "tool"]  # tool: a responder tool call (D101)
CallMode = Literal["notify", "conversation"]


class CamelModel(BaseModel):
    """A model whose JSON keys are the camelCase forms of its snake_case fields."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_json_dict(self) -> dict[str, Any]:
        """The wire shape: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json(self) -> str:
        """The wire shape as compact JSON text. A lone surrogate (a `\\ud800` escape in some
        carrier's JSON, say) cannot be UTF-8, so it is written as U+FFFD rather than making
        the record unsavable."""
        try:
            return self.model_dump_json(by_alias=True, exclude_none=True)
        except PydanticSerializationError:
            text = json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True),
                              ensure_ascii=False, separators=(",", ":"))
            return replace_lone_surrogates(text)


def replace_lone_surrogates(text: str) -> str:
    """`text` with each lone surrogate (never valid in UTF-8) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


class TranscriptEntry(CamelModel):
    """One utterance: what the bot said (after it played) or what the caller said; or a tool call
    the responder made."""

    timestamp: int
    speaker: Speaker
    text: str
    is_final: bool = True

    @field_validator("text")
    @classmethod
    def _utf8_text(cls, text: str) -> str:
        return replace_lone_surrogates(text)


class CallRecord(CamelModel):
    """Everything known about one call; persisted as a whole on every change."""

    call_id: str
    provider: str
    direction: Direction
    state: CallState
    from_: str = Field(alias="from")
    to: str
    started_at: int
    provider_call_id: str | None = None
    session_key: str | None = None
    answered_at: int | None = None
    ended_at: int | None = None
    end_reason: EndReason | None = None
    transcript: list[TranscriptEntry] = Field(default_factory=list)
    processed_event_ids: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    def has_processed(self, key: str) -> bool:
        """Whether `key` is one of the dedupe keys in `processed_event_ids`."""
        return key in self.processed_event_ids

    def remember_processed(self, key: str, keep: int) -> None:
        """Append a dedupe key, keeping only the newest `keep`."""
        self.processed_event_ids.append(key)
        del self.processed_event_ids[:-keep]

    def snapshot(self) -> str:
        """The record by value, as its JSON text: later in-place changes to this record,
        nested ones included, do not touch it. Give it to `restore` to put them back."""
        return self.to_json()

    def restore(self, snapshot: str) -> None:
        """Put every field back as it was at `snapshot()`, in place (others hold this object)."""
        saved = CallRecord.model_validate_json(snapshot)
        for name in type(self).model_fields:
            setattr(self, name, getattr(saved, name))

    @property
    def mode(self) -> CallMode:
        """Notify or conversation; inbound calls (no mode) converse."""
        return "notify" if self.metadata.get("mode") == "notify" else "conversation"
