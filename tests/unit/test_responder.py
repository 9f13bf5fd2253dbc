"""Responders over real loopback sockets: the LLM one against FakeOpenAI, the HTTP one against a tiny
endpoint, and Python functions."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from voicecall.agent import python_responder as python_responder_module
from voicecall.agent.responder import (
    HttpResponder,
    LlmResponder,
    PythonResponder,
    Responder,
    ResponderError,
    TurnContext,
    build_responder,
    close_responder,
)
from voicecall.agent.spoken import SPOKEN_CONTRACT
from voicecall.calls.model import TranscriptEntry
from voicecall.testing.fakes import FakeOpenAI, LoopbackServer

KEY = "sk-test-0123456789"


def make_ctx(**changes: Any) -> TurnContext:
    values: dict[str, Any] = {
        "call_id": "call-1", "direction": "inbound", "from_": "+15550001111", "to": "+15550002222",
        "session_key": "voice:15550001111", "agent_id": "main", "user_text": "What time is it?",
        "transcript": (), "history": (), "model": None, "system_prompt": None, "timeout_s": 5.0,
    }
    values.update(changes)
    return TurnContext(**values)


async def collect(responder: Responder, ctx: TurnContext) -> list[str]:
    try:
        return [sentence async for sentence in responder.reply(ctx)]
    finally:
        await close_responder(responder)


async def collect_timed(responder: Responder, ctx: TurnContext) -> tuple[list[tuple[str, float]], float]:
    start = time.monotonic()
    try:
        out = [(sentence, time.monotonic() - start) async for sentence in responder.reply(ctx)]
    finally:
        await close_responder(responder)
    return out, time.monotonic() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake_server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def fake(fake_server: FakeOpenAI) -> FakeOpenAI:
    fake_server.reset()
    return fake_server


@pytest_asyncio.fixture(loop_scope="module")
async def llm(fake: FakeOpenAI) -> AsyncIterator[LlmResponder]:
    responder = LlmResponder("openai/gpt-4o-mini", base_url=fake.base_url, env={"OPENAI_API_KEY": KEY})
    yield responder
    await responder.aclose()


# -- LlmResponder ----------------------------------------------------------------------------------
async def test_sentences_arrive_in_order(fake: FakeOpenAI, llm: LlmResponder) -> None:
    fake.script('{"spoken": "Hello there. It is three o\'clock, Dr. Who! Anything else?"}')
    assert await collect(llm, make_ctx()) == ["Hello there.", "It is three o'clock, Dr. Who!",
                                              "Anything else?"]
    body = fake.requests[0]
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True
    assert fake.recorded[0].headers["authorization"] == f"Bearer {KEY}"


async def test_the_first_sentence_is_yielded_long_before_the_model_finishes(
        fake: FakeOpenAI, llm: LlmResponder) -> None:
    text = ("Hello there. This is a longer second sentence that takes the model a while to write out. "
            "And a third one, just to be sure the stream keeps going. Bye now!")
    fake.script(json.dumps({"spoken": text}), chunk_chars=4, token_delay_s=0.02)
    timed, total = await collect_timed(llm, make_ctx())
    assert [s for s, _ in timed] == [
        "Hello there.", "This is a longer second sentence that takes the model a while to write out.",
        "And a third one, just to be sure the stream keeps going.", "Bye now!"]
    first_at = timed[0][1]
    assert total > 0.7  # ~45 chunks, 20 ms apart
    assert first_at < 0.35 * total, (first_at, total)
    assert [t for _, t in timed] == sorted(t for _, t in timed)


async def test_a_plain_text_reply_is_still_spoken(fake: FakeOpenAI, llm: LlmResponder) -> None:
    fake.script("Thinking process: greet them.\n\nHi! Nice to hear from you.")
    assert await collect(llm, make_ctx()) == ["Hi!", "Nice to hear from you."]


async def test_the_default_fake_reply_echoes_the_caller(fake: FakeOpenAI, llm: LlmResponder) -> None:
    assert await collect(llm, make_ctx(user_text="Book a table.")) == ["You said: Book a table."]


async def test_messages_hold_prompt_transcript_history_and_utterance(
        fake: FakeOpenAI, llm: LlmResponder) -> None:
    transcript = (TranscriptEntry(timestamp=1, speaker="bot", text="Hello! How can I help?"),
                  TranscriptEntry(timestamp=2, speaker="user", text="What time  is it?"))
    history = ({"role": "user", "content": "Remember my name is Ana."},
               {"role": "assistant", "content": "Got it, Ana."})
    await collect(llm, make_ctx(transcript=transcript, history=history, agent_id="Jarvis"))
    messages = fake.requests[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    system = messages[0]["content"]
    assert system.startswith("You are Jarvis, a helpful voice assistant on a phone call.")
    assert "The caller's phone number is +15550001111." in system
    assert "\n\nConversation so far:\nYou: Hello! How can I help?\nCaller: What time is it?\n\n" in system
    assert system.endswith(SPOKEN_CONTRACT)
    assert messages[1:3] == list(history)
    assert messages[3] == {"role": "user", "content": "What time is it?"}


async def test_custom_prompt_and_outbound_remote_number(fake: FakeOpenAI, llm: LlmResponder) -> None:
    await collect(llm, make_ctx(system_prompt="You are a pizza bot.", direction="outbound", agent_id=""))
    system = fake.requests[0]["messages"][0]["content"]
    assert system.startswith("You are a pizza bot.\n\n") and system.endswith(SPOKEN_CONTRACT)
    await collect(llm, make_ctx(direction="outbound", agent_id=""))
    system = fake.requests[1]["messages"][0]["content"]
    assert system.startswith("You are assistant,") and "phone number is +15550002222." in system


async def test_the_model_can_be_overridden_per_turn(fake: FakeOpenAI, llm: LlmResponder) -> None:
    await collect(llm, make_ctx())
    await collect(llm, make_ctx(model="openai/gpt-4.1-nano"))
    await collect(llm, make_ctx(model="gpt-4o"))
    assert [r["model"] for r in fake.requests] == ["gpt-4o-mini", "gpt-4.1-nano", "gpt-4o"]


async def test_provider_prefix_picks_the_key_and_keeps_the_base_url_override(fake: FakeOpenAI) -> None:
    groq = LlmResponder("groq/llama-3.1-8b-instant", base_url=fake.base_url, env={"GROQ_API_KEY": "gsk-1"})
    await collect(groq, make_ctx())
    await groq.aclose()
    assert fake.requests[0]["model"] == "llama-3.1-8b-instant"
    assert fake.recorded[0].headers["authorization"] == "Bearer gsk-1"


async def test_openai_base_url_from_the_environment_is_honoured(fake: FakeOpenAI) -> None:
    responder = LlmResponder(env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake.base_url})
    assert await collect(responder, make_ctx(user_text="hi")) == ["You said: hi"]
    await responder.aclose()


@pytest.mark.parametrize(("spec", "provider", "model", "base_url", "key"), [
    ("openai/gpt-4o-mini", "openai", "gpt-4o-mini", "https://api.openai.com/v1", "k-openai"),
    ("gpt-4o", "openai", "gpt-4o", "https://api.openai.com/v1", "k-openai"),
    ("openrouter/anthropic/claude-3.5-sonnet", "openrouter", "anthropic/claude-3.5-sonnet",
     "https://openrouter.ai/api/v1", "k-openrouter"),
    ("groq/llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant", "https://api.groq.com/openai/v1", "k-groq"),
    ("together/meta-llama/Llama-3-70b", "together", "meta-llama/Llama-3-70b", "https://api.together.xyz/v1",
     "k-together"),
    ("mistral/mistral-small-latest", "mistral", "mistral-small-latest", "https://api.mistral.ai/v1",
     "k-mistral"),
    ("deepseek/deepseek-chat", "deepseek", "deepseek-chat", "https://api.deepseek.com/v1", "k-deepseek"),
    ("xai/grok-2", "xai", "grok-2", "https://api.x.ai/v1", "k-xai"),
    ("ollama/llama3.2", "ollama", "llama3.2", "http://127.0.0.1:11434/v1", "ollama"),
    ("lmstudio/qwen2.5-7b", "lmstudio", "qwen2.5-7b", "http://127.0.0.1:1234/v1", "lm-studio"),
    ("vllm/Qwen/Qwen2.5-7B", "vllm", "Qwen/Qwen2.5-7B", "http://127.0.0.1:8000/v1", "EMPTY"),
    ("OpenAI/gpt-4o", "openai", "gpt-4o", "https://api.openai.com/v1", "k-openai"),
])
async def test_provider_and_model_parsing(spec: str, provider: str, model: str, base_url: str,
                                          key: str) -> None:
    env = {name: f"k-{name.split('_')[0].lower()}" for name in (
        "OPENAI_API_KEY", "OPENROUTER_API_KEY", "GROQ_API_KEY", "TOGETHER_API_KEY", "MISTRAL_API_KEY",
        "DEEPSEEK_API_KEY", "XAI_API_KEY")}
    resolved = LlmResponder(spec, env=env).resolve()
    assert (resolved.provider, resolved.model, resolved.base_url, resolved.api_key) == (provider, model,
                                                                                         base_url, key)
    assert key not in repr(resolved) or key in ("ollama", "lm-studio", "EMPTY")


async def test_resolution_overrides_and_unknown_providers() -> None:
    env = {"OPENAI_API_KEY": "k1", "VLLM_API_KEY": "v1", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/"}
    assert LlmResponder(env=env).resolve().base_url == "http://127.0.0.1:9/v1"
    assert LlmResponder(env=env, base_url="http://127.0.0.1:7/v1").resolve().base_url == "http://127.0.0.1:7/v1"
    assert LlmResponder("vllm/m", env=env).resolve().api_key == "v1"
    assert LlmResponder("openai/m", env=env, api_key="explicit").resolve().api_key == "explicit"
    custom = LlmResponder("meta-llama/Llama-3.1-8B", env=env, base_url="http://127.0.0.1:8001/v1").resolve()
    assert (custom.provider, custom.model, custom.api_key) == ("custom", "meta-llama/Llama-3.1-8B", "EMPTY")
    with pytest.raises(ResponderError, match="unknown model provider 'acme'"):
        LlmResponder("acme/model-1", env=env).resolve()
    with pytest.raises(ResponderError, match="no model name"):
        LlmResponder("openai/", env=env).resolve()


async def test_a_missing_api_key_names_the_env_var() -> None:
    for spec, var in [("openai/gpt-4o-mini", "OPENAI_API_KEY"), ("groq/llama", "GROQ_API_KEY"),
                      ("openrouter/x/y", "OPENROUTER_API_KEY")]:
        with pytest.raises(ResponderError, match=var):
            await collect(LlmResponder(spec, env={}), make_ctx())
    with pytest.raises(ResponderError, match="GROQ_API_KEY"):
        await collect(LlmResponder(env={"OPENAI_API_KEY": KEY}), make_ctx(model="groq/llama"))


async def test_a_timeout_raises_and_yields_no_partial_sentence(fake: FakeOpenAI, llm: LlmResponder) -> None:
    fake.script('{"spoken": "The first sentence is complete. The second one never', hang=True)
    got: list[str] = []
    start = time.monotonic()
    with pytest.raises(ResponderError, match=r"model timed out after 0\.4 s"):
        async for sentence in llm.reply(make_ctx(timeout_s=0.4)):
            got.append(sentence)
    assert got == ["The first sentence is complete."]
    assert time.monotonic() - start < 2.0


async def test_the_timeout_covers_the_whole_reply(fake: FakeOpenAI, llm: LlmResponder) -> None:
    fake.script('{"spoken": "Short. And then a slow tail that takes far too long to finish."}',
                token_delay_s=0.1)  # ~19 chunks: ~1.9 s in all, "Short." after ~0.5 s
    got: list[str] = []
    with pytest.raises(ResponderError, match=r"timed out after 1\.2 s"):
        async for sentence in llm.reply(make_ctx(timeout_s=1.2)):
            got.append(sentence)
    assert got == ["Short."]


async def test_a_slow_consumer_is_not_timed_out_by_a_finished_model(
        fake: FakeOpenAI, llm: LlmResponder) -> None:
    fake.script('{"spoken": "One. Two. Three."}')
    got: list[str] = []
    async for sentence in llm.reply(make_ctx(timeout_s=1.5)):
        got.append(sentence)
        await asyncio.sleep(0.8)  # speaking each sentence: 2.4 s in all, well past the 1.5 s limit
    assert got == ["One.", "Two.", "Three."]


async def test_an_http_500_raises_with_the_status(fake: FakeOpenAI, llm: LlmResponder) -> None:
    fake.script("unused", status=500)
    with pytest.raises(ResponderError, match=r"model error: 500 scripted error 500"):
        await collect(llm, make_ctx())


async def test_an_error_mid_stream_raises_after_only_complete_sentences(
        fake: FakeOpenAI, llm: LlmResponder) -> None:
    fake.script('{"spoken": "All good here. But then it breaks off"}', error_after_chars=34)
    got: list[str] = []
    with pytest.raises(ResponderError, match="model error: The server had an error"):
        async for sentence in llm.reply(make_ctx()):
            got.append(sentence)
    assert got == ["All good here."]


async def test_a_rejected_key_is_never_echoed() -> None:
    secret = "sk-wrong-secret-value"
    async with FakeOpenAI(api_key="sk-right") as server:
        responder = LlmResponder(base_url=server.base_url, env={"OPENAI_API_KEY": secret})
        with pytest.raises(ResponderError, match="model error: 401") as caught:
            await collect(responder, make_ctx())
        await responder.aclose()
    assert secret not in str(caught.value)


async def test_an_unreachable_model_raises() -> None:
    responder = LlmResponder(base_url=f"http://127.0.0.1:{free_port()}/v1", env={"OPENAI_API_KEY": KEY})
    with pytest.raises(ResponderError, match=r"model unreachable at http://127\.0\.0\.1"):
        await collect(responder, make_ctx())


async def test_closing_the_reply_early_stops_the_model_stream(fake: FakeOpenAI, llm: LlmResponder) -> None:
    fake.script('{"spoken": "First. Second is never read"}', hang=True)
    replies = llm.reply(make_ctx(timeout_s=10))
    assert await anext(replies) == "First."
    start = time.monotonic()
    await replies.aclose()  # e.g. the caller barged in
    assert time.monotonic() - start < 1.0
    assert await collect(llm, make_ctx(user_text="again")) == ["You said: again"]


async def test_the_fake_speaks_openai_streaming_and_non_streaming(fake: FakeOpenAI) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0)
    fake.script("Hi there")
    completion = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "Hi there"
    assert completion.choices[0].finish_reason == "stop"
    fake.script("Hello world", chunk_chars=3)
    stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    await client.close()
    async with httpx.AsyncClient() as http:
        anonymous = await http.post(f"{fake.base_url}/chat/completions",
                                    json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert anonymous.status_code == 401
    assert set(anonymous.json()["error"]) == {"message", "type", "param", "code"}


# -- HttpResponder ---------------------------------------------------------------------------------
class Endpoint:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def record(self, request: Request) -> None:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))

    async def plain(self, request: Request) -> Response:
        await self.record(request)
        return PlainTextResponse(f"You said {self.bodies[-1]['text']} Got it. Bye.")

    async def streamed(self, request: Request) -> Response:
        await self.record(request)

        async def body() -> AsyncIterator[bytes]:
            yield b"First streamed sentence. Sec"
            await asyncio.sleep(0.5)
            yield "ond one, caf\u00e9.".encode()

        return StreamingResponse(body(), media_type="text/plain; charset=utf-8")

    async def json_text(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"text": "From JSON text. Two."})

    async def json_spoken(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"spoken": "From JSON spoken."})

    async def sse(self, request: Request) -> Response:
        await self.record(request)

        async def body() -> AsyncIterator[bytes]:
            yield b": comment\n\ndata: Hello from SSE.\n\n"
            await asyncio.sleep(0.5)
            yield b"event: message\ndata: Second\ndata: line.\n\n"
            yield b'data: {"text": "Third."}\n\ndata: [DONE]\n\ndata: Ignored.\n\n'

        return StreamingResponse(body(), media_type="text/event-stream")

    async def fail(self, request: Request) -> Response:
        await self.record(request)
        return PlainTextResponse("boom: database down " + "x" * 500, status_code=503)

    async def slow(self, request: Request) -> Response:
        await self.record(request)
        await asyncio.sleep(0.8)  # longer than the turn's limit, short enough not to hold up shutdown
        return PlainTextResponse("Too late.")

    def app(self) -> Starlette:
        return Starlette(routes=[Route(f"/{name}", getattr(self, name.replace("-", "_")), methods=["POST"])
                                 for name in ("plain", "streamed", "json-text", "json-spoken", "sse", "fail",
                                              "slow")])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def endpoint() -> AsyncIterator[tuple[Endpoint, str]]:
    ep = Endpoint()
    async with LoopbackServer(ep.app()) as server:
        yield ep, server.url


async def test_http_plain_reply_and_the_posted_turn(endpoint: tuple[Endpoint, str]) -> None:
    ep, url = endpoint
    transcript = (TranscriptEntry(timestamp=5, speaker="user", text="Hi."),)
    history = ({"role": "user", "content": "earlier"},)
    responder = HttpResponder(f"{url}/plain", headers={"X-Token": "t0k"})
    ctx = make_ctx(user_text="Hi.", transcript=transcript, history=history)
    assert await collect(responder, ctx) == ["You said Hi.", "Got it.", "Bye."]
    await responder.aclose()
    assert ep.bodies[-1] == {
        "callId": "call-1", "direction": "inbound", "from": "+15550001111", "to": "+15550002222",
        "sessionKey": "voice:15550001111", "agentId": "main", "text": "Hi.",
        "transcript": [{"speaker": "user", "text": "Hi.", "timestamp": 5}],
        "history": [{"role": "user", "content": "earlier"}],
    }
    assert ep.headers[-1]["x-token"] == "t0k"


async def test_http_streamed_plain_text_is_split_as_it_arrives(endpoint: tuple[Endpoint, str]) -> None:
    _, url = endpoint
    timed, total = await collect_timed(HttpResponder(f"{url}/streamed"), make_ctx())
    assert [s for s, _ in timed] == ["First streamed sentence.", "Second one, café."]
    assert timed[0][1] < total - 0.3


@pytest.mark.parametrize(("path", "expected"), [
    ("json-text", ["From JSON text.", "Two."]),
    ("json-spoken", ["From JSON spoken."]),
])
async def test_http_json_replies(endpoint: tuple[Endpoint, str], path: str, expected: list[str]) -> None:
    _, url = endpoint
    assert await collect(HttpResponder(f"{url}/{path}"), make_ctx()) == expected


async def test_http_sse_reply_is_split_as_events_arrive(endpoint: tuple[Endpoint, str]) -> None:
    _, url = endpoint
    timed, total = await collect_timed(HttpResponder(f"{url}/sse"), make_ctx())
    assert [s for s, _ in timed] == ["Hello from SSE.", "Second", "line.", "Third."]
    assert timed[0][1] < total - 0.3


async def test_http_error_status_raises_with_status_and_excerpt(endpoint: tuple[Endpoint, str]) -> None:
    _, url = endpoint
    with pytest.raises(ResponderError, match="returned HTTP 503: boom: database down") as caught:
        await collect(HttpResponder(f"{url}/fail?token=secret"), make_ctx())
    assert len(str(caught.value)) < 300 and "secret" not in str(caught.value)


async def test_http_timeout_raises(endpoint: tuple[Endpoint, str]) -> None:
    _, url = endpoint
    start = time.monotonic()
    with pytest.raises(ResponderError, match=r"timed out after 0\.3 s"):
        await collect(HttpResponder(f"{url}/slow"), make_ctx(timeout_s=0.3))
    assert time.monotonic() - start < 2.0


async def test_http_unreachable_raises() -> None:
    with pytest.raises(ResponderError, match=r"responder endpoint http://127\.0\.0\.1"):
        await collect(HttpResponder(f"http://127.0.0.1:{free_port()}/turn"), make_ctx())


async def test_http_url_must_be_http() -> None:
    with pytest.raises(ResponderError, match="http"):
        HttpResponder("ftp://example.com/x")


# -- PythonResponder -------------------------------------------------------------------------------
def sync_reply(ctx: TurnContext) -> str:
    return f"Sync reply to {ctx.user_text} Second sentence."


async def async_reply(ctx: TurnContext) -> str:
    await asyncio.sleep(0)
    return "Async reply. Done."


async def async_gen_reply(ctx: TurnContext) -> AsyncIterator[str]:
    yield "Hello."
    yield "How are"
    yield " you?"
    yield "Fine."


def sync_gen_reply(ctx: TurnContext) -> Iterator[str]:
    yield "Generated one. "
    yield "Two."


def failing_reply(ctx: TurnContext) -> str:
    raise ValueError("no database")


def bad_reply(ctx: TurnContext) -> int:
    return 42


async def slow_reply(ctx: TurnContext) -> str:
    await asyncio.sleep(5)
    return "late"


@pytest.mark.parametrize(("function", "expected"), [
    ("sync_reply", ["Sync reply to What time is it?", "Second sentence."]),
    ("async_reply", ["Async reply.", "Done."]),
    ("async_gen_reply", ["Hello.", "How are you?", "Fine."]),
    ("sync_gen_reply", ["Generated one.", "Two."]),
])
async def test_python_responder_module_function(function: str, expected: list[str]) -> None:
    assert await collect(PythonResponder(f"{__name__}:{function}"), make_ctx()) == expected


async def test_python_responder_failures_become_responder_errors() -> None:
    with pytest.raises(ResponderError, match="failing_reply failed: ValueError: no database"):
        await collect(PythonResponder(f"{__name__}:failing_reply"), make_ctx())
    with pytest.raises(ResponderError, match="returned int"):
        await collect(PythonResponder(f"{__name__}:bad_reply"), make_ctx())
    with pytest.raises(ResponderError, match=r"python responder timed out after 0\.2 s"):
        await collect(PythonResponder(f"{__name__}:slow_reply"), make_ctx(timeout_s=0.2))


async def test_python_responder_bad_targets() -> None:
    with pytest.raises(ResponderError, match="cannot import responder module"):
        PythonResponder("no_such_module_xyz:reply")
    with pytest.raises(ResponderError, match="has no attribute"):
        PythonResponder(f"{__name__}:missing")
    with pytest.raises(ResponderError, match=r"voicecall\.responders"):
        PythonResponder("no-such-entry-point")


async def test_python_responder_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeEntryPoint:
        def load(self) -> Any:
            return sync_reply

    def fake_entry_points(*, group: str, name: str) -> list[FakeEntryPoint]:
        return [FakeEntryPoint()] if (group, name) == ("voicecall.responders", "mine") else []

    monkeypatch.setattr(python_responder_module, "entry_points", fake_entry_points)
    assert await collect(PythonResponder("mine"), make_ctx(user_text="hello.")) == ["Sync reply to hello.",
                                                                                 "Second sentence."]


# -- factory ---------------------------------------------------------------------------------------
async def test_build_responder_kinds() -> None:
    env = {"OPENAI_API_KEY": KEY}
    llm = build_responder("llm", model=None, env=env)
    assert isinstance(llm, LlmResponder) and llm.model == "openai/gpt-4o-mini"
    assert isinstance(build_responder("http", url="http://127.0.0.1:9/turn", env=env), HttpResponder)
    assert isinstance(build_responder("python", target=f"{__name__}:sync_reply", env=env), PythonResponder)
    with pytest.raises(ResponderError, match=r"responder\.url"):
        build_responder("http", env=env)
    with pytest.raises(ResponderError, match=r"responder\.target"):
        build_responder("python", env=env)
