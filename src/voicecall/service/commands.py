"""CallService: the one owner of live calls. Places, converses on, and ends calls; applies
carrier events (`service.apply`); runs the timers; restores calls after a restart
(`service.restore`).

Every mutation of a call happens under that call's lock and is persisted before anyone is told
about it (the webhook is acknowledged, the RPC answers, the waiter resumes). Carrier requests run
outside the lock so a slow carrier never blocks event delivery for the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from voicecall.calls.events import CallEvent
from voicecall.calls.machine import end_record, transfer_in_progress, transfer_pending, transition
from voicecall.calls.model import CallMode, CallRecord, CallState, EndReason, TranscriptEntry
from voicecall.calls.phone import is_dtmf, is_e164
from voicecall.calls.policy import session_key
from voicecall.calls.timers import TimerSet
from voicecall.providers.base import DialRequest, EventOutcome, Provider
from voicecall.providers.streams import PlaybackResult
from voicecall.service import apply, channels, restore, speech, transfer, turns
from voicecall.service.channels import CallChannel
from voicecall.service.errors import CallError, CallNotFound, CapacityReached
from voicecall.service.line import has_opening
from voicecall.service.live import LiveCall, LiveCalls, Waiter
from voicecall.service.operations import Operations
from voicecall.service.protocols import MediaPlayer, TurnHandler
from voicecall.service.rejections import WebhookRejections
from voicecall.service.settings import (
    DIAL_TIMEOUT_S,
    HANGUP_TIMEOUT_S,
    LISTEN_TIMEOUT_S,
    ServiceSettings,
)
from voicecall.service.state_log import log_state_change
from voicecall.shared.clock import now_ms
from voicecall.shared.error_counts import count_error
from voicecall.store.protocol import CallStore

log = logging.getLogger(__name__)

PersistObserver = Callable[[CallRecord, "dict[str, Any] | None"], None]


class CallService:
    """Live calls, their commands, event application, timers and restore."""

    def __init__(self, settings: ServiceSettings, provider: Provider, store: CallStore,
                 *, webhook_url: str) -> None:
        self.settings = settings
        self.provider = provider
        self.store = store
        self.webhook_url = webhook_url
        self.calls = LiveCalls()
        self.turn_handler: TurnHandler | None = None
        self.media: MediaPlayer | None = None
        self.stream_url: str | None = None
        self._operations = Operations()
        self.rejections = WebhookRejections(self.calls)
        self._timers = TimerSet()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._version = 0  # bumped by every persist
        self._change = asyncio.Event()  # set and replaced at every persist
        self._reaper: asyncio.Task[None] | None = None
        self._started = False
        self.channels: dict[str, CallChannel] = {}
        """Channels of the gateway's own that carry calls besides the carrier, by the name their
        calls' records carry as `provider` (the console's browser calls, D112)."""
        self.persist_observers: list[PersistObserver] = []
        """Told of every persisted record (and its turn), after the write: metrics (D110)."""
        provider.bind(self)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Restore live calls from the store, then start the stale-call reaper."""
        await restore.restore_calls(self)
        self._started = True
        if self.settings.stale_call_reaper_seconds > 0:
            self._reaper = asyncio.create_task(restore.reap_forever(self), name="stale-call-reaper")

    async def stop(self) -> None:
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self._timers.close()
        tasks = list(self._tasks) + self._operations.tasks()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- lookups -----------------------------------------------------------------------------
    def provider_for(self, record: CallRecord) -> CallChannel:
        """Who carries `record`: its channel, or the carrier."""
        return self.channels.get(record.provider, self.provider)

    async def open_channel_call(self, channel: str, *, from_: str, to: str,
                                channel_call_id: str) -> CallRecord:
        """A new answered inbound call carried by one of `channels` (see `service.channels`)."""
        return await channels.open_channel_call(self, channel, from_=from_, to=to,
                                                channel_call_id=channel_call_id)

    def live(self, call_id: str) -> CallRecord | None:
        """A live call by our id or the carrier's id."""
        call = self.calls.get(call_id)
        return call.record if call else None

    def active_calls(self) -> list[CallRecord]:
        return sorted((call.record for call in self.calls), key=lambda r: r.started_at)

    async def list_active(self) -> list[CallRecord]:
        """Live calls: from memory when running, from the store when only reading (CLI)."""
        if self._started:
            return self.active_calls()
        return await self.store.live_calls()

    async def get_call(self, call_id: str) -> CallRecord | None:
        """A live call, or an ended one from history."""
        return self.live(call_id) or await self.store.get(call_id)

    async def _connected(self, call_id: str) -> LiveCall:
        call = self.calls.get(call_id)
        if call is None:
            stored = await self.store.get(call_id)
            if stored is None:
                raise CallNotFound(call_id)
            raise CallError(f"Call has ended ({stored.end_reason or stored.state.value})",
                            call_id=stored.call_id, code=-32005)
        if not call.record.provider_call_id:
            raise CallError("Call not connected yet", call_id=call.call_id, code=-32006)
        if transfer_in_progress(call.record):  # anything sent now would cut the transfer
            raise CallError("the call is being transferred to a person", call_id=call.call_id,
                            code=-32007)
        return call

    # -- persistence and change notification -------------------------------------------------
    async def persist(self, record: CallRecord, *, events: list[dict[str, Any]] | None = None,
                      turn: dict[str, Any] | None = None) -> None:
        """Write `record` (and log rows) durably, log a state change, then wake
        `wait_for_change` watchers."""
        if await self.store.save(record, events=events or (), turn=turn):
            log_state_change(record)
        for observe in self.persist_observers:
            observe(record, turn)
        self._version += 1
        change, self._change = self._change, asyncio.Event()
        change.set()

    async def wait_for_change(self, version: int, wait_s: float) -> int:
        """Block until something was persisted after `version` (or the timeout); the new version."""
        if self._version == version and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._change.wait(), wait_s)
        return self._version

    def finalize(self, call: LiveCall) -> None:
        """Drop an ended call from the live calls, cancel its timers and fail its waiter."""
        record = call.record
        self._timers.cancel(record.call_id)
        self.calls.remove(record)
        call.line.end(record.end_reason.value if record.end_reason else record.state.value)
        waiter = call.waiter
        if waiter and not waiter.future.done():
            detail = record.metadata.get("endDetail")
            reason = record.end_reason.value if record.end_reason else record.state.value
            message = f"Call ended: {reason}" + (f" ({detail})" if detail else "")
            waiter.future.set_exception(CallError(message, call_id=record.call_id, code=-32005))

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        """Run `coro` in the background; `stop` cancels it."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- placing calls -----------------------------------------------------------------------
    async def initiate(self, to: str, message: str | None = None, *, mode: str | None = None,
                       session: str | None = None, dtmf_sequence: str | None = None) -> CallRecord:
        """Persist a new outbound call, then dial it. A failed dial ends `failed` and frees the slot."""
        record = self._new_outbound(to, message, mode, session, dtmf_sequence)
        call = self.calls.add(record)  # reserves the slot before the first await
        try:
            await self.persist(record)
        except Exception as exc:
            self.calls.remove(record)
            raise CallError(f"Could not persist the call, so it was not placed: {exc}") from exc
        request = DialRequest(call_id=record.call_id, from_=record.from_, to=record.to,
                              webhook_url=self.webhook_url, mode=record.mode, message=message,
                              ring_timeout_ms=self.settings.ring_timeout_ms)
        try:
            provider_call_id = await asyncio.wait_for(self.provider.initiate_call(request),
                                                      DIAL_TIMEOUT_S)
        except Exception as exc:
            detail = f"dial failed: {exc}" if str(exc) else "dial timed out"
            count_error("carrier")
            await self._end_locked(call, EndReason.FAILED, detail)
            raise CallError(f"Failed to place call: {detail}", call_id=record.call_id) from exc
        async with call.lock:
            record.provider_call_id = provider_call_id
            if not record.is_terminal:
                self.calls.link(call, provider_call_id)
            await self.persist(record)
        if record.is_terminal:  # ended while the dial was in flight: the carrier must drop it too
            await self.hang_up_quietly(record)
        elif record.answered_at is None:
            self.schedule_ring_timeout(record, since_ms=now_ms())
        return record

    def _new_outbound(self, to: str, message: str | None, mode: str | None,
                      session: str | None, dtmf_sequence: str | None) -> CallRecord:
        """The record of a call about to be placed, after checking the request."""
        to = to.strip()
        if not is_e164(to):
            raise CallError(f"Invalid phone number {to!r}: use E.164, like +15555550123",
                            code=-32602)
        if dtmf_sequence and not is_dtmf(dtmf_sequence):
            raise CallError("dtmfSequence may contain only 0-9 * # w W p P and commas",
                            code=-32602)
        if self.calls.occupied() >= self.settings.max_concurrent_calls:
            raise CapacityReached(self.settings.max_concurrent_calls,
                                  [r.call_id for r in self.active_calls() if not r.is_terminal])
        call_mode: CallMode = mode if mode in ("notify", "conversation") else (  # type: ignore[assignment]
            self.settings.default_mode)
        call_id = str(uuid.uuid4())
        metadata: dict[str, Any] = {"mode": call_mode}
        if message:
            metadata["initialMessage"] = message
        if dtmf_sequence:
            metadata["dtmfSequence"] = dtmf_sequence
        if self.settings.host_pid is not None:
            metadata["hostPid"] = self.settings.host_pid
        return CallRecord(
            call_id=call_id, provider=self.settings.provider_name, direction="outbound",
            state=CallState.INITIATED, from_=self.settings.from_number, to=to,
            started_at=now_ms(), metadata=metadata,
            session_key=session or self.session_key(call_id, to),
        )

    def schedule_ring_timeout(self, record: CallRecord, *, since_ms: int) -> None:
        """End the call `no-answer` if it is still unanswered a ring timeout (plus grace) after
        `since_ms`."""
        s = self.settings
        left_ms = s.ring_timeout_ms + s.ring_grace_ms - (now_ms() - since_ms)
        cid = record.call_id
        self._timers.schedule(cid, "ring", max(0, left_ms) / 1000, lambda: self._ring_timeout(cid))

    async def _ring_timeout(self, call_id: str) -> None:
        record = self.live(call_id)
        if record is not None and record.answered_at is None:
            await self.end(call_id, EndReason.NO_ANSWER,
                           detail=f"not answered within {self.settings.ring_timeout_ms} ms")

    def session_key(self, call_id: str, remote: str | None, agent_id: str | None = None) -> str:
        """The conversation-memory key of a call with the remote party `remote`."""
        return session_key(self.settings.session_scope, agent_id or self.settings.agent_id,
                           call_id=call_id, remote_number=remote)

    # -- speaking, listening, keys -----------------------------------------------------------
    async def speak(self, call_id: str, text: str, *, quiet_idle: bool = False,
                    on_turn: Callable[[], None] | None = None) -> PlaybackResult:
        """Say `text` on the call once the speech asked for before it (the opening message
        first) has gone; returns after it has played (`service.speech.speak`)."""
        text = text.strip()
        if not text:
            raise CallError("message required", code=-32602)
        call = await self._connected(call_id)
        place = call.line.join()  # before any await: speech plays in the order it was asked for
        if not quiet_idle:
            self.cancel_idle_timers(call.call_id)
        return await speech.speak(self, call, place, text, on_turn=on_turn)

    async def continue_call(self, call_id: str, message: str) -> str:
        """Say `message` (in line with the call's other speech, `service.turns`), then wait for
        the caller's next final transcript and return it."""
        call = await self._connected(call_id)
        message = message.strip()
        if not message:
            raise CallError("message required", code=-32602)
        if call.in_turn:
            raise CallError("Already waiting for transcript", call_id=call.call_id, code=-32007)
        call.in_turn = True
        waiter = Waiter(token=uuid.uuid4().hex,
                        future=asyncio.get_running_loop().create_future(),
                        turn_started_at=now_ms())
        streamed = self.streams_audio(call.record)
        try:
            transcript = await turns.converse(self, call, waiter, message, streamed=streamed)
        finally:
            call.in_turn = False
            if call.waiter is waiter:
                call.waiter = None
            if not call.record.is_terminal and not streamed:
                with contextlib.suppress(Exception):
                    await self.provider_for(call.record).stop_listening(call.record)
        await turns.complete_turn(self, call, waiter)
        return transcript

    async def record_turn(self, call_id: str, turn: dict[str, Any]) -> None:
        """Count an automatic-reply turn and log its latency timeline."""
        call = self.calls.get(call_id)
        if call is None:
            return
        async with call.lock:
            meta = call.record.metadata
            meta["turnCount"] = int(meta.get("turnCount", 0)) + 1
            meta["lastTurnLatencyMs"] = turn.get("turnLatencyMs")
            meta["lastTurnCompletedAt"] = now_ms()
            await self.persist(call.record, turn={**turn, "turn": meta["turnCount"]})

    async def log_tool(self, call_id: str, text: str) -> None:
        """Keep a responder's tool call on the call's transcript (a `tool` entry, D101)."""
        call = self.calls.get(call_id)
        if call is None:
            raise CallError("Call has ended", call_id=call_id, code=-32005)
        async with call.lock:
            call.record.transcript.append(TranscriptEntry(timestamp=now_ms(), speaker="tool", text=text))
            await self.persist(call.record)

    async def log_bot_speech(self, call_id: str, text: str) -> None:
        """Keep what the bot said of its own accord (a realtime model's answer, as far as the
        caller heard it) on the call's transcript."""
        call = self.calls.get(call_id)
        if call is None:
            return
        async with call.lock:
            call.record.transcript.append(TranscriptEntry(timestamp=now_ms(), speaker="bot", text=text))
            await self.persist(call.record)

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        """Send keys on the call, in line with its speech (after what was asked for before)."""
        digits = digits.strip()
        if not digits or not is_dtmf(digits):
            raise CallError("digits may contain only 0-9 * # w W p P and commas", code=-32602)
        call = await self._connected(call_id)
        place = call.line.join("keys")  # before any await, like speech
        try:
            await speech.take_turn(self, call, place, "dtmf failed")
            await speech.send_keys(self, call, place, digits)
        finally:
            call.line.leave(place)

    async def transfer(self, call_id: str, to: str, message: str | None = None, *,
                       by_model: bool = False) -> dict[str, Any]:
        """Put the call through to `to` (`service.transfer`); `by_model` limits `to` to
        `transfer.allowedNumbers`. Returns once the carrier is dialing."""
        number = self.transfer_target(to, by_model=by_model)
        call = await self._connected(call_id)
        transfer.request(call, number)
        return await transfer.transfer(self, call, number, message)

    def request_transfer(self, call_id: str, to: str, message: str | None, *,
                         by_model: bool) -> str:
        """Ask for a transfer now and run it in the background, after the speech already in
        line (the agent's own words); the number it dials. `CallError` at once when `to` is
        refused or the call cannot be transferred."""
        number = self.transfer_target(to, by_model=by_model)
        call = self.calls.get(call_id)
        if call is None or call.record.is_terminal or not call.record.provider_call_id:
            raise CallError("the call is not connected", call_id=call_id, code=-32006)
        transfer.request(call, number)
        self.spawn(self._transfer_quietly(call, number, message), f"transfer:{call_id}")
        return number

    async def _transfer_quietly(self, call: LiveCall, number: str, message: str | None) -> None:
        try:
            await transfer.transfer(self, call, number, message)
        except CallError as exc:
            log.warning("call %s: transfer to %s failed: %s", call.call_id, number, exc)

    def transfer_target(self, to: str, *, by_model: bool) -> str:
        """`to` as the E.164 number a transfer would dial; `CallError` (-32602) when it is not
        a number, or (`by_model`) not one of `transfer.allowedNumbers`."""
        return transfer.target(to, self.settings.transfer, by_model=by_model)

    def on_transfer_progress(self, call: LiveCall, status: str) -> None:
        self.spawn(transfer.on_progress(self, call, status), f"transfer:{call.call_id}")

    # -- ending ------------------------------------------------------------------------------
    async def end(self, call_id: str, reason: EndReason = EndReason.HANGUP_BOT, *,
                  detail: str | None = None) -> bool:
        """End a call (also one whose carrier id is not known yet).

        Returns False when the call had already ended. The record is persisted as ended before
        the carrier is asked to hang up, so a carrier error cannot leave it live.
        """
        call = self.calls.get(call_id)
        if call is None:
            if await self.store.get(call_id) is None:
                raise CallNotFound(call_id)
            return False
        if not await self._end_locked(call, reason, detail):
            return False
        if call.record.provider_call_id:
            await self.hang_up_quietly(call.record, reason)
        return True

    async def _end_locked(self, call: LiveCall, reason: EndReason, detail: str | None) -> bool:
        """Move the call to its terminal state, persist it and drop it from the live calls."""
        async with call.lock:
            detail = self.rejections.annotate(call, detail)
            if not end_record(call.record, reason, now_ms(), detail):
                return False
            await self.persist(call.record)
            self.finalize(call)
        return True

    async def hang_up_quietly(self, record: CallRecord, reason: EndReason | None = None) -> None:
        """Ask the carrier to hang up; a failure is logged (the record has ended already)."""
        try:
            await asyncio.wait_for(self.provider_for(record).hangup_call(
                record, reason or record.end_reason or EndReason.HANGUP_BOT), HANGUP_TIMEOUT_S)
        except Exception as exc:
            count_error("carrier")
            log.warning("call %s: carrier hang-up failed: %s", record.call_id, exc)

    # -- carrier events ----------------------------------------------------------------------
    async def apply_events(self, events: list[CallEvent]) -> list[EventOutcome]:
        """Apply carrier events in order; returns once every resulting change is persisted."""
        return await apply.apply_events(self, events)

    emit = apply_events  # the ProviderContext name for it

    async def get_provider_state(self, call_id: str) -> dict[str, Any] | None:
        return await self.store.get_provider_state(call_id)

    async def put_provider_state(self, call_id: str, data: dict[str, Any]) -> None:
        await self.store.put_provider_state(call_id, data)

    async def was_rejected(self, provider_call_id: str) -> bool:
        return await self.store.is_rejected(provider_call_id)

    def cancel_idle_timers(self, call_id: str) -> None:
        """The caller spoke: drop the idle timers."""
        self._timers.cancel(call_id, "idle-prompt")
        self._timers.cancel(call_id, "idle-hangup")

    def auto_replies(self, record: CallRecord) -> bool:
        """Whether the responder answers this call's caller turns by itself."""
        return self.settings.auto_reply and (record.direction == "inbound" or record.mode == "conversation")

    def streams_audio(self, record: CallRecord) -> bool:
        """True when the call speaks and listens over a media stream, not carrier commands."""
        return self.media is not None and self.media.handles(record)

    def turn_token(self, call_id: str) -> str | None:
        """The token of the `continue` waiting for the caller, if one is."""
        call = self.calls.get(call_id)
        return call.waiter.token if call and call.waiter else None

    def note_speech_end(self, call_id: str, at_ms: int) -> None:
        """When the caller last stopped talking (from the stream's voice activity detection)."""
        call = self.calls.get(call_id)
        if call is not None:
            call.speech_ended_at = at_ms

    def speech_ended_at(self, call_id: str, since_ms: int = 0) -> int | None:
        """The caller's last end of speech, if it is known and not older than `since_ms`."""
        call = self.calls.get(call_id)
        at = call.speech_ended_at if call else None
        return at if at is not None and at >= since_ms else None

    def interrupted(self, call_id: str) -> None:
        """The caller talked over the bot (barge-in): replies in flight are stale."""
        call = self.calls.get(call_id)
        if call is not None:
            call.generation += 1

    def is_current(self, call_id: str, generation: int) -> bool:
        """False once the caller has spoken again after `generation` (the reply is stale)."""
        call = self.calls.get(call_id)
        return call is not None and call.generation == generation

    def generation(self, call_id: str) -> int:
        """The call's current turn generation (see `is_current`)."""
        call = self.calls.get(call_id)
        return call.generation if call else 0

    # -- listening and idle callers ----------------------------------------------------------
    async def listen(self, call_id: str, *, reset_idle: bool = True) -> None:
        """Wait for the caller's next turn (auto-reply calls), arming the idle timers."""
        call = self.calls.get(call_id)
        if call is None or not call.record.provider_call_id:
            return
        record = call.record
        async with call.lock:
            if record.is_terminal or transfer_pending(record):
                return
            record.state = transition(record.state, CallState.LISTENING)
            await self.persist(record)
        if not self.streams_audio(record):
            try:
                await asyncio.wait_for(self.provider_for(record).start_listening(record, None),
                                       LISTEN_TIMEOUT_S)
            except Exception as exc:
                log.warning("call %s: could not start listening: %s", record.call_id, exc)
                return
        if reset_idle:
            self._arm_idle(record.call_id)

    def _arm_idle(self, call_id: str) -> None:
        s = self.settings
        if s.idle_prompt_after_s:
            self._timers.schedule(call_id, "idle-prompt", s.idle_prompt_after_s,
                                  lambda: self._idle_prompt(call_id))
        if s.idle_hangup_after_s:
            self._timers.schedule(call_id, "idle-hangup", s.idle_hangup_after_s,
                                  lambda: self._idle_hangup(call_id))

    async def _idle_prompt(self, call_id: str) -> None:
        generation = self.generation(call_id)
        with contextlib.suppress(CallError):
            await self.speak(call_id, self.settings.idle_prompt, quiet_idle=True)
        if self.is_current(call_id, generation):
            await self.listen(call_id, reset_idle=False)  # the hang-up clock keeps running

    async def _idle_hangup(self, call_id: str) -> None:
        self._timers.cancel(call_id, "idle-prompt")
        with contextlib.suppress(CallError):
            await self.speak(call_id, self.settings.idle_goodbye, quiet_idle=True)  # once played
        if self.live(call_id) is not None:
            await self.end(call_id, EndReason.HANGUP_BOT, detail="caller idle")

    # -- answer, greeting, timers ------------------------------------------------------------
    def on_answered(self, call: LiveCall) -> bool:
        """Start the answered call's timers and its greeting; True when it will be sent
        something at once (its opening, speech already asked for, or a listen)."""
        cid = call.call_id
        speech_due = self.speech_due(call)
        call.line.answered()
        self._timers.cancel(cid, "ring")
        self.start_max_duration(call.record, self.settings.max_duration_seconds * 1000)
        self.spawn(self.greet(call), f"greet:{cid}")
        return speech_due

    def speech_due(self, call: LiveCall) -> bool:
        """Whether the answered call is about to be sent something: its opening (until it has
        played), speech already asked for, or a listen (`EventOutcome.speech_due`)."""
        return has_opening(call.record) or call.line.waiting() or self.auto_replies(call.record)

    def start_max_duration(self, record: CallRecord, remaining_ms: int) -> None:
        cid = record.call_id
        limit = self.settings.max_duration_seconds
        self._timers.schedule(cid, "max-duration", remaining_ms / 1000,
                              lambda: self.end(cid, EndReason.TIMEOUT,
                                               detail=f"maximum duration of {limit} s reached"))

    async def greet(self, call: LiveCall) -> None:
        """Send the pre-connect keys, speak the first message; notify calls then hang up."""
        await speech.greet(self, call)

    def schedule_notify_hangup(self, record: CallRecord) -> None:
        cid = record.call_id
        self._timers.schedule(cid, "notify-hangup", self.settings.notify_hangup_delay_sec,
                              lambda: self.end(cid, EndReason.COMPLETED,
                                               detail="notification delivered"))

    def timers_for(self, call_id: str) -> list[str]:
        return self._timers.pending(call_id)

    async def reap_stale(self) -> int:
        """End calls that were not answered within `staleCallReaperSeconds`; how many were."""
        return await restore.reap_stale(self)

    # -- asynchronous continue ---------------------------------------------------------------
    async def continue_start(self, call_id: str, message: str) -> tuple[str, str]:
        """Start a `continue` on a connected call in the background; returns the operation id
        to poll with `continue_result`, and our id of the call."""
        call = await self._connected(call_id)
        cid = call.call_id
        return self._operations.start(cid, self.continue_call(cid, message)), cid

    async def continue_result(self, operation_id: str, wait_s: float = 0) -> dict[str, Any]:
        return await self._operations.result(operation_id, wait_s)
