"""Plivo end to end: the gateway's Plivo adapter against the Plivo simulator, over real sockets,
with V3-signed callbacks, the Voice API and Plivo XML as Plivo speaks them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.helpers import call_ended, eventually, free_port, place_call
from tests.integration.plivo_setup import CALLEE, FRIEND, OUR_NUMBER, STRANGER, plivo_config
from voicecall.gateway.runtime import Runtime
from voicecall.testing.fakes import FakeOpenAI
from voicecall.testing.gateway import running_gateway
from voicecall.testing.plivo import Callee, PlivoSimulator


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
    # Speech at real speed (10 ms a character), so a hang-up that did not wait for the words
    # to be heard would cut them off.
    message = "Your order has shipped"
    async with PlivoSimulator(time_scale=1.0, speak_ms_per_char=10) as sim, \
            running_gateway(tmp_path, plivo_config(sim, free_port())) as gateway:
        sim.script(CALLEE, Callee(answer_after_s=0.1))
        call_id = (await place_call(gateway, CALLEE, message, "notify")).call_id
        record = await call_ended(gateway, call_id)
        call = sim.call(record.provider_call_id)
        assert await call.wait_ended() == "completed" and call.said == [message]
        assert call.documents[0].startswith(f'<Response><Speak voice="WOMAN" language="en-US">'
                                            f"{message}</Speak>")  # no extra round trip
        assert (record.state.value, record.end_reason) == ("completed", "completed")
        assert [t.text for t in record.transcript] == [message]
        transfers = [r for r in sim.api_requests if r.method == "POST" and r.path.endswith(
            f"/Call/{call.uuid}/")]
        hangups = [r for r in sim.api_requests if r.method == "DELETE"]
        assert transfers == [] and len(hangups) == 1 and hangups[0].status_code == 204
        assert call.hangup_source == "API Request"


async def test_three_turns_each_listen_with_getinput_speech_and_their_own_turn_token(
        gateway: Runtime, sim: PlivoSimulator) -> None:
    turns = {"How are you?": "Hi, I'm well", "When can you come in?": "Tuesday at noon",
             "Anything else?": "No, that's all"}
    sim.script(CALLEE, Callee(replies=list(turns.values()), reply_delay_s=0.2))
    record = await place_call(gateway, CALLEE, "Hello, this is the clinic", "conversation")
    call = sim.call(record.provider_call_id or "")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    tokens: list[str] = []
    for question, reply in turns.items():
        answer = await gateway.api.call("voicecall.continue",
                                        {"callId": record.call_id, "message": question})
        assert answer["transcript"] == reply and call.said[-1] == question
        listen = call.get_inputs[-1]
        assert listen["inputType"] == "speech" and listen["redirect"] == "true"
        tokens.append(parse_qs(urlsplit(listen["action"]).query)["turnToken"][0])
    assert len(set(tokens)) == 3  # a stale GetInput result cannot complete a newer turn
    assert call.said[0] == "Hello, this is the clinic" and len(call.said) == 4
    assert [(t.speaker, t.text) for t in record.transcript][-2:] == [
        ("bot", "Anything else?"), ("user", "No, that's all")]
    assert (await gateway.api.call("voicecall.end", {"callId": record.call_id}))["success"]
    assert await call.wait_ended() == "completed"


@pytest.mark.parametrize("outcome,status,reason", [("busy", "busy", "busy"),
                                                   ("no-answer", "no-answer", "no-answer"),
                                                   ("failed", "failed", "failed")])
async def test_unanswered_calls_end_with_the_reason_of_plivos_hangup_callback(
        gateway: Runtime, sim: PlivoSimulator, outcome: str, status: str, reason: str) -> None:
    sim.script(CALLEE, Callee(outcome=outcome, answer_after_s=0.1))  # type: ignore[arg-type]
    record = await place_call(gateway, CALLEE, "Hello", "notify")
    final = await call_ended(gateway, record.call_id, within=15)
    call = sim.call(record.provider_call_id or "")
    await call.wait_ended()
    hangup = next(r for r in sim.requests if r.kind == "hangup")
    assert hangup.params["CallStatus"] == status and hangup.status_code == 200
    assert (final.end_reason, final.answered_at, call.said) == (reason, None, [])


async def test_keys_are_played_by_a_dtmf_document_the_a_leg_is_transferred_to(
        gateway: Runtime, sim: PlivoSimulator) -> None:
    sim.script(CALLEE, Callee())
    record = await place_call(gateway, CALLEE, "Connecting you", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    await gateway.api.call("voicecall.dtmf", {"callId": record.call_id, "digits": "1234#"})
    call = sim.call(record.provider_call_id or "")
    assert call.digits_heard == "1234#"
    assert any("<DTMF>1234#</DTMF>" in doc for doc in call.documents)
    assert any(r.kind == "transfer" for r in sim.requests)
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_an_allowlisted_caller_hears_the_greeting_in_the_answer_xml(
        gateway: Runtime, sim: PlivoSimulator) -> None:
    call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
    await call.wait_heard("How can I help", timeout=10)
    assert call.said == ["Hello! How can I help you today?"]
    assert "<Speak" in call.documents[0]  # answered at once: no redirect, no transfer
    live = await eventually(lambda: gateway.service.live(call.uuid))
    assert (live.direction, live.from_, live.to) == ("inbound", FRIEND, OUR_NUMBER)
    assert await call.hangup() == "completed"
    assert (await call_ended(gateway, live.call_id)).end_reason == "completed"


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


async def test_a_callback_replayed_after_a_restart_is_acknowledged_without_side_effects(
        tmp_path: Path) -> None:
    async with PlivoSimulator(time_scale=0.05) as sim:
        config = plivo_config(sim, free_port())
        async with running_gateway(tmp_path, config) as first_run:
            call = await sim.place_inbound(FRIEND, OUR_NUMBER, first_run.webhook_url)
            await call.wait_heard("How can I help", timeout=10)
            await call.hangup()
            await eventually(lambda: first_run.service.active_calls() == [])
        (original,) = [r for r in sim.requests if r.kind == "answer"]
        async with running_gateway(tmp_path, config) as second_run:
            store = second_run.service.store
            entries = await store.last_log(10_000)
            async with httpx.AsyncClient() as client:
                replayed = await client.post(original.url, data=original.params,
                                             headers=original.headers)
            assert replayed.status_code == 200 and replayed.text == original.body
            assert await store.last_log(10_000) == entries
            assert second_run.service.active_calls() == []


async def test_callbacks_signed_with_v2_only_are_accepted(tmp_path: Path) -> None:
    async with PlivoSimulator(time_scale=0.05, v2_only=True) as sim, \
            running_gateway(tmp_path, plivo_config(sim, free_port())) as gateway:
        call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
        await call.wait_heard("How can I help", timeout=10)
        assert all("X-Plivo-Signature-V3" not in r.headers for r in sim.requests)
        await call.hangup()


async def test_machine_detection_ends_a_notify_call_answered_by_a_machine_as_voicemail(
        tmp_path: Path) -> None:
    config_extra = {"outbound": {"notifyHangupDelaySec": 0, "machineDetection": True}}
    async with PlivoSimulator(time_scale=0.05) as sim, \
            running_gateway(tmp_path, plivo_config(sim, free_port(), **config_extra)) as gateway:
        sim.script(CALLEE, Callee(answered_by="machine_start", answer_after_s=0.1))
        call_id = (await place_call(gateway, CALLEE, "This is a reminder", "notify")).call_id
        assert (await call_ended(gateway, call_id)).end_reason == "voicemail"
        fired = next(r for r in sim.api_requests if r.method == "POST" and r.path.endswith("/Call/"))
        assert fired.body["machine_detection"] == "true"
        assert fired.body["ring_timeout"] == 30


async def test_a_pre_connect_dtmf_sequence_is_keyed_before_the_first_words(
        gateway: Runtime, sim: PlivoSimulator) -> None:
    started = await gateway.api.call("voicecall.start", {
        "to": CALLEE, "message": "Joining now", "mode": "conversation", "dtmfSequence": "ww123#"})
    record = await eventually(lambda: gateway.service.live(started["callId"]))
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    heard = sim.call(record.provider_call_id or "").heard
    assert heard[:2] == [("digits", "ww123#"), ("speak", "Joining now")]
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_when_the_call_uuid_differs_from_the_request_uuid_commands_follow_the_call_uuid(
        tmp_path: Path) -> None:
    async with PlivoSimulator(time_scale=0.05, speak_ms_per_char=5,
                              distinct_request_uuid=True) as sim, \
            running_gateway(tmp_path, plivo_config(sim, free_port())) as gateway:
        sim.script(CALLEE, Callee(replies=["Sure"], reply_delay_s=0.1))
        record = await place_call(gateway, CALLEE, "Hello there", "conversation")
        call = await sim.wait_for_call()
        assert record.provider_call_id == call.request_uuid != call.uuid
        answer = await gateway.api.call("voicecall.continue",
                                        {"callId": record.call_id, "message": "Shall we?"})
        assert answer["transcript"] == "Sure" and call.said == ["Hello there", "Shall we?"]
        transfers = [r.path for r in sim.api_requests if r.method == "POST" and "/Call/" in r.path
                     and not r.path.endswith("/Call/")]
        assert transfers and all(call.uuid in path for path in transfers)
        await gateway.api.call("voicecall.end", {"callId": record.call_id})
        assert await call.wait_ended() == "completed"
        assert [r.status_code for r in sim.api_requests if r.method == "DELETE"] == [204]


async def test_an_accepted_inbound_caller_is_answered_by_the_responder_turn_after_turn(
        tmp_path: Path) -> None:
    replies = ["We open at nine.", "Yes, on Saturdays too."]
    async with FakeOpenAI() as model:
        for reply in replies:
            model.script(json.dumps({"spoken": reply}))
        async with PlivoSimulator(time_scale=0.05, speak_ms_per_char=5) as sim, running_gateway(
                tmp_path, plivo_config(sim, free_port(), responder={"enabled": True,
                                                                     "baseUrl": model.base_url},
                                       responseModel="openai/gpt-4o-mini"),
                env={"OPENAI_API_KEY": "sk-test-not-real"}) as gateway:
            caller = Callee(replies=["When do you open?", "Saturdays as well?"], reply_delay_s=0.1)
            call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url, callee=caller)
            await call.wait_until(lambda: len(call.said) == 3, timeout=20)
            assert call.said == ["Hello! How can I help you today?", *replies]
            record = gateway.service.live(call.uuid)
            assert record is not None
            await eventually(lambda: [t.speaker for t in record.transcript] == [
                "bot", "user", "bot", "user", "bot"])
            await call.hangup()


async def test_callbacks_delivered_twice_change_the_call_once(tmp_path: Path) -> None:
    async with PlivoSimulator(time_scale=0.05, speak_ms_per_char=5, webhook_retries=1) as sim, \
            running_gateway(tmp_path, plivo_config(sim, free_port())) as gateway:
        sim.script(CALLEE, Callee(replies=["Yes"], reply_delay_s=0.1))
        record = await place_call(gateway, CALLEE, "Good morning", "conversation")
        call = await sim.wait_for_call()
        answer = await gateway.api.call("voicecall.continue",
                                        {"callId": record.call_id, "message": "Ready?"})
        assert answer["transcript"] == "Yes" and call.said == ["Good morning", "Ready?"]
        copies = [r for r in sim.requests if r.kind == "answer"]
        assert len(copies) == 2 and copies[0].body == copies[1].body
        assert [(t.speaker, t.text) for t in record.transcript] == [
            ("bot", "Good morning"), ("bot", "Ready?"), ("user", "Yes")]
        await gateway.api.call("voicecall.end", {"callId": record.call_id})
        assert await call.wait_ended() == "completed"


async def test_a_call_restored_after_a_restart_is_checked_and_driven_by_its_call_uuid(
        tmp_path: Path) -> None:
    async with PlivoSimulator(time_scale=0.05, speak_ms_per_char=5,
                              distinct_request_uuid=True) as sim:
        config = plivo_config(sim, free_port())
        async with running_gateway(tmp_path, config) as first_run:
            record = await place_call(first_run, CALLEE, "Hello there", "conversation")
            call = await sim.wait_for_call()
            assert record.provider_call_id == call.request_uuid != call.uuid
            await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
        # the gateway went down with the call up (nothing ended it); it comes back
        async with running_gateway(tmp_path, config) as second_run:
            restored = second_run.service.live(record.call_id)
            assert restored is not None and not restored.is_terminal
            checks = [r for r in sim.api_requests if r.method == "GET"]
            assert [r.path for r in checks] == [f"/v1/Account/{sim.auth_id}/Call/{call.uuid}/"]
            assert [r.status_code for r in checks] == [200]
            await second_run.api.call("voicecall.end", {"callId": record.call_id})
            assert await call.wait_ended() == "completed"
