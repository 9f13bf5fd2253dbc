"""Calls we do not know yet: inbound calls (caller policy, capacity) and stragglers of ended calls."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from voicecall.calls.events import CallEvent
from voicecall.calls.model import CallRecord, CallState, EndReason
from voicecall.calls.policy import check_inbound
from voicecall.service.live import LiveCall
from voicecall.service.settings import DEFAULT_GREETING, HANGUP_TIMEOUT_S
from voicecall.shared.clock import now_ms

if TYPE_CHECKING:
    from voicecall.service.commands import CallService

log = logging.getLogger(__name__)


async def adopt(service: CallService, event: CallEvent) -> tuple[LiveCall | None, str | None]:
    """The live call an event of an unknown call starts, if any.

    Returns the new call, or None and the reason the call was refused (None if ignored).
    """
    pcid = event.provider_call_id
    if not (pcid and event.direction):
        log.debug("event %s for unknown call %s ignored", event.type, event.call_id)
        return None, None
    if await service.store.get(pcid) is not None:
        return None, None  # a late event for a call that has already ended
    settings = service.settings
    if event.direction == "inbound":
        decision = check_inbound(settings.inbound_policy, settings.allow_from, event.from_)
        if not decision.accepted:
            await reject_inbound(service, event, decision.reason)
            return None, decision.reason
    existing = service.calls.get(pcid)
    if existing is not None:  # created while we awaited the store
        return existing, None
    if service.calls.occupied() >= settings.max_concurrent_calls:
        reason = f"maximum concurrent calls ({settings.max_concurrent_calls}) reached"
        await reject_inbound(service, event, reason)
        return None, reason
    record = _new_record(service, event, pcid)
    log.info("call %s: %s call from %s accepted", record.call_id, event.direction, record.from_)
    return service.calls.add(record), None


def _new_record(service: CallService, event: CallEvent, provider_call_id: str) -> CallRecord:
    settings = service.settings
    call_id = str(uuid.uuid4())
    direction = event.direction or "inbound"
    metadata: dict[str, Any] = {}
    route = dict(settings.routes.get(event.to or "", {}))
    if route:
        metadata["route"] = route  # resolved once, from the dialed number
    if direction == "inbound":
        metadata["initialMessage"] = (route.get("inboundGreeting") or settings.inbound_greeting
                                      or DEFAULT_GREETING)
    remote = event.from_ if direction == "inbound" else event.to
    return CallRecord(
        call_id=call_id, provider=settings.provider_name, direction=direction,
        state=CallState.RINGING, from_=event.from_ or "unknown",
        to=event.to or settings.from_number or "unknown", started_at=now_ms(),
        provider_call_id=provider_call_id, metadata=metadata,
        session_key=service.session_key(call_id, remote, route.get("agentId")),
    )


async def reject_inbound(service: CallService, event: CallEvent, reason: str) -> None:
    """Hang up a rejected caller once per carrier call id, even when the carrier retries."""
    pcid = event.provider_call_id or event.call_id
    if not await service.store.add_rejected_key(pcid):
        return
    log.info("inbound call %s from %s rejected: %s", pcid, event.from_ or "unknown", reason)
    probe = CallRecord(call_id=pcid, provider=service.settings.provider_name,
                       direction="inbound", state=CallState.RINGING,
                       from_=event.from_ or "unknown", to=event.to or "unknown",
                       started_at=now_ms(), provider_call_id=pcid)
    try:
        await asyncio.wait_for(service.provider.hangup_call(probe, EndReason.HANGUP_BOT),
                               HANGUP_TIMEOUT_S)
    except Exception as exc:
        log.warning("hang-up of rejected call %s failed (will retry on redelivery): %s",
                    pcid, exc)
        await service.store.forget_rejected_key(pcid)
