"""Carrier events applied to live calls: dedupe, the state machine, persistence, side effects.

An event is applied under its call's lock and counts only once it is persisted: if the write
fails, the record is put back as it was, so the carrier's retry applies the event again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from voicecall.calls.events import CallEvent
from voicecall.calls.machine import NO_WAITER, Applied, apply_event, remember_key
from voicecall.calls.model import EndReason
from voicecall.providers.base import EventOutcome
from voicecall.service.adoption import adopt
from voicecall.service.live import LiveCall
from voicecall.shared.clock import now_ms

if TYPE_CHECKING:
    from voicecall.service.commands import CallService

log = logging.getLogger(__name__)


class _Result(NamedTuple):
    applied: Applied
    consumed: bool
    """A waiting `continue` took the caller's words (so no automatic reply)."""
    transfer_status: str | None = None
    """The progress a `call.transfer` event reported."""
    answered_again: bool = False
    """A `call.answered` for a call already answered (another webhook told first)."""


async def apply_events(service: CallService, events: list[CallEvent]) -> list[EventOutcome]:
    """Apply carrier events in order; returns once every resulting change is persisted."""
    return [await apply_one(service, event) for event in events]


async def apply_one(service: CallService, event: CallEvent) -> EventOutcome:
    call = service.calls.get(event.call_id)
    if call is None and event.provider_call_id:
        call = service.calls.get(event.provider_call_id)
    adopted = False
    if call is None:
        call, rejected = await adopt(service, event)
        if call is None:
            return EventOutcome(call=None, rejected=rejected)
        adopted = True
    async with call.lock:
        result = await _apply_locked(service, call, event, adopted=adopted)
    speech_due = _after_apply(service, call, result) if result is not None else False
    return EventOutcome(call.record, speech_due=speech_due)


async def _apply_locked(service: CallService, call: LiveCall, event: CallEvent, *,
                        adopted: bool) -> _Result | None:
    """Apply and persist `event` (the call's lock held); None if it changed nothing."""
    record = call.record
    key = event.key
    if record.is_terminal or record.has_processed(key):
        return None
    before = record.snapshot()
    waiter = call.waiter
    applied = apply_event(record, event, waiter_token=waiter.token if waiter else NO_WAITER)
    if applied.ignored:
        log.info("call %s: ignored %s (%s)", record.call_id, event.type, applied.ignored)
    if not applied.mark_processed:
        return None
    remember_key(record, key)
    linked = event.provider_call_id if not record.provider_call_id else None
    if linked:
        record.provider_call_id = linked
        service.calls.link(call, linked)
    try:
        await service.persist(record, events=[_event_summary(event, key)])
    except Exception:
        # Not durable, so not applied: put it back so the carrier's retry applies it.
        record.restore(before)
        if adopted:
            service.calls.remove(record)
        elif linked:
            service.calls.unlink(linked)
        raise
    transfer_status = event.text if event.type == "call.transfer" else None
    if applied.ended:
        service.finalize(call)
        return _Result(applied, consumed=False, transfer_status=transfer_status)
    if event.type == "call.speech" and not applied.ignored:
        call.generation += 1  # replies to older turns are stale
        service.cancel_idle_timers(call.call_id)
    consumed = False
    if applied.final_speech is not None and waiter and not waiter.future.done():
        waiter.future.set_result(applied.final_speech)
        consumed = True
    return _Result(applied, consumed, transfer_status,
                   answered_again=event.type == "call.answered" and not applied.answered)


def _after_apply(service: CallService, call: LiveCall, result: _Result) -> bool:
    """Side effects of an applied event that run outside the call's lock; True when the event
    answered the call and speech is due on it at once (`EventOutcome.speech_due`)."""
    applied, record = result.applied, call.record
    if result.transfer_status is not None:
        service.on_transfer_progress(call, result.transfer_status)
    if applied.ended:
        if record.end_reason == EndReason.VOICEMAIL:  # our decision, not the carrier's end
            service.spawn(service.hang_up_quietly(record), f"hangup:{record.call_id}")
        return False
    if applied.answered:
        speech_due = service.on_answered(call)
    else:  # the answer webhook after a status callback already answered: the opening may be
        speech_due = result.answered_again and service.speech_due(call)  # on its way still
    # While a `continue` is in progress (saying its prompt, or waiting) the caller's words are
    # its business, never the responder's (docs/decisions.md D25).
    if (applied.final_speech is not None and not result.consumed and not call.in_turn
            and service.auto_replies(record) and service.turn_handler is not None):
        service.spawn(service.turn_handler.on_caller_turn(record, applied.final_speech,
                                                          call.generation, now_ms()),
                      f"reply:{record.call_id}")
    return speech_due


def _event_summary(event: CallEvent, key: str) -> dict[str, Any]:
    """The log's view of an event (whose dedupe key is `key`): its type, timestamp and the
    fields that carry meaning."""
    kind = event.type
    data: dict[str, Any] = {"type": kind, "timestamp": event.timestamp, "key": key}
    if kind == "call.speech":
        data["transcript"] = event.transcript
        data["isFinal"] = event.is_final
    elif kind == "call.dtmf":
        data["digits"] = event.digits
    elif kind == "call.ended":
        data["reason"] = event.reason.value
    elif kind == "call.error":
        data["error"] = event.error
    return data
