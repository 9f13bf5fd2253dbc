"""Who writes the bot's side of a conversation turn: an LLM, the user's HTTP endpoint, or Python code.

Every responder turns one caller utterance (a `TurnContext`) into an async stream of complete
spoken sentences. A sentence is yielded as soon as it is complete, so the first one can be
synthesised while the rest is still being written; a partial sentence is never yielded, and the
last one only once the source finished normally. Any failure (an error, a bad reply, the turn's
time limit, which covers the whole reply) raises `ResponderError` saying what failed.

* `LlmResponder`: an OpenAI-compatible chat-completions API (OpenAI, OpenRouter, Groq, Together,
  Mistral, DeepSeek, xAI, Ollama, LM Studio, vLLM), streamed, with the spoken-output contract.
* `HttpResponder`: POSTs the turn as JSON to the user's endpoint; plain text, JSON or SSE back.
* `PythonResponder`: calls `module:function` (or an entry point in group `voicecall.responders`).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from voicecall.agent.prompt import build_system_prompt
from voicecall.agent.spoken import SpokenStream, collapse_whitespace
from voicecall.calls.model import TranscriptEntry
from voicecall.speech.sentences import CLOSERS, TERMINATORS, SentenceSplitter

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MODEL = "openai/gpt-4o-mini"
DEFAULT_TIMEOUT_S = 30.0
ENTRY_POINT_GROUP = "voicecall.responders"
ERROR_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class TurnContext:
    """One caller utterance to answer, with what is known about the call."""

    call_id: str
    direction: str
    from_: str
    to: str
    session_key: str
    agent_id: str
    user_text: str
    transcript: tuple[TranscriptEntry, ...] = ()
    # Prior session memory as chat messages ({"role": "user"|"assistant", "content": ...}), oldest first.
    history: tuple[dict[str, str], ...] = ()
    model: str | None = None  # per-turn model override (per-number routing)
    system_prompt: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def remote_number(self) -> str:
        """The other party: the caller on an inbound call, the callee on an outbound one."""
        return self.to if self.direction == "outbound" else self.from_


class ResponderError(Exception):
    """A turn could not be answered; the message says what failed (API keys are masked out)."""


@runtime_checkable
class Responder(Protocol):
    def reply(self, ctx: TurnContext) -> AsyncIterator[str]:
        """Complete spoken sentences, each as soon as it is complete; raises `ResponderError`."""
        ...


async def close_responder(responder: Responder) -> None:
    """Close the HTTP clients a responder keeps between turns (if it keeps any); call on shutdown."""
    aclose = getattr(responder, "aclose", None)
    if aclose is not None:
        await aclose()


# -- shared plumbing -------------------------------------------------------------------------------
class _Sentences:
    """Text deltas in, clean complete sentences out (optionally through the spoken contract)."""

    def __init__(self, *, spoken: bool) -> None:
        self._spoken = SpokenStream() if spoken else None
        self._splitter = SentenceSplitter()

    @property
    def pending(self) -> bool:
        return self._splitter.pending

    def feed(self, delta: str) -> list[str]:
        text = self._spoken.feed(delta) if self._spoken is not None else delta
        return _clean(self._splitter.feed(text)) if text else []

    def pause(self) -> list[str]:
        return _clean(self._splitter.pause())

    def finish(self) -> list[str]:
        out: list[str] = []
        if self._spoken is not None:
            out += self._splitter.feed(self._spoken.finish())
        out += self._splitter.flush()
        return _clean(out)


def _clean(sentences: list[str]) -> list[str]:
    """Whitespace collapsed; nothing without a letter or digit in it (a stray quote is not speech)."""
    cleaned = (collapse_whitespace(s) for s in sentences)
    return [s for s in cleaned if any(ch.isalnum() for ch in s)]


@dataclass
class _End:
    error: ResponderError | None = None


def _seconds(value: float) -> str:
    return f"{float(value)} s"


# How long a message-sized source (HTTP endpoint, Python function) may go quiet right after a full
# stop before that sentence is spoken without seeing what follows it.
IDLE_FLUSH_S = 0.05


async def _sentences(source: Callable[[], AsyncGenerator[str, None]], *, spoken: bool, timeout_s: float,
                     what: str, idle_flush_s: float | None = None) -> AsyncIterator[str]:
    """Run `source` in its own task under the turn's time limit; yield its sentences as they complete.

    The source runs ahead of the consumer (so a slow consumer, busy speaking the first sentence,
    neither stalls the source nor is cancelled by its time limit). Closing the iterator early
    cancels the source. With `idle_flush_s`, a sentence that ends right where the source went
    quiet is released after that long.
    """
    queue: asyncio.Queue[str | _End] = asyncio.Queue()

    def put(sentences: list[str]) -> None:
        for sentence in sentences:
            queue.put_nowait(sentence)

    async def pump(pipeline: _Sentences) -> None:
        deltas = source()
        try:
            while True:
                if idle_flush_s is None or not pipeline.pending:
                    delta = await anext(deltas, None)
                else:
                    upcoming = asyncio.ensure_future(anext(deltas, None))
                    try:
                        done, _ = await asyncio.wait({upcoming}, timeout=idle_flush_s)
                        if not done:
                            put(pipeline.pause())
                        delta = await upcoming
                    finally:
                        if not upcoming.done():
                            upcoming.cancel()
                            await asyncio.wait({upcoming})
                if delta is None:
                    return
                put(pipeline.feed(delta))
        finally:
            await deltas.aclose()

    async def produce() -> None:
        pipeline = _Sentences(spoken=spoken)
        try:
            async with asyncio.timeout(timeout_s):
                await pump(pipeline)
            put(pipeline.finish())
            queue.put_nowait(_End())
        except TimeoutError:
            queue.put_nowait(_End(ResponderError(f"{what} timed out after {_seconds(timeout_s)}")))
        except ResponderError as exc:
            queue.put_nowait(_End(exc))
        except Exception as exc:
            log.debug("%s failed", what, exc_info=True)
            queue.put_nowait(_End(ResponderError(f"{what} failed: {type(exc).__name__}: {exc}")))

    task = asyncio.create_task(produce(), name=f"voicecall-responder-{what}")
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        if not task.done():
            task.cancel()
        await asyncio.wait([task])


def _excerpt(text: str, secret: str | None = None) -> str:
    text = collapse_whitespace(text)
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= ERROR_EXCERPT_CHARS else text[:ERROR_EXCERPT_CHARS - 3] + "..."


def _safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (for messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


class _PerLoop(Generic[T]):
    """One client per event loop (a client's connection pool belongs to the loop that opened it)."""

    def __init__(self) -> None:
        self._items: dict[Any, tuple[asyncio.AbstractEventLoop, T]] = {}

    def get(self, key: Any, make: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        found = self._items.get(key)
        if found is not None and found[0] is loop:
            return found[1]
        item = make()
        self._items[key] = (loop, item)
        return item

    def take_current(self) -> list[T]:
        """Remove and return the items of the running loop (to close them); forget the others."""
        loop = asyncio.get_running_loop()
        items = [item for owner, item in self._items.values() if owner is loop]
        self._items.clear()
        return items


# -- LLM -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProviderInfo:
    """An OpenAI-compatible provider: where it is and which env var holds its API key."""

    name: str
    base_url: str
    key_env: str | None = None
    key_required: bool = True
    placeholder_key: str = "EMPTY"  # sent when no key is needed and none is set


PROVIDERS: Mapping[str, ProviderInfo] = {
    p.name: p for p in (
        ProviderInfo("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        ProviderInfo("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        ProviderInfo("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        ProviderInfo("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
        ProviderInfo("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
        ProviderInfo("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        ProviderInfo("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        ProviderInfo("ollama", "http://127.0.0.1:11434/v1", None, False, "ollama"),
        ProviderInfo("lmstudio", "http://127.0.0.1:1234/v1", None, False, "lm-studio"),
        ProviderInfo("vllm", "http://127.0.0.1:8000/v1", "VLLM_API_KEY", False, "EMPTY"),
    )
}
DEFAULT_PROVIDER = "openai"


@dataclass(frozen=True)
class ResolvedModel:
    """Where one turn's chat completion goes."""

    provider: str
    model: str
    base_url: str
    api_key: str = field(repr=False)
    key_env: str | None = None


def split_model(spec: str) -> tuple[str, str]:
    """`provider/model` split at the first `/`; without one the provider is `openai`."""
    spec = spec.strip()
    if "/" not in spec:
        return DEFAULT_PROVIDER, spec
    provider, _, model = spec.partition("/")
    return provider.strip().lower(), model.strip()


class LlmResponder:
    """Answers with an OpenAI-compatible chat model, streamed sentence by sentence.

    `model` is `provider/model` (`responseModel`; a turn's `ctx.model` overrides it). `base_url`
    (`responder.baseUrl`) overrides the provider's URL; with it, an unknown provider prefix is kept
    as part of the model name (e.g. `meta-llama/Llama-3.1-8B` on a vLLM server). `api_key` overrides
    the provider's key variable in `env`.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, base_url: str | None = None, api_key: str | None = None,
                 env: Mapping[str, str]) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/") if base_url else None
        self._api_key = api_key
        self._env = dict(env)
        self._clients: _PerLoop[AsyncOpenAI] = _PerLoop()

    def __repr__(self) -> str:
        return f"LlmResponder(model={self.model!r}, base_url={self.base_url!r})"

    def resolve(self, model: str | None = None) -> ResolvedModel:
        """Provider, model name, base URL and key for `model` (default: this responder's model)."""
        spec = (model or self.model or DEFAULT_MODEL).strip()
        provider_name, name = split_model(spec)
        provider = PROVIDERS.get(provider_name)
        if provider is None:
            if self.base_url is None:
                known = ", ".join(PROVIDERS)
                raise ResponderError(
                    f"unknown model provider {provider_name!r} in {spec!r} (known: {known}); "
                    "set responder.baseUrl to use another OpenAI-compatible server")
            return ResolvedModel("custom", spec, self.base_url, self._api_key or "EMPTY")
        if not name:
            raise ResponderError(f"no model name in {spec!r}: expected provider/model, e.g. {DEFAULT_MODEL}")
        base_url = self.base_url
        if base_url is None and provider.name == "openai":
            base_url = (self._env.get("OPENAI_BASE_URL") or "").strip().rstrip("/") or None
        key = self._api_key or (self._env.get(provider.key_env, "").strip() if provider.key_env else "")
        if not key:
            if provider.key_required:
                raise ResponderError(
                    f"no API key for model provider {provider.name!r}: set {provider.key_env}")
            key = provider.placeholder_key
        return ResolvedModel(provider.name, name, base_url or provider.base_url, key, provider.key_env)

    def messages(self, ctx: TurnContext) -> list[ChatCompletionMessageParam]:
        """System prompt (with the transcript and the spoken contract), the session history, the utterance."""
        system = build_system_prompt(ctx.system_prompt, agent_name=ctx.agent_id or "assistant",
                                     caller_number=ctx.remote_number, transcript=ctx.transcript)
        messages: list[ChatCompletionMessageParam] = [
            ChatCompletionSystemMessageParam(role="system", content=system)]
        for item in ctx.history:
            role, content = item.get("role"), item.get("content")
            if not isinstance(content, str) or not content.strip():
                continue
            if role == "assistant":
                messages.append(ChatCompletionAssistantMessageParam(role="assistant", content=content))
            elif role == "user":
                messages.append(ChatCompletionUserMessageParam(role="user", content=content))
        messages.append(ChatCompletionUserMessageParam(role="user", content=ctx.user_text))
        return messages

    async def reply(self, ctx: TurnContext) -> AsyncIterator[str]:
        resolved = self.resolve(ctx.model)
        messages = self.messages(ctx)
        log.debug("call %s: asking %s model %s at %s", ctx.call_id, resolved.provider, resolved.model,
                  _safe_url(resolved.base_url))
        async for sentence in _sentences(lambda: self._deltas(resolved, messages, ctx.timeout_s), spoken=True,
                                         timeout_s=ctx.timeout_s, what="model"):
            yield sentence

    async def aclose(self) -> None:
        """Close the HTTP clients this responder opened on the running loop."""
        for client in self._clients.take_current():
            await client.close()

    def _client(self, resolved: ResolvedModel) -> AsyncOpenAI:
        return self._clients.get(
            (resolved.base_url, resolved.api_key),
            lambda: AsyncOpenAI(base_url=resolved.base_url, api_key=resolved.api_key, max_retries=0,
                                timeout=DEFAULT_TIMEOUT_S))

    async def _deltas(self, resolved: ResolvedModel, messages: list[ChatCompletionMessageParam],
                      timeout_s: float) -> AsyncGenerator[str, None]:
        client = self._client(resolved)
        where = _safe_url(resolved.base_url)
        try:
            stream = await client.chat.completions.create(
                model=resolved.model, messages=messages, stream=True, timeout=timeout_s)
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.index == 0 and choice.delta is not None and choice.delta.content:
                            yield choice.delta.content
        except openai.APIStatusError as exc:
            raise ResponderError(
                f"model error: {exc.status_code} {_excerpt(_error_message(exc), resolved.api_key)}") from None
        except openai.APITimeoutError:
            raise ResponderError(f"model timed out after {_seconds(timeout_s)}") from None
        except openai.APIConnectionError as exc:
            raise ResponderError(
                f"model unreachable at {where}: {_excerpt(str(exc), resolved.api_key)}") from None
        except openai.APIError as exc:  # an error event in the middle of the stream
            raise ResponderError(f"model error: {_excerpt(_error_message(exc), resolved.api_key)}") from None


def _error_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return exc.message


# -- HTTP ------------------------------------------------------------------------------------------
_TEXT_FIELDS = ("spoken", "text")
_SSE_TEXT_FIELDS = ("spoken", "text", "delta", "content")
_SENTENCE_END = re.compile(f"[{re.escape(TERMINATORS)}][{re.escape(CLOSERS)}]*$")


class _ChunkJoiner:
    """Joins message-sized chunks: puts a space between "Hello." and "How are you?"."""

    def __init__(self) -> None:
        self._ended = False

    def __call__(self, chunk: str) -> str:
        if not chunk:
            return chunk
        if self._ended and chunk[0].isupper():
            chunk = " " + chunk
        self._ended = _SENTENCE_END.search(chunk) is not None
        return chunk


def turn_payload(ctx: TurnContext) -> dict[str, Any]:
    """The JSON body `HttpResponder` POSTs for a turn."""
    return {
        "callId": ctx.call_id,
        "direction": ctx.direction,
        "from": ctx.from_,
        "to": ctx.to,
        "sessionKey": ctx.session_key,
        "agentId": ctx.agent_id,
        "text": ctx.user_text,
        "transcript": [{"speaker": e.speaker, "text": e.text, "timestamp": e.timestamp}
                       for e in ctx.transcript],
        "history": [dict(m) for m in ctx.history],
    }


class HttpResponder:
    """POSTs each turn (see `turn_payload`) to the user's endpoint and speaks what comes back.

    The reply may be `text/plain` (whole or streamed), `application/json` (`{"text": ...}` or
    `{"spoken": ...}`) or `text/event-stream` (`data: <text>` events, `data: [DONE]` ends).
    Streamed replies are cut into sentences as they arrive. The time limit is `timeout_s` if
    given, else the turn's.
    """

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None,
                 timeout_s: float | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ResponderError(f"responder URL must be http(s)://host/..., got {_safe_url(url)!r}")
        self.url = url
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self._clients: _PerLoop[httpx.AsyncClient] = _PerLoop()

    def __repr__(self) -> str:
        return f"HttpResponder(url={_safe_url(self.url)!r})"

    async def reply(self, ctx: TurnContext) -> AsyncIterator[str]:
        timeout_s = self.timeout_s if self.timeout_s is not None else ctx.timeout_s
        async for sentence in _sentences(lambda: self._deltas(ctx, timeout_s), spoken=False,
                                         timeout_s=timeout_s, what="responder endpoint",
                                         idle_flush_s=IDLE_FLUSH_S):
            yield sentence

    async def aclose(self) -> None:
        for client in self._clients.take_current():
            await client.aclose()

    async def _deltas(self, ctx: TurnContext, timeout_s: float) -> AsyncGenerator[str, None]:
        client = self._clients.get(None, lambda: httpx.AsyncClient(follow_redirects=False))
        headers = {"accept": "text/event-stream, application/json, text/plain", **self.headers}
        where = _safe_url(self.url)
        try:
            async with client.stream("POST", self.url, json=turn_payload(ctx), headers=headers,
                                     timeout=timeout_s) as response:
                if not 200 <= response.status_code < 300:
                    body = await _read_some(response)
                    excerpt = _excerpt(body)
                    raise ResponderError(f"responder endpoint {where} returned HTTP {response.status_code}"
                                         + (f": {excerpt}" if excerpt else ""))
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype == "text/event-stream":
                    async for text in _sse_texts(response):
                        yield text
                elif ctype == "application/json" or ctype.endswith("+json"):
                    yield _json_text(await response.aread())
                else:
                    async for text in response.aiter_text():
                        yield text
        except httpx.TimeoutException:
            raise ResponderError(f"responder endpoint timed out after {_seconds(timeout_s)}") from None
        except httpx.HTTPError as exc:
            raise ResponderError(f"responder endpoint {where} failed: {type(exc).__name__}: {exc}") from None


async def _read_some(response: httpx.Response, limit: int = 2048) -> str:
    data = b""
    async for piece in response.aiter_bytes():
        data += piece
        if len(data) >= limit:
            break
    return data[:limit].decode("utf-8", "replace")


def _json_text(raw: bytes) -> str:
    try:
        body: Any = json.loads(raw)
    except ValueError:
        raise ResponderError("responder endpoint sent invalid JSON") from None
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        for key in _TEXT_FIELDS:
            value = body.get(key)
            if isinstance(value, str):
                return value
            if value is None and key in body:
                return ""
    raise ResponderError('responder endpoint JSON has no "text" or "spoken" string')


async def _sse_texts(response: httpx.Response) -> AsyncIterator[str]:
    join = _ChunkJoiner()
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield join(_sse_event_text("\n".join(data)))
                data.clear()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name != "data":
            continue  # event:, id:, retry:
        value = value.removeprefix(" ")
        if value.strip() == "[DONE]":
            break
        data.append(value)
    if data:
        yield join(_sse_event_text("\n".join(data)))


def _sse_event_text(data: str) -> str:
    if data.lstrip().startswith("{"):
        try:
            parsed: Any = json.loads(data)
        except ValueError:
            return data
        if isinstance(parsed, dict):
            for key in _SSE_TEXT_FIELDS:
                value = parsed.get(key)
                if isinstance(value, str):
                    return value
    return data


# -- Python ----------------------------------------------------------------------------------------
TurnFunction = Callable[[TurnContext], object]
_NOTHING = object()


def load_target(target: str) -> TurnFunction:
    """`module:function` (attribute path allowed), or an entry point in group `voicecall.responders`."""
    target = target.strip()
    obj: Any
    if ":" in target:
        module_name, _, attr = target.partition(":")
        try:
            obj = importlib.import_module(module_name)
        except ImportError as exc:
            raise ResponderError(f"cannot import responder module {module_name!r}: {exc}") from None
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ResponderError(
                    f"responder {target!r}: {module_name} has no attribute {attr!r}") from None
    else:
        found = list(entry_points(group=ENTRY_POINT_GROUP, name=target))
        if not found:
            raise ResponderError(f"no responder {target!r}: expected 'module:function' or the name of an "
                                 f"entry point in group {ENTRY_POINT_GROUP!r}")
        try:
            obj = found[0].load()
        except Exception as exc:
            raise ResponderError(f"cannot load responder entry point {target!r}: {exc}") from None
    if not callable(obj):
        raise ResponderError(f"responder {target!r} is not callable")
    fn: TurnFunction = obj
    return fn


def _runs_on_loop(fn: TurnFunction) -> bool:
    call: object = fn
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        call = type(fn).__call__  # a callable object: look at its __call__
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


class PythonResponder:
    """Calls a Python function with the `TurnContext`.

    The function may return a str, an awaitable of str, or an (async) iterator of str chunks
    (chunks are concatenated; a space is put between a chunk ending a sentence and a capitalised
    next one). Plain (non-async) functions and generators run in a worker thread, so blocking
    code does not stall calls.
    """

    def __init__(self, target: str | TurnFunction) -> None:
        if isinstance(target, str):
            self.target = target
            self._fn = load_target(target)
        else:
            self.target = getattr(target, "__qualname__", repr(target))
            self._fn = target

    def __repr__(self) -> str:
        return f"PythonResponder({self.target!r})"

    async def reply(self, ctx: TurnContext) -> AsyncIterator[str]:
        async for sentence in _sentences(lambda: self._deltas(ctx), spoken=False, timeout_s=ctx.timeout_s,
                                         what="python responder", idle_flush_s=IDLE_FLUSH_S):
            yield sentence

    async def _deltas(self, ctx: TurnContext) -> AsyncGenerator[str, None]:
        fn = self._fn
        try:
            result = fn(ctx) if _runs_on_loop(fn) else await asyncio.to_thread(fn, ctx)
            join = _ChunkJoiner()
            async for chunk in self._chunks(result):
                yield join(chunk)
        except ResponderError:
            raise
        except Exception as exc:
            log.debug("python responder %s raised", self.target, exc_info=True)
            raise ResponderError(
                f"python responder {self.target} failed: {type(exc).__name__}: {exc}") from None

    async def _chunks(self, result: object) -> AsyncIterator[str]:
        if result is None:
            return
        if isinstance(result, str):
            yield result
        elif inspect.isawaitable(result):
            async for chunk in self._chunks(await _awaited(result)):
                yield chunk
        elif isinstance(result, AsyncIterable):
            async for chunk in result:
                yield self._text(chunk)
        elif isinstance(result, Iterator) and inspect.isgenerator(result):
            while (item := await asyncio.to_thread(_next_or_nothing, result)) is not _NOTHING:
                yield self._text(item)
        elif isinstance(result, Iterable) and not isinstance(result, bytes | bytearray | Mapping):
            for chunk in result:
                yield self._text(chunk)
        else:
            raise ResponderError(f"python responder {self.target} returned {type(result).__name__}; "
                                 "expected str, an awaitable of str or an iterator of str")

    def _text(self, chunk: object) -> str:
        if isinstance(chunk, str):
            return chunk
        raise ResponderError(f"python responder {self.target} yielded {type(chunk).__name__}, expected str")


def _next_or_nothing(iterator: Iterator[object]) -> object:
    return next(iterator, _NOTHING)


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


# -- factory ---------------------------------------------------------------------------------------
ResponderKind = Literal["llm", "http", "python"]


def build_responder(kind: ResponderKind, *, model: str | None = None, base_url: str | None = None,
                    api_key: str | None = None, url: str | None = None, target: str | None = None,
                    headers: Mapping[str, str] | None = None, timeout_s: float | None = None,
                    env: Mapping[str, str]) -> Responder:
    """The responder for config `responder.kind` (`llm` default model: `openai/gpt-4o-mini`)."""
    if kind == "llm":
        return LlmResponder(model or DEFAULT_MODEL, base_url=base_url, api_key=api_key, env=env)
    if kind == "http":
        if not url:
            raise ResponderError("responder.url is required for responder kind 'http'")
        return HttpResponder(url, headers=headers, timeout_s=timeout_s)
    if kind == "python":
        if not target:
            raise ResponderError("responder.target is required for responder kind 'python'")
        return PythonResponder(target)
    raise ResponderError(f"unknown responder kind {kind!r}: expected llm, http or python")
