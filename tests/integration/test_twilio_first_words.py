"""First words without a round trip (D45): on Twilio without streaming, the outbound notify
message, the conversation's opening message, pre-connect keys and the inbound greeting go out in
the TwiML that answers the answer webhook itself, not in a REST update after the answer. Later
utterances keep using REST updates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import call_ended, eventually, free_port, place_call
from tests.integration.test_media_e2e import streaming_config
from tests.integration.test_twilio_e2e import CALLEE, FRIEND, OUR_NUMBER, twilio_config
from voicecall.gateway.runtime import Runtime
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator
from voicecall.testing.twilio.simulator import SimCall, WebhookRecord


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as simulator:
        yield simulator


@pytest.fixture
async def gateway(tmp_path: Path, sim: TwilioSimulator) -> AsyncIterator[Runtime]:
    async with running_gateway(tmp_path, twilio_config(sim, free_port())) as runtime:
        yield runtime


def answer_webhook(call: SimCall) -> WebhookRecord:
    """The request Twilio makes when the callee answers: the call's voice URL (outbound), or
    the `answered` URL an accepted inbound call is redirected to."""
    def is_answer(r: WebhookRecord) -> bool:
        outbound = r.kind == "voice" and "type=" not in r.url
        return (outbound and r.params.get("CallStatus") == "in-progress") or "type=answered" in r.url

    return next(r for r in call.webhooks if r.status_code == 200 and is_answer(r))


def rest_documents(sim: TwilioSimulator, call: SimCall) -> list[str]:
    """The TwiML documents sent to the call by REST update, in order."""
    return [value for r in sim.api_requests if r.path.endswith(f"/Calls/{call.sid}.json")
            for name, value in r.params if name == "Twiml"]


async def test_notify_message_is_in_the_answer_twiml_and_not_sent_by_rest(
        gateway: Runtime, sim: TwilioSimulator) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.1))
    record = await place_call(gateway, CALLEE, "Your order has shipped", "notify")
    final = await call_ended(gateway, record.call_id)
    call = sim.call(record.provider_call_id or "")
    await call.wait_ended()
    answer = answer_webhook(call)
    assert "<Say" in answer.body and "Your order has shipped" in answer.body, answer.body
    assert not [d for d in rest_documents(sim, call) if "<Say" in d]
    assert call.said == ["Your order has shipped"]
    assert final.end_reason == "completed"


async def test_inbound_greeting_is_in_the_answered_twiml(gateway: Runtime,
                                                         sim: TwilioSimulator) -> None:
    call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
    await call.wait_until(lambda: bool(call.said), timeout=10)
    greeting = "Hello! How can I help you today?"
    assert call.said == [greeting]
    assert greeting in answer_webhook(call).body
    assert not [d for d in rest_documents(sim, call) if greeting in d]
    await call.hangup()


async def test_conversation_opening_is_in_the_answer_and_a_continue_sent_before_it_follows(
        gateway: Runtime, sim: TwilioSimulator) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.3, replies=["Fine, thanks"], reply_delay_s=0.1))
    record = await place_call(gateway, CALLEE, "Hi, this is the clinic", "conversation")
    answered = await gateway.api.call("voicecall.continue", {"callId": record.call_id,
                                                             "message": "How are you?"})
    assert answered["transcript"] == "Fine, thanks"
    call = sim.call(record.provider_call_id or "")
    assert call.said == ["Hi, this is the clinic", "How are you?"]
    assert "Hi, this is the clinic" in answer_webhook(call).body
    later = rest_documents(sim, call)
    assert any("How are you?" in d for d in later), later  # later speech: REST, as before
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_pre_connect_keys_ride_in_the_answer_and_the_message_follows(
        gateway: Runtime, sim: TwilioSimulator) -> None:
    sim.script(CALLEE, Callee())
    result = await gateway.api.call("voicecall.start", {"to": CALLEE, "message": "Joining now",
                                                        "mode": "conversation",
                                                        "dtmfSequence": "123#"})
    record = await gateway.service.get_call(result["callId"])
    assert record is not None
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    call = sim.call(record.provider_call_id or "")
    assert 'digits="123#"' in answer_webhook(call).body
    assert call.digits_heard == "123#" and call.said == ["Joining now"]
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_a_streamed_call_gets_its_stream_in_the_answer_and_speaks_on_it(
        tmp_path: Path, sim: TwilioSimulator, speech: FakeSpeech,
        stt: FakeRealtimeTranscription) -> None:
    async with running_gateway(tmp_path, streaming_config(sim, speech, stt, free_port())) as gateway:
        sim.script(CALLEE, Callee(answer_after_s=0.1))
        record = await place_call(gateway, CALLEE, "Hello there", "notify")
        call = sim.call(record.provider_call_id or "")
        await call.wait_stream(timeout=10)
        await eventually(lambda: record.is_terminal, 15)
        body = answer_webhook(call).body
        assert "<Stream" in body and "<Say" not in body, body
        assert not rest_documents(sim, call) and call.said == []
        assert [t.text for t in record.transcript] == ["Hello there"]
