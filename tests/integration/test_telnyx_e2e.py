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

from tests.helpers import ended, eventually, free_port, place_call
from voicecall.calls.model import CallRecord
from voicecall.gateway.runtime import Runtime
from voicecall.providers.telnyx.events import encode_client_state
from voicecall.testing.fakes import FakeOpenAI
from voicecall.testing.gateway import running_gateway
from voicecall.testing.telnyx import Callee, TelnyxSimulator, TestKey

OUR_NUMBER = "+15550000000"
CALLEE = "+15555550123"
FRIEND = "+15557770001"
STRANGER = "+15558880002"


@pytest.fixture
async def sim() -> AsyncIterator[TelnyxSimulator]:
    async with TelnyxSimulator(time_scale=0.05, speak_ms_per_char=5) as simulator:
        yield simulator


def telnyx_config(sim: TelnyxSimulator, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "telnyx", "fromNumber": OUR_NUMBER,
        "telnyx": {"apiKey": sim.api_key, "connectionId": sim.connection_id,
                   "publicKey": sim.public_key, "apiBaseUrl": sim.base_url},
        "serve": {"port": port}, "outbound": {"notifyHangupDelaySec": 0},
        "inboundPolicy": "allowlist", "allowFrom": [FRIEND], "maxConcurrentCalls": 5,
        **extra,
    }


@pytest.fixture
async def gateway(tmp_path: Path, sim: TelnyxSimulator) -> AsyncIterator[Runtime]:
    async with running_gateway(tmp_path, telnyx_config(sim, free_port())) as runtime:
        yield runtime


async def place(runtime: Runtime, message: str, mode: str, **extra: Any) -> CallRecord:
    return await place_call(runtime, CALLEE, message, mode, **extra)


def actions(sim: TelnyxSimulator, call_control_id: str, name: str) -> list[dict[str, Any]]:
    return [r.body for r in sim.api_requests
            if r.path == f"/v2/calls/{call_control_id}/actions/{name}" and r.status_code == 200]


async def test_notify_is_heard_once_and_hung_up_only_after_speak_ended(tmp_path: Path) -> None:
    # Real-time speech (10 ms a character): a hang-up that did not wait for playback would cut it.
    async with TelnyxSimulator(time_scale=1.0, speak_ms_per_char=10) as sim, \
            running_gateway(tmp_path, telnyx_config(sim, free_port())) as gateway:
        sim.script(CALLEE, Callee(answer_after_s=0.1))
        record = await place(gateway, "Your order has shipped", "notify")
        final = await ended(gateway, record.call_id)
        call = sim.call(record.provider_call_id or "")
        await call.wait_ended()
        assert call.said == ["Your order has shipped"]
        assert final.end_reason == "completed"
        assert [t.text for t in final.transcript] == ["Your order has shipped"]
        events = call.event_types
        assert events.index("call.speak.ended") < events.index("call.hangup")
        hangups = actions(sim, call.call_control_id, "hangup")
        assert len(hangups) == 1 and call.hangup_source == "caller"
        speak = call.spoken[0]
        assert speak["voice"] == "female" and speak["language"] == "en-US"


async def test_dial_carries_connection_webhook_client_state_and_ring_timeout(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    record = await place(gateway, "Hi", "notify")
    dial = next(r for r in sim.api_requests if r.path == "/v2/calls")
    assert dial.body["connection_id"] == sim.connection_id and dial.body["to"] == CALLEE
    assert dial.body["from"] == OUR_NUMBER and dial.body["webhook_url"] == gateway.webhook_url
    assert dial.body["client_state"] == encode_client_state(record.call_id)
    assert dial.body["timeout_secs"] == 30 and "answering_machine_detection" not in dial.body
    assert dial.body["command_id"] and "stream_url" not in dial.body
    await ended(gateway, record.call_id)


async def test_three_turn_conversation_driven_by_continue(gateway: Runtime, sim: TelnyxSimulator) -> None:
    sim.script(CALLEE, Callee(replies=["Hi, I'm well", "Tuesday at noon", "No, that's all"],
                              reply_delay_s=0.2))
    record = await place(gateway, "Hello, this is the clinic", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    answers = [await gateway.api.call("voicecall.continue", {"callId": record.call_id, "message": q})
               for q in ("How are you?", "When can you come in?", "Anything else?")]
    assert [a["transcript"] for a in answers] == ["Hi, I'm well", "Tuesday at noon", "No, that's all"]
    call = sim.call(record.provider_call_id or "")
    assert call.said == ["Hello, this is the clinic", "How are you?", "When can you come in?",
                         "Anything else?"]
    assert [(t.speaker, t.text) for t in record.transcript][-2:] == [
        ("bot", "Anything else?"), ("user", "No, that's all")]
    starts = actions(sim, call.call_control_id, "transcription_start")
    assert len(starts) == 3 and len({s["client_state"] for s in starts}) == 3  # a token per turn
    assert (await gateway.api.call("voicecall.end", {"callId": record.call_id}))["success"]
    await call.wait_ended()


async def test_a_late_transcript_of_an_earlier_turn_cannot_complete_a_newer_one(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    sim.script(CALLEE, Callee(replies=["first answer"], reply_delay_s=0.1))
    record = await place(gateway, "Hello", "conversation")
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
    sim.script(CALLEE, Callee(outcome=outcome, answer_after_s=0.1, hangup_cause=cause))  # type: ignore[arg-type]
    record = await place(gateway, "Hello", "notify")
    final = await ended(gateway, record.call_id, within=15)
    assert final.end_reason == reason and final.answered_at is None
    call = sim.call(record.provider_call_id or "")
    await call.wait_ended()
    assert call.said == [] and call.hangup_cause == cause


async def test_callee_hanging_up_ends_the_call_and_fails_nothing_pending(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    sim.script(CALLEE, Callee())
    record = await place(gateway, "Hello there", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    call = sim.call(record.provider_call_id or "")
    assert await call.hangup() == "normal_clearing"
    final = await ended(gateway, record.call_id)
    assert final.end_reason == "completed"
    assert actions(sim, call.call_control_id, "hangup") == []


async def test_dtmf_mid_call_and_pre_connect_sequence_are_played_in_order(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    result = await gateway.api.call("voicecall.start", {"to": CALLEE, "message": "Joining now",
                                                        "mode": "conversation", "dtmfSequence": "ww123#"})
    record = await gateway.service.get_call(result["callId"])
    assert record is not None
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    call = sim.call(record.provider_call_id or "")
    commands = [name for name, _ in call.commands]
    assert commands.index("send_dtmf") < commands.index("speak")
    assert actions(sim, call.call_control_id, "send_dtmf")[0]["digits"] == "ww123#"
    await gateway.api.call("voicecall.dtmf", {"callId": record.call_id, "digits": "45"})
    await call.wait_until(lambda: call.digits_heard == "123#45")
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_allowlisted_inbound_caller_is_answered_greeted_and_auto_replied(
        tmp_path: Path, sim: TelnyxSimulator) -> None:
    async with FakeOpenAI() as fake:
        fake.script(json.dumps({"spoken": "It is noon."}))
        config = telnyx_config(sim, free_port(), responder={"enabled": True, "baseUrl": fake.base_url},
                               responseModel="openai/gpt-4o-mini")
        async with running_gateway(tmp_path, config, env={"OPENAI_API_KEY": "sk-test"}) as gateway:
            call = sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url,
                                     callee=Callee(replies=["What time is it?"], reply_delay_s=0.1))
            await call.wait_until(lambda: len(call.said) >= 2, timeout=10)
            assert call.said == ["Hello! How can I help you today?", "It is noon."]
            assert len(actions(sim, call.call_control_id, "answer")) == 1
            record = await eventually(lambda: gateway.service.live(call.call_control_id))
            assert record.direction == "inbound" and record.from_ == FRIEND
            assert [t.text for t in record.transcript if t.speaker == "user"] == ["What time is it?"]
            await call.hangup()
            final = await ended(gateway, record.call_id)
            assert final.end_reason == "completed"


async def test_rejected_inbound_caller_is_rejected_once_even_when_webhooks_repeat(
        tmp_path: Path) -> None:
    async with TelnyxSimulator(time_scale=0.05, duplicate_webhooks=2) as sim, \
            running_gateway(tmp_path, telnyx_config(sim, free_port())) as gateway:
        call = sim.place_inbound(STRANGER, OUR_NUMBER, gateway.webhook_url)
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
        "call_control_id": "v3:forged", "direction": "incoming", "from": FRIEND, "to": OUR_NUMBER,
        "state": "parked", "client_state": None}, url=gateway.webhook_url)
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
        changed = body.replace(FRIEND.encode(), STRANGER.encode())
        response = await client.post(gateway.webhook_url, content=changed, headers=good)
        assert response.status_code == 401
        missing = await client.post(gateway.webhook_url, content=body)
        assert missing.status_code == 401
    assert gateway.service.active_calls() == []
    assert await gateway.service.store.last_log(10) == []
    assert sim.api_requests == []


async def test_a_replayed_webhook_is_acknowledged_without_side_effects_even_after_restart(
        tmp_path: Path) -> None:
    port = free_port()
    async with TelnyxSimulator(time_scale=0.05) as sim:
        config = telnyx_config(sim, port)
        async with running_gateway(tmp_path, config) as gateway:
            call = sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
            await call.wait_until(lambda: bool(call.said), timeout=10)
            first = next(r for r in call.webhooks if r.event_type == "call.initiated")
            await call.hangup()
            await eventually(lambda: not gateway.service.active_calls())
            answers = len(actions(sim, call.call_control_id, "answer"))
            async with httpx.AsyncClient() as client:
                again = await client.post(first.url, content=first.body, headers=first.headers)
            assert again.status_code == 200
        async with running_gateway(tmp_path, config) as gateway:
            log_before = len(await gateway.service.store.last_log(10_000))
            sig = first.headers["telnyx-signature-ed25519"]
            url_form = sig.replace("+", "-").replace("/", "_").rstrip("=")
            async with httpx.AsyncClient() as client:
                for signature in (sig, url_form):
                    again = await client.post(first.url, content=first.body,
                                              headers={**first.headers,
                                                       "telnyx-signature-ed25519": signature})
                    assert again.status_code == 200
            assert len(await gateway.service.store.last_log(10_000)) == log_before
            assert gateway.service.active_calls() == []
            assert len(actions(sim, call.call_control_id, "answer")) == answers == 1


async def test_machine_answered_notify_call_ends_as_voicemail_when_detection_is_on(tmp_path: Path) -> None:
    async with TelnyxSimulator(time_scale=0.05) as sim, running_gateway(
            tmp_path, telnyx_config(sim, free_port(), outbound={"notifyHangupDelaySec": 0,
                                                                "machineDetection": True})) as gateway:
        sim.script(CALLEE, Callee(machine=True, answer_after_s=0.1))
        record = await place(gateway, "This is a reminder about a very long thing", "notify")
        final = await ended(gateway, record.call_id)
        assert final.end_reason == "voicemail"
        dial = next(r for r in sim.api_requests if r.path == "/v2/calls")
        assert dial.body["answering_machine_detection"] == "detect"
        call = sim.call(record.provider_call_id or "")
        assert await call.wait_ended() == "normal_clearing"
        assert len(actions(sim, call.call_control_id, "hangup")) == 1


async def test_webhook_retries_of_one_event_are_applied_once(tmp_path: Path) -> None:
    async with TelnyxSimulator(time_scale=0.05, speak_ms_per_char=5, duplicate_webhooks=1) as sim, \
            running_gateway(tmp_path, telnyx_config(sim, free_port())) as gateway:
        sim.script(CALLEE, Callee(answer_after_s=0.1))
        record = await place(gateway, "Only once", "notify")
        final = await ended(gateway, record.call_id)
        call = sim.call(record.provider_call_id or "")
        await call.wait_ended()
        assert call.said == ["Only once"] and final.end_reason == "completed"
        retries = [r for r in call.webhooks if r.attempt == 2]
        assert retries and all(json.loads(r.body)["meta"]["attempt"] == 2 for r in retries)
        log = await gateway.service.store.last_log(10_000)
        answered = [row for row in log if row.kind == "event" and row.data.get("type") == "call.answered"]
        assert len(answered) == 1
