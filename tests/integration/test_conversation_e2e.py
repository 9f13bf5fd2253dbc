"""The conversation brain end to end: caller turns answered by an LLM (the fake OpenAI-compatible
server, streaming over SSE) through the Twilio simulator and the mock carrier; session memory,
stale replies, the http responder, idle handling and model failures."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.helpers import eventually, free_port
from voicecall.providers.mock import MockProvider
from voicecall.testing.fakes import FakeOpenAI
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator

OUR_NUMBER = "+15550000000"
FRIEND = "+15557770001"
GREETING = "Hello! How can I help you today?"
ENV = {"OPENAI_API_KEY": "sk-test-not-real"}



def spoken(text: str) -> str:
    return json.dumps({"spoken": text})



@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def brain(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"responder": {"enabled": True, "baseUrl": fake.base_url},
            "responseModel": "openai/gpt-4o-mini", "inboundPolicy": "allowlist",
            "allowFrom": [FRIEND], "maxConcurrentCalls": 4, **extra}


def twilio(sim: TwilioSimulator, port: int) -> dict[str, Any]:
    return {"provider": "twilio", "fromNumber": OUR_NUMBER,
            "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                       "apiBaseUrl": sim.base_url},
            "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook"}


async def test_inbound_caller_is_greeted_and_gets_three_spoken_answers_with_memory(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    for answer in ("Opening hours are nine to five.", "Yes, we are open Saturday.",
                   "You're welcome, goodbye."):
        fake.script(spoken(answer))
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as sim, running_gateway(
            tmp_path, {**brain(fake), **twilio(sim, free_port())}, env=ENV) as gateway:
        caller = Callee(replies=["When are you open?", "And on Saturday?", "Thanks!"], reply_delay_s=0.1)
        call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url, callee=caller)
        await call.wait_until(lambda: len(call.said) == 4, timeout=20)
        assert call.said == [GREETING, "Opening hours are nine to five.", "Yes, we are open Saturday.",
                             "You're welcome, goodbye."]
        record = gateway.service.live(call.sid)
        assert record is not None
        await eventually(lambda: len(record.transcript) == 7)
        assert [t.speaker for t in record.transcript] == ["bot", "user", "bot", "user", "bot", "user", "bot"]
        # The exchange is remembered once the reply's last sentence has played, just after its
        # transcript entry.
        key = record.session_key or ""
        memory = await eventually(lambda: _when_full(gateway.store.session_messages(key), 6))
        assert [m["role"] for m in memory] == ["user", "assistant"] * 3
        assert memory[0]["content"] == "When are you open?"
        # The model saw the conversation so far (history and transcript) on the third turn.
        third = fake.requests[2]["messages"]
        assert third[0]["role"] == "system" and "When are you open?" in third[0]["content"]
        assert third[-1] == {"role": "user", "content": "Thanks!"}
        latency = await gateway.api.call("voicecall.latency", {})
        assert latency["turnLatency"]["count"] == 3
        await call.hangup()


@pytest.mark.parametrize("scope,remembers", [("per-phone", True), ("per-call", False)])
async def test_second_call_from_the_same_number_sees_memory_only_per_phone(
        tmp_path: Path, fake: FakeOpenAI, scope: str, remembers: bool) -> None:
    fake.script(spoken("Noted, your order number is 42."))
    fake.script(spoken("Welcome back."))
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as sim, running_gateway(
            tmp_path, {**brain(fake, sessionScope=scope), **twilio(sim, free_port())}, env=ENV) as gateway:
        first = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url,
                                        callee=Callee(replies=["My order is 42"], reply_delay_s=0.1))
        await first.wait_until(lambda: len(first.said) == 2, timeout=15)
        await first.hangup()
        await eventually(lambda: not gateway.service.active_calls())
        # The first call's turn is remembered once its reply has finished, which may be just
        # after the hang-up; the second call comes after that.
        first_call = (await gateway.service.store.recent_calls(1))[0]
        key = gateway.service.session_key(first_call.call_id, FRIEND)
        await eventually(lambda: gateway.service.store.session_messages(key))
        second = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url,
                                         callee=Callee(replies=["It's me again"], reply_delay_s=0.1))
        await second.wait_until(lambda: len(second.said) == 2, timeout=15)
        messages = fake.requests[1]["messages"]
        history = [m["content"] for m in messages[1:-1]]
        assert ("My order is 42" in history) is remembers
        await second.hangup()


async def test_first_sentence_is_spoken_before_the_model_finishes(tmp_path: Path, fake: FakeOpenAI) -> None:
    reply = spoken("Sure thing. " + "Here is a much longer second sentence that keeps streaming for a while.")
    chunks = len(reply) / 4
    fake.script(reply, token_delay_s=0.08, chunk_chars=4)  # about 6.5 s of streaming in all
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as sim, running_gateway(
            tmp_path, {**brain(fake), **twilio(sim, free_port())}, env=ENV) as gateway:
        call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url,
                                       callee=Callee(replies=["Can you help?"], reply_delay_s=0.1))
        await call.wait_until(lambda: "Sure thing." in call.said, timeout=15)
        elapsed = time.monotonic() - fake.recorded[-1].received_at
        assert elapsed < chunks * 0.08 * 0.6, "the first sentence waited for the whole reply"
        assert not any("second sentence" in s for s in call.said)
        await call.wait_until(lambda: len(call.said) == 3, timeout=15)
        await call.hangup()


async def test_caller_speaking_again_discards_the_older_reply(tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script(spoken("This reply is stale."), first_token_delay_s=1.0)
    fake.script(spoken("Answer to the newer question."))
    async with running_gateway(tmp_path, brain(fake, inboundPolicy="open"), env=ENV) as gateway:
        mock = gateway.provider
        assert isinstance(mock, MockProvider)
        await gateway.service.apply_events([_inbound("initiated", "pc-1"), _inbound("answered", "pc-1")])
        record = await eventually(lambda: gateway.service.live("pc-1"))
        await eventually(lambda: GREETING in mock.heard("pc-1"))
        await mock.inject("pc-1", speech="First question?")
        await asyncio.sleep(0.2)
        await mock.inject("pc-1", speech="Actually, a different question.")
        await eventually(lambda: "Answer to the newer question." in mock.heard("pc-1"))
        await asyncio.sleep(1.2)  # the stale reply has arrived by now, and must not be spoken
        assert "This reply is stale." not in mock.heard("pc-1")
        assert all(t.text != "This reply is stale." for t in record.transcript)


async def _when_full(messages: Any, count: int) -> Any:
    got = await messages
    return got if len(got) >= count else None


def _inbound(kind: str, pcid: str) -> Any:
    from voicecall.calls.events import CallEvent

    return CallEvent.model_validate({"type": f"call.{kind}", "callId": pcid, "providerCallId": pcid,
                                     "direction": "inbound", "from": FRIEND, "to": OUR_NUMBER,
                                     "timestamp": int(time.time() * 1000)})


async def test_http_responder_speaks_what_the_users_endpoint_returns(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def agent(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(body)
        return JSONResponse({"text": f"Your agent heard: {body['text']}"})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/turn", agent, methods=["POST"])]),
                                           host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    try:
        config = {"responder": {"enabled": True, "type": "http", "url": f"http://127.0.0.1:{port}/turn"},
                  "inboundPolicy": "open"}
        async with running_gateway(tmp_path, config) as gateway:
            mock = gateway.provider
            assert isinstance(mock, MockProvider)
            await gateway.service.apply_events([_inbound("initiated", "pc-h"), _inbound("answered", "pc-h")])
            await eventually(lambda: GREETING in mock.heard("pc-h"))
            await mock.inject("pc-h", speech="book a table")
            await eventually(lambda: "Your agent heard: book a table." in mock.heard("pc-h")
                             or "Your agent heard: book a table" in mock.heard("pc-h"))
            assert seen[0]["text"] == "book a table" and seen[0]["from"] == FRIEND
            assert seen[0]["sessionKey"].endswith(":15557770001")
    finally:
        server.should_exit = True
        await task


async def test_idle_prompt_then_goodbye_and_hang_up_at_the_configured_times(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    config = brain(fake, inboundPolicy="open", idle={"promptAfterSec": 1, "hangupAfterSec": 2})
    async with running_gateway(tmp_path, config, env=ENV) as gateway:
        mock = gateway.provider
        assert isinstance(mock, MockProvider)
        await gateway.service.apply_events([_inbound("initiated", "pc-i"), _inbound("answered", "pc-i")])
        record = await eventually(lambda: gateway.service.live("pc-i"))
        await eventually(lambda: GREETING in mock.heard("pc-i"))
        listening_at = time.monotonic()
        await eventually(lambda: "Are you still there?" in mock.heard("pc-i"), within=5)
        prompt_at = time.monotonic()
        await eventually(lambda: record.is_terminal, within=6)
        ended_at = time.monotonic()
        heard = mock.heard("pc-i")
        assert heard[-1] == "It seems you've stepped away. Goodbye!"
        assert 0.9 <= prompt_at - listening_at <= 2.0
        assert 1.9 <= ended_at - listening_at <= 4.0
        assert record.end_reason == "hangup-bot" and record.metadata["endDetail"] == "caller idle"


async def test_model_timeout_speaks_nothing_half_made_and_the_call_stays_usable(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script(spoken("This answer never finishes because"), hang=True)
    fake.script(spoken("Second try works."))
    config = brain(fake, inboundPolicy="open", responseTimeoutMs=800)
    async with running_gateway(tmp_path, config, env=ENV) as gateway:
        mock = gateway.provider
        assert isinstance(mock, MockProvider)
        await gateway.service.apply_events([_inbound("initiated", "pc-t"), _inbound("answered", "pc-t")])
        record = await eventually(lambda: gateway.service.live("pc-t"))
        await eventually(lambda: GREETING in mock.heard("pc-t"))
        await mock.inject("pc-t", speech="Hello?")
        await asyncio.sleep(1.5)
        assert mock.heard("pc-t") == [GREETING]
        assert not record.is_terminal
        await mock.inject("pc-t", speech="Are you there?")
        await eventually(lambda: "Second try works." in mock.heard("pc-t"))


async def test_per_number_route_sets_greeting_voice_and_model_for_calls_to_that_number(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script(spoken("Acme answers."))
    route = {"inboundGreeting": "Welcome to Acme.", "responseModel": "openai/acme-model",
             "responseSystemPrompt": "You are Acme's receptionist.",
             "tts": {"providers": {"openai": {"voice": "onyx"}}}}
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as sim, running_gateway(
            tmp_path, {**brain(fake, numbers={OUR_NUMBER: route}), **twilio(sim, free_port())},
            env=ENV) as gateway:
        call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url,
                                       callee=Callee(replies=["Hi"], reply_delay_s=0.1))
        await call.wait_until(lambda: len(call.said) == 2, timeout=15)
        assert call.said == ["Welcome to Acme.", "Acme answers."]
        assert {s.voice for s in call.spoken} == {"Polly.Brian"}
        request = fake.requests[0]
        assert request["model"] == "acme-model"
        assert request["messages"][0]["content"].startswith("You are Acme's receptionist.")
        record = gateway.service.live(call.sid)
        assert record is not None and record.metadata["route"]["responseModel"] == "openai/acme-model"
        await call.hangup()
