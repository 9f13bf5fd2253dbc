"""Twilio end to end: the gateway's Twilio adapter against the Twilio simulator, over real
sockets, with signed webhooks and the REST API exactly as Twilio speaks them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    CALLEE,
    FRIEND,
    OUR_NUMBER,
    STRANGER,
    call_ended,
    carrier_config,
    eventually,
    free_port,
    place_call,
)
from voicecall.calls.model import CallRecord
from voicecall.gateway.runtime import Runtime
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator
from voicecall.testing.twilio.signing import sign


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as simulator:
        yield simulator


def twilio_config(sim: TwilioSimulator, port: int, **extra: Any) -> dict[str, Any]:
    settings = {"accountSid": sim.account_sid, "authToken": sim.auth_token, "apiBaseUrl": sim.base_url}
    return carrier_config("twilio", settings, port,
                          publicUrl=f"http://127.0.0.1:{port}/voice/webhook", **extra)


@pytest.fixture
async def gateway(tmp_path: Path, sim: TwilioSimulator) -> AsyncIterator[Runtime]:
    async with running_gateway(tmp_path, twilio_config(sim, free_port())) as runtime:
        yield runtime



async def place(runtime: Runtime, message: str, mode: str, **extra: Any) -> CallRecord:
    return await place_call(runtime, CALLEE, message, mode, **extra)


async def test_dtmf_sent_mid_call_is_heard_by_the_callee(gateway: Runtime, sim: TwilioSimulator) -> None:
    sim.script(CALLEE, Callee())
    record = await place(gateway, "Connecting you", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    await gateway.api.call("voicecall.dtmf", {"callId": record.call_id, "digits": "1234#"})
    assert sim.call(record.provider_call_id or "").digits_heard == "1234#"
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_allowlisted_inbound_caller_is_greeted(gateway: Runtime, sim: TwilioSimulator) -> None:
    call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
    await call.wait_until(lambda: bool(call.said), timeout=10)
    assert call.said == ["Hello! How can I help you today?"]
    record = await eventually(lambda: gateway.service.live(call.sid))
    assert record.direction == "inbound" and record.from_ == FRIEND
    await call.hangup()
    final = await call_ended(gateway, record.call_id)
    assert final.end_reason == "completed"


async def test_rejected_inbound_caller_is_hung_up_once_even_when_twilio_retries(
        tmp_path: Path) -> None:
    async with TwilioSimulator(time_scale=0.05, webhook_retries=2) as sim, \
            running_gateway(tmp_path, twilio_config(sim, free_port())) as gateway:
        call = await sim.place_inbound(STRANGER, OUR_NUMBER, gateway.webhook_url)
        await call.wait_ended(timeout=10)
        voice = [r for r in sim.webhooks if r.call_sid == call.sid and r.kind == "voice"]
        assert len(voice) == 3 and all(r.status_code == 200 for r in voice)
        assert all("<Reject" in r.body for r in voice)
        hangups = [r for r in sim.api_requests if call.sid in r.path and ("Status", "completed") in r.params]
        assert len(hangups) == 1
        assert gateway.service.active_calls() == []
        assert await gateway.service.get_call(call.sid) is None


async def test_stale_gather_callback_cannot_complete_a_later_turn(gateway: Runtime,
                                                                 sim: TwilioSimulator) -> None:
    sim.script(CALLEE, Callee(replies=["first answer"], reply_delay_s=0.1))
    record = await place(gateway, "Hello", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    first = await gateway.api.call("voicecall.continue", {"callId": record.call_id, "message": "Q1?"})
    assert first["transcript"] == "first answer"
    gather = next(r for r in sim.webhooks if r.kind == "gather" and r.call_sid == record.provider_call_id)
    # Turn 2 waits; the callee stays silent.
    turn2 = asyncio.create_task(gateway.api.call("voicecall.continue",
                                                 {"callId": record.call_id, "message": "Q2?"}))
    await eventually(lambda: gateway.service.turn_token(record.call_id) is not None)
    async with httpx.AsyncClient() as client:
        # 1) the identical signed request again: a replay, acknowledged with no side effects
        replay = await client.post(gather.url, data=gather.params, headers={
            "x-twilio-signature": gather.signature})
        assert replay.status_code == 200
        # 2) a freshly signed callback carrying the *old* turn token and new words
        params = {**gather.params, "SpeechResult": "stale words"}
        stale = await client.post(gather.url, data=params, headers={
            "x-twilio-signature": sign(sim.auth_token, gather.url, params)})
        assert stale.status_code == 200
    await asyncio.sleep(0.3)
    assert not turn2.done()
    assert all(t.text != "stale words" for t in record.transcript)
    assert [t.text for t in record.transcript].count("first answer") == 1
    sim.call(record.provider_call_id or "").reply("the real second answer")
    assert (await asyncio.wait_for(turn2, 10))["transcript"] == "the real second answer"
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_forged_truncated_and_wrong_url_signatures_get_401_and_change_nothing(
        gateway: Runtime, sim: TwilioSimulator) -> None:
    url = gateway.webhook_url
    params = {"CallSid": "CA" + "0" * 32, "From": FRIEND, "To": OUR_NUMBER, "CallStatus": "ringing",
              "Direction": "inbound", "AccountSid": sim.account_sid}
    good = sign(sim.auth_token, url, params)
    async with httpx.AsyncClient() as client:
        for signature in (sign("wrong-token", url, params), good[:-4],
                          sign(sim.auth_token, url + "-other", params)):
            response = await client.post(url, data=params, headers={"x-twilio-signature": signature})
            assert response.status_code == 401
        missing = await client.post(url, data=params)
        assert missing.status_code == 401
    assert gateway.service.active_calls() == []
    assert await gateway.service.store.last_log(10) == []


async def test_replayed_signed_webhook_gets_the_same_answer_and_no_side_effects_after_restart(
        tmp_path: Path) -> None:
    port = free_port()
    async with TwilioSimulator(time_scale=0.05) as sim:
        config = twilio_config(sim, port)
        async with running_gateway(tmp_path, config) as gateway:
            call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
            await call.wait_until(lambda: bool(call.said), timeout=10)
            first = next(r for r in sim.webhooks if r.call_sid == call.sid and r.kind == "voice")
            await call.hangup()
            await eventually(lambda: not gateway.service.active_calls())
        async with running_gateway(tmp_path, config) as gateway:
            log_before = len(await gateway.service.store.last_log(10_000))
            async with httpx.AsyncClient() as client:
                again = await client.post(first.url, data=first.params,
                                          headers={"x-twilio-signature": first.signature})
            assert again.status_code == 200 and again.text == first.body
            assert len(await gateway.service.store.last_log(10_000)) == log_before
            assert gateway.service.active_calls() == []


async def test_create_call_request_carries_our_ids_status_events_and_ring_timeout(
        gateway: Runtime, sim: TwilioSimulator) -> None:
    record = await place(gateway, "Hi", "notify")
    created = next(r for r in sim.api_requests if r.path.endswith("/Calls.json"))
    params = dict(created.params)
    assert params["Url"] == f"{gateway.webhook_url}?callId={record.call_id}"
    assert params["StatusCallback"] == f"{gateway.webhook_url}?callId={record.call_id}&type=status"
    assert [v for k, v in created.params if k == "StatusCallbackEvent"] == [
        "initiated", "ringing", "answered", "completed"]
    assert params["Timeout"] == "30" and "MachineDetection" not in params
    await call_ended(gateway, record.call_id)


async def test_pre_connect_dtmf_sequence_is_played_before_the_greeting(gateway: Runtime,
                                                                       sim: TwilioSimulator) -> None:
    result = await gateway.api.call("voicecall.start", {"to": CALLEE, "message": "Joining now",
                                                        "mode": "conversation", "dtmfSequence": "ww123#"})
    record = await gateway.service.get_call(result["callId"])
    assert record is not None
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    call = sim.call(record.provider_call_id or "")
    kinds = [kind for kind, _value in call.heard]
    assert kinds.index("digits") < kinds.index("say") and call.digits_heard == "ww123#"
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


@pytest.mark.parametrize("security,accepted", [
    ({}, False),  # forwarding headers are not trusted by default
    ({"trustForwardingHeaders": True}, True),
    ({"allowedHosts": ["public.example"]}, True),
    ({"allowedHosts": ["other.example"]}, False),
    ({"trustForwardingHeaders": True, "trustedProxyIPs": ["10.9.9.9"]}, False),  # not our proxy
    ({"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]}, True),
])
async def test_forwarded_host_headers_are_honoured_only_under_the_webhook_security_rules(
        tmp_path: Path, sim: TwilioSimulator, security: dict[str, Any], accepted: bool) -> None:
    config = twilio_config(sim, free_port(), webhookSecurity=security)
    del config["publicUrl"]
    async with running_gateway(tmp_path, config) as gateway:
        public = "https://public.example/voice/webhook"
        params = {"CallSid": "CA" + "1" * 32, "From": FRIEND, "To": OUR_NUMBER, "CallStatus": "ringing",
                  "Direction": "inbound", "AccountSid": sim.account_sid}
        async with httpx.AsyncClient() as client:
            response = await client.post(gateway.webhook_url, data=params, headers={
                "x-twilio-signature": sign(sim.auth_token, public, params),
                "x-forwarded-host": "public.example", "x-forwarded-proto": "https"})
        assert response.status_code == (200 if accepted else 401)
