"""Plivo end to end: the gateway's Plivo adapter against the Plivo simulator, over real sockets,
with V3-signed callbacks, the Voice API and Plivo XML as Plivo speaks them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import call_ended, eventually, free_port, place_call
from voicecall.gateway.runtime import Runtime
from voicecall.testing.gateway import running_gateway
from voicecall.testing.plivo import Callee, PlivoSimulator

OUR_NUMBER = "+15550000000"
CALLEE = "+15555550123"
FRIEND = "+15557770001"
STRANGER = "+15558880002"


def plivo_config(sim: PlivoSimulator, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "plivo", "fromNumber": OUR_NUMBER,
        "plivo": {"authId": sim.auth_id, "authToken": sim.auth_token, "apiBaseUrl": sim.base_url},
        "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
        "outbound": {"notifyHangupDelaySec": 0},
        "inboundPolicy": "allowlist", "allowFrom": [FRIEND], "maxConcurrentCalls": 5,
        **extra,
    }


@pytest.fixture
async def sim() -> AsyncIterator[PlivoSimulator]:
    async with PlivoSimulator(time_scale=0.05, speak_ms_per_char=5) as simulator:
        yield simulator


@pytest.fixture
async def gateway(tmp_path: Path, sim: PlivoSimulator) -> AsyncIterator[Runtime]:
    async with running_gateway(tmp_path, plivo_config(sim, free_port())) as runtime:
        yield runtime


async def test_notify_message_is_heard_once_in_the_answer_then_hung_up_after_playback(
        tmp_path: Path) -> None:
    # Real-time speech (10 ms a character): a hang-up that did not wait for playback would cut it.
    async with PlivoSimulator(time_scale=1.0, speak_ms_per_char=10) as sim, \
            running_gateway(tmp_path, plivo_config(sim, free_port())) as gateway:
        sim.script(CALLEE, Callee(answer_after_s=0.1))
        record = await place_call(gateway, CALLEE, "Your order has shipped", "notify")
        final = await call_ended(gateway, record.call_id)
        call = sim.call(record.provider_call_id or "")
        await call.wait_ended()
        assert call.said == ["Your order has shipped"]
        assert "<Speak" in call.documents[0]  # the first words rode in the answer XML
        assert final.state.value == final.end_reason == "completed"
        assert [t.text for t in final.transcript] == ["Your order has shipped"]
        transfers = [r for r in sim.api_requests if r.method == "POST" and r.path.endswith(
            f"/Call/{call.uuid}/")]
        hangups = [r for r in sim.api_requests if r.method == "DELETE"]
        assert transfers == [] and len(hangups) == 1 and hangups[0].status_code == 204
        assert call.hangup_source == "API Request"


async def test_three_turn_conversation_driven_by_continue(gateway: Runtime,
                                                          sim: PlivoSimulator) -> None:
    sim.script(CALLEE, Callee(replies=["Hi, I'm well", "Tuesday at noon", "No, that's all"],
                              reply_delay_s=0.2))
    record = await place_call(gateway, CALLEE, "Hello, this is the clinic", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    answers = [await gateway.api.call("voicecall.continue", {"callId": record.call_id, "message": q})
               for q in ("How are you?", "When can you come in?", "Anything else?")]
    assert [a["transcript"] for a in answers] == ["Hi, I'm well", "Tuesday at noon", "No, that's all"]
    call = sim.call(record.provider_call_id or "")
    assert call.said == ["Hello, this is the clinic", "How are you?", "When can you come in?",
                         "Anything else?"]
    assert all(g["inputType"] == "speech" for g in call.get_inputs) and len(call.get_inputs) == 3
    assert [(t.speaker, t.text) for t in record.transcript][-2:] == [
        ("bot", "Anything else?"), ("user", "No, that's all")]
    assert (await gateway.api.call("voicecall.end", {"callId": record.call_id}))["success"]
    assert await call.wait_ended() == "completed"


@pytest.mark.parametrize("outcome,reason", [("busy", "busy"), ("no-answer", "no-answer"),
                                            ("failed", "failed")])
async def test_unanswered_outcomes_map_to_end_reasons(gateway: Runtime, sim: PlivoSimulator,
                                                      outcome: str, reason: str) -> None:
    sim.script(CALLEE, Callee(outcome=outcome, answer_after_s=0.1))  # type: ignore[arg-type]
    record = await place_call(gateway, CALLEE, "Hello", "notify")
    final = await call_ended(gateway, record.call_id, within=15)
    assert final.end_reason == reason and final.answered_at is None
    assert sim.call(record.provider_call_id or "").said == []


async def test_dtmf_sent_mid_call_is_heard_by_the_callee(gateway: Runtime,
                                                         sim: PlivoSimulator) -> None:
    sim.script(CALLEE, Callee())
    record = await place_call(gateway, CALLEE, "Connecting you", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    await gateway.api.call("voicecall.dtmf", {"callId": record.call_id, "digits": "1234#"})
    assert sim.call(record.provider_call_id or "").digits_heard == "1234#"
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_allowlisted_inbound_caller_is_greeted(gateway: Runtime, sim: PlivoSimulator) -> None:
    call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
    await call.wait_until(lambda: bool(call.said), timeout=10)
    assert call.said == ["Hello! How can I help you today?"]
    record = await eventually(lambda: gateway.service.live(call.uuid))
    assert record.direction == "inbound" and record.from_ == FRIEND
    await call.hangup()
    final = await call_ended(gateway, record.call_id)
    assert final.end_reason == "completed"


async def test_rejected_inbound_caller_is_hung_up_as_rejected(gateway: Runtime,
                                                              sim: PlivoSimulator) -> None:
    call = await sim.place_inbound(STRANGER, OUR_NUMBER, gateway.webhook_url)
    await call.wait_ended(timeout=10)
    answer = next(r for r in sim.requests if r.kind == "answer")
    assert answer.body == '<Response><Hangup reason="rejected"/></Response>'
    assert call.said == [] and gateway.service.live(call.uuid) is None
    # and one REST hang-up, in case the XML answer is lost (D17)
    assert [r.method for r in sim.api_requests] == ["DELETE"]


async def test_unsigned_or_forged_callbacks_are_refused_before_anything_happens(
        gateway: Runtime, sim: PlivoSimulator) -> None:
    body = {"CallUUID": "forged", "From": "15557770001", "To": "15550000000",
            "CallStatus": "in-progress", "Direction": "inbound"}
    async with httpx.AsyncClient() as client:
        unsigned = await client.post(gateway.webhook_url, data=body)
        headers = sim.signed_headers(gateway.webhook_url, body)
        forged = await client.post(gateway.webhook_url, data={**body, "From": "15558880002"},
                                   headers=headers)
    assert unsigned.status_code == forged.status_code == 401
    assert gateway.service.live("forged") is None
