"""The persisted call record and its vocabulary (states, end reasons, transcript)."""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel


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

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


class EndReason(StrEnum):
    """Why a call ended; the same nine values as the terminal states."""

    COMPLETED = "completed"
    HANGUP_USER = "hangup-user"
    HANGUP_BOT = "hangup-bot"
    TIMEOUT = "timeout"
    ERROR = "error"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"


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
Speaker = Literal["bot", "user"]
CallMode = Literal["notify", "conversation"]


class _CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_json_dict(self) -> dict[str, Any]:
        """The wire shape: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json(self) -> str:
        """The wire shape as compact JSON text (serialized in one step, for the store), from
        the model's serializer itself: `model_dump_json` passes it fifteen keyword arguments,
        which cost as much again as serializing a transcript entry."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_none=True).decode()


class TranscriptEntry(_CamelModel):
    """One utterance: what the bot said (after it played) or what the caller said."""

    timestamp: int
    speaker: Speaker
    text: str
    is_final: bool = True


class CallRecord(_CamelModel):
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

    # `_seen`: a set mirroring `processed_event_ids` (a list of up to 500 keys, so `in` on it
    # is slow), with the list it was built from and that list's length then; rebuilt whenever
    # the list was replaced or resized by something other than `remember_processed`. Read and
    # written through `__pydantic_private__` (attribute access to private fields is slow).
    _seen: tuple[list[str], int, set[str]] | None = PrivateAttr(default=None)
    # `_undo`: the newest rollback point, which `remember_processed` tells the keys it drops
    # (so a rollback point needs no copy of the up to 500 keys).
    _undo: RollbackPoint | None = PrivateAttr(default=None)

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    def has_processed(self, key: str) -> bool:
        """Whether `key` is one of the dedupe keys in `processed_event_ids` (O(1))."""
        return key in _seen_keys(self.processed_event_ids, self.__pydantic_private__)

    def remember_processed(self, key: str, keep: int) -> None:
        """Append a dedupe key, keeping only the newest `keep` (and the lookup set in step)."""
        keys = self.processed_event_ids
        private = self.__pydantic_private__
        seen = _seen_keys(keys, private)
        assert private is not None
        keys.append(key)
        seen.add(key)
        overflow = len(keys) - keep
        if overflow > 0:
            dropped = keys[:overflow]
            del keys[:overflow]
            for old in dropped:
                seen.discard(old)
            point: RollbackPoint | None = private["_undo"]
            if point is not None and point.fields["processed_event_ids"] is keys:
                point.note_dropped(dropped)
        # With duplicates in the list the set cannot follow removals: rebuild it next time.
        private["_seen"] = (keys, len(keys), seen) if len(seen) == len(keys) else None

    def rollback_point(self) -> RollbackPoint:
        """A cheap restore point for event application, which only sets fields, appends to the
        transcript, remembers dedupe keys (`remember_processed`, which may drop the oldest) and
        sets top-level metadata keys (`snapshot` copies everything, deeply).

        Nothing is copied but the field dict and the metadata's top level: the transcript and
        the keys are restored by length, and the keys `remember_processed` drops are given to
        the newest point. (Copying 500 keys touched 500 scattered objects, and the copies kept
        the young-generation collections busy.) So only the newest point can be rolled back to:
        take one, apply, then persist or roll back before taking the next (as `CallService`
        does for each event, under the call's lock).
        """
        fields = self.__dict__  # read once: attributes of a pydantic model are slow to read
        point = RollbackPoint({**fields, "metadata": dict(fields["metadata"])},
                              len(fields["transcript"]), len(fields["processed_event_ids"]))
        private = self.__pydantic_private__
        assert private is not None
        private["_undo"] = point
        return point

    def roll_back(self, point: RollbackPoint) -> None:
        """Put every field back as it was at `point`."""
        self.__dict__.update(point.fields)
        del self.transcript[point.transcript_len:]  # the list object is the one at `point`
        keys = self.processed_event_ids  # likewise; it may have lost its oldest keys since
        kept = point.keys_len - len(point.dropped)
        keys[:] = point.dropped + keys[:kept]
        self._seen = None
        self._undo = None

    def snapshot(self) -> CallRecord:
        """A copy that later in-place changes to this record do not touch (for rollback)."""
        return self.model_copy(update={
            "transcript": list(self.transcript),
            "processed_event_ids": list(self.processed_event_ids),
            "metadata": copy.deepcopy(self.metadata),
        })

    def restore(self, snapshot: CallRecord) -> None:
        """Put every field back as it was in `snapshot`."""
        for name in type(self).model_fields:
            setattr(self, name, getattr(snapshot, name))
        self._seen = None

    @property
    def mode(self) -> CallMode:
        """Notify or conversation; inbound calls (no mode) converse."""
        return "notify" if self.metadata.get("mode") == "notify" else "conversation"


def _seen_keys(keys: list[str], private: dict[str, Any] | None) -> set[str]:
    """The set mirroring a record's dedupe keys `keys`, from its private `_seen` cache or
    rebuilt (the record's attributes passed in: they are slow to read)."""
    assert private is not None
    cached: tuple[list[str], int, set[str]] | None = private["_seen"]
    if cached is not None and cached[0] is keys and cached[1] == len(keys):
        return cached[2]
    seen = set(keys)
    private["_seen"] = (keys, len(keys), seen)
    return seen


class RollbackPoint:
    """The fields of a CallRecord at one moment (see `CallRecord.rollback_point`)."""

    __slots__ = ("dropped", "fields", "keys_len", "transcript_len")

    def __init__(self, fields: dict[str, Any], transcript_len: int, keys_len: int) -> None:
        self.fields = fields
        self.transcript_len = transcript_len
        self.keys_len = keys_len
        self.dropped: list[str] = []  # the oldest of the keys there were at this point, dropped since

    def note_dropped(self, keys: list[str]) -> None:
        """`keys` left the front of the dedupe list; only the first `keys_len` dropped were
        there at this point (the rest were added after it), so no more are kept."""
        room = self.keys_len - len(self.dropped)
        if room > 0:
            self.dropped.extend(keys[:room])
