"""Transfer on a streamed Twilio call (D46), end to end through the Twilio simulator's media
client: the media stream closes for the `<Dial>` without ending the call; when nobody answers,
the `<Dial>` action starts a new stream on which the agent says `transfer.unavailableMessage`
and the call goes on; when the person answers, the call ends `transferred`. The new stream gets
a full disconnect grace from when the transfer gave up, and a call whose stream never comes back
ends (D95)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import call_ended, eventually, free_port
from tests.integration.test_media_e2e import (
    CALLEE,
    best_correlation,
    heard_speech,
    place,
    streaming_config,
    telephone_version,
)
from voicecall.calls.model import CallRecord
from voicecall.gateway.runtime import Runtime
from voicecall.media.hub import DISCONNECT_GRACE_S
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator

DESK = "+15557770099"
RING_S = 15
"""The `<Dial>`'s ring: 3 s at the simulator's pace, longer than the media hub's 2 s grace for a
closed stream (`media.hub.DISCONNECT_GRACE_S`), which a call being transferred must outlive."""
HANDOFF = "Putting you through now."
UNAVAILABLE = "Nobody could take the call, but I am still here to help you"
"""One sentence: spoken as one utterance, so its audio is one piece of the fake TTS."""


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    async with TwilioSimulator(time_scale=0.2) as simulator:  # sim.sleep: a fifth of real time
        yield simulator


@pytest.fixture
async def gateway(tmp_path: Path, sim: TwilioSimulator, speech: FakeSpeech,
                  stt: FakeRealtimeTranscription) -> AsyncIterator[Runtime]:
    config = streaming_config(sim, speech, stt, free_port(),
                              transfer={"allowedNumbers": [DESK], "timeoutSec": RING_S,
                                        "unavailableMessage": UNAVAILABLE})
    async with running_gateway(tmp_path, config) as runtime:
        yield runtime


def tool_lines(record: CallRecord) -> list[str]:
    return [t.text for t in record.transcript if t.speaker == "tool"]


def test_the_ring_outlasts_the_grace_for_a_closed_stream(sim: TwilioSimulator) -> None:
    assert RING_S * sim.time_scale > DISCONNECT_GRACE_S


@pytest.mark.slow
async def test_an_unanswered_transfer_on_a_streamed_call_comes_back_on_a_new_stream_and_goes_on(
        gateway: Runtime, sim: TwilioSimulator, stt: FakeRealtimeTranscription) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    sim.script(DESK, Callee(outcome="no-answer"))
    record = await place(gateway, "Hello from the clinic.", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    call = sim.call(record.provider_call_id or "")
    first = call.active_stream
    assert first is not None
    before = len(first.received_audio)

    started = await gateway.api.call("voicecall.transfer", {"callId": record.call_id, "to": DESK,
                                                            "message": HANDOFF})
    assert started["status"] == "dialing"
    # the handoff is heard on the first stream, then that stream closes for the <Dial>...
    assert best_correlation(heard_speech(first.received_audio[before:]),
                            telephone_version(HANDOFF)) > 0.95
    await eventually(lambda: first.stopped_at is not None, 10)
    assert first.closed_by == "call" and not record.is_terminal and not call.is_ended
    await eventually(lambda: call.dials, 5)
    # ...nobody answers: a new stream connects and the agent says so on it
    await eventually(lambda: len(call.streams) == 2 and call.streams[1].started_at is not None, 15)
    second = call.streams[1]
    assert second is call.active_stream and second.stream_sid != first.stream_sid
    assert second.custom_parameters.get("token")
    await eventually(lambda: any(t.speaker == "bot" and t.text == UNAVAILABLE
                                 for t in record.transcript), 15)
    await eventually(lambda: record.state.value == "listening", 15)
    reference = telephone_version(UNAVAILABLE)
    heard = heard_speech(second.received_audio)
    assert abs(len(heard) - len(reference)) < 1600, (len(heard), len(reference))
    assert best_correlation(heard, reference) > 0.95
    assert [(d.number, d.status) for d in call.dials] == [(DESK, "no-answer")]
    assert record.metadata["transfer"]["status"] == "no-answer"
    assert tool_lines(record) == [f"transfer to {DESK}: dialing", f"transfer to {DESK}: no-answer"]

    # the call goes on over the new stream: a turn works as before
    stt.say("Okay, I will call back", after_bytes=8000)
    answer = await gateway.api.call("voicecall.continue", {"callId": record.call_id,
                                                           "message": "Anything else?"})
    assert answer["transcript"] == "Okay, I will call back"
    assert not record.is_terminal and call.active_stream is second
    assert (await gateway.api.call("voicecall.end", {"callId": record.call_id}))["success"]
    final = await call_ended(gateway, record.call_id, within=10)
    assert final.end_reason == "hangup-bot"


async def test_an_answered_transfer_on_a_streamed_call_ends_it_transferred(
        gateway: Runtime, sim: TwilioSimulator) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    sim.script(DESK, Callee(answer_after_s=0.5, hangup_after_s=RING_S))  # bridged 3 s
    record = await place(gateway, "Hello from the clinic.", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    call = sim.call(record.provider_call_id or "")
    first = call.active_stream
    assert first is not None
    await gateway.api.call("voicecall.transfer", {"callId": record.call_id, "to": DESK,
                                                  "message": HANDOFF})
    await eventually(lambda: first.stopped_at is not None, 10)
    assert not record.is_terminal
    await eventually(lambda: record.metadata["transfer"]["status"] == "bridged", 10)
    assert not record.is_terminal  # bridged: the stream is gone, the call is not
    final = await call_ended(gateway, record.call_id, within=15)
    assert final.state.value == final.end_reason == "transferred"
    assert tool_lines(final) == [f"transfer to {DESK}: dialing", f"transfer to {DESK}: bridged",
                                 f"transfer to {DESK}: completed"]
    assert [(d.number, d.status) for d in call.dials] == [(DESK, "completed")]
    assert len(call.streams) == 1  # no stream again after a completed transfer
    await call.wait_ended()


async def test_a_transfer_given_up_just_before_the_grace_ends_leaves_its_new_stream_a_full_grace(
        gateway: Runtime, sim: TwilioSimulator) -> None:
    assert gateway.media is not None
    gateway.media.grace_s = 1.0
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    sim.script(DESK, Callee(outcome="busy", answer_after_s=0.8 / sim.time_scale))  # 0.8 s in
    record = await place(gateway, "Hello from the clinic.", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    call = sim.call(record.provider_call_id or "")
    first = call.active_stream
    assert first is not None
    await gateway.api.call("voicecall.transfer", {"callId": record.call_id, "to": DESK})
    await eventually(lambda: first.stopped_at is not None, 10)
    call.callee.open_streams = False  # the new stream is opened below, slower than the simulator would
    await eventually(lambda: record.metadata["transfer"]["status"] == "busy", 10)
    gave_up = time.monotonic()
    # past the closed stream's grace, within a full grace from the transfer's end
    await asyncio.sleep(gave_up + 0.6 - time.monotonic())
    assert not record.is_terminal, record.end_reason
    held = (await eventually(lambda: sim.stream_entries([call]), 5))[0]
    url = call.streams[-1].url
    stream = sim.new_stream(call, url, custom_parameters=held["customParameters"], name=None,
                            bidirectional=True, track="inbound_track", status_callback=None,
                            status_callback_method="POST")
    opened = asyncio.create_task(sim.run_stream(call, stream))
    try:
        await eventually(lambda: any(t.text == UNAVAILABLE for t in record.transcript), 10)
        await eventually(lambda: record.state.value == "listening", 10)
        assert best_correlation(heard_speech(stream.record.received_audio),
                                telephone_version(UNAVAILABLE)) > 0.95
        assert not record.is_terminal and record.metadata["transfer"]["status"] == "busy"
        assert (await gateway.api.call("voicecall.end", {"callId": record.call_id}))["success"]
    finally:  # the carrier stops the stream when the call ends; this one is ours to stop
        opened.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opened


async def test_a_call_whose_stream_does_not_come_back_after_an_unanswered_transfer_ends(
        gateway: Runtime, sim: TwilioSimulator) -> None:
    assert gateway.media is not None
    gateway.media.grace_s = 0.5
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    sim.script(DESK, Callee(outcome="busy", answer_after_s=1.0 / sim.time_scale))  # 1 s: past the grace
    record = await place(gateway, "Hello from the clinic.", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    call = sim.call(record.provider_call_id or "")
    first = call.active_stream
    assert first is not None
    await gateway.api.call("voicecall.transfer", {"callId": record.call_id, "to": DESK})
    await eventually(lambda: first.stopped_at is not None, 10)
    call.callee.open_streams = False  # the `<Connect><Stream>` after the `<Dial>` never connects
    await eventually(lambda: record.metadata["transfer"]["status"] == "busy", 10)
    gave_up = time.monotonic()
    final = await call_ended(gateway, record.call_id, within=10)
    assert final.end_reason == "hangup-bot" and time.monotonic() - gave_up < 3
    assert len(call.streams) == 2 and call.streams[1].started_at is None
