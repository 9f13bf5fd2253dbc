"""Every `responseModel` prefix against a local fake of its API shape, streaming and tools
included: Anthropic's Messages API (FakeAnthropic) and the OpenAI-compatible providers
(FakeOpenAI), each with its `<PROVIDER>_API_KEY` and `<PROVIDER>_BASE_URL`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voicecall.agent.chat import ToolSpec
from voicecall.agent.models import PROVIDERS, resolve_model
from voicecall.agent.responder import LlmResponder, ResponderError, ResponderUnavailable, TurnContext
from voicecall.agent.tools import ToolOutcome
from voicecall.testing.fakes import FakeAnthropic, FakeOpenAI, ScriptedToolCall

OPENAI_SHAPED = ["openai", "google", "groq", "openrouter", "mistral", "xai", "deepseek", "together",
                 "ollama", "lmstudio", "vllm"]
LOOKUP = ToolSpec("lookup_order", "Where an order is.", {
    "type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]})


class OrderTools:
    label = "order tools"

    def specs(self, ctx: TurnContext) -> list[ToolSpec]:
        return [LOOKUP]

    async def call(self, name: str, arguments: dict[str, Any], ctx: TurnContext) -> ToolOutcome:
        return ToolOutcome(json.dumps({"order": arguments["order"], "status": "shipped"}))


def ctx(text: str = "Where is order 42?") -> TurnContext:
    return TurnContext(call_id="c1", direction="inbound", from_="+15550001111", to="+15550002222",
                       session_key="k", agent_id="main", user_text=text, timeout_s=5.0)


def answers_from_tool(messages: list[dict[str, Any]]) -> str:
    """The fake model speaks the tool's result once it has one (OpenAI `tool` message or
    Anthropic `tool_result` block)."""
    for m in messages:
        blocks = m.get("content") if isinstance(m.get("content"), list) else []
        results = [b.get("content") for b in blocks if b.get("type") == "tool_result"]
        if m.get("role") == "tool":
            results.append(m.get("content"))
        for result in results:
            status = json.loads(str(result))["status"]
            return json.dumps({"spoken": f"Order 42 has {status}. Anything else?"})
    return json.dumps({"spoken": "I don't know."})


async def speak(responder: LlmResponder, turn: TurnContext) -> list[str]:
    try:
        return [s async for s in responder.reply(turn)]
    finally:
        await responder.aclose()


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key="sk-ant-test") as server:
        yield server


def test_the_table_has_every_documented_prefix_and_its_api_shape() -> None:
    assert set(PROVIDERS) == {"anthropic", *OPENAI_SHAPED}
    assert {name for name, p in PROVIDERS.items() if p.api == "anthropic"} == {"anthropic"}


async def test_the_originals_example_anthropic_claude_sonnet_4_streams_from_the_messages_api(
        anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.script(json.dumps({"spoken": "Hello from Claude. How can I help?"}), token_delay_s=0.01)
    env = {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": anthropic_fake.base_url}
    responder = LlmResponder("anthropic/claude-sonnet-4", env=env)
    assert await speak(responder, ctx("Hi")) == ["Hello from Claude.", "How can I help?"]
    body = anthropic_fake.requests[0]
    assert body["model"] == "claude-sonnet-4" and body["stream"] is True
    assert "Output format" in body["system"]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    headers = anthropic_fake.recorded[0].headers
    sent = (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert "sk-ant-test" in sent


async def test_anthropic_tool_use_round_trips_and_the_result_is_spoken(anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.script("", tool_calls=[ScriptedToolCall("lookup_order", {"order": "42"}, id="toolu_a1")])
    anthropic_fake.script(answers_from_tool)
    env = {"ANTHROPIC_API_KEY": "sk-ant-test"}
    responder = LlmResponder("anthropic/claude-sonnet-4", base_url=anthropic_fake.base_url, env=env,
                             tools=[OrderTools()])
    assert await speak(responder, ctx()) == ["Order 42 has shipped.", "Anything else?"]
    first, second = anthropic_fake.requests
    assert first["tools"] == [{"name": "lookup_order", "description": "Where an order is.",
                               "input_schema": LOOKUP.parameters}]
    assert first["tool_choice"] == {"type": "auto"}
    use, result = second["messages"][-2:]
    assert use == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_a1", "name": "lookup_order", "input": {"order": "42"}}]}
    assert result["content"][0]["tool_use_id"] == "toolu_a1"


async def test_anthropic_errors_name_the_status_and_never_the_key(anthropic_fake: FakeAnthropic) -> None:
    wrong = LlmResponder("anthropic/claude-sonnet-4", base_url=anthropic_fake.base_url,
                         env={"ANTHROPIC_API_KEY": "sk-ant-wrong"})
    with pytest.raises(ResponderError, match="model error: 401 invalid x-api-key") as caught:
        await speak(wrong, ctx())
    assert "sk-ant-wrong" not in str(caught.value)
    anthropic_fake.script(json.dumps({"spoken": "First sentence is fine. The second breaks"}),
                          error_after_chars=42)
    right = LlmResponder("anthropic/claude-sonnet-4", base_url=anthropic_fake.base_url,
                         env={"ANTHROPIC_API_KEY": "sk-ant-test"})
    got: list[str] = []
    with pytest.raises(ResponderError, match="Overloaded"):
        async for sentence in right.reply(ctx()):
            got.append(sentence)
    await right.aclose()
    assert got == ["First sentence is fine."]


async def test_a_missing_anthropic_key_makes_the_responder_unavailable() -> None:
    with pytest.raises(ResponderUnavailable, match="ANTHROPIC_API_KEY"):
        await speak(LlmResponder("anthropic/claude-sonnet-4", env={}), ctx())


@pytest.mark.parametrize("prefix", OPENAI_SHAPED)
async def test_each_openai_compatible_prefix_streams_with_tools_from_its_env_key_and_url(
        openai_fake: FakeOpenAI, prefix: str) -> None:
    upper = prefix.upper()
    env = {f"{upper}_API_KEY": f"key-{prefix}", f"{upper}_BASE_URL": openai_fake.base_url}
    openai_fake.script("", tool_calls=[ScriptedToolCall("lookup_order", {"order": "42"})])
    openai_fake.script(answers_from_tool, token_delay_s=0.005)
    responder = LlmResponder(f"{prefix}/some-model-1", env=env, tools=[OrderTools()])
    assert await speak(responder, ctx()) == ["Order 42 has shipped.", "Anything else?"]
    assert [r["model"] for r in openai_fake.requests] == ["some-model-1"] * 2
    assert all(r["stream"] is True for r in openai_fake.requests)
    assert openai_fake.recorded[0].headers["authorization"] == f"Bearer key-{prefix}"
    assert openai_fake.requests[0]["tools"][0]["function"]["name"] == "lookup_order"


def test_google_also_takes_gemini_api_key_and_local_servers_need_no_key() -> None:
    google = resolve_model("google/gemini-2.5-flash", env={"GEMINI_API_KEY": "g-1"})
    assert (google.api_key, google.base_url) == ("g-1", "https://generativelanguage.googleapis.com/v1beta/openai")
    assert resolve_model("ollama/llama3.2", env={}).api_key == "ollama"
    with pytest.raises(ResponderError, match="MISTRAL_API_KEY"):
        resolve_model("mistral/mistral-small-latest", env={})


def test_responder_base_url_wins_over_the_provider_base_url_variable() -> None:
    env = {"GROQ_API_KEY": "k", "GROQ_BASE_URL": "http://127.0.0.1:9/v1"}
    assert resolve_model("groq/llama", env=env).base_url == "http://127.0.0.1:9/v1"
    assert resolve_model("groq/llama", env=env, base_url="http://127.0.0.1:7/v1/").base_url == \
        "http://127.0.0.1:7/v1"


async def test_anthropic_turns_alternate_even_when_the_memory_has_an_unanswered_question(
        anthropic_fake: FakeAnthropic) -> None:
    history = ({"role": "user", "content": "First, unanswered"}, {"role": "user", "content": "Second"},
               {"role": "assistant", "content": "Answer to second"})
    turn = TurnContext(call_id="c1", direction="inbound", from_="+15550001111", to="+15550002222",
                       session_key="k", agent_id="main", user_text="Third", history=history, timeout_s=5.0)
    responder = LlmResponder("anthropic/claude-sonnet-4", base_url=anthropic_fake.base_url,
                             env={"ANTHROPIC_API_KEY": "sk-ant-test"})
    assert await speak(responder, turn) == ["You said: Third"]
    sent = anthropic_fake.requests[0]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["text"] for b in sent[0]["content"]] == ["First, unanswered", "Second"]
