"""The `mock` carrier: a simulated phone network for development with no network at all.

A placed call rings, then answers (or ends busy / no-answer / failed); speaking takes time in
proportion to the text (only once the callee answered, and newer speech or keys cut it off, as
on a real carrier); listening yields the next scripted caller reply or waits for speech
injected with `inject` (the `mock.inject` RPC). Mock webhooks carry normalized events as JSON
and are unsigned: the hash of the body is their request key, so a replayed body is recognised,
and an outbound event may only name a call the gateway placed (D66).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from voicecall.calls.events import EVENT_TYPES, CallEvent
from voicecall.calls.model import CallRecord, EndReason
from voicecall.providers.base import (
    DialRequest,
    EventOutcome,
    ParsedWebhook,
    ProviderCallStatus,
    ProviderContext,
    ProviderError,
    TransferRequest,
    Verification,
    WebhookParseError,
    WebhookRequest,
)
from voicecall.providers.streams import MediaStreams
from voicecall.shared import bounded_json
from voicecall.shared.clock import now_ms

log = logging.getLogger(__name__)

MockOutcome = Literal["answer", "busy", "no-answer", "failed"]
MIN_SPEAK_MS = 200
REPLY_DELAY_MS = 150


def _raw_events(body: bytes) -> list[Any]:
    """The event objects of a mock webhook body, not yet validated."""
    try:
        payload = bounded_json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookParseError(f"invalid JSON body: {exc}") from exc
    if isinstance(payload, dict) and isinstance(payload.get("events"), list):
        return list(payload["events"])
    if isinstance(payload, dict) and isinstance(payload.get("event"), dict):
        return [payload["event"]]
    raise WebhookParseError('body must be {"events": [...]} or {"event": {...}}')


def _parse_event(raw: Any, index: int) -> CallEvent | None:
    """One event object as a `CallEvent`; None for something that is not a known event type."""
    if not isinstance(raw, dict) or raw.get("type") not in EVENT_TYPES:
        return None
    if not raw.get("callId"):
        raise WebhookParseError(f"events[{index}]: callId is required")
    try:
        return CallEvent.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise WebhookParseError(f"events[{index}].{loc}: {first['msg']}") from exc


@dataclass(frozen=True, slots=True)
class MockBehaviour:
    """How the simulated callee behaves (from the `mock` config block)."""

    answer_after_ms: int = 300
    ring_ms: int = 100
    outcome: MockOutcome = "answer"
    caller_replies: tuple[str, ...] = ()
    speak_ms_per_char: int = 40
    transfer_outcome: MockOutcome = "answer"
    """How the person a call is transferred to answers."""
    transfer_talk_ms: int = 1000
    """How long the transferred call talks with that person before they hang up."""


@dataclass(slots=True)
class _SimCall:
    provider_call_id: str
    call_id: str
    replies: deque[str]
    answered: bool = False
    ended: bool = False
    listen_token: str | None = None
    listening: bool = False
    heard: list[str] = field(default_factory=list)
    digits_heard: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    seq: int = 0
    playing: int = 0
    """Counts playbacks (speech and keys): a newer one cuts off the one in progress."""


class MockProvider:
    """In-process carrier simulation implementing the `Provider` interface."""

    name = "mock"
    required_headers: tuple[str, ...] = ()
    requires_public_webhook = False
    media_streams: MediaStreams | None = None

    def set_public_url(self, url: str) -> None:
        """The mock carrier needs no public URL."""

    def __init__(self, behaviour: MockBehaviour | None = None) -> None:
        self.behaviour = behaviour or MockBehaviour()
        self._calls: dict[str, _SimCall] = {}
        self._context: ProviderContext | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------
    def bind(self, context: ProviderContext) -> None:
        self._context = context

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for sim in self._calls.values():
            if sim.task and not sim.task.done():
                tasks.append(sim.task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- webhooks --------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest) -> Verification:
        """Mock webhooks are unsigned; the body hash is their identity, so replays are caught."""
        digest = hashlib.sha256(request.body).hexdigest()
        return Verification(True, f"mock:{digest}")

    def parse_webhook(self, request: WebhookRequest, verification: Verification) -> ParsedWebhook:
        """Accept `{"events": [...]}` or `{"event": {...}}` of normalized events; the reply is
        `{"ok": true, "events": <how many were accepted>}`."""
        events: list[CallEvent] = []
        for index, raw in enumerate(_raw_events(request.body)):
            event = _parse_event(raw, index)
            if event is None:
                continue  # unknown event types are ignored, as carriers add new ones
            if event.direction == "outbound" and not self._placed(event):
                # Unsigned: it may only drive calls this gateway placed, never start one (D66).
                raise WebhookParseError(f"events[{index}]: {event.call_id} is not a call this "
                                        "gateway placed")
            if not event.timestamp:
                event.timestamp = now_ms()
            if not event.dedupe_key and "id" not in raw:
                event.dedupe_key = f"{verification.request_key}:{index}"
            events.append(event)
        reply = json.dumps({"ok": True, "events": len(events)})
        return ParsedWebhook(events, reply, {"content-type": "application/json"})

    def _placed(self, event: CallEvent) -> bool:
        """The event names a live call of this gateway (by our id or the carrier's)."""
        context = self._context
        return context is not None and any(
            key and context.live(key) is not None for key in (event.call_id, event.provider_call_id))

    async def webhook_reply(self, request: WebhookRequest, parsed: ParsedWebhook,
                            outcomes: list[EventOutcome] | None) -> ParsedWebhook:
        return parsed  # mock webhooks get the same small JSON acknowledgement either way

    # -- commands --------------------------------------------------------------------------
    async def initiate_call(self, request: DialRequest) -> str:
        provider_call_id = f"mock-{request.call_id}"
        sim = _SimCall(provider_call_id, request.call_id, deque(self.behaviour.caller_replies))
        self._calls[provider_call_id] = sim
        sim.task = asyncio.create_task(self._run_call(sim, request.ring_timeout_ms))
        return provider_call_id

    async def hangup_call(self, call: CallRecord, reason: EndReason) -> None:
        sim = self._calls.get(call.provider_call_id or "")
        if sim is None:
            return
        sim.ended = True
        if sim.task and not sim.task.done() and sim.task is not asyncio.current_task():
            sim.task.cancel()

    async def play_tts(self, call: CallRecord, text: str) -> None:
        """Say `text` to the answered callee; like a real carrier, newer speech (or keys) sent
        before it finished cuts it off, and it fails."""
        sim = self._playable(call)
        mine = sim.playing
        duration = max(MIN_SPEAK_MS, len(text) * self.behaviour.speak_ms_per_char) / 1000
        await asyncio.sleep(duration)
        if sim.ended:
            raise ProviderError("mock: the callee hung up during playback")
        if sim.playing != mine:
            raise ProviderError("mock: cut off by newer speech or keys before it finished")
        sim.heard.append(text)

    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None:
        sim = self._live(call)
        sim.listening, sim.listen_token = True, turn_token
        if sim.replies:
            reply = sim.replies.popleft()
            self._spawn(self._say_later(sim, reply, turn_token))

    async def stop_listening(self, call: CallRecord) -> None:
        sim = self._calls.get(call.provider_call_id or "")
        if sim is not None:
            sim.listening, sim.listen_token = False, None

    async def send_dtmf(self, call: CallRecord, digits: str) -> None:
        self._playable(call).digits_heard.append(digits)

    async def transfer_call(self, call: CallRecord, request: TransferRequest) -> None:
        """Ring the person (for `answer_after_ms`), then bridge them for `transfer_talk_ms`, or
        report why they were not reached."""
        sim = self._live(call)
        sim.playing += 1  # the dial replaces whatever was playing
        sim.listening = False
        self._spawn(self._run_transfer(sim, request))

    async def _run_transfer(self, sim: _SimCall, request: TransferRequest) -> None:
        b = self.behaviour
        outcome = b.transfer_outcome
        ring_s = (request.timeout_s * 1000 if outcome == "no-answer" else b.answer_after_ms) / 1000
        await asyncio.sleep(ring_s)
        if sim.ended:
            return
        if outcome != "answer":
            await self._emit(sim, "call.transfer", text=outcome)
            return
        await self._emit(sim, "call.transfer", text="bridged")
        await asyncio.sleep(b.transfer_talk_ms / 1000)
        if not sim.ended:
            sim.ended = True
            await self._emit(sim, "call.transfer", text="completed")

    async def get_call_status(self, call: CallRecord) -> ProviderCallStatus:
        provider_call_id = call.provider_call_id or ""
        sim = self._calls.get(provider_call_id)
        if sim is None:
            # The simulated network outlived a gateway restart: adopt the call as in progress.
            call_id = provider_call_id.removeprefix("mock-")
            # The callee's place in the reply script died with the old process.
            sim = _SimCall(provider_call_id, call_id, deque(), answered=True)
            self._calls[provider_call_id] = sim
        if sim.ended:
            return ProviderCallStatus("completed", is_terminal=True, end_reason=EndReason.COMPLETED)
        return ProviderCallStatus("in-progress" if sim.answered else "ringing", is_terminal=False)

    # -- acting as the callee --------------------------------------------------------------
    async def inject(
        self, provider_call_id: str, *, speech: str | None = None, digits: str | None = None,
        hangup: bool = False,
    ) -> None:
        """Act as the callee: say something, press keys, or hang up."""
        sim = self._calls.get(provider_call_id)
        if sim is None:  # a call the gateway knows (e.g. inbound by webhook) the mock never saw
            sim = self._calls[provider_call_id] = _SimCall(
                provider_call_id, provider_call_id, deque(self.behaviour.caller_replies), answered=True)
        if sim.ended:
            raise ProviderError(f"mock: no live call {provider_call_id}")
        if speech:
            await self._emit(sim, "call.speech", transcript=speech, is_final=True,
                             turn_token=sim.listen_token if sim.listening else None)
        if digits:
            await self._emit(sim, "call.dtmf", digits=digits)
        if hangup:
            sim.ended = True
            await self._emit(sim, "call.ended", reason=EndReason.HANGUP_USER)

    def listening_for(self, provider_call_id: str) -> str | None:
        """The turn token the simulated carrier listens with (None when it does not listen):
        injected speech answers that turn. Speech injected before listening started carries
        no token, or an older turn's, and a waiting turn ignores it."""
        sim = self._calls.get(provider_call_id)
        return sim.listen_token if sim is not None and sim.listening else None

    def heard(self, provider_call_id: str) -> list[str]:
        """What the simulated callee heard, in order (for tests and debugging)."""
        sim = self._calls.get(provider_call_id)
        return list(sim.heard) if sim else []

    def digits_heard(self, provider_call_id: str) -> list[str]:
        sim = self._calls.get(provider_call_id)
        return list(sim.digits_heard) if sim else []

    # -- internals ---------------------------------------------------------------------------
    def _live(self, call: CallRecord) -> _SimCall:
        if not call.provider_call_id:
            raise ProviderError("mock: the call has no carrier id yet")
        sim = self._calls.get(call.provider_call_id)
        if sim is None:
            # A call the mock did not place (an inbound webhook, or one restored after a
            # restart): the simulated network adopts it as answered, with the reply script.
            sim = _SimCall(call.provider_call_id, call.call_id,
                           deque(self.behaviour.caller_replies), answered=True)
            self._calls[call.provider_call_id] = sim
        if sim.ended:
            raise ProviderError("mock: call has ended")
        return sim

    def _playable(self, call: CallRecord) -> _SimCall:
        """The callee about to hear something new (which cuts off what is playing); a callee
        who has not answered hears nothing."""
        sim = self._live(call)
        if not sim.answered:
            raise ProviderError("mock: the callee has not answered yet")
        sim.playing += 1
        return sim

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _say_later(self, sim: _SimCall, text: str, token: str | None) -> None:
        delay = REPLY_DELAY_MS + len(text) * self.behaviour.speak_ms_per_char // 2
        await asyncio.sleep(delay / 1000)
        if not sim.ended:
            await self._emit(sim, "call.speech", transcript=text, is_final=True, turn_token=token)

    async def _run_call(self, sim: _SimCall, ring_timeout_ms: int) -> None:
        b = self.behaviour
        await self._emit(sim, "call.initiated")
        await asyncio.sleep(b.ring_ms / 1000)
        await self._emit(sim, "call.ringing")
        if b.outcome == "no-answer":
            await asyncio.sleep(ring_timeout_ms / 1000)
            sim.ended = True
            await self._emit(sim, "call.ended", reason=EndReason.NO_ANSWER)
            return
        await asyncio.sleep(b.answer_after_ms / 1000)
        if b.outcome in ("busy", "failed"):
            sim.ended = True
            reason = EndReason.BUSY if b.outcome == "busy" else EndReason.FAILED
            await self._emit(sim, "call.ended", reason=reason)
            return
        sim.answered = True
        await self._emit(sim, "call.answered")

    async def _emit(self, sim: _SimCall, kind: str, **fields: Any) -> None:
        if self._context is None:
            log.warning("mock: no call service bound; dropping %s", kind)
            return
        sim.seq += 1
        event = CallEvent.model_validate({
            "type": kind, "callId": sim.call_id, "providerCallId": sim.provider_call_id,
            "timestamp": now_ms(), "dedupeKey": f"mock:{sim.provider_call_id}:{uuid.uuid4().hex}",
            **{k: v for k, v in fields.items()},
        })
        try:
            await self._context.emit([event])
        except Exception:  # a failing sink must not kill the simulation
            log.exception("mock: event sink failed for %s", kind)
