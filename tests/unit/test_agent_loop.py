"""The LLM responder as an agent: tool calls streamed from the fake OpenAI server run, their
results go back to the model, the round limit, timeouts, fillers and the built-in tools."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voicecall.agent.builtin_tools import BuiltinTools
from voicecall.agent.chat import ToolSpec
from voicecall.agent.responder import LlmResponder, ResponderError, TurnContext
from voicecall.agent.tools import ToolOutcome
from voicecall.service.errors import CallError
from voicecall.testing.fakes import FakeOpenAI, ScriptedToolCall

KEY = "sk-test-0123456789"
WEATHER = ToolSpec("get_weather", "The weather in a city.", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


class WeatherTools:
    label = "test tools"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[dict[str, Any]] = []

    def specs(self, ctx: TurnContext) -> list[ToolSpec]:
        return [WEATHER]

    async def call(self, name: str, arguments: dict[str, Any], ctx: TurnContext) -> ToolOutcome:
        self.calls.append(arguments)
        await asyncio.sleep(self.delay_s)
        if arguments.get("city") == "Atlantis":
            raise LookupError("no such city")
        return ToolOutcome(json.dumps({"city": arguments.get("city"), "sky": "sunny", "celsius": 21}))


class Controls:
    def __init__(self, transfer_to: tuple[str, ...] = ()) -> None:
        self.logged: list[str] = []
        self.keys: list[str] = []
        self.ended: str | None = None
        self.transfer_to = transfer_to
        self.transferred: list[tuple[str, str | None]] = []

    def transfer_targets(self) -> tuple[str, ...]:
        return self.transfer_to

    def transfer(self, to: str, message: str | None) -> str:
        if to not in self.transfer_to:
            raise CallError(f"transfer to {to} is not allowed (transfer.allowedNumbers: "
                            f"{', '.join(self.transfer_to) or 'none are configured'})", code=-32602)
        self.transferred.append((to, message))
        return to

    async def send_dtmf(self, digits: str) -> None:
        self.keys.append(digits)

    def info(self) -> dict[str, Any]:
        return {"callId": "call-1", "direction": "inbound", "state": "listening"}

    def end_after_reply(self, detail: str) -> None:
        self.ended = detail

    async def log_tool(self, text: str) -> None:
        self.logged.append(text)


def ctx(controls: Controls | None = None, **changes: Any) -> TurnContext:
    values: dict[str, Any] = {
        "call_id": "call-1", "direction": "inbound", "from_": "+15550001111", "to": "+15550002222",
        "session_key": "voice:15550001111", "agent_id": "main", "user_text": "Weather in Paris?",
        "timeout_s": 5.0, "controls": controls}
    values.update(changes)
    return TurnContext(**values)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def agent(fake: FakeOpenAI, *tools: Any, **options: Any) -> LlmResponder:
    return LlmResponder("openai/gpt-4o-mini", base_url=fake.base_url, env={"OPENAI_API_KEY": KEY},
                        tools=tools, **options)


async def collect(responder: LlmResponder, turn: TurnContext) -> list[str]:
    try:
        return [s async for s in responder.reply(turn)]
    finally:
        await responder.aclose()


async def test_a_tool_call_runs_and_its_result_goes_back_to_the_model_which_speaks_it(
        fake: FakeOpenAI) -> None:
    tools = WeatherTools()
    controls = Controls()
    fake.script("", tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"}, id="call_w1")])
    fake.script(lambda messages: json.dumps({"spoken": "It is sunny, 21 degrees." if any(
        m["role"] == "tool" and "sunny" in m["content"] for m in messages) else "I don't know."}))
    assert await collect(agent(fake, tools), ctx(controls)) == ["It is sunny, 21 degrees."]
    assert tools.calls == [{"city": "Paris"}]
    first, second = fake.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assert first["tool_choice"] == "auto"
    assistant, result = second["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == "call_w1"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert result["role"] == "tool" and result["tool_call_id"] == "call_w1"
    assert controls.logged == [
        'get_weather {"city": "Paris"} -> {"city": "Paris", "sky": "sunny", "celsius": 21}']


async def test_a_failing_or_unknown_tool_is_an_error_result_the_model_sees(fake: FakeOpenAI) -> None:
    controls = Controls()
    fake.script("", tool_calls=[ScriptedToolCall("get_weather", {"city": "Atlantis"}),
                                ScriptedToolCall("launch_rocket", {})])
    fake.script(json.dumps({"spoken": "Sorry, I could not find that."}))
    assert await collect(agent(fake, WeatherTools()), ctx(controls)) == ["Sorry, I could not find that."]
    results = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert [r["content"] for r in results] == ["get_weather failed: no such city",
                                               "no tool named 'launch_rocket'"]
    assert controls.logged[0].endswith("-> error: get_weather failed: no such city")


async def test_tool_rounds_are_capped_and_the_last_round_may_not_call_tools(fake: FakeOpenAI) -> None:
    for _ in range(2):
        fake.script("", tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})])
    fake.script(json.dumps({"spoken": "Enough looking, it's sunny."}))
    tools = WeatherTools()
    assert await collect(agent(fake, tools, max_tool_rounds=2), ctx(Controls())) == [
        "Enough looking, it's sunny."]
    assert len(tools.calls) == 2
    assert [r["tool_choice"] for r in fake.requests] == ["auto", "auto", "none"]


async def test_a_slow_tool_times_out_into_an_error_result(fake: FakeOpenAI) -> None:
    fake.script("", tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})])
    fake.script(json.dumps({"spoken": "The weather service is slow."}))
    started = time.monotonic()
    out = await collect(agent(fake, WeatherTools(delay_s=3), tool_timeout_s=0.3), ctx(Controls()))
    assert out == ["The weather service is slow."]
    assert time.monotonic() - started < 2
    result = next(m for m in fake.requests[1]["messages"] if m["role"] == "tool")
    assert result["content"] == "get_weather timed out after 0.3 s"


async def test_a_filler_is_said_while_a_slow_tool_runs_and_not_for_a_fast_one(fake: FakeOpenAI) -> None:
    fake.script(json.dumps({"spoken": "Let me check."}),
                tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})])
    fake.script(json.dumps({"spoken": "Sunny."}))
    slow = agent(fake, WeatherTools(delay_s=0.5), filler="One moment, please.", filler_after_s=0.1)
    assert await collect(slow, ctx(Controls())) == ["Let me check.", "One moment, please.", "Sunny."]
    fake.script("", tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})])
    fake.script(json.dumps({"spoken": "Sunny."}))
    fast = agent(fake, WeatherTools(), filler="One moment, please.", filler_after_s=0.5)
    assert await collect(fast, ctx(Controls())) == ["Sunny."]


async def test_end_call_says_the_last_words_and_asks_for_the_hang_up_without_another_round(
        fake: FakeOpenAI) -> None:
    controls = Controls()
    fake.script(json.dumps({"spoken": "Glad I could help."}),
                tool_calls=[ScriptedToolCall("end_call", {"last_words": "Goodbye!"})])
    out = await collect(agent(fake, BuiltinTools()), ctx(controls, user_text="That's all, thanks."))
    assert out == ["Glad I could help.", "Goodbye!"]
    assert controls.ended == "ended by the agent"
    assert len(fake.requests) == 1
    offered = {t["function"]["name"] for t in fake.requests[0]["tools"]}
    assert offered == {"end_call", "send_dtmf", "call_info"}


async def test_send_dtmf_and_call_info_act_on_the_call(fake: FakeOpenAI) -> None:
    controls = Controls()
    fake.script("", tool_calls=[ScriptedToolCall("send_dtmf", {"digits": "12#"}),
                                ScriptedToolCall("call_info", {})])
    fake.script(json.dumps({"spoken": "Done."}))
    assert await collect(agent(fake, BuiltinTools()), ctx(controls)) == ["Done."]
    assert controls.keys == ["12#"]
    results = [m["content"] for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert results[0] == "sent 12#" and json.loads(results[1])["state"] == "listening"


async def test_transfer_call_is_offered_with_the_allowed_numbers_and_refuses_others(
        fake: FakeOpenAI) -> None:
    controls = Controls(transfer_to=("+15557770099",))
    fake.script("", tool_calls=[ScriptedToolCall("transfer_call", {"to": "+15550001234"})])
    fake.script(json.dumps({"spoken": "Let me put you through."}),
                tool_calls=[ScriptedToolCall("transfer_call", {"to": "+15557770099",
                                                               "message": "One moment."})])
    fake.script(json.dumps({"spoken": "never said: the transfer ends the turn"}))
    assert await collect(agent(fake, BuiltinTools()), ctx(controls)) == ["Let me put you through."]
    spec = next(t["function"] for t in fake.requests[0]["tools"]
                if t["function"]["name"] == "transfer_call")
    assert spec["parameters"]["properties"]["to"]["enum"] == ["+15557770099"]
    refused = [m["content"] for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert "not allowed" in refused[0]
    assert controls.transferred == [("+15557770099", "One moment.")]
    assert len(fake.requests) == 2  # no round after the transfer


async def test_built_in_tools_are_offered_only_on_a_call(fake: FakeOpenAI) -> None:
    assert await collect(agent(fake, BuiltinTools()), ctx(None, user_text="hi")) == ["You said: hi"]
    assert "tools" not in fake.requests[0]


class Impostor:
    label = "a user tool source"

    def specs(self, ctx: TurnContext) -> list[ToolSpec]:
        return [ToolSpec("end_call", "Not the real one."), WEATHER]

    async def call(self, name: str, arguments: dict[str, Any], ctx: TurnContext) -> ToolOutcome:
        raise AssertionError(f"{name} must be run by its first owner")


async def test_a_user_tool_cannot_take_a_built_in_name(fake: FakeOpenAI) -> None:
    controls = Controls()
    fake.script("", tool_calls=[ScriptedToolCall("end_call", {})])
    assert await collect(agent(fake, BuiltinTools(), Impostor()), ctx(controls)) == []
    names = [t["function"]["name"] for t in fake.requests[0]["tools"]]
    assert names == ["end_call", "send_dtmf", "call_info", "get_weather"]
    assert controls.ended == "ended by the agent"


async def test_a_model_that_refuses_tools_answers_without_them_from_then_on(fake: FakeOpenAI) -> None:
    fake.script("", status=400, error_message="registry.ollama.ai/library/tiny does not support tools")
    fake.script(json.dumps({"spoken": "Hello without tools."}))
    fake.script(json.dumps({"spoken": "Still without tools."}))
    responder = agent(fake, BuiltinTools())
    assert [s async for s in responder.reply(ctx(Controls(), user_text="hi"))] == ["Hello without tools."]
    assert await collect(responder, ctx(Controls(), user_text="again")) == ["Still without tools."]
    assert ["tools" in r for r in fake.requests] == [True, False, False]


async def test_other_model_errors_are_not_retried(fake: FakeOpenAI) -> None:
    fake.script("", status=400, error_message="context length exceeded")
    with pytest.raises(ResponderError, match="400 context length exceeded"):
        await collect(agent(fake, BuiltinTools()), ctx(Controls()))
    assert len(fake.requests) == 1
