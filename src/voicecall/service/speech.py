"""Speaking on a call: utterances, keys and the opening, each in its turn in the call's speech
line (`service.line`, docs/decisions.md D20, D21).

An utterance waits (bounded) until the call is answered and everything asked for before it has
gone; the opening holds the first place from the moment the call exists. On a media stream the
turn passes on as soon as the utterance is queued on the stream, which keeps the order from
there and synthesizes the next one while this one plays. Through carrier commands a new command
replaces the one playing, so the turn passes on only once the carrier confirmed playback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from voicecall.calls.machine import transition
from voicecall.calls.model import CallState, TranscriptEntry
from voicecall.providers.streams import PlaybackResult
from voicecall.service.errors import CallError
from voicecall.service.line import Place, TurnError, has_opening
from voicecall.service.live import LiveCall
from voicecall.service.settings import DTMF_TIMEOUT_S, speak_timeout_s, speech_turn_timeout_s
from voicecall.shared.clock import now_ms

if TYPE_CHECKING:
    from voicecall.service.commands import CallService

log = logging.getLogger(__name__)


def cause(exc: BaseException, timeout_s: float, waiting_for: str) -> str:
    """Why a carrier or stream request failed, never empty (a timeout has no text of its own,
    so it says what it waited for)."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"timed out after {timeout_s:g} s waiting for {waiting_for}"
    return str(exc) or type(exc).__name__


def failed(call: LiveCall, message: str) -> CallError:
    """The error of a failed command: "Call ended" once the call has ended, else `message`."""
    record = call.record
    if record.is_terminal:
        return CallError(f"Call ended: {record.end_reason}", call_id=record.call_id, code=-32005)
    return CallError(message, call_id=record.call_id)


async def take_turn(service: CallService, call: LiveCall, place: Place, what: str) -> None:
    """Wait until `place` may speak; a `CallError` starting with `what` says why it may not."""
    try:
        await call.line.wait_turn(place, speech_turn_timeout_s(service.settings))
    except TurnError as exc:
        call.line.leave(place)
        raise failed(call, f"{what}: {exc}") from exc


async def speak(service: CallService, call: LiveCall, place: Place, text: str, *,
                on_turn: Callable[[], None] | None = None,
                keep_turn: bool = False) -> PlaybackResult:
    """Say `text` when `place` has its turn; returns after it has played. The transcript keeps
    what the caller heard: all of it, or (after a barge-in on a media stream) the part played.
    `on_turn` runs the moment the turn comes, just before the text is queued. With `keep_turn`
    carrier speech keeps the turn afterwards (the caller leaves the line)."""
    record = call.record
    try:
        await take_turn(service, call, place, "speak failed")
        if on_turn is not None:
            on_turn()
        result = await _utter(service, call, place, text)
    finally:
        if not keep_turn:
            call.line.leave(place)
    async with call.lock:
        if result.played_text:
            record.transcript.append(TranscriptEntry(timestamp=now_ms(), speaker="bot",
                                                     text=result.played_text))
        if (result.interrupted or result.skipped) and not record.is_terminal:
            record.state = transition(record.state, CallState.LISTENING)
        await service.persist(record)
    return result


async def _utter(service: CallService, call: LiveCall, place: Place, text: str) -> PlaybackResult:
    """Play `text` with the turn held by `place`; the call is `speaking` meanwhile."""
    record = call.record
    media = service.media if service.streams_audio(record) else None
    timeout = speak_timeout_s(text)
    try:
        playing = media.enqueue(record, text) if media is not None else None
        if playing is not None:
            call.line.leave(place)  # the stream keeps the order from here
        async with call.lock:
            record.state = transition(record.state, CallState.SPEAKING)
            await service.persist(record)
        if playing is not None:
            return await asyncio.wait_for(playing, timeout)
        await asyncio.wait_for(service.provider_for(record).play_tts(record, text), timeout)
        return PlaybackResult(text)
    except Exception as exc:
        await _back_to_listening(service, call)
        why = cause(exc, timeout, "the playback to be confirmed")
        raise failed(call, f"speak failed: {why}") from exc


async def _back_to_listening(service: CallService, call: LiveCall) -> None:
    async with call.lock:
        record = call.record
        if not record.is_terminal:
            record.state = transition(record.state, CallState.LISTENING)
            await service.persist(record)


async def send_keys(service: CallService, call: LiveCall, place: Place, digits: str, *,
                    keep_turn: bool = False) -> None:
    """Send `digits` with the turn held by `place` (kept after them with `keep_turn`)."""
    record = call.record
    media = service.media if service.streams_audio(record) else None
    try:
        if media is not None:
            playing = media.enqueue_dtmf(record, digits)
            if not keep_turn:
                call.line.leave(place)
            await asyncio.wait_for(playing, DTMF_TIMEOUT_S)
        else:
            await asyncio.wait_for(service.provider_for(record).send_dtmf(record, digits), DTMF_TIMEOUT_S)
    except Exception as exc:
        why = cause(exc, DTMF_TIMEOUT_S, "the keys to be played")
        raise failed(call, f"dtmf failed: {why}") from exc
    async with call.lock:
        await service.persist(record, events=[{"type": "dtmf.sent", "digits": digits,
                                               "timestamp": now_ms()}])


async def greet(service: CallService, call: LiveCall) -> None:
    """Deliver the opening in the place reserved for it (keys, then the first message); a
    notify call then hangs up, an automatic-reply call listens."""
    record, cid = call.record, call.call_id
    if service.calls.get(cid) is not call:
        return
    place = call.line.claim_opening()
    if place is None and has_opening(record):
        return  # another greet is delivering it
    if place is not None:
        try:
            await _deliver_opening(service, call, place)
        except CallError as exc:
            log.warning("call %s: first message not delivered: %s", cid, exc)
            return
        finally:
            call.line.leave(place)
    if record.mode == "notify" and record.direction == "outbound":
        service.schedule_notify_hangup(record)
    elif service.auto_replies(record) and not call.in_turn:
        if service.turn_handler is not None:
            await service.turn_handler.on_greeted(record)
        else:
            await service.listen(cid)


async def _deliver_opening(service: CallService, call: LiveCall, place: Place) -> None:
    """Send the keys due before the first message, then say it. The message is removed only
    once it has played, so a restart in between says it again (D20)."""
    record = call.record
    meta = record.metadata
    await take_turn(service, call, place, "speak failed")
    sequence = meta.get("dtmfSequence")
    if sequence and not meta.get("dtmfSequenceSent"):
        await send_keys(service, call, place, str(sequence), keep_turn=True)
        async with call.lock:
            meta["dtmfSequenceSent"] = True
            await service.persist(record)
    message = str(meta.get("initialMessage") or "").strip()
    if message:
        await speak(service, call, place, message)
        async with call.lock:
            meta.pop("initialMessage", None)
            meta["initialMessageSpokenAt"] = now_ms()
            await service.persist(record)
