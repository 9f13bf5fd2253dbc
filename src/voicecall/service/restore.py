"""After a restart: live calls come back from the store, checked against the carrier; and the
reaper that ends calls which were never answered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from voicecall.calls.machine import end_record
from voicecall.calls.model import CallRecord, CallState, EndReason
from voicecall.service.line import has_opening
from voicecall.service.settings import HANGUP_TIMEOUT_S, STATUS_TIMEOUT_S
from voicecall.shared.clock import now_ms

if TYPE_CHECKING:
    from voicecall.service.commands import CallService

log = logging.getLogger(__name__)


async def restore_calls(service: CallService) -> None:
    """Bring back the calls the store holds as live. Calls past their maximum duration, never
    accepted by the carrier, or hosted by a CLI command that is gone, end at once; the others
    are kept unless the carrier says they ended (its status checks run concurrently, each
    bounded)."""
    candidates = await service.store.live_calls()
    if not candidates:
        return
    max_ms = service.settings.max_duration_seconds * 1000
    now = now_ms()
    checks: list[tuple[CallRecord, asyncio.Task[Any] | tuple[EndReason, str]]] = []
    for record in candidates:
        why = _unrecoverable(record, now, max_ms)
        if why is None and record.provider_call_id:
            checks.append((record, asyncio.create_task(asyncio.wait_for(
                service.provider_for(record).get_call_status(record),
                STATUS_TIMEOUT_S))))
        else:
            checks.append((record, why or (EndReason.FAILED, "no carrier call id")))
    for record, check in checks:
        if isinstance(check, tuple):
            await _end_unrecoverable(service, record, *check)
        else:
            await _restore_checked(service, record, check)
    log.info("restored %d live call(s) of %d candidate(s)", len(service.calls), len(candidates))


def _unrecoverable(record: CallRecord, now: int, max_ms: int) -> tuple[EndReason, str] | None:
    """Why a stored live call cannot go on, or None when the carrier should be asked."""
    if not record.provider_call_id:
        return EndReason.FAILED, "gateway restarted before the carrier accepted the call"
    host = record.metadata.get("hostPid")
    if isinstance(host, int) and not isinstance(host, bool) and not process_alive(host):
        return EndReason.HANGUP_BOT, (f"the command hosting the call (pid {host}) exited "
                                      f"without ending it")
    if now - record.started_at > max_ms:
        return EndReason.TIMEOUT, "maximum duration passed while the gateway was down"
    return None


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs (best effort: a pid we cannot check counts as alive)."""
    if pid <= 0 or sys.platform == "win32":  # os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as someone else
        return True
    return True


async def _end_unrecoverable(service: CallService, record: CallRecord, reason: EndReason,
                             detail: str) -> None:
    end_record(record, reason, now_ms(), detail)
    await service.persist(record)
    if record.provider_call_id:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(service.provider_for(record).hangup_call(record, reason), HANGUP_TIMEOUT_S)


async def _restore_checked(service: CallService, record: CallRecord,
                           check: asyncio.Task[Any]) -> None:
    try:
        status = await check
    except Exception as exc:  # unknown: keep the call, the carrier may still have it
        log.warning("call %s: status check failed on restore (%s); keeping it",
                    record.call_id, exc)
        status = None
    if status is not None and status.is_terminal:
        end_record(record, status.end_reason or EndReason.COMPLETED, now_ms(),
                   f"carrier reported {status.status} after restart")
        await service.persist(record)
        return
    call = service.calls.add(record)
    call.restored = True
    if record.answered_at is None:
        service.schedule_ring_timeout(record, since_ms=record.started_at)
        return
    settings = service.settings
    remaining = settings.max_duration_seconds * 1000 - (now_ms() - record.answered_at)
    if remaining <= 0:
        await service.end(record.call_id, EndReason.TIMEOUT,
                          detail=f"maximum duration of {settings.max_duration_seconds} s reached")
        return
    service.start_max_duration(record, remaining)
    if has_opening(record):
        service.spawn(service.greet(call), f"greet:{record.call_id}")
    elif record.mode == "notify" and record.direction == "outbound":
        service.schedule_notify_hangup(record)


async def reap_forever(service: CallService) -> None:
    """Run `reap_stale` every `reaper_interval_s` until cancelled."""
    while True:
        await asyncio.sleep(service.settings.reaper_interval_s)
        try:
            await reap_stale(service)
        except Exception:
            log.exception("stale-call reaper failed")


async def reap_stale(service: CallService) -> int:
    """End calls that were not answered within `staleCallReaperSeconds`; how many were."""
    limit_s = service.settings.stale_call_reaper_seconds
    now = now_ms()
    reaped = 0
    for call in service.calls:
        record = call.record
        stale = (record.answered_at is None and not record.is_terminal
                 and record.state not in (CallState.SPEAKING, CallState.LISTENING)
                 and now - record.started_at > limit_s * 1000)
        if stale and await service.end(record.call_id, EndReason.TIMEOUT,
                                       detail=f"stale: not answered within {limit_s} s"):
            reaped += 1
    return reaped
