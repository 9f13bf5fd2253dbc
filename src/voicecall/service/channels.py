"""Calls that arrive over a channel of the gateway's own rather than the carrier (the console's
browser calls, D112): the channel creates the call, and the call service then drives it like any
carrier's, sending its record-level commands (hang up, keys, transfer) to that channel.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol

from voicecall.calls.events import CallEvent
from voicecall.calls.model import CallRecord, CallState, EndReason
from voicecall.providers.base import ProviderCallStatus, TransferRequest
from voicecall.service.errors import CallError, CapacityReached
from voicecall.service.settings import DEFAULT_GREETING
from voicecall.shared.clock import now_ms

if TYPE_CHECKING:
    from voicecall.service.commands import CallService


class CallChannel(Protocol):
    """What the call service asks of whoever carries a call, once the call exists: the
    record-level half of `Provider` (every carrier's provider is one)."""

    async def hangup_call(self, call: CallRecord, reason: EndReason) -> None: ...
    async def play_tts(self, call: CallRecord, text: str) -> None: ...
    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None: ...
    async def stop_listening(self, call: CallRecord) -> None: ...
    async def send_dtmf(self, call: CallRecord, digits: str) -> None: ...
    async def transfer_call(self, call: CallRecord, request: TransferRequest) -> None: ...
    async def get_call_status(self, call: CallRecord) -> ProviderCallStatus: ...


async def open_channel_call(service: CallService, channel: str, *, from_: str, to: str,
                            channel_call_id: str) -> CallRecord:
    """A new inbound call carried by `channel` (registered in `service.channels`), answered at
    once so its greeting starts. No caller policy applies: the channel vouches for its caller.
    Raises `CapacityReached` when every slot is taken."""
    if channel not in service.channels:
        raise CallError(f"no call channel {channel!r}")
    settings = service.settings
    if len(service.calls) >= settings.max_concurrent_calls:
        raise CapacityReached(settings.max_concurrent_calls,
                              [r.call_id for r in service.active_calls()])
    call_id = str(uuid.uuid4())
    record = CallRecord(
        call_id=call_id, provider=channel, direction="inbound", state=CallState.RINGING,
        from_=from_, to=to, started_at=now_ms(), provider_call_id=channel_call_id,
        metadata={"initialMessage": settings.inbound_greeting or DEFAULT_GREETING},
        session_key=service.session_key(call_id, from_))
    call = service.calls.add(record)
    try:
        await service.persist(record)
    except Exception:
        service.calls.remove(record)
        raise
    await service.apply_events([CallEvent(
        type="call.answered", call_id=call_id, provider_call_id=channel_call_id,
        timestamp=now_ms(), dedupe_key=f"{channel}:answered:{channel_call_id}")])
    return call.record
