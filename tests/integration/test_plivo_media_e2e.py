"""Plivo audio streams end to end: the Plivo simulator opens `<Stream bidirectional>` to the
gateway and speaks Plivo's WebSocket messages; the fake OpenAI TTS and realtime transcription
stand in for speech. Everything over real sockets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import eventually, free_port, openai_speech_settings, place_call
from tests.integration.plivo_setup import CALLEE, FRIEND, OUR_NUMBER, plivo_config
from voicecall.gateway.runtime import Runtime
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.plivo import Callee, PlivoSimulator


@pytest.fixture
async def sim() -> AsyncIterator[PlivoSimulator]:
    async with PlivoSimulator() as simulator:
        yield simulator


@pytest.fixture
async def gateway(tmp_path: Path, sim: PlivoSimulator, speech: FakeSpeech,
                  stt: FakeRealtimeTranscription) -> AsyncIterator[Runtime]:
    config = plivo_config(sim, free_port(), **openai_speech_settings(speech, stt))
    async with running_gateway(tmp_path, config) as runtime:
        yield runtime


async def test_streamed_notify_is_acknowledged_by_checkpoints_then_hung_up(
        gateway: Runtime, sim: PlivoSimulator) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    record = await place_call(gateway, CALLEE, "Your order has shipped.", "notify")
    call = sim.call(record.provider_call_id or "")
    stream = await call.wait_stream(timeout=10)
    assert stream.extra_headers.startswith("token=")
    await eventually(lambda: record.is_terminal, 15)
    assert record.end_reason == "completed"
    assert [(t.speaker, t.text) for t in record.transcript] == [("bot", "Your order has shipped.")]
    assert stream.checkpoints and stream.checkpoints == stream.played_checkpoints
    assert len(stream.played_audio) == len(stream.received_audio) > 1600  # heard, not cut
    assert '<Stream bidirectional="true" keepCallAlive="true"' in call.documents[0]
    assert await call.wait_ended() == "completed"


async def test_the_callers_words_reach_the_gateway_through_the_stream(
        gateway: Runtime, sim: PlivoSimulator, stt: FakeRealtimeTranscription) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    record = await place_call(gateway, CALLEE, "Hello from the clinic.", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    stt.say("Tuesday at noon works", after_bytes=8000)
    answer = await gateway.api.call("voicecall.continue", {"callId": record.call_id,
                                                           "message": "When can you come in?"})
    assert answer["transcript"] == "Tuesday at noon works"
    assert (await gateway.api.call("voicecall.end", {"callId": record.call_id}))["success"]


async def test_barge_in_sends_clear_audio_and_keeps_only_the_words_heard(
        gateway: Runtime, sim: PlivoSimulator, stt: FakeRealtimeTranscription) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    record = await place_call(gateway, CALLEE, "Hi.", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    stream = await sim.call(record.provider_call_id or "").wait_stream()
    long_text = ("This is a long announcement with many words in it so that the caller has "
                 "plenty of time to interrupt before it is over and done with")
    stt.say("Stop please", after_bytes=8000 * 6 // 10, speech_started=True)
    result = await gateway.api.call("voicecall.speak", {"callId": record.call_id,
                                                        "message": long_text})
    assert result.get("interrupted") is True
    assert stream.clears >= 1 and stream.clear_positions
    assert len(stream.received_audio) - stream.clear_positions[0] <= 160
    assert any(m.get("event") == "clearAudio" for m in stream.received)
    bot = [t.text for t in record.transcript if t.speaker == "bot"]
    assert bot[-1] and bot[-1] != long_text and long_text.startswith(bot[-1])


async def test_keys_pressed_on_a_streamed_call_arrive_as_dtmf_events(
        gateway: Runtime, sim: PlivoSimulator) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    record = await place_call(gateway, CALLEE, "Press a key.", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    sim.call(record.provider_call_id or "").press("7")

    async def logged_digits() -> list[str]:
        log = await gateway.service.store.last_log(1000)
        return [str(e.data.get("digits")) for e in log
                if e.call_id == record.call_id and e.data.get("type") == "call.dtmf"]

    assert await eventually(logged_digits, 5) == ["7"]
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_a_second_inbound_caller_holds_until_the_stream_is_free_then_streams(
        tmp_path: Path, sim: PlivoSimulator, speech: FakeSpeech,
        stt: FakeRealtimeTranscription) -> None:
    first_caller, second_caller = FRIEND, "+15557770002"
    config = plivo_config(sim, free_port(), allowFrom=[first_caller, second_caller],
                          inboundGreeting="Clinic, good morning.",
                          **openai_speech_settings(speech, stt))
    async with running_gateway(tmp_path, config) as gateway:
        first = await sim.place_inbound(first_caller, OUR_NUMBER, gateway.webhook_url)
        await first.wait_stream(timeout=10)
        second = await sim.place_inbound(second_caller, OUR_NUMBER, gateway.webhook_url)
        await second.wait_heard("Please hold while we connect you.", timeout=10)
        assert second.streams == []
        await first.hangup()
        stream = await second.wait_stream(timeout=10)
        assert stream.extra_headers.startswith("token=")
        record = await eventually(lambda: gateway.service.live(second.uuid), 5)
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
        assert stream.checkpoints and stream.played_checkpoints == stream.checkpoints
        await second.hangup()
