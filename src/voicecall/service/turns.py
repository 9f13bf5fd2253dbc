"""A `continue` turn: speak, listen, wait for the caller's words, and log the turn's latency."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from voicecall.calls.machine import transition
from voicecall.calls.model import CallState
from voicecall.service import speech
from voicecall.service.errors import CallError
from voicecall.service.live import LiveCall, Waiter
from voicecall.service.settings import LISTEN_TIMEOUT_S
from voicecall.shared.clock import now_ms

if TYPE_CHECKING:
    from voicecall.service.commands import CallService

log = logging.getLogger(__name__)


async def converse(service: CallService, call: LiveCall, waiter: Waiter, message: str, *,
                   streamed: bool) -> str:
    """Speak `message`, then wait (bounded) for the caller's next final transcript."""
    cid = call.call_id
    place = call.line.join("continue")  # before any await: in line with the call's other speech
    service.cancel_idle_timers(cid)

    def prompt_starts() -> None:
        if streamed:
            # The stream listens all the time: a caller who talks over the prompt (barge-in)
            # answers this turn, from the moment the prompt has its turn to play.
            call.waiter = waiter

    try:
        # Carrier speech keeps the turn until listening has started: a command sent meanwhile
        # (speech asked for after this `continue`) would replace the prompt or the listening.
        await speech.speak(service, call, place, message, on_turn=prompt_starts, keep_turn=True)
        await _start_listening(service, call, waiter, streamed=streamed)
    finally:
        call.line.leave(place)
    timeout_ms = service.settings.transcript_timeout_ms
    try:
        return await asyncio.wait_for(asyncio.shield(waiter.future), timeout_ms / 1000)
    except TimeoutError:
        raise CallError(f"Timed out waiting for transcript after {timeout_ms}ms: the callee "
                        f"said nothing. The call is still usable; to wait longer, raise "
                        f"transcriptTimeoutMs in the gateway's config", call_id=cid,
                        code=-32008) from None


async def _start_listening(service: CallService, call: LiveCall, waiter: Waiter, *,
                           streamed: bool) -> None:
    """The prompt has played: the call listens for this turn (a stream listens already)."""
    record, cid = call.record, call.call_id
    async with call.lock:
        if record.is_terminal:
            raise CallError(f"Call ended: {record.end_reason}", call_id=cid, code=-32005)
        if not waiter.future.done():
            record.state = transition(record.state, CallState.LISTENING)
        waiter.listen_started_at = now_ms()
        call.waiter = waiter
        await service.persist(record)
    if streamed:
        return
    try:
        await asyncio.wait_for(service.provider_for(record).start_listening(record, waiter.token),
                               LISTEN_TIMEOUT_S)
    except Exception as exc:
        # If the call ended (or the caller already spoke) meanwhile, the waiter says so.
        if not waiter.future.done():
            why = speech.cause(exc, LISTEN_TIMEOUT_S, "the carrier to start listening")
            raise CallError(f"listen failed: {why}", call_id=cid) from exc


async def complete_turn(service: CallService, call: LiveCall, waiter: Waiter) -> None:
    """Count the turn on the record and log its latency timeline."""
    done = now_ms()
    record = call.record
    async with call.lock:
        meta = record.metadata
        meta["turnCount"] = int(meta.get("turnCount", 0)) + 1
        meta["lastTurnLatencyMs"] = done - waiter.turn_started_at
        meta["lastTurnListenWaitMs"] = done - waiter.listen_started_at
        meta["lastTurnCompletedAt"] = done
        turn = {
            "callId": record.call_id, "turn": meta["turnCount"],
            "startedAt": waiter.turn_started_at, "listenStartedAt": waiter.listen_started_at,
            "transcriptAt": done, "turnLatencyMs": meta["lastTurnLatencyMs"],
            "listenWaitMs": meta["lastTurnListenWaitMs"],
        }
        speech_end = service.speech_ended_at(record.call_id, waiter.listen_started_at - 60_000)
        if speech_end is not None and speech_end <= done:
            turn["speechEndedAt"] = speech_end
        await service.persist(record, turn=turn)
    log.info("call %s turn %s: latency %d ms, listen wait %d ms", record.call_id,
             meta["turnCount"], meta["lastTurnLatencyMs"], meta["lastTurnListenWaitMs"])
