"""CallService: the one owner of live calls. Places, converses on, and ends calls; applies
carrier events; runs the timers; restores calls after a restart.

Every mutation of a call happens under that call's lock and is persisted before anyone is told
about it (the webhook is acknowledged, the RPC answers, the waiter resumes). Carrier requests run
outside the lock so a slow carrier never blocks event delivery for the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from voicecall.calls.events import CallEvent
from voicecall.calls.machine import NO_WAITER, apply_event, end_record, remember_key, transition
from voicecall.calls.model import (
    CallMode,
    CallRecord,
    CallState,
    Direction,
    EndReason,
    TranscriptEntry,
)
from voicecall.calls.phone import is_dtmf, is_e164
from voicecall.calls.policy import check_inbound, session_key
from voicecall.calls.timers import TimerSet
from voicecall.media.protocol import PlaybackResult
from voicecall.providers.base import DialRequest, EventOutcome, Provider
from voicecall.store.sqlite import ReplyWrite, SQLiteCallStore

log = logging.getLogger(__name__)

DEFAULT_GREETING = "Hello! How can I help you today?"
DIAL_TIMEOUT_S = 30.0
HANGUP_TIMEOUT_S = 10.0
STATUS_TIMEOUT_S = 10.0
RING_GRACE_MS = 5_000
OPERATION_TTL_S = 600.0


class CallError(Exception):
    """A call command could not be carried out; the message is safe to show to users."""

    def __init__(self, message: str, *, call_id: str | None = None, code: int = -32000) -> None:
        super().__init__(message)
        self.call_id = call_id
        self.code = code


class CallNotFound(CallError):
    def __init__(self, call_id: str) -> None:
        super().__init__(f"Call not found: {call_id}", call_id=call_id, code=-32004)


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """The parts of the configuration the call service acts on."""

    provider_name: str = "mock"
    from_number: str = "+15550000000"
    max_concurrent_calls: int = 1
    max_duration_seconds: int = 300
    transcript_timeout_ms: int = 180_000
    ring_timeout_ms: int = 30_000
    notify_hangup_delay_sec: float = 3
    stale_call_reaper_seconds: int = 120
    reaper_interval_s: float = 30.0
    default_mode: CallMode = "notify"
    inbound_policy: str = "disabled"
    allow_from: tuple[str, ...] = ()
    inbound_greeting: str | None = None
    session_scope: str = "per-phone"
    agent_id: str = "main"
    routes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """`numbers` routes by dialed E.164 number (camelCase keys), stored on the call once."""
    auto_reply: bool = False
    idle_prompt_after_s: float | None = None
    idle_prompt: str = "Are you still there?"
    idle_hangup_after_s: float | None = None
    idle_goodbye: str = "Goodbye!"


class TurnHandler(Protocol):
    """Answers a caller's turn (the responder); the service tells it when the caller spoke."""

    async def on_caller_turn(self, call: CallRecord, text: str, generation: int,
                             heard_at: int) -> None: ...


class MediaPlayer(Protocol):
    """Speaking over a media stream instead of carrier commands (`voicecall.media.MediaHub`)."""

    def handles(self, call: CallRecord) -> bool: ...
    def enqueue(self, call: CallRecord, text: str) -> asyncio.Future[PlaybackResult]:
        """Queue `text` for the call's stream now (in call order); the future tells how it ended."""
        ...

    def enqueue_dtmf(self, call: CallRecord, digits: str) -> asyncio.Future[PlaybackResult]:
        """Queue key tones on the call's stream (a stream has no out-of-band keys)."""
        ...


@dataclass(slots=True)
class _Waiter:
    token: str
    future: asyncio.Future[str]
    turn_started_at: int
    listen_started_at: int = 0


@dataclass(slots=True)
class _Operation:
    """An asynchronous `continue` (continue.start / continue.result)."""

    call_id: str
    task: asyncio.Task[str]
    created: float = field(default_factory=time.monotonic)


def now_ms() -> int:
    return int(time.time() * 1000)


class CallService:
    """Live calls, their commands, event application, timers and restore."""

    def __init__(self, settings: ServiceSettings, provider: Provider, store: SQLiteCallStore,
                 *, webhook_url: str) -> None:
        self.settings = settings
        self.provider = provider
        self.store = store
        self.webhook_url = webhook_url
        self._calls: dict[str, CallRecord] = {}
        self._by_provider: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiters: dict[str, _Waiter] = {}
        self._turns: set[str] = set()
        self._greeting: set[str] = set()
        self._operations: dict[str, _Operation] = {}
        self._timers = TimerSet()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._version = 0  # bumped by every persist
        self._change: asyncio.Event | None = None  # set at the next bump; made by a watcher
        self._reaper: asyncio.Task[None] | None = None
        self._started = False
        self._generation: dict[str, int] = {}
        self.turn_handler: TurnHandler | None = None
        self.media: MediaPlayer | None = None
        self.stream_url: str | None = None
        self._speech_ended_at: dict[str, int] = {}
        provider.bind(self)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Restore live calls from the store (reference §6.2), then start the stale-call reaper."""
        await self._restore()
        self._started = True
        if self.settings.stale_call_reaper_seconds > 0:
            self._reaper = asyncio.create_task(self._reap_forever(), name="stale-call-reaper")

    async def stop(self) -> None:
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self._timers.close()
        for op in self._operations.values():
            op.task.cancel()
        tasks = list(self._tasks) + [op.task for op in self._operations.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- lookups -----------------------------------------------------------------------------
    def live(self, call_id: str) -> CallRecord | None:
        """A live call by our id or the carrier's id."""
        record = self._calls.get(call_id)
        if record is None and call_id in self._by_provider:
            record = self._calls.get(self._by_provider[call_id])
        return record

    def active_calls(self) -> list[CallRecord]:
        return sorted(self._calls.values(), key=lambda r: r.started_at)

    async def list_active(self) -> list[CallRecord]:
        """Live calls: from memory when running, from the store when only reading (CLI)."""
        if self._started:
            return self.active_calls()
        return await self.store.live_calls()

    async def get_call(self, call_id: str) -> CallRecord | None:
        """A live call, or an ended one from history (SPEC Q19)."""
        return self.live(call_id) or await self.store.get(call_id)

    def _lock(self, call_id: str) -> asyncio.Lock:
        lock = self._locks.get(call_id)
        if lock is None:
            lock = self._locks[call_id] = asyncio.Lock()
        return lock

    async def _connected(self, call_id: str) -> CallRecord:
        record = self.live(call_id)
        if record is None:
            stored = await self.store.get(call_id)
            if stored is None:
                raise CallNotFound(call_id)
            raise CallError(f"Call has ended ({stored.end_reason or stored.state.value})",
                            call_id=stored.call_id, code=-32005)
        if not record.provider_call_id:
            raise CallError("Call not connected yet", call_id=record.call_id, code=-32006)
        return record

    # -- persistence and change notification -------------------------------------------------
    async def _persist(self, record: CallRecord, *, events: list[dict[str, Any]] | None = None,
                       turn: dict[str, Any] | None = None, reply: ReplyWrite | None = None) -> None:
        await self.store.save(record, events=events or (), turn=turn, reply=reply)
        self._persisted()

    def _persisted(self) -> None:
        """A change is durable: bump the version and wake whoever waits in `wait_for_change`
        (synchronous, so a persist needs no lock or coroutine of its own)."""
        self._version += 1
        change = self._change
        if change is not None:
            self._change = None
            change.set()

    async def wait_for_change(self, version: int, wait_s: float) -> int:
        """Block until something was persisted after `version` (or the timeout); the new version."""
        if self._version == version and wait_s > 0:
            # No await between the check and taking the event: a persist cannot slip between.
            change = self._change
            if change is None:
                change = self._change = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(change.wait(), wait_s)
        return self._version

    def _forget(self, record: CallRecord) -> None:
        self._calls.pop(record.call_id, None)
        pcid = record.provider_call_id
        if pcid and self._by_provider.get(pcid) == record.call_id:
            del self._by_provider[pcid]

    def _finalize(self, record: CallRecord) -> None:
        """Drop an ended call from the live maps, cancel its timers and fail its waiter."""
        self._timers.cancel(record.call_id)
        self._forget(record)
        waiter = self._waiters.get(record.call_id)
        if waiter and not waiter.future.done():
            detail = record.metadata.get("endDetail")
            reason = record.end_reason.value if record.end_reason else record.state.value
            message = f"Call ended: {reason}" + (f" ({detail})" if detail else "")
            waiter.future.set_exception(CallError(message, call_id=record.call_id, code=-32005))
        self._locks.pop(record.call_id, None)
        self._speech_ended_at.pop(record.call_id, None)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- placing calls -----------------------------------------------------------------------
    async def initiate(self, to: str, message: str | None = None, *, mode: str | None = None,
                       session: str | None = None, dtmf_sequence: str | None = None) -> CallRecord:
        """Persist a new outbound call, then dial it. A failed dial ends `failed` and frees the slot."""
        to = to.strip()
        if not is_e164(to):
            raise CallError(f"Invalid phone number {to!r}: use E.164, like +15555550123",
                            code=-32602)
        call_mode: CallMode = mode if mode in ("notify", "conversation") else (  # type: ignore[assignment]
            self.settings.default_mode)
        if dtmf_sequence and not is_dtmf(dtmf_sequence):
            raise CallError("dtmfSequence may contain only 0-9 * # w W p P and commas",
                            code=-32602)
        if len(self._calls) >= self.settings.max_concurrent_calls:
            raise CallError(
                f"Maximum concurrent calls ({self.settings.max_concurrent_calls}) reached",
                code=-32003)
        call_id = str(uuid.uuid4())
        metadata: dict[str, Any] = {"mode": call_mode}
        if message:
            metadata["initialMessage"] = message
        if dtmf_sequence:
            metadata["dtmfSequence"] = dtmf_sequence
        record = CallRecord(
            call_id=call_id, provider=self.settings.provider_name, direction="outbound",
            state=CallState.INITIATED, from_=self.settings.from_number, to=to,
            started_at=now_ms(), metadata=metadata,
            session_key=session or self._session_key(call_id, "outbound", to),
        )
        self._calls[call_id] = record  # reserves the slot before the first await
        try:
            await self._persist(record)
        except Exception as exc:
            self._calls.pop(call_id, None)
            raise CallError(f"Could not persist the call, so it was not placed: {exc}") from exc
        request = DialRequest(call_id=call_id, from_=record.from_, to=to,
                              webhook_url=self.webhook_url, mode=call_mode, message=message,
                              ring_timeout_ms=self.settings.ring_timeout_ms)
        try:
            provider_call_id = await asyncio.wait_for(self.provider.initiate_call(request),
                                                      DIAL_TIMEOUT_S)
        except Exception as exc:
            detail = f"dial failed: {exc}" if str(exc) else "dial timed out"
            async with self._lock(call_id):
                if end_record(record, EndReason.FAILED, now_ms(), detail):
                    await self._persist(record)
                self._finalize(record)
            raise CallError(f"Failed to place call: {detail}", call_id=call_id) from exc
        async with self._lock(call_id):
            record.provider_call_id = provider_call_id
            if not record.is_terminal:
                self._by_provider[provider_call_id] = call_id
            await self._persist(record)
        if record.is_terminal:  # ended while the dial was in flight: the carrier must drop it too
            try:
                await asyncio.wait_for(self.provider.hangup_call(record, record.end_reason
                                                                 or EndReason.HANGUP_BOT),
                                       HANGUP_TIMEOUT_S)
            except Exception as exc:
                log.warning("call %s: carrier hang-up after an early end failed: %s", call_id, exc)
            return record
        if not record.is_terminal and record.answered_at is None:
            self._timers.schedule(call_id, "ring", (self.settings.ring_timeout_ms
                                                    + RING_GRACE_MS) / 1000,
                                  lambda: self._ring_timeout(call_id))
        return record

    async def _ring_timeout(self, call_id: str) -> None:
        record = self.live(call_id)
        if record is not None and record.answered_at is None:
            await self.end(call_id, EndReason.NO_ANSWER,
                           detail=f"not answered within {self.settings.ring_timeout_ms} ms")

    def _session_key(self, call_id: str, direction: Direction, remote: str | None,
                     agent_id: str | None = None) -> str:
        return session_key(self.settings.session_scope, agent_id or self.settings.agent_id,
                           call_id=call_id, remote_number=remote)

    # -- speaking, listening, keys -----------------------------------------------------------
    async def speak(self, call_id: str, text: str, *, quiet_idle: bool = False) -> PlaybackResult:
        """Say `text` on the call; returns after it has played. The transcript keeps what the
        caller heard: all of it, or (after a barge-in on a media stream) the part played."""
        text = text.strip()
        if not text:
            raise CallError("message required", code=-32602)
        record = await self._connected(call_id)
        if not quiet_idle:
            self._timers.cancel(record.call_id, "idle-prompt")
            self._timers.cancel(record.call_id, "idle-hangup")
        # Queued before the first await: concurrent speaks on a stream play in call order.
        playing = self.media.enqueue(record, text) if self.streams_audio(record) and self.media else None
        async with self._lock(record.call_id):
            record.state = transition(record.state, CallState.SPEAKING)
            await self._persist(record)
        timeout = 30.0 + len(text) * 0.2
        try:
            if playing is not None:
                result = await asyncio.wait_for(playing, timeout)
            else:
                await asyncio.wait_for(self.provider.play_tts(record, text), timeout)
                result = PlaybackResult(text)
        except Exception as exc:
            async with self._lock(record.call_id):
                if not record.is_terminal:
                    record.state = transition(record.state, CallState.LISTENING)
                    await self._persist(record)
            if record.is_terminal:
                raise CallError(f"Call ended: {record.end_reason}", call_id=record.call_id,
                                code=-32005) from exc
            raise CallError(f"speak failed: {exc or 'playback timed out'}",
                            call_id=record.call_id) from exc
        async with self._lock(record.call_id):
            if result.played_text:
                record.transcript.append(TranscriptEntry(timestamp=now_ms(), speaker="bot",
                                                         text=result.played_text))
            if (result.interrupted or result.skipped) and not record.is_terminal:
                record.state = transition(record.state, CallState.LISTENING)
            await self._persist(record)
        return result

    async def continue_call(self, call_id: str, message: str) -> str:
        """Say `message`, then wait for the caller's next final transcript and return it."""
        record = await self._connected(call_id)
        cid = record.call_id
        if cid in self._turns:
            raise CallError("Already waiting for transcript", call_id=cid, code=-32007)
        self._turns.add(cid)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(token=uuid.uuid4().hex, future=loop.create_future(),
                         turn_started_at=now_ms())
        timeout_ms = self.settings.transcript_timeout_ms
        streamed = self.streams_audio(record)
        try:
            if streamed:
                # The stream listens all the time: a caller who talks over the prompt (barge-in)
                # answers this turn.
                self._waiters[cid] = waiter
            await self.speak(cid, message)
            async with self._lock(cid):
                if record.is_terminal:
                    raise CallError(f"Call ended: {record.end_reason}", call_id=cid, code=-32005)
                if not waiter.future.done():
                    record.state = transition(record.state, CallState.LISTENING)
                waiter.listen_started_at = now_ms()
                self._waiters[cid] = waiter
                await self._persist(record)
            if not streamed:
                try:
                    await asyncio.wait_for(self.provider.start_listening(record, waiter.token), 30)
                except Exception as exc:
                    # If the call ended (or the caller already spoke) meanwhile, the waiter says so.
                    if not waiter.future.done():
                        raise CallError(f"listen failed: {exc or 'timed out'}", call_id=cid) from exc
            try:
                transcript = await asyncio.wait_for(asyncio.shield(waiter.future),
                                                    timeout_ms / 1000)
            except TimeoutError:
                raise CallError(f"Timed out waiting for transcript after {timeout_ms}ms",
                                call_id=cid, code=-32008) from None
        finally:
            self._turns.discard(cid)
            if self._waiters.get(cid) is waiter:
                del self._waiters[cid]
            if not record.is_terminal and not streamed:
                with contextlib.suppress(Exception):
                    await self.provider.stop_listening(record)
        await self._complete_turn(record, waiter)
        return transcript

    async def _complete_turn(self, record: CallRecord, waiter: _Waiter) -> None:
        done = now_ms()
        async with self._lock(record.call_id):
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
            speech_end = self.speech_ended_at(record.call_id, waiter.listen_started_at - 60_000)
            if speech_end is not None and speech_end <= done:
                turn["speechEndedAt"] = speech_end
            await self._persist(record, turn=turn)
        log.info("call %s turn %s: latency %d ms, listen wait %d ms", record.call_id,
                 meta["turnCount"], meta["lastTurnLatencyMs"], meta["lastTurnListenWaitMs"])

    async def record_turn(self, call_id: str, turn: dict[str, Any]) -> None:
        """Count an automatic-reply turn and log its latency timeline."""
        record = self.live(call_id)
        if record is None:
            return
        async with self._lock(record.call_id):
            meta = record.metadata
            meta["turnCount"] = int(meta.get("turnCount", 0)) + 1
            meta["lastTurnLatencyMs"] = turn.get("turnLatencyMs")
            meta["lastTurnCompletedAt"] = now_ms()
            await self._persist(record, turn={**turn, "turn": meta["turnCount"]})

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        digits = digits.strip()
        if not digits or not is_dtmf(digits):
            raise CallError("digits may contain only 0-9 * # w W p P and commas", code=-32602)
        record = await self._connected(call_id)
        try:
            if self.streams_audio(record) and self.media is not None:
                await asyncio.wait_for(self.media.enqueue_dtmf(record, digits), 30)
            else:
                await asyncio.wait_for(self.provider.send_dtmf(record, digits), 30)
        except Exception as exc:
            raise CallError(f"dtmf failed: {exc or 'timed out'}", call_id=record.call_id) from exc
        async with self._lock(record.call_id):
            await self._persist(record, events=[{"type": "dtmf.sent", "digits": digits,
                                                 "timestamp": now_ms()}])

    # -- ending ------------------------------------------------------------------------------
    async def end(self, call_id: str, reason: EndReason = EndReason.HANGUP_BOT, *,
                  detail: str | None = None) -> bool:
        """End a call (also one whose carrier id is not known yet, SPEC Q18).

        Returns False when the call had already ended. The record is persisted as ended before
        the carrier is asked to hang up, so a carrier error cannot leave it live.
        """
        record = self.live(call_id)
        if record is None:
            if await self.store.get(call_id) is None:
                raise CallNotFound(call_id)
            return False
        async with self._lock(record.call_id):
            if not end_record(record, reason, now_ms(), detail):
                return False
            await self._persist(record)
            self._finalize(record)
        if record.provider_call_id:
            try:
                await asyncio.wait_for(self.provider.hangup_call(record, reason), HANGUP_TIMEOUT_S)
            except Exception as exc:
                log.warning("call %s: carrier hang-up failed: %s", record.call_id, exc)
        return True

    # -- carrier events ----------------------------------------------------------------------
    async def apply_events(self, events: list[CallEvent], *,
                           reply: ReplyWrite | None = None) -> list[EventOutcome]:
        """Apply carrier events in order; returns once every resulting change is persisted.

        `reply` (the webhook's request key and answer) is written with the last event if that
        event is persisted (`reply.written` tells).
        """
        if len(events) == 1:  # the usual webhook: no comprehension (a coroutine of its own)
            return [await self._apply_one(events[0], reply=reply)]
        if reply is None:
            return [await self._apply_one(event) for event in events]
        last = len(events) - 1
        return [await (self._apply_one(event, reply=reply) if i == last else self._apply_one(event))
                for i, event in enumerate(events)]

    emit = apply_events  # the ProviderContext name for it

    async def get_provider_state(self, call_id: str) -> dict[str, Any] | None:
        return await self.store.get_provider_state(call_id)

    async def put_provider_state(self, call_id: str, data: dict[str, Any]) -> None:
        await self.store.put_provider_state(call_id, data)

    async def was_rejected(self, provider_call_id: str) -> bool:
        return await self.store.is_rejected(provider_call_id)

    async def _apply_one(self, event: CallEvent, *, reply: ReplyWrite | None = None) -> EventOutcome:
        provider_call_id = event.provider_call_id
        record = self.live(event.call_id)
        if record is None and provider_call_id:
            record = self.live(provider_call_id)
        adopted = False
        if record is None:
            record, rejected = await self._adopt(event)
            if record is None:
                return EventOutcome(call=None, rejected=rejected)
            adopted = True
        cid = record.call_id
        key = event.key
        lock = self._lock(cid)
        await lock.acquire()  # not `async with`: two coroutines less on every event
        try:
            if record.state.is_terminal or record.has_processed(key):
                return EventOutcome(record)
            before = record.rollback_point()
            waiter = self._waiters.get(cid)
            applied = apply_event(record, event,
                                  waiter_token=waiter.token if waiter else NO_WAITER)
            if applied.ignored:
                log.info("call %s: ignored %s (%s)", cid, event.type, applied.ignored)
            if not applied.mark_processed:
                return EventOutcome(record)
            remember_key(record, key)
            if provider_call_id and not record.provider_call_id:
                record.provider_call_id = provider_call_id
                self._by_provider[provider_call_id] = cid
            try:  # `_persist`, inlined: one coroutine less on every event
                await self.store.save(record, events=(_event_summary(event, key),), reply=reply)
                self._persisted()
            except Exception:
                # Not durable, so not applied: roll back so the carrier's retry applies it.
                record.roll_back(before)
                if adopted:
                    self._forget(record)
                elif record.provider_call_id is None and provider_call_id:
                    self._by_provider.pop(provider_call_id, None)
                raise
            if applied.ended:
                self._finalize(record)
                if record.end_reason == EndReason.VOICEMAIL:  # our decision, not the carrier's end
                    self._spawn(self._hangup_quietly(record), f"hangup:{cid}")
                return EventOutcome(record)
            consumed = False
            if event.type == "call.speech" and not applied.ignored:
                self._generation[cid] = self._generation.get(cid, 0) + 1  # older replies are stale
                self._cancel_idle_timers(cid)
            if applied.final_speech is not None and waiter and not waiter.future.done():
                waiter.future.set_result(applied.final_speech)
                consumed = True
        finally:
            lock.release()
        if applied.answered:
            self._on_answered(record)
        if (applied.final_speech is not None and not consumed and self._auto_replies(record)
                and self.turn_handler is not None):
            self._spawn(self.turn_handler.on_caller_turn(record, applied.final_speech,
                                                         self._generation.get(cid, 0), now_ms()),
                        f"reply:{cid}")
        return EventOutcome(record)

    def _cancel_idle_timers(self, call_id: str) -> None:
        """The caller spoke: drop the idle timers (`_arm_idle` arms them only when configured)."""
        if self.settings.idle_prompt_after_s or self.settings.idle_hangup_after_s:
            self._timers.cancel(call_id, "idle-prompt")
            self._timers.cancel(call_id, "idle-hangup")

    def _auto_replies(self, record: CallRecord) -> bool:
        return self.settings.auto_reply and (record.direction == "inbound" or record.mode == "conversation")

    def streams_audio(self, record: CallRecord) -> bool:
        """True when the call speaks and listens over a media stream, not carrier commands."""
        return self.media is not None and self.media.handles(record)

    def turn_token(self, call_id: str) -> str | None:
        """The token of the `continue` waiting for the caller, if one is."""
        waiter = self._waiters.get(call_id)
        return waiter.token if waiter else None

    def note_speech_end(self, call_id: str, at_ms: int) -> None:
        """When the caller last stopped talking (from the stream's voice activity detection)."""
        self._speech_ended_at[call_id] = at_ms

    def speech_ended_at(self, call_id: str, since_ms: int = 0) -> int | None:
        """The caller's last end of speech, if it is known and not older than `since_ms`."""
        at = self._speech_ended_at.get(call_id)
        return at if at is not None and at >= since_ms else None

    def interrupted(self, call_id: str) -> None:
        """The caller talked over the bot (barge-in): replies in flight are stale."""
        self._generation[call_id] = self._generation.get(call_id, 0) + 1

    def is_current(self, call_id: str, generation: int) -> bool:
        """False once the caller has spoken again after `generation` (the reply is stale)."""
        record = self.live(call_id)
        return record is not None and self._generation.get(record.call_id, 0) == generation

    async def listen(self, call_id: str, *, reset_idle: bool = True) -> None:
        """Wait for the caller's next turn (auto-reply calls), arming the idle timers."""
        record = self.live(call_id)
        if record is None or not record.provider_call_id:
            return
        async with self._lock(record.call_id):
            if record.is_terminal:
                return
            record.state = transition(record.state, CallState.LISTENING)
            await self._persist(record)
        if not self.streams_audio(record):
            try:
                await asyncio.wait_for(self.provider.start_listening(record, None), 30)
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
        generation = self._generation.get(call_id, 0)
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

    async def _hangup_quietly(self, record: CallRecord) -> None:
        try:
            await asyncio.wait_for(self.provider.hangup_call(record, record.end_reason
                                                             or EndReason.HANGUP_BOT), HANGUP_TIMEOUT_S)
        except Exception as exc:
            log.warning("call %s: carrier hang-up failed: %s", record.call_id, exc)

    async def _adopt(self, event: CallEvent) -> tuple[CallRecord | None, str | None]:
        """A call we do not know: an inbound call (policy, capacity) or an ended call's straggler.

        Returns the new record, or None and the reason the call was refused (None if ignored).
        """
        if not (event.provider_call_id and event.direction):
            log.debug("event %s for unknown call %s ignored", event.type, event.call_id)
            return None, None
        if await self.store.get(event.provider_call_id) is not None:
            return None, None  # a late event for a call that has already ended
        if event.direction == "inbound":
            decision = check_inbound(self.settings.inbound_policy, self.settings.allow_from,
                                     event.from_)
            if not decision.accepted:
                await self._reject_inbound(event, decision.reason)
                return None, decision.reason
        if self.live(event.provider_call_id):  # created while we awaited the store
            return self.live(event.provider_call_id), None
        if len(self._calls) >= self.settings.max_concurrent_calls:
            reason = f"maximum concurrent calls ({self.settings.max_concurrent_calls}) reached"
            await self._reject_inbound(event, reason)
            return None, reason
        call_id = str(uuid.uuid4())
        remote = event.from_ if event.direction == "inbound" else event.to
        metadata: dict[str, Any] = {}
        route = dict(self.settings.routes.get(event.to or "", {}))
        if route:
            metadata["route"] = route  # resolved once, from the dialed number
        if event.direction == "inbound":
            metadata["initialMessage"] = (route.get("inboundGreeting") or self.settings.inbound_greeting
                                          or DEFAULT_GREETING)
        record = CallRecord(
            call_id=call_id, provider=self.settings.provider_name, direction=event.direction,
            state=CallState.RINGING, from_=event.from_ or "unknown",
            to=event.to or self.settings.from_number or "unknown", started_at=now_ms(),
            provider_call_id=event.provider_call_id, metadata=metadata,
            session_key=self._session_key(call_id, event.direction, remote,
                                          route.get("agentId")),
        )
        self._calls[call_id] = record
        self._by_provider[event.provider_call_id] = call_id
        log.info("call %s: inbound from %s accepted", call_id, record.from_)
        return record, None

    async def _reject_inbound(self, event: CallEvent, reason: str) -> None:
        """Hang up a rejected caller once per carrier call id, even when the carrier retries."""
        pcid = event.provider_call_id or event.call_id
        if not await self.store.add_rejected_key(pcid):
            return
        log.info("inbound call %s from %s rejected: %s", pcid, event.from_ or "unknown", reason)
        probe = CallRecord(call_id=pcid, provider=self.settings.provider_name,
                           direction="inbound", state=CallState.RINGING,
                           from_=event.from_ or "unknown", to=event.to or "unknown",
                           started_at=now_ms(), provider_call_id=pcid)
        try:
            await asyncio.wait_for(self.provider.hangup_call(probe, EndReason.HANGUP_BOT),
                                   HANGUP_TIMEOUT_S)
        except Exception as exc:
            log.warning("hang-up of rejected call %s failed (will retry on redelivery): %s",
                        pcid, exc)
            await self.store.forget_rejected_key(pcid)

    def _on_answered(self, record: CallRecord) -> None:
        cid = record.call_id
        self._timers.cancel(cid, "ring")
        self._start_max_duration(record, self.settings.max_duration_seconds * 1000)
        self._spawn(self._greet(cid), f"greet:{cid}")

    def _start_max_duration(self, record: CallRecord, remaining_ms: int) -> None:
        cid = record.call_id
        limit = self.settings.max_duration_seconds
        self._timers.schedule(cid, "max-duration", remaining_ms / 1000,
                              lambda: self.end(cid, EndReason.TIMEOUT,
                                               detail=f"maximum duration of {limit} s reached"))

    async def _greet(self, call_id: str) -> None:
        """Send the pre-connect keys, speak the first message; notify calls then hang up."""
        record = self.live(call_id)
        if record is None or call_id in self._greeting:
            return
        self._greeting.add(call_id)
        try:
            sequence = record.metadata.get("dtmfSequence")
            if sequence and not record.metadata.get("dtmfSequenceSent"):
                await self.send_dtmf(call_id, str(sequence))
                async with self._lock(call_id):
                    record.metadata["dtmfSequenceSent"] = True
                    await self._persist(record)
            message = record.metadata.get("initialMessage")
            if message:
                await self.speak(call_id, str(message))
                async with self._lock(call_id):
                    record.metadata.pop("initialMessage", None)  # only once it has played
                    record.metadata["initialMessageSpokenAt"] = now_ms()
                    await self._persist(record)
        except CallError as exc:
            log.warning("call %s: first message not delivered: %s", call_id, exc)
            return
        finally:
            self._greeting.discard(call_id)
        if record.mode == "notify" and record.direction == "outbound":
            self._schedule_notify_hangup(record)
        elif self._auto_replies(record) and call_id not in self._turns:
            await self.listen(call_id)

    def _schedule_notify_hangup(self, record: CallRecord) -> None:
        cid = record.call_id
        self._timers.schedule(cid, "notify-hangup", self.settings.notify_hangup_delay_sec,
                              lambda: self.end(cid, EndReason.COMPLETED,
                                               detail="notification delivered"))

    # -- asynchronous continue ---------------------------------------------------------------
    def continue_start(self, call_id: str, message: str) -> str:
        """Start a `continue` in the background; poll it with `continue_result`."""
        self._prune_operations()
        operation_id = uuid.uuid4().hex
        task = asyncio.create_task(self.continue_call(call_id, message),
                                   name=f"continue:{call_id}")
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        self._operations[operation_id] = _Operation(call_id=call_id, task=task)
        return operation_id

    async def continue_result(self, operation_id: str, wait_s: float = 0) -> dict[str, Any]:
        op = self._operations.get(operation_id)
        if op is None:
            raise CallError(f"Operation not found: {operation_id}", code=-32004)
        if wait_s > 0 and not op.task.done():
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(op.task), wait_s)
        if not op.task.done():
            return {"operationId": operation_id, "done": False, "callId": op.call_id}
        del self._operations[operation_id]
        exc = op.task.exception()
        if exc is not None:
            return {"operationId": operation_id, "done": True, "success": False,
                    "callId": op.call_id, "error": str(exc)}
        return {"operationId": operation_id, "done": True, "success": True,
                "callId": op.call_id, "transcript": op.task.result()}

    def _prune_operations(self) -> None:
        cutoff = time.monotonic() - OPERATION_TTL_S
        for key in [k for k, op in self._operations.items()
                    if op.task.done() and op.created < cutoff]:
            del self._operations[key]

    # -- restore and reaping -----------------------------------------------------------------
    async def _restore(self) -> None:
        candidates = await self.store.live_calls()
        if not candidates:
            return
        max_ms = self.settings.max_duration_seconds * 1000
        now = now_ms()
        checks: list[tuple[CallRecord, asyncio.Task[Any] | None]] = []
        for record in candidates:
            if not record.provider_call_id or now - record.started_at > max_ms:
                checks.append((record, None))
            else:
                checks.append((record, asyncio.create_task(asyncio.wait_for(
                    self.provider.get_call_status(record.provider_call_id), STATUS_TIMEOUT_S))))
        for record, check in checks:
            await self._restore_one(record, check)
        log.info("restored %d live call(s) of %d candidate(s)", len(self._calls), len(candidates))

    async def _restore_one(self, record: CallRecord, check: asyncio.Task[Any] | None) -> None:
        max_ms = self.settings.max_duration_seconds * 1000
        now = now_ms()
        if check is None:
            if not record.provider_call_id:
                reason, detail = EndReason.FAILED, "gateway restarted before the carrier accepted the call"
            else:
                reason, detail = EndReason.TIMEOUT, "maximum duration passed while the gateway was down"
            end_record(record, reason, now, detail)
            await self._persist(record)
            if record.provider_call_id:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.provider.hangup_call(record, reason),
                                           HANGUP_TIMEOUT_S)
            return
        try:
            status = await check
        except Exception as exc:  # unknown: keep the call, the carrier may still have it
            log.warning("call %s: status check failed on restore (%s); keeping it",
                        record.call_id, exc)
            status = None
        if status is not None and status.is_terminal:
            end_record(record, status.end_reason or EndReason.COMPLETED, now,
                       f"carrier reported {status.status} after restart")
            await self._persist(record)
            return
        self._calls[record.call_id] = record
        assert record.provider_call_id is not None
        self._by_provider[record.provider_call_id] = record.call_id
        if record.answered_at is not None:
            remaining = max_ms - (now - record.answered_at)
            if remaining <= 0:
                await self.end(record.call_id, EndReason.TIMEOUT,
                               detail=f"maximum duration of {self.settings.max_duration_seconds} s reached")
                return
            self._start_max_duration(record, remaining)
            if record.metadata.get("initialMessage"):
                self._spawn(self._greet(record.call_id), f"greet:{record.call_id}")
            elif record.mode == "notify" and record.direction == "outbound":
                self._schedule_notify_hangup(record)
        else:
            ring_left = self.settings.ring_timeout_ms + RING_GRACE_MS - (now - record.started_at)
            cid = record.call_id
            self._timers.schedule(cid, "ring", max(0, ring_left) / 1000,
                                  lambda: self._ring_timeout(cid))

    def timers_for(self, call_id: str) -> list[str]:
        return self._timers.pending(call_id)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reaper_interval_s)
            try:
                await self.reap_stale()
            except Exception:
                log.exception("stale-call reaper failed")

    async def reap_stale(self) -> int:
        """End calls that never got answered within `staleCallReaperSeconds` (SPEC Q4)."""
        threshold = self.settings.stale_call_reaper_seconds * 1000
        now = now_ms()
        reaped = 0
        for record in list(self._calls.values()):
            stale = (record.answered_at is None and not record.is_terminal
                     and record.state not in (CallState.SPEAKING, CallState.LISTENING)
                     and now - record.started_at > threshold)
            if stale and await self.end(record.call_id, EndReason.TIMEOUT,
                                        detail=f"stale: not answered within "
                                               f"{self.settings.stale_call_reaper_seconds} s"):
                reaped += 1
        return reaped


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


AnyCallable = Callable[..., Any]
