"""Putting a call through to a person (docs/decisions.md D46).

A transfer takes its place in the call's speech line (after what was asked for before it), says
its message if it has one, notes the transfer on the record, then asks the carrier to dial the
person and bridge the call. The carrier reports progress as `call.transfer` events: `bridged`,
then `completed` (the call ends `transferred`); or why the person was not reached, after which
the agent says `transfer.unavailableMessage` and listens again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from voicecall.calls.machine import transfer_pending
from voicecall.calls.model import TranscriptEntry
from voicecall.calls.phone import normalize_e164
from voicecall.providers.base import TransferRequest
from voicecall.service import speech
from voicecall.service.errors import CallError
from voicecall.service.live import LiveCall
from voicecall.service.settings import TransferSettings
from voicecall.shared.clock import now_ms

if TYPE_CHECKING:
    from voicecall.service.commands import CallService

log = logging.getLogger(__name__)

def target(to: str, settings: TransferSettings, *, by_model: bool) -> str:
    """`to` in E.164 form; a `CallError` (-32602) the model can explain when it is not a number,
    or not one the model may transfer to."""
    number = normalize_e164(to)
    if number is None:
        raise CallError(f"cannot transfer to {to!r}: not a phone number in E.164 form "
                        "(like +15555550123)", code=-32602)
    if by_model and number not in settings.allowed_numbers:
        allowed = ", ".join(settings.allowed_numbers) or "none are configured"
        raise CallError(f"transfer to {number} is not allowed (transfer.allowedNumbers: "
                        f"{allowed})", code=-32602)
    return number


def request(call: LiveCall, to: str) -> None:
    """Note the transfer as asked for, at once (before any await): from now on the call is not
    sent anything else, such as the listen that follows the agent's turn."""
    if transfer_pending(call.record):
        raise CallError("a transfer is already in progress", call_id=call.call_id, code=-32007)
    call.record.metadata["transfer"] = {"to": to, "status": "requested", "requestedAt": now_ms()}


async def transfer(service: CallService, call: LiveCall, to: str, message: str | None) -> dict[str, Any]:
    """Transfer `call` to `to` (checked by `target`, noted by `request`); returns once the
    carrier is dialing."""
    record = call.record
    settings = service.settings.transfer
    place = call.line.join("transfer")  # before any await: in line with the call's speech
    try:
        if message and message.strip():
            await speech.speak(service, call, place, message.strip(), keep_turn=True)
        else:
            await speech.take_turn(service, call, place, "transfer failed")
        service.cancel_idle_timers(call.call_id)
        caller_id = record.from_ if (settings.caller_id == "caller"
                                      and record.direction == "inbound") else \
            service.settings.from_number
        async with call.lock:
            record.metadata["transfer"] = {**record.metadata.get("transfer", {}), "to": to,
                                           "status": "dialing", "startedAt": now_ms()}
            record.transcript.append(TranscriptEntry(timestamp=now_ms(), speaker="tool",
                                                     text=f"transfer to {to}: dialing"))
            await service.persist(record)
        try:
            await service.provider_for(record).transfer_call(record, TransferRequest(
                to=to, caller_id=caller_id, timeout_s=settings.timeout_s))
        except Exception as exc:
            await _note(service, call, "failed", f"transfer to {to}: failed ({exc})")
            raise speech.failed(call, f"transfer failed: {speech.cause(exc, 30, 'the carrier')}") \
                from exc
    except BaseException:
        if (record.metadata.get("transfer") or {}).get("status") == "requested":
            record.metadata["transfer"]["status"] = "failed"  # never dialed: the call is free
        raise
    finally:
        call.line.leave(place)
    return {"success": True, "callId": call.call_id, "to": to, "status": "dialing"}


async def _note(service: CallService, call: LiveCall, status: str, text: str) -> None:
    async with call.lock:
        record = call.record
        transfer = record.metadata.get("transfer")
        if isinstance(transfer, dict):
            transfer["status"] = status
        record.transcript.append(TranscriptEntry(timestamp=now_ms(), speaker="tool", text=text))
        if not record.is_terminal:
            await service.persist(record)


async def on_progress(service: CallService, call: LiveCall, status: str) -> None:
    """A `call.transfer` event was applied (and noted on the transcript): when the person was
    not reached, the agent speaks again and listens."""
    record = call.record
    to = (record.metadata.get("transfer") or {}).get("to", "?")
    if status in ("dialing", "bridged", "completed") or record.is_terminal:
        return
    log.info("call %s: transfer to %s not answered (%s); back to the agent", call.call_id, to,
             status)
    try:
        await service.speak(call.call_id, service.settings.transfer.unavailable_message)
    except CallError as exc:
        log.warning("call %s: could not say the transfer was not answered: %s", call.call_id, exc)
        return
    if service.auto_replies(record) and not call.in_turn:
        await service.listen(call.call_id)
