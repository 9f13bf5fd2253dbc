"""Helpers every carrier adapter needs when it answers a webhook: which call the applied events
belong to, which calls they ended, and what a carrier's answering-machine verdict means."""

from __future__ import annotations

from collections.abc import Iterator

from voicecall.calls.events import CallEvent
from voicecall.calls.model import CallRecord
from voicecall.providers.base import EventOutcome, ProviderContext


async def call_for(context: ProviderContext, outcomes: list[EventOutcome] | None,
                   *keys: str | None) -> CallRecord | None:
    """The call a webhook concerns: the first applied outcome's (None when the caller was
    refused), else the live or stored call under the first of `keys` that names one."""
    for outcome in outcomes or []:
        if outcome.rejected:
            return None
        if outcome.call is not None:
            return outcome.call
    for key in keys:
        if key:
            call = context.live(key) or await context.get_call(key)
            if call is not None:
                return call
    return None


def ended_call_ids(context: ProviderContext, events: list[CallEvent],
                   outcomes: list[EventOutcome] | None) -> Iterator[str]:
    """Our ids of the calls that `call.ended` events in `events` ended. An event may name the
    call by the carrier's id only (an inbound call), so the applied outcome's id wins."""
    for i, event in enumerate(events):
        if event.type != "call.ended":
            continue
        outcome = outcomes[i] if outcomes and i < len(outcomes) else None
        call = (outcome.call if outcome else None) or context.live(event.call_id)
        yield call.call_id if call else event.call_id


def machine_ends_call(context: ProviderContext, call_id: str | None) -> bool:
    """Whether an answering machine ends the call as `voicemail`: notify calls (their message
    would be lost on a recording), and calls we no longer know; conversations go on."""
    call = context.live(call_id) if call_id else None
    return call is None or call.mode == "notify"
