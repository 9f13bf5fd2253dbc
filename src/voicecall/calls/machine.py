"""The pure call state machine: state transitions and event application, no I/O.

Rules (docs/decisions.md D10): terminal states absorb everything; speaking and listening cycle;
any other move goes forward only in the order initiated → ringing → answered → active →
speaking → listening. Backward moves are ignored, never errors, because carriers deliver
callbacks out of order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeAlias

from voicecall.calls.events import TRANSFER_STATUSES, CallEvent
from voicecall.calls.model import (
    LIVE_ORDER,
    CallRecord,
    CallState,
    EndReason,
    TranscriptEntry,
)

_RANK = {state: i for i, state in enumerate(LIVE_ORDER)}
_CYCLE = frozenset({CallState.SPEAKING, CallState.LISTENING})

MAX_PROCESSED_KEYS_PER_CALL = 500
"""Dedupe keys kept per call (docs/decisions.md D2): enough for any real call, bounded for a runaway one."""


class NoWaiter:
    """Marker: no `continue` is waiting for a transcript on this call."""


NO_WAITER = NoWaiter()


def transition(current: CallState, target: CallState) -> CallState:
    """The state a call moves to when asked to go from `current` to `target`."""
    if current == target or current.is_terminal:
        return current
    if target.is_terminal:
        return target
    if current in _CYCLE and target in _CYCLE:
        return target
    if _RANK[target] > _RANK[current]:
        return target
    return current


class Applied(NamedTuple):
    """What applying one event did, so the service knows which side effects to run (a
    NamedTuple: immutable, and cheaper to build than a frozen dataclass)."""

    changed: bool
    answered: bool = False
    ended: bool = False
    final_speech: str | None = None
    ignored: str | None = None
    mark_processed: bool = True


def end_record(record: CallRecord, reason: EndReason, at: int, detail: str | None = None) -> bool:
    """Move a live call to the terminal state `reason`. Returns False if it had already ended."""
    if record.is_terminal:
        return False
    record.state = CallState(reason.value)
    record.end_reason = reason
    record.ended_at = at
    if detail:
        record.metadata["endDetail"] = detail
    return True


def remember_key(record: CallRecord, key: str) -> None:
    """Record a processed dedupe key on the call, keeping only the newest ones."""
    record.remember_processed(key, MAX_PROCESSED_KEYS_PER_CALL)


def _transfer_status(record: CallRecord) -> str | None:
    transfer = record.metadata.get("transfer")
    return str(transfer.get("status")) if isinstance(transfer, dict) else None


def transfer_in_progress(record: CallRecord) -> bool:
    """Whether the call is being put through, or is through, to a person (D46)."""
    return _transfer_status(record) in ("dialing", "bridged")


def transfer_pending(record: CallRecord) -> bool:
    """Whether a transfer has been asked for and not yet given up: nothing else (a listen, say)
    may be sent to the call meanwhile (D46)."""
    return _transfer_status(record) in ("requested", "dialing", "bridged")


def _apply_transfer(record: CallRecord, event: CallEvent) -> Applied:
    """A transfer's progress (D46): `bridged` is noted, `completed` ends the call as
    `transferred`, anything else leaves the call with the agent again."""
    transfer = record.metadata.get("transfer")
    status = event.text
    if not isinstance(transfer, dict) or status not in TRANSFER_STATUSES:
        return Applied(changed=False, ignored=f"transfer event {status!r} without a transfer")
    if transfer.get("status") == status:
        return Applied(changed=False, ignored=f"transfer already {status}")
    transfer["status"] = status
    transfer[f"{_camel(status)}At"] = event.timestamp
    record.transcript.append(TranscriptEntry(timestamp=event.timestamp, speaker="tool",
                                             text=f"transfer to {transfer.get('to', '?')}: {status}"))
    if status == "completed":
        end_record(record, EndReason.TRANSFERRED, event.timestamp)
        return Applied(changed=True, ended=True)
    if status != "bridged":
        record.state = transition(record.state, CallState.LISTENING)
    return Applied(changed=True)


def _camel(status: str) -> str:
    head, *rest = status.split("-")
    return head + "".join(part.title() for part in rest)


_MOVES: dict[str, CallState] = {
    "call.initiated": CallState.INITIATED,
    "call.ringing": CallState.RINGING,
    "call.active": CallState.ACTIVE,
    "call.speaking": CallState.SPEAKING,
}
"""Events that only move the call forward (or around the speaking/listening cycle)."""

WaiterToken: TypeAlias = str | NoWaiter | None
"""The pending `continue`'s turn token, None when it has none, or NO_WAITER."""


def _apply_answered(record: CallRecord, event: CallEvent, waiter_token: WaiterToken) -> Applied:
    """The first answer stamps `answered_at`; a repeat only re-asserts the state."""
    first = record.answered_at is None
    if first:
        record.answered_at = event.timestamp
    record.state = transition(record.state, CallState.ANSWERED)
    return Applied(changed=True, answered=first)


def _apply_speech(record: CallRecord, event: CallEvent, waiter_token: WaiterToken) -> Applied:
    """Caller speech: the call is listening; a final transcript joins the transcript unless its
    turn token does not match the pending `continue`."""
    before = record.state
    final_text: str | None = None
    if event.is_final:
        has_token = not isinstance(waiter_token, NoWaiter) and waiter_token is not None
        if has_token and event.turn_token != waiter_token:
            return Applied(changed=False, ignored="speech with mismatched turn token")
        final_text = event.transcript
        record.transcript.append(TranscriptEntry(timestamp=event.timestamp, speaker="user", text=final_text))
    state = transition(before, CallState.LISTENING)
    if state is not before:  # assigning a pydantic field is not free
        record.state = state
    return Applied(True, final_speech=final_text)


def _apply_noted(record: CallRecord, event: CallEvent, waiter_token: WaiterToken) -> Applied:
    """Silence and DTMF change no state; the service acts on them."""
    return Applied(changed=True)


def _apply_ended(record: CallRecord, event: CallEvent, waiter_token: WaiterToken) -> Applied:
    """The carrier ended the call; while put through, that completes the transfer."""
    if event.reason == EndReason.COMPLETED and _transfer_status(record) == "bridged":
        # The call ended while put through: the transfer is over, whoever hung up first.
        completed = event.model_copy(update={"type": "call.transfer", "text": "completed"})
        return _apply_transfer(record, completed)
    end_record(record, event.reason, event.timestamp)
    return Applied(changed=True, ended=True)


def _apply_error(record: CallRecord, event: CallEvent, waiter_token: WaiterToken) -> Applied:
    """A non-retryable error ends the call as `error`, keeping the message as its detail."""
    end_record(record, EndReason.ERROR, event.timestamp, detail=event.error)
    return Applied(changed=True, ended=True)


_HANDLERS: dict[str, Callable[[CallRecord, CallEvent, WaiterToken], Applied]] = {
    "call.answered": _apply_answered,
    "call.speech": _apply_speech,
    "call.silence": _apply_noted,
    "call.dtmf": _apply_noted,
    "call.ended": _apply_ended,
    "call.transfer": lambda record, event, _token: _apply_transfer(record, event),
    "call.error": _apply_error,
}


def apply_event(
    record: CallRecord, event: CallEvent, *, waiter_token: WaiterToken = NO_WAITER
) -> Applied:
    """Apply one normalized event to `record` in place.

    `waiter_token` is the turn token of the pending `continue` (None when it has no token), or
    NO_WAITER. A final transcript whose token does not match a pending waiter is ignored entirely
    (no transcript entry, no state change), so a stale or replayed callback from an earlier turn
    cannot complete a newer one.
    """
    before = record.state
    kind = event.type
    if kind == "call.error" and event.retryable:
        return Applied(changed=False, ignored="retryable error", mark_processed=False)
    if before.is_terminal:
        return Applied(changed=False, ignored=f"call already ended ({before.value})")
    target = _MOVES.get(kind)
    if target is not None:
        record.state = transition(before, target)
        return Applied(changed=record.state != before)
    handler = _HANDLERS.get(kind)
    if handler is None:
        return Applied(changed=False)
    return handler(record, event, waiter_token)
