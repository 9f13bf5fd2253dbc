"""The agent on the line by default: a config copied from the original answers inbound callers
through the mock carrier and the Twilio simulator; no credentials means a spoken fallback and a
`failed` end; `continue` owns the turn it waits for; the model's `end_call` hangs up after
speaking."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually, free_port
from voicecall.calls.events import CallEvent
from voicecall.gateway.runtime import Runtime
from voicecall.providers.mock import MockProvider
from voicecall.testing.fakes import FakeAnthropic, FakeOpenAI, ScriptedToolCall
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator

OUR_NUMBER = "+15550000000"
FRIEND = "+15557770001"
GREETING = "Thanks for calling Acme."
ORIGINAL = {"responseModel": "openai/gpt-4o-mini", "inboundPolicy": "allowlist", "allowFrom": [FRIEND],
            "inboundGreeting": GREETING}


def spoken(text: str) -> str:
    return json.dumps({"spoken": text})


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def model_env(fake: FakeOpenAI) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-test-not-real", "OPENAI_BASE_URL": fake.base_url}


def twilio(sim: TwilioSimulator, port: int) -> dict[str, Any]:
    return {"provider": "twilio", "fromNumber": OUR_NUMBER,
            "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                       "apiBaseUrl": sim.base_url},
            "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook"}


def inbound(kind: str, pcid: str, from_: str = FRIEND) -> CallEvent:
    return CallEvent.model_validate({"type": f"call.{kind}", "callId": pcid, "providerCallId": pcid,
                                     "direction": "inbound", "from": from_, "to": OUR_NUMBER,
                                     "timestamp": int(time.time() * 1000)})


async def mock_inbound_call(gateway: Runtime, pcid: str, question: str) -> MockProvider:
    mock = gateway.provider
    assert isinstance(mock, MockProvider)
    await gateway.service.apply_events([inbound("initiated", pcid), inbound("answered", pcid)])
    await eventually(lambda: GREETING in mock.heard(pcid))
    record = await eventually(lambda: gateway.service.live(pcid))
    await eventually(lambda: record.state.value == "listening")
    await mock.inject(pcid, speech=question)
    return mock


async def test_original_config_answers_the_callers_question_through_the_mock_with_memory_per_phone(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script(spoken("Your order 42 ships tomorrow."))
    fake.script(spoken("As I said, tomorrow."))
    async with running_gateway(tmp_path, ORIGINAL, env=model_env(fake)) as gateway:
        mock = await mock_inbound_call(gateway, "pc-1", "Where is order 42?")
        await eventually(lambda: "Your order 42 ships tomorrow." in mock.heard("pc-1"))
        await gateway.service.end("pc-1")
        key = gateway.service.session_key("", FRIEND)
        await eventually(lambda: gateway.store.session_messages(key))
        mock = await mock_inbound_call(gateway, "pc-2", "When again?")
        await eventually(lambda: "As I said, tomorrow." in mock.heard("pc-2"))
    second = [m["content"] for m in fake.requests[1]["messages"]]
    assert "Where is order 42?" in second and "Your order 42 ships tomorrow." in second
    assert fake.requests[0]["model"] == "gpt-4o-mini"


@pytest.mark.parametrize(("scope", "remembered"), [
    ("per-phone", ["When do you open?", "We open at nine."]), ("per-call", [])])
async def test_original_config_answers_the_callers_question_through_the_twilio_simulator(
        tmp_path: Path, fake: FakeOpenAI, scope: str, remembered: list[str]) -> None:
    fake.script(spoken("We open at nine."))
    fake.script(spoken("Welcome back, still nine."))
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as sim, running_gateway(
            tmp_path, {**ORIGINAL, "sessionScope": scope, **twilio(sim, free_port())},
            env=model_env(fake)) as gateway:
        call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url,
                                       callee=Callee(replies=["When do you open?"], reply_delay_s=0.1))
        await call.wait_until(lambda: len(call.said) == 2, timeout=15)
        assert call.said == [GREETING, "We open at nine."]
        await call.hangup()
        await eventually(lambda: not gateway.service.active_calls())
        first_call = (await gateway.store.recent_calls(1))[0]
        key = first_call.session_key or ""
        await eventually(lambda: gateway.store.session_messages(key))
        again = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url,
                                        callee=Callee(replies=["Me again"], reply_delay_s=0.1))
        await again.wait_until(lambda: len(again.said) == 2, timeout=15)
        assert again.said == [GREETING, "Welcome back, still nine."]
        await again.hangup()
    history = [m["content"] for m in fake.requests[1]["messages"][1:-1]]
    assert history == remembered


async def test_without_model_credentials_the_gateway_starts_and_the_caller_hears_the_fallback(
        tmp_path: Path) -> None:
    config = {**ORIGINAL, "responder": {"fallbackMessage": "Nobody can answer right now. Bye."}}
    async with running_gateway(tmp_path, config, env={}) as gateway:
        mock = gateway.provider
        assert isinstance(mock, MockProvider)
        await gateway.service.apply_events([inbound("initiated", "pc-f"), inbound("answered", "pc-f")])
        record = await eventually(lambda: gateway.service.live("pc-f"))
        await eventually(lambda: record.is_terminal)
        assert mock.heard("pc-f") == [GREETING, "Nobody can answer right now. Bye."]
        status = await gateway.api.call("voicecall.status", {"callId": record.call_id})
    call = status["call"]
    assert call["endReason"] == "failed"
    assert "OPENAI_API_KEY" in call["metadata"]["endDetail"]


async def test_responder_disabled_leaves_the_caller_to_continue(tmp_path: Path, fake: FakeOpenAI) -> None:
    config = {**ORIGINAL, "responder": {"enabled": False}}
    async with running_gateway(tmp_path, config, env=model_env(fake)) as gateway:
        mock = gateway.provider
        assert isinstance(mock, MockProvider)
        await gateway.service.apply_events([inbound("initiated", "pc-d"), inbound("answered", "pc-d")])
        await eventually(lambda: GREETING in mock.heard("pc-d"))
        await mock.inject("pc-d", speech="Hello?")
        await asyncio.sleep(0.5)
        assert mock.heard("pc-d") == [GREETING] and fake.requests == []


async def test_a_turn_a_continue_waits_for_belongs_to_it_and_the_next_one_to_the_responder(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script(spoken("The responder answers this one."))
    config = {"outbound": {"defaultMode": "conversation"}, "responseModel": "openai/gpt-4o-mini"}
    async with running_gateway(tmp_path, config, env=model_env(fake)) as gateway:
        mock = gateway.provider
        assert isinstance(mock, MockProvider)
        record = await gateway.service.initiate("+15555550123", "Hi, it's the clinic.")
        pcid = await eventually(lambda: record.provider_call_id)
        await eventually(lambda: "Hi, it's the clinic." in mock.heard(pcid))
        turn = asyncio.create_task(gateway.service.continue_call(record.call_id, "Does Tuesday work?"))
        await eventually(lambda: "Does Tuesday work?" in mock.heard(pcid))
        await eventually(lambda: mock.listening_for(pcid) is not None)
        await mock.inject(pcid, speech="Tuesday works")
        assert await asyncio.wait_for(turn, 10) == "Tuesday works"
        await asyncio.sleep(0.3)
        assert fake.requests == []
        await mock.inject(pcid, speech="Anything else?")
        await eventually(lambda: "The responder answers this one." in mock.heard(pcid))
        assert fake.requests[0]["messages"][-1] == {"role": "user", "content": "Anything else?"}


async def test_the_models_end_call_says_the_last_words_then_hangs_up(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script(spoken("Glad to help."),
                tool_calls=[ScriptedToolCall("end_call", {"last_words": "Goodbye!"})])
    async with running_gateway(tmp_path, ORIGINAL, env=model_env(fake)) as gateway:
        mock = await mock_inbound_call(gateway, "pc-e", "That's all, thanks.")
        record = await eventually(lambda: gateway.service.live("pc-e"))
        await eventually(lambda: record.is_terminal)
        assert mock.heard("pc-e") == [GREETING, "Glad to help.", "Goodbye!"]
        assert record.end_reason == "hangup-bot"
        assert record.metadata["endDetail"] == "ended by the agent"
        tools = [t.text for t in record.transcript if t.speaker == "tool"]
        assert tools == ['end_call {"last_words": "Goodbye!"} -> The call ends after your last words.']
        bot = [t.text for t in record.transcript if t.speaker == "bot"]
        assert bot[-2:] == ["Glad to help.", "Goodbye!"]


async def test_the_originals_anthropic_example_answers_an_inbound_caller(tmp_path: Path) -> None:
    async with FakeAnthropic() as claude:
        claude.script(spoken("Claude here, we open at nine."))
        env = {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": claude.base_url}
        config = {**ORIGINAL, "responseModel": "anthropic/claude-sonnet-4"}
        async with running_gateway(tmp_path, config, env=env) as gateway:
            mock = await mock_inbound_call(gateway, "pc-a", "When do you open?")
            await eventually(lambda: "Claude here, we open at nine." in mock.heard("pc-a"))
        body = claude.requests[0]
        assert body["model"] == "claude-sonnet-4"
        question = {"type": "text", "text": "When do you open?"}
        assert body["messages"][-1] == {"role": "user", "content": [question]}
        assert {t["name"] for t in body["tools"]} == {"end_call", "send_dtmf", "call_info"}


async def test_without_model_credentials_a_twilio_caller_hears_the_fallback_and_is_hung_up(
        tmp_path: Path) -> None:
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as sim, running_gateway(
            tmp_path, {**ORIGINAL, **twilio(sim, free_port())}, env={}) as gateway:
        call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url,
                                       callee=Callee(replies=["Hello?"], reply_delay_s=0.1))
        await call.wait_until(lambda: call.statuses[-1:] == ["completed"], timeout=15)
        fallback = "Sorry, I can't take your call right now. Please try again later. Goodbye."
        assert call.said == [GREETING, fallback]
        record = (await gateway.store.recent_calls(1))[0]
        assert record.end_reason == "failed" and "OPENAI_API_KEY" in record.metadata["endDetail"]


async def test_the_models_transfer_call_puts_the_caller_through_after_its_words(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    desk = "+15557770099"
    fake.script(spoken("Let me find someone for you."),
                tool_calls=[ScriptedToolCall("transfer_call", {"to": desk,
                                                               "message": "Putting you through."})])
    config = {**ORIGINAL, "transfer": {"allowedNumbers": [desk]}, "mock": {"transferTalkMs": 50}}
    async with running_gateway(tmp_path, config, env=model_env(fake)) as gateway:
        mock = await mock_inbound_call(gateway, "pc-t", "Can I talk to a person?")
        record = await eventually(lambda: gateway.service.live("pc-t"))
        await eventually(lambda: record.is_terminal, within=15)
        assert mock.heard("pc-t") == [GREETING, "Let me find someone for you.",
                                      "Putting you through."]
        assert record.end_reason == "transferred" and record.metadata["transfer"]["to"] == desk
        tools = [t.text for t in record.transcript if t.speaker == "tool"]
        assert tools[-1] == f"transfer to {desk}: completed"
    offered = {t["function"]["name"] for t in fake.requests[0]["tools"]}
    assert "transfer_call" in offered


async def test_the_model_is_not_offered_transfer_call_without_allowed_numbers(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script(spoken("I can only help here."))
    async with running_gateway(tmp_path, ORIGINAL, env=model_env(fake)) as gateway:
        mock = await mock_inbound_call(gateway, "pc-n", "Can I talk to a person?")
        await eventually(lambda: "I can only help here." in mock.heard("pc-n"))
    assert "transfer_call" not in {t["function"]["name"] for t in fake.requests[0]["tools"]}


async def test_words_said_while_a_continue_says_its_prompt_are_not_auto_answered(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    config = {"outbound": {"defaultMode": "conversation"}, "mock": {"speakMsPerChar": 40}}
    async with running_gateway(tmp_path, config, env=model_env(fake)) as gateway:
        mock = gateway.provider
        assert isinstance(mock, MockProvider)
        record = await gateway.service.initiate("+15555550123")
        pcid = await eventually(lambda: record.provider_call_id)
        await eventually(lambda: record.state.value == "listening")
        turn = asyncio.create_task(gateway.service.continue_call(
            record.call_id, "Please tell me which day suits you best for the appointment."))
        await eventually(lambda: record.state.value == "speaking")
        await mock.inject(pcid, speech="Sorry, what?")  # over the prompt, before it listens
        await asyncio.sleep(0.3)
        assert fake.requests == []
        await eventually(lambda: mock.listening_for(pcid) is not None)
        await mock.inject(pcid, speech="Tuesday")
        assert await asyncio.wait_for(turn, 10) == "Tuesday"
        assert fake.requests == []


async def test_the_models_transfer_on_twilio_dials_and_an_unanswered_one_comes_back_to_the_agent(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    """Issue 15's transfer through the Twilio simulator: the model's `transfer_call` becomes a
    `<Dial>`; the person does not answer, so the agent speaks again and answers the next turn."""
    desk = "+15557770099"
    unavailable = "Nobody is free right now, but I can still help."
    fake.script(spoken("Let me get someone."), tool_calls=[ScriptedToolCall("transfer_call",
                                                                            {"to": desk})])
    fake.script(spoken("Sure, your order ships Monday."))  # the caller's next turn
    config = {**ORIGINAL, **twilio_config_for_transfer(desk, unavailable)}
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as sim:
        sim.script(desk, Callee(outcome="no-answer"))
        async with running_gateway(tmp_path, {**config, **twilio(sim, free_port())},
                                   env=model_env(fake)) as gateway:
            caller = Callee(replies=["Can I talk to a person?", "Then when does my order ship?"],
                            reply_delay_s=0.1)
            call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url, callee=caller)
            await call.wait_until(lambda: "Sure, your order ships Monday." in call.said, timeout=20)
            assert [(d.number, d.caller_id, d.status) for d in call.dials] == [
                (desk, OUR_NUMBER, "no-answer")]
            assert call.said == [GREETING, "Let me get someone.", unavailable,
                                 "Sure, your order ships Monday."]
            record = gateway.service.live(call.sid)
            assert record is not None and record.metadata["transfer"]["status"] == "no-answer"
            await call.hangup()


def twilio_config_for_transfer(desk: str, unavailable: str) -> dict[str, Any]:
    return {"transfer": {"allowedNumbers": [desk], "timeoutSec": 5,
                         "unavailableMessage": unavailable}}
