"""The pure state machine: terminal states absorb, no backward moves, speaking/listening cycle."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voicecall.calls.events import CallEvent
from voicecall.calls.machine import (
    MAX_PROCESSED_KEYS_PER_CALL,
    NO_WAITER,
    apply_event,
    remember_key,
    transition,
)
from voicecall.calls.model import LIVE_ORDER, TERMINAL_STATES, CallRecord, CallState, EndReason

states = st.sampled_from(list(CallState))
live_states = st.sampled_from(list(LIVE_ORDER))
RANK = {s: i for i, s in enumerate(LIVE_ORDER)}


def record(state: CallState = CallState.INITIATED) -> CallRecord:
    return CallRecord(call_id="c1", provider="mock", direction="outbound", state=state,
                      from_="+15550000000", to="+15555550123", started_at=1)


@given(st.sampled_from(sorted(TERMINAL_STATES)), states)
def test_terminal_states_absorb_every_transition(current: CallState, target: CallState) -> None:
    assert transition(current, target) == current


@given(live_states, states)
def test_transitions_never_move_backward_except_the_speaking_listening_cycle(
        current: CallState, target: CallState) -> None:
    result = transition(current, target)
    if result.is_terminal:
        assert result == target
    elif {current, result} <= {CallState.SPEAKING, CallState.LISTENING}:
        pass
    else:
        assert RANK[result] >= RANK[current]


@given(st.lists(states, max_size=30))
def test_any_sequence_of_targets_ends_terminal_once_terminal(targets: list[CallState]) -> None:
    state = CallState.INITIATED
    seen_terminal: CallState | None = None
    for target in targets:
        state = transition(state, target)
        if seen_terminal is not None:
            assert state == seen_terminal
        elif state.is_terminal:
            seen_terminal = state


def test_speaking_and_listening_cycle_both_ways() -> None:
    assert transition(CallState.SPEAKING, CallState.LISTENING) == CallState.LISTENING
    assert transition(CallState.LISTENING, CallState.SPEAKING) == CallState.SPEAKING


def test_backward_move_from_listening_to_answered_is_ignored() -> None:
    assert transition(CallState.LISTENING, CallState.ANSWERED) == CallState.LISTENING


event_types = st.sampled_from(["call.initiated", "call.ringing", "call.answered", "call.active",
                               "call.speaking", "call.speech", "call.silence", "call.dtmf",
                               "call.ended", "call.error"])


@given(st.lists(st.tuples(event_types, st.booleans()), max_size=25))
def test_event_application_keeps_invariants(events: list[tuple[str, bool]]) -> None:
    rec = record()
    ended_at: int | None = None
    for i, (kind, flag) in enumerate(events):
        before = rec.state
        ev = CallEvent.model_validate({"type": kind, "callId": "c1", "timestamp": 100 + i,
                                       "isFinal": flag, "retryable": flag,
                                       "transcript": f"t{i}"})
        apply_event(rec, ev)
        if before.is_terminal:
            assert rec.state == before
        if rec.is_terminal:
            assert rec.end_reason is not None and rec.end_reason.value == rec.state.value
            ended_at = ended_at or rec.ended_at
            assert rec.ended_at == ended_at


def test_final_speech_with_mismatched_turn_token_changes_nothing() -> None:
    rec = record(CallState.LISTENING)
    ev = CallEvent(type="call.speech", call_id="c1", transcript="stale", turn_token="old")
    applied = apply_event(rec, ev, waiter_token="new")
    assert applied.ignored and not applied.changed
    assert rec.transcript == [] and rec.state == CallState.LISTENING


def test_final_speech_with_matching_token_is_recorded_and_returned() -> None:
    rec = record(CallState.SPEAKING)
    ev = CallEvent(type="call.speech", call_id="c1", transcript="yes", turn_token="t1")
    applied = apply_event(rec, ev, waiter_token="t1")
    assert applied.final_speech == "yes"
    assert [e.text for e in rec.transcript] == ["yes"] and rec.state == CallState.LISTENING


def test_speech_without_a_waiter_is_recorded() -> None:
    rec = record(CallState.ANSWERED)
    apply_event(rec, CallEvent(type="call.speech", call_id="c1", transcript="hi"),
                waiter_token=NO_WAITER)
    assert [e.speaker for e in rec.transcript] == ["user"]


def test_partial_speech_moves_to_listening_without_a_transcript_entry() -> None:
    rec = record(CallState.ANSWERED)
    apply_event(rec, CallEvent(type="call.speech", call_id="c1", transcript="h", is_final=False))
    assert rec.transcript == [] and rec.state == CallState.LISTENING


def test_answered_sets_answered_at_once() -> None:
    rec = record(CallState.RINGING)
    first = apply_event(rec, CallEvent(type="call.answered", call_id="c1", timestamp=5))
    second = apply_event(rec, CallEvent(type="call.answered", call_id="c1", timestamp=9))
    assert first.answered and not second.answered and rec.answered_at == 5


def test_retryable_error_is_not_marked_processed_and_changes_nothing() -> None:
    rec = record(CallState.ANSWERED)
    applied = apply_event(rec, CallEvent(type="call.error", call_id="c1", retryable=True))
    assert not applied.mark_processed and rec.state == CallState.ANSWERED


def test_non_retryable_error_ends_the_call_with_reason_error() -> None:
    rec = record(CallState.ANSWERED)
    apply_event(rec, CallEvent(type="call.error", call_id="c1", error="boom", timestamp=7))
    assert rec.state == CallState.ERROR and rec.end_reason == EndReason.ERROR
    assert rec.metadata["endDetail"] == "boom"


def test_processed_keys_are_bounded_per_call_keeping_the_newest() -> None:
    rec = record()
    for i in range(MAX_PROCESSED_KEYS_PER_CALL + 10):
        remember_key(rec, f"k{i}")
    assert len(rec.processed_event_ids) == MAX_PROCESSED_KEYS_PER_CALL
    assert rec.processed_event_ids[-1] == f"k{MAX_PROCESSED_KEYS_PER_CALL + 9}"
    assert "k0" not in rec.processed_event_ids


def test_restore_puts_back_keys_that_remembering_dropped() -> None:
    rec = record()
    for i in range(5):
        rec.remember_processed(f"k{i}", keep=5)
    before = rec.snapshot()
    for i in range(5, 12):  # more than the keys there were: every one of them is dropped
        rec.remember_processed(f"k{i}", keep=5)
    assert rec.processed_event_ids == [f"k{i}" for i in range(7, 12)]
    rec.restore(before)
    assert rec.processed_event_ids == [f"k{i}" for i in range(5)]
    assert rec.has_processed("k0") and not rec.has_processed("k5")


def test_restore_undoes_an_applied_event_including_nested_metadata_changes() -> None:
    rec = record(CallState.ANSWERED)
    rec.metadata["route"] = {"voice": "alloy"}
    remember_key(rec, "k0")
    before = rec.snapshot()
    apply_event(rec, CallEvent(type="call.speech", call_id="c1", transcript="hi", timestamp=3))
    remember_key(rec, "k1")
    rec.metadata["route"]["voice"] = "nova"  # an in-place change of a nested value
    apply_event(rec, CallEvent(type="call.error", call_id="c1", error="boom", timestamp=4))
    rec.restore(before)
    assert rec.state == CallState.ANSWERED and rec.transcript == [] and rec.end_reason is None
    assert rec.processed_event_ids == ["k0"] and rec.has_processed("k0")
    assert not rec.has_processed("k1") and rec.metadata == {"route": {"voice": "alloy"}}


def transfer_event(status: str, key: str = "t1") -> CallEvent:
    return CallEvent(type="call.transfer", call_id="c1", text=status, dedupe_key=key,
                     timestamp=5)


def test_a_bridged_transfer_ends_as_transferred_when_either_side_hangs_up() -> None:
    for last in (transfer_event("completed", "t2"),
                 CallEvent(type="call.ended", call_id="c1", reason=EndReason.COMPLETED,
                           dedupe_key="e1", timestamp=6)):
        rec = record(CallState.LISTENING)
        rec.metadata["transfer"] = {"to": "+15557770099", "status": "dialing"}
        assert apply_event(rec, transfer_event("bridged")).changed
        assert rec.metadata["transfer"]["bridgedAt"] == 5 and not rec.is_terminal
        applied = apply_event(rec, last)
        assert applied.ended and rec.end_reason == EndReason.TRANSFERRED
        assert rec.state == CallState.TRANSFERRED


def test_an_unanswered_transfer_leaves_the_call_live_and_listening() -> None:
    rec = record(CallState.SPEAKING)
    rec.metadata["transfer"] = {"to": "+15557770099", "status": "dialing"}
    applied = apply_event(rec, transfer_event("no-answer"))
    assert applied.changed and not applied.ended
    assert rec.state == CallState.LISTENING and rec.metadata["transfer"]["noAnswerAt"] == 5


def test_a_transfer_event_without_a_transfer_or_with_an_unknown_status_is_ignored() -> None:
    rec = record(CallState.LISTENING)
    assert apply_event(rec, transfer_event("completed")).ignored
    rec.metadata["transfer"] = {"to": "+15557770099", "status": "dialing"}
    assert apply_event(rec, transfer_event("exploded")).ignored
    assert not rec.is_terminal
