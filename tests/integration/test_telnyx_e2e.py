"""Telnyx end to end: the gateway's Telnyx adapter against the Telnyx simulator, over real
sockets, with Ed25519-signed webhooks and the Call Control REST API as Telnyx speaks them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import helpers
from tests.helpers import call_ended, eventually, free_port, place_call
from voicecall.gateway.runtime import Runtime
from voicecall.providers.telnyx.events import encode_client_state
from voicecall.testing.fakes import FakeOpenAI
from voicecall.testing.gateway import running_gateway
from voicecall.testing.telnyx import Callee, TelnyxSimulator, TestKey, WebhookRecord


@pytest.fixture
async def sim() -> AsyncIterator[TelnyxSimulator]:
    async with TelnyxSimulator(time_scale=0.05, speak_ms_per_char=5) as simulator:
        yield simulator


def telnyx_config(sim: TelnyxSimulator, port: int, **extra: Any) -> dict[str, Any]:
    """Telnyx needs no publicUrl: it signs the body, not the URL."""
    return helpers.carrier_config("telnyx", {"apiKey": sim.api_key, "connectionId": sim.connection_id,
                                     "publicKey": sim.public_key, "apiBaseUrl": sim.base_url},
                          port, **extra)


@pytest.fixture
async def gateway(tmp_path: Path, sim: TelnyxSimulator) -> AsyncIterator[Runtime]:
    async with running_gateway(tmp_path, telnyx_config(sim, free_port())) as runtime:
        yield runtime


def actions(sim: TelnyxSimulator, call_control_id: str, name: str) -> list[dict[str, Any]]:
    return [r.body for r in sim.api_requests
            if r.path == f"/v2/calls/{call_control_id}/actions/{name}" and r.status_code == 200]


async def test_notify_hangs_up_after_speak_ended_and_applies_retried_webhooks_once(tmp_path: Path) -> None:
    """Every webhook is delivered twice (`meta.attempt` 1 and 2, so signed bodies differ), as
    Telnyx retries; speech takes real time (10 ms a character)."""
    async with TelnyxSimulator(time_scale=1.0, speak_ms_per_char=10, duplicate_webhooks=1) as sim, \
            running_gateway(tmp_path, telnyx_config(sim, free_port())) as gateway:
        sim.script(helpers.CALLEE, Callee(answer_after_s=0.1))
        record = await place_call(gateway, helpers.CALLEE, "Your order has shipped", "notify")
        call = sim.call(record.provider_call_id or "")
        assert await call.wait_ended() == "normal_clearing" and call.hangup_source == "caller"
        events = call.event_types
        assert events.index("call.speak.ended") < events.index("call.hangup")
        assert [(s["payload"], s["voice"], s["language"]) for s in call.spoken] == [
            ("Your order has shipped", "female", "en-US")]
        assert {json.loads(r.body)["meta"]["attempt"] for r in call.webhooks} == {1, 2}
        log = await gateway.service.store.last_log(10_000)
        kinds = [row.data.get("type") for row in log
                 if row.kind == "event" and row.call_id == record.call_id]
        assert kinds == ["call.initiated", "call.answered", "call.speaking"]  # each once, not twice
        assert (await call_ended(gateway, record.call_id)).end_reason == "completed"


async def test_dial_carries_connection_webhook_client_state_and_ring_timeout(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    record = await place_call(gateway, helpers.CALLEE, "Hi", "notify")
    dial = next(r for r in sim.api_requests if r.path == "/v2/calls")
    assert dial.body["connection_id"] == sim.connection_id and dial.body["to"] == helpers.CALLEE
    assert dial.body["from"] == helpers.OUR_NUMBER and dial.body["webhook_url"] == gateway.webhook_url
    assert dial.body["client_state"] == encode_client_state(record.call_id)
    assert dial.body["timeout_secs"] == 30 and "answering_machine_detection" not in dial.body
    assert dial.body["command_id"] and "stream_url" not in dial.body
    await call_ended(gateway, record.call_id)


async def test_a_late_transcript_of_an_earlier_turn_cannot_complete_a_newer_one(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    sim.script(helpers.CALLEE, Callee(replies=["first answer"], reply_delay_s=0.1))
    record = await place_call(gateway, helpers.CALLEE, "Hello", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    first = await gateway.api.call("voicecall.continue", {"callId": record.call_id, "message": "Q1?"})
    assert first["transcript"] == "first answer"
    call = sim.call(record.provider_call_id or "")
    old_state = actions(sim, call.call_control_id, "transcription_start")[0]["client_state"]
    turn2 = asyncio.create_task(gateway.api.call("voicecall.continue",
                                                 {"callId": record.call_id, "message": "Q2?"}))
    await eventually(lambda: len(actions(sim, call.call_control_id, "transcription_start")) == 2)
    # A freshly signed transcript that still carries turn 1's client_state (its token).
    current, call.client_state = call.client_state, old_state
    sim.emit(call, "call.transcription", {"transcription_data": {
        "transcript": "stale words", "is_final": True, "confidence": 0.9}})
    call.client_state = current
    await asyncio.sleep(0.3)
    assert not turn2.done()
    assert all(t.text != "stale words" for t in record.transcript)
    call.reply("the real second answer")
    assert (await asyncio.wait_for(turn2, 10))["transcript"] == "the real second answer"
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


@pytest.mark.parametrize("outcome,cause,reason", [("busy", "user_busy", "busy"),
                                                  ("no-answer", "timeout", "no-answer"),
                                                  ("failed", "destination_out_of_order", "failed"),
                                                  ("busy", "call_rejected", "busy"),
                                                  ("no-answer", "no_user_response", "no-answer")])
async def test_unanswered_hangup_causes_map_to_end_reasons(gateway: Runtime, sim: TelnyxSimulator,
                                                           outcome: str, cause: str, reason: str) -> None:
    sim.script(helpers.CALLEE, Callee(outcome=outcome, answer_after_s=0.1, hangup_cause=cause))  # type: ignore[arg-type]
    record = await place_call(gateway, helpers.CALLEE, "Hello", "notify")
    final = await call_ended(gateway, record.call_id, within=15)
    assert final.end_reason == reason and final.answered_at is None
    call = sim.call(record.provider_call_id or "")
    await call.wait_ended()
    assert call.said == [] and call.hangup_cause == cause


async def test_callee_hanging_up_ends_the_call_and_fails_nothing_pending(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    sim.script(helpers.CALLEE, Callee())
    record = await place_call(gateway, helpers.CALLEE, "Hello there", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    call = sim.call(record.provider_call_id or "")
    assert await call.hangup() == "normal_clearing"
    final = await call_ended(gateway, record.call_id)
    assert final.end_reason == "completed"
    assert actions(sim, call.call_control_id, "hangup") == []


async def test_dtmf_mid_call_and_pre_connect_sequence_are_played_in_order(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    record = await place_call(gateway, helpers.CALLEE, "Joining now", "conversation", dtmfSequence="ww123#")
    call = sim.call(record.provider_call_id or "")
    await call.wait_heard("Joining now")
    commands = [name for name, _ in call.commands]
    assert commands.index("send_dtmf") < commands.index("speak")
    assert actions(sim, call.call_control_id, "send_dtmf")[0]["digits"] == "ww123#"
    await gateway.api.call("voicecall.dtmf", {"callId": record.call_id, "digits": "45"})
    await call.wait_until(lambda: call.digits_heard == "123#45")
    assert (await gateway.api.call("voicecall.end", {"callId": record.call_id}))["success"]


async def test_allowlisted_inbound_caller_is_answered_greeted_and_auto_replied(
        tmp_path: Path, sim: TelnyxSimulator) -> None:
    async with FakeOpenAI() as fake:
        fake.script(json.dumps({"spoken": "It is noon."}))
        config = telnyx_config(sim, free_port(), responder={"enabled": True, "baseUrl": fake.base_url},
                               responseModel="openai/gpt-4o-mini")
        async with running_gateway(tmp_path, config, env={"OPENAI_API_KEY": "sk-test"}) as gateway:
            call = sim.place_inbound(helpers.FRIEND, helpers.OUR_NUMBER, gateway.webhook_url,
                                     callee=Callee(replies=["What time is it?"], reply_delay_s=0.1))
            await call.wait_until(lambda: len(call.said) >= 2, timeout=10)
            assert call.said == ["Hello! How can I help you today?", "It is noon."]
            assert len(actions(sim, call.call_control_id, "answer")) == 1
            assert len(actions(sim, call.call_control_id, "transcription_start")) == 1  # kept running
            record = await eventually(lambda: gateway.service.live(call.call_control_id))
            assert record.direction == "inbound" and record.from_ == helpers.FRIEND
            assert [t.text for t in record.transcript if t.speaker == "user"] == ["What time is it?"]
            assert await call.hangup() == "normal_clearing"
            assert (await call_ended(gateway, record.call_id)).end_reason == "completed"


async def test_rejected_inbound_caller_is_rejected_once_even_when_webhooks_repeat(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    sim.duplicate_webhooks = 2
    call = sim.place_inbound(helpers.STRANGER, helpers.OUR_NUMBER, gateway.webhook_url)
    assert await call.wait_ended(timeout=10) == "call_rejected"
    initiated = [r for r in call.webhooks if r.event_type == "call.initiated"]
    assert len(initiated) == 3 and all(r.status_code == 200 for r in initiated)
    assert len([r for r in sim.api_requests if r.path.endswith("/actions/reject")]) == 1
    assert actions(sim, call.call_control_id, "answer") == []
    assert gateway.service.active_calls() == []
    assert await gateway.service.get_call(call.call_control_id) is None


async def test_bad_signatures_wrong_key_stale_or_changed_bodies_get_401_and_change_nothing(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    body = sim.envelope("call.initiated", {
        "call_control_id": "v3:forged", "direction": "incoming", "from": helpers.FRIEND,
        "to": helpers.OUR_NUMBER, "state": "parked", "client_state": None}, url=gateway.webhook_url)
    good = sim.key.headers(body)
    stale_ts = int(good["telnyx-timestamp"]) - 301
    cases = [
        {**good, "telnyx-signature-ed25519": TestKey.generate().sign(good["telnyx-timestamp"], body)},
        sim.key.headers(body, timestamp=stale_ts),
        {**good, "telnyx-signature-ed25519": good["telnyx-signature-ed25519"][:-8] + "AAAAAAA="},
    ]
    async with httpx.AsyncClient() as client:
        for headers in cases:
            response = await client.post(gateway.webhook_url, content=body, headers=headers)
            assert response.status_code == 401
        changed = body.replace(helpers.FRIEND.encode(), helpers.STRANGER.encode())
        response = await client.post(gateway.webhook_url, content=changed, headers=good)
        assert response.status_code == 401
        missing = await client.post(gateway.webhook_url, content=body)
        assert missing.status_code == 401
    assert gateway.service.active_calls() == []
    assert await gateway.service.store.last_log(10) == []
    assert sim.api_requests == []


async def replay_changes_nothing(gateway: Runtime, record: WebhookRecord, signatures: list[str]) -> None:
    """Send a captured webhook again (with each signature spelling): 200, and nothing logged."""
    seen = await gateway.service.wait_for_change(-1, 0)
    while (now := await gateway.service.wait_for_change(seen, 0.3)) != seen:
        seen = now  # until the call's last writes have settled
    log_before = len(await gateway.service.store.last_log(10_000))
    async with httpx.AsyncClient() as client:
        for signature in signatures:
            headers = {**record.headers, "telnyx-signature-ed25519": signature}
            replayed = await client.post(record.url, content=record.body, headers=headers)
            assert replayed.status_code == 200
    assert len(await gateway.service.store.last_log(10_000)) == log_before
    assert gateway.service.active_calls() == []


async def test_a_replayed_webhook_is_acknowledged_without_side_effects_even_after_restart(
        tmp_path: Path, sim: TelnyxSimulator) -> None:
    config = telnyx_config(sim, free_port())
    async with running_gateway(tmp_path, config) as gateway:
        call = sim.place_inbound(helpers.FRIEND, helpers.OUR_NUMBER, gateway.webhook_url)
        await call.wait_heard("How can I help")
        first = next(r for r in call.webhooks if r.event_type == "call.initiated")
        assert await call.hangup() == "normal_clearing"
        await eventually(lambda: not gateway.service.active_calls())
        sig = first.headers["telnyx-signature-ed25519"]
        await replay_changes_nothing(gateway, first, [sig])
    async with running_gateway(tmp_path, config) as gateway:  # after a restart, in both spellings
        await replay_changes_nothing(gateway, first, [sig, sig.replace("+", "-").replace("/", "_")
                                                      .rstrip("=")])
    assert len(actions(sim, call.call_control_id, "answer")) == 1
