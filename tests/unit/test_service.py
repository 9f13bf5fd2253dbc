"""CallService against the mock carrier and a real SQLite store (no sockets): call flows,
timers, the slot limit, and restore after a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from voicecall.calls.model import CallRecord, CallState, EndReason
from voicecall.providers.base import ProviderCallStatus
from voicecall.providers.mock import MockBehaviour, MockProvider
from voicecall.service import CallError, CallService, ServiceSettings
from voicecall.shared.clock import now_ms
from voicecall.store import SQLiteCallStore

FAST = MockBehaviour(answer_after_ms=30, ring_ms=5, speak_ms_per_char=1)
SETTINGS = ServiceSettings(max_concurrent_calls=5, notify_hangup_delay_sec=0.2)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteCallStore]:
    async with SQLiteCallStore(tmp_path) as s:
        yield s


async def make(store: SQLiteCallStore, behaviour: MockBehaviour = FAST,
               settings: ServiceSettings = SETTINGS) -> tuple[CallService, MockProvider]:
    provider = MockProvider(behaviour)
    service = CallService(settings, provider, store, webhook_url="http://127.0.0.1/voice/webhook")
    await service.start()
    return service, provider


async def until(predicate: Callable[[], Any], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def listening_for_turn(service: CallService, provider: MockProvider, rec: CallRecord) -> bool:
    """The pending `continue` is listening: injected speech now answers it."""
    token = service.turn_token(rec.call_id)
    return token is not None and provider.listening_for(rec.provider_call_id or "") == token


async def ended(service: CallService, call_id: str, within: float = 5.0) -> CallRecord:
    result: list[CallRecord] = []

    async def check() -> bool:
        rec = await service.get_call(call_id)
        if rec and rec.is_terminal and service.live(call_id) is None:  # persisted and finalized
            result.append(rec)
            return True
        return False

    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"call {call_id} did not end in time")
        await asyncio.sleep(0.02)
    return result[0]


async def test_notify_call_speaks_once_then_hangs_up_after_playback_plus_delay(
        store: SQLiteCallStore) -> None:
    service, provider = await make(store)
    rec = await service.initiate("+15555550123", "Your table is ready", mode="notify")
    final = await ended(service, rec.call_id)
    assert final.state == CallState.COMPLETED and final.end_reason == EndReason.COMPLETED
    assert provider.heard(f"mock-{rec.call_id}") == ["Your table is ready"]
    assert [e.text for e in final.transcript] == ["Your table is ready"]
    spoken_at = final.metadata["initialMessageSpokenAt"]
    assert final.ended_at is not None and final.ended_at - spoken_at >= 200
    history = [h["state"] for h in await store.state_history(rec.call_id)]
    assert history[:3] == ["initiated", "ringing", "answered"] and history[-1] == "completed"
    await service.stop()


@pytest.mark.parametrize("outcome,reason", [("busy", EndReason.BUSY),
                                            ("failed", EndReason.FAILED),
                                            ("no-answer", EndReason.NO_ANSWER)])
async def test_unanswered_outcomes_end_with_their_reason_and_free_the_slot(
        store: SQLiteCallStore, outcome: str, reason: EndReason) -> None:
    service, _ = await make(store, replace(FAST, outcome=outcome),  # type: ignore[arg-type]
                            replace(SETTINGS, ring_timeout_ms=100, max_concurrent_calls=1))
    rec = await service.initiate("+15555550123", "hi", mode="notify")
    final = await ended(service, rec.call_id)
    assert final.end_reason == reason and final.answered_at is None
    assert service.active_calls() == []
    await service.initiate("+15555550123", "again", mode="notify")  # the slot is free
    await service.stop()


async def test_ring_timeout_ends_a_call_the_carrier_never_reports_on(store: SQLiteCallStore) -> None:
    service, _ = await make(store, replace(FAST, answer_after_ms=60_000),
                            replace(SETTINGS, ring_timeout_ms=1, ring_grace_ms=50))
    rec = await service.initiate("+15555550123", "hi")
    final = await ended(service, rec.call_id)
    assert final.end_reason == EndReason.NO_ANSWER
    assert "not answered" in final.metadata["endDetail"]
    await service.stop()


async def test_max_duration_ends_the_call_with_state_and_reason_timeout(store: SQLiteCallStore) -> None:
    service, _ = await make(store, settings=replace(SETTINGS, max_duration_seconds=1))
    rec = await service.initiate("+15555550123", "hi", mode="conversation")
    final = await ended(service, rec.call_id, within=4)
    assert final.state == CallState.TIMEOUT and final.end_reason == EndReason.TIMEOUT
    assert final.ended_at is not None and final.answered_at is not None
    assert final.ended_at - final.answered_at >= 1000
    await service.stop()


async def test_max_concurrent_calls_is_enforced_atomically(store: SQLiteCallStore) -> None:
    service, _ = await make(store, replace(FAST, answer_after_ms=60_000),
                            replace(SETTINGS, max_concurrent_calls=3))
    results = await asyncio.gather(*(service.initiate("+15555550123", "hi") for _ in range(50)),
                                   return_exceptions=True)
    ok = [r for r in results if isinstance(r, CallRecord)]
    errors = [r for r in results if isinstance(r, CallError)]
    assert len(ok) == 3 and len(errors) == 47
    assert all("Maximum concurrent calls (3) reached" in str(e) for e in errors)
    await service.stop()


async def test_invalid_numbers_and_dtmf_are_refused_with_clear_errors(store: SQLiteCallStore) -> None:
    service, _ = await make(store)
    with pytest.raises(CallError, match=r"E\.164"):
        await service.initiate("5555550123", "hi")
    with pytest.raises(CallError, match="dtmfSequence"):
        await service.initiate("+15555550123", "hi", dtmf_sequence="12x")
    assert service.active_calls() == []
    await service.stop()


async def test_continue_returns_the_scripted_reply_and_records_turn_latency(
        store: SQLiteCallStore) -> None:
    service, _ = await make(store, replace(FAST, caller_replies=("Tuesday works",)))
    rec = await service.initiate("+15555550123", "Hello", mode="conversation")
    await until(lambda: rec.answered_at is not None and "initialMessage" not in rec.metadata)
    assert await service.continue_call(rec.call_id, "When can you come?") == "Tuesday works"
    assert rec.metadata["turnCount"] == 1
    assert rec.metadata["lastTurnLatencyMs"] >= rec.metadata["lastTurnListenWaitMs"] >= 0
    turns = await store.last_log(10, kinds=("turn",))
    assert len(turns) == 1 and turns[0].data["turnLatencyMs"] == rec.metadata["lastTurnLatencyMs"]
    assert [(e.speaker, e.text) for e in rec.transcript] == [
        ("bot", "Hello"), ("bot", "When can you come?"), ("user", "Tuesday works")]
    await service.stop()


async def test_continue_times_out_with_the_documented_message_and_the_call_stays_usable(
        store: SQLiteCallStore) -> None:
    service, provider = await make(store, settings=replace(SETTINGS, transcript_timeout_ms=150))
    rec = await service.initiate("+15555550123", "Hello", mode="conversation")
    await until(lambda: rec.answered_at is not None)
    with pytest.raises(CallError, match="Timed out waiting for transcript after 150ms"):
        await service.continue_call(rec.call_id, "Anyone there?")
    assert not rec.is_terminal
    task = asyncio.create_task(service.continue_call(rec.call_id, "Still there?"))
    await until(lambda: listening_for_turn(service, provider, rec))
    await provider.inject(rec.provider_call_id or "", speech="yes")
    assert await task == "yes"
    await service.stop()


async def test_call_hung_up_by_the_callee_fails_the_pending_continue(store: SQLiteCallStore) -> None:
    service, provider = await make(store)
    rec = await service.initiate("+15555550123", "Hello", mode="conversation")
    await until(lambda: rec.answered_at is not None)
    task = asyncio.create_task(service.continue_call(rec.call_id, "Question?"))
    await until(lambda: listening_for_turn(service, provider, rec))
    await provider.inject(rec.provider_call_id or "", hangup=True)
    with pytest.raises(CallError, match="Call ended: hangup-user"):
        await task
    assert rec.state == CallState.HANGUP_USER
    await service.stop()


async def test_only_one_continue_waits_per_call(store: SQLiteCallStore) -> None:
    service, provider = await make(store)
    rec = await service.initiate("+15555550123", "Hello", mode="conversation")
    await until(lambda: rec.answered_at is not None)
    first = asyncio.create_task(service.continue_call(rec.call_id, "One?"))
    await until(lambda: (call := service.calls.get(rec.call_id)) is not None and call.in_turn)
    with pytest.raises(CallError, match="Already waiting for transcript"):
        await service.continue_call(rec.call_id, "Two?")
    await until(lambda: listening_for_turn(service, provider, rec))
    await provider.inject(rec.provider_call_id or "", speech="one")
    assert await first == "one"
    await service.stop()


async def test_end_works_before_the_carrier_id_is_known(store: SQLiteCallStore) -> None:
    release = asyncio.Event()
    service, provider = await make(store)

    async def slow_dial(request: Any) -> str:
        await release.wait()
        return "late-id"

    provider.initiate_call = slow_dial  # type: ignore[method-assign]
    placing = asyncio.create_task(service.initiate("+15555550123", "hi"))
    await until(lambda: len(service.active_calls()) == 1)
    call_id = service.active_calls()[0].call_id
    assert await service.end(call_id) is True
    release.set()
    rec = await placing
    assert rec.state == CallState.HANGUP_BOT and service.active_calls() == []
    await service.stop()


async def test_failed_dial_ends_failed_and_frees_the_slot(store: SQLiteCallStore) -> None:
    service, provider = await make(store, settings=replace(SETTINGS, max_concurrent_calls=1))
    original = provider.initiate_call

    async def broken(request: Any) -> str:
        raise RuntimeError("carrier said 500")

    provider.initiate_call = broken  # type: ignore[method-assign]
    with pytest.raises(CallError, match="carrier said 500") as info:
        await service.initiate("+15555550123", "hi")
    failed = await service.get_call(info.value.call_id or "")
    assert failed is not None and failed.state == CallState.FAILED
    provider.initiate_call = original  # type: ignore[method-assign]
    await service.initiate("+15555550123", "hi")
    await service.stop()


async def test_reaper_ends_only_stale_unanswered_calls(store: SQLiteCallStore) -> None:
    service, _ = await make(store, replace(FAST, answer_after_ms=60_000),
                            replace(SETTINGS, stale_call_reaper_seconds=1))
    stale = await service.initiate("+15555550123", "hi")
    answered_service_call = await service.initiate("+15555550124", "hi", mode="conversation")
    answered_service_call.answered_at = now_ms()  # pretend it was answered
    stale.started_at -= 5_000
    answered_service_call.started_at -= 5_000
    assert await service.reap_stale() == 1
    assert stale.end_reason == EndReason.TIMEOUT and "stale" in stale.metadata["endDetail"]
    assert not answered_service_call.is_terminal
    await service.stop()


async def test_restore_resumes_max_duration_with_the_remaining_time(store: SQLiteCallStore) -> None:
    service, _ = await make(store, settings=replace(SETTINGS, max_duration_seconds=2))
    rec = await service.initiate("+15555550123", "Hello", mode="conversation")
    await until(lambda: "initialMessageSpokenAt" in rec.metadata)
    await service.stop()  # the "crash": nothing ends the call
    await asyncio.sleep(0.5)
    service2, _ = await make(store, settings=replace(SETTINGS, max_duration_seconds=2))
    restored = service2.live(rec.call_id)
    assert restored is not None and restored.transcript[0].text == "Hello"
    assert restored.processed_event_ids == rec.processed_event_ids
    assert "max-duration" in service2.timers_for(rec.call_id)
    final = await ended(service2, rec.call_id, within=3)
    assert final.end_reason == EndReason.TIMEOUT
    assert final.ended_at is not None and final.answered_at is not None
    assert 2000 <= final.ended_at - final.answered_at < 2600  # remaining time, not a fresh 2 s
    await service2.stop()


async def test_restore_marks_overdue_unconnected_and_carrier_ended_calls(
        store: SQLiteCallStore) -> None:
    base = dict(provider="mock", direction="outbound", from_="+15550000000", to="+15555550123")
    overdue = CallRecord(call_id="a", state=CallState.ANSWERED, started_at=now_ms() - 400_000,
                         provider_call_id="mock-a", answered_at=now_ms() - 399_000, **base)
    unplaced = CallRecord(call_id="b", state=CallState.INITIATED, started_at=now_ms(), **base)
    gone = CallRecord(call_id="c", state=CallState.ANSWERED, started_at=now_ms(),
                      provider_call_id="mock-c", answered_at=now_ms(), **base)
    for rec in (overdue, unplaced, gone):
        await store.save(rec)
    provider = MockProvider(FAST)

    async def status(call: CallRecord) -> ProviderCallStatus:
        return ProviderCallStatus("completed", is_terminal=True, end_reason=EndReason.COMPLETED)

    provider.get_call_status = status  # type: ignore[method-assign]
    service = CallService(SETTINGS, provider, store, webhook_url="http://x")
    await service.start()
    assert service.active_calls() == []
    states = {c: (await store.get(c)).state for c in "abc"}  # type: ignore[union-attr]
    assert states == {"a": CallState.TIMEOUT, "b": CallState.FAILED, "c": CallState.COMPLETED}
    await service.stop()


async def test_dtmf_sequence_is_sent_before_the_greeting(store: SQLiteCallStore) -> None:
    service, provider = await make(store)
    rec = await service.initiate("+15555550123", "Hello", mode="conversation",
                                 dtmf_sequence="ww1234#")
    await until(lambda: "initialMessageSpokenAt" in rec.metadata)
    assert provider.digits_heard(rec.provider_call_id or "") == ["ww1234#"]
    await service.stop()


async def test_inbound_call_rejected_by_policy_is_hung_up_once(store: SQLiteCallStore) -> None:
    from voicecall.calls.events import CallEvent

    service, provider = await make(store, settings=replace(
        SETTINGS, inbound_policy="allowlist", allow_from=("+15550001111",)))
    hangups: list[str] = []

    async def hangup(call: CallRecord, reason: EndReason) -> None:
        hangups.append(call.provider_call_id or "")

    provider.hangup_call = hangup  # type: ignore[method-assign]
    for i in range(3):
        await service.apply_events([CallEvent.model_validate({
            "type": "call.initiated", "callId": "CA1", "providerCallId": "CA1", "id": f"e{i}",
            "direction": "inbound", "from": "+15559990000", "to": "+15550000000"})])
    assert hangups == ["CA1"] and service.active_calls() == []
    await service.stop()


async def test_wait_for_change_wakes_on_a_persist_and_returns_at_once_when_already_changed(
        store: SQLiteCallStore) -> None:
    service, _ = await make(store)
    start = await service.wait_for_change(-1, 0)
    began = time.monotonic()
    assert await service.wait_for_change(start, 0.05) == start  # nothing persisted: the timeout
    assert time.monotonic() - began >= 0.04
    waiters = [asyncio.create_task(service.wait_for_change(start, 5)) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)
    began = time.monotonic()
    await service.initiate("+15555550123", "Hi")
    versions = await asyncio.gather(*waiters)
    assert time.monotonic() - began < 2 and all(v > start for v in versions)
    assert await service.wait_for_change(start, 5) > start  # already changed: no wait
    await service.stop()


async def test_a_failed_speak_names_its_cause_even_when_the_error_has_no_text(
        store: SQLiteCallStore) -> None:
    service, provider = await make(store)
    rec = await service.initiate("+15555550123", "Hello", mode="conversation")
    await until(lambda: "initialMessageSpokenAt" in rec.metadata)

    async def unconfirmed(call: CallRecord, text: str) -> None:
        raise TimeoutError  # what a playback confirmation that never came looks like

    provider.play_tts = unconfirmed  # type: ignore[method-assign]
    with pytest.raises(CallError) as info:
        await service.speak(rec.call_id, "Are you there?")
    assert str(info.value).startswith("speak failed: ")
    assert str(info.value).removeprefix("speak failed: ").strip()  # a cause, never empty
    assert rec.state == CallState.LISTENING and not rec.is_terminal
    await service.stop()


async def test_speech_asked_for_before_an_answer_that_never_comes_is_never_played(
        store: SQLiteCallStore) -> None:
    service, provider = await make(store, replace(FAST, answer_after_ms=60_000),
                                   replace(SETTINGS, ring_timeout_ms=200, ring_grace_ms=50))
    rec = await service.initiate("+15555550123", "Hello", mode="conversation")
    with pytest.raises(CallError, match="Call ended: no-answer"):
        await asyncio.wait_for(service.continue_call(rec.call_id, "How are you?"), 5)
    assert provider.heard(rec.provider_call_id or "") == []
    assert [e.text for e in rec.transcript] == []
    await service.stop()


async def test_speak_and_keys_play_in_the_order_asked_for_after_the_opening(
        store: SQLiteCallStore) -> None:
    service, provider = await make(store, replace(FAST, answer_after_ms=100))
    rec = await service.initiate("+15555550123", "Hello", mode="conversation",
                                 dtmf_sequence="9")
    played: list[str] = []
    say, press = provider.play_tts, provider.send_dtmf

    async def said(call: CallRecord, text: str) -> None:
        await say(call, text)
        played.append(text)

    async def pressed(call: CallRecord, digits: str) -> None:
        await press(call, digits)
        played.append(f"keys {digits}")

    provider.play_tts = said  # type: ignore[method-assign]
    provider.send_dtmf = pressed  # type: ignore[method-assign]
    asked = [asyncio.create_task(service.speak(rec.call_id, "One")),  # all before the answer
             asyncio.create_task(service.send_dtmf(rec.call_id, "42")),
             asyncio.create_task(service.speak(rec.call_id, "Two"))]
    await asyncio.wait_for(asyncio.gather(*asked), 5)
    assert rec.answered_at is not None
    assert played == ["keys 9", "Hello", "One", "keys 42", "Two"]
    assert [e.text for e in rec.transcript] == ["Hello", "One", "Two"]
    await service.stop()


async def test_an_answer_told_twice_says_speech_is_due_until_the_opening_has_played(
        store: SQLiteCallStore) -> None:
    """A status callback may answer the call before the answer webhook arrives (D45): the
    second answer still carries `speech_due` while the opening is on its way, so the answer
    webhook waits for it; once it has played, nothing more is due on a notify call."""
    from voicecall.calls.events import CallEvent

    service, _ = await make(store, replace(FAST, speak_ms_per_char=20))
    rec = await service.initiate("+15555550123", "Your order has shipped", mode="notify")
    await until(lambda: rec.answered_at is not None)  # the carrier's status callback, say

    async def answered(key: str) -> bool:
        event = CallEvent(type="call.answered", call_id=rec.call_id, dedupe_key=key,
                          timestamp=1)
        return (await service.apply_events([event]))[0].speech_due

    assert await answered("answer-webhook") is True  # the opening is still playing
    await until(lambda: "initialMessageSpokenAt" in rec.metadata)
    assert await answered("late-duplicate") is False
    await service.stop()


async def test_a_call_that_has_ended_but_is_still_being_written_frees_its_place_at_once(
        store: SQLiteCallStore) -> None:
    """`maxConcurrentCalls` counts calls not ended: a call whose end is still being persisted
    (terminal, not yet dropped from the live calls) no longer holds a place."""
    service, _ = await make(store, settings=replace(SETTINGS, max_concurrent_calls=1))
    first = await service.initiate("+15555550123", "hi", mode="notify")
    first.state = CallState.COMPLETED  # as apply_event leaves it before the write completes
    second = await service.initiate("+15555550123", "again", mode="notify")
    assert second.call_id != first.call_id
    await service.stop()
