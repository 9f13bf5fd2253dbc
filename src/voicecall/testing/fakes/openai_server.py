"""A local stand-in for the OpenAI API, for tests: real HTTP on 127.0.0.1, scripted replies.

    async with FakeOpenAI() as fake:
        fake.script('{"spoken": "Hello there. How can I help?"}', token_delay_s=0.05)
        client = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test")
        ...
        assert fake.requests[0]["model"] == "gpt-4o-mini"

Served routes: `POST /v1/chat/completions` (streaming as server-sent events exactly like OpenAI,
or a whole `chat.completion`) and `GET /v1/models`. The app is one Starlette application built from
`FakeOpenAI.routes()`, so more endpoints (speech, realtime) can be added alongside.

`LoopbackServer` serves any ASGI app on an ephemeral loopback port; tests use it for other small
endpoints too.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from voicecall.gateway.ports import bind_listener
from voicecall.server.serving import EmbeddedServer, WsImpl, serve_on

STARTUP_TIMEOUT_S = 10.0

ReplyFn = Callable[[list[dict[str, Any]]], str]


class LoopbackServer:
    """Serve an ASGI app on 127.0.0.1 (ephemeral port unless given) for the life of the context."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0,
                 ws: WsImpl = "none") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.ws = ws
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            return
        sock = bind_listener(self.host, self.port, "test server")
        self.port = sock.getsockname()[1]
        self._server, self._task = await serve_on(self.app, sock, graceful_shutdown_s=1, fast_exit=True,
                                                  ws=self.ws)

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 5)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> LoopbackServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


@dataclass(frozen=True)
class ScriptedToolCall:
    """A function call the fake model makes (after its text, if any)."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: "call_" + secrets.token_hex(8))


@dataclass
class ScriptedReply:
    """How the fake answers one chat-completion request."""

    reply: str | ReplyFn
    token_delay_s: float = 0.0
    first_token_delay_s: float = 0.0
    chunk_chars: int = 4
    status: int = 200
    error_after_chars: int | None = None
    hang: bool = False
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    error_message: str | None = None

    def text_for(self, messages: list[dict[str, Any]]) -> str:
        return self.reply(messages) if callable(self.reply) else self.reply


@dataclass
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float = field(default_factory=time.monotonic)


def default_reply(messages: list[dict[str, Any]]) -> str:
    """`{"spoken": "You said: <last user message>"}`."""
    last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    if isinstance(last, list):  # content parts
        last = " ".join(str(p.get("text", "")) for p in last if isinstance(p, dict))
    return json.dumps({"spoken": f"You said: {last}"})


def openai_error(status: int, message: str, *, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> JSONResponse:
    """An error response in OpenAI's shape."""
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                404: "invalid_request_error", 429: "rate_limit_exceeded"}


_STREAM_ERROR: dict[str, Any] = {"error": {
    "message": "The server had an error while processing your request.",
    "type": "server_error", "param": None, "code": None}}


def _sse(payload: Mapping[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _chunks(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i:i + size] for i in range(0, len(text), size)]


class LoopbackFake:
    """A fake service served by a `LoopbackServer`: start/stop and async context manager.

    Subclasses build their Starlette app in `app()`; handlers that stream may wait on
    `_stopping`, which is set when the fake stops (so a hanging response ends with it).
    """

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._stopping = asyncio.Event()
        self._server = LoopbackServer(app, host=host, port=port)

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return self._server.url

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        await self._server.start()

    async def stop(self) -> None:
        self._stopping.set()
        await self._server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


class FakeOpenAI(LoopbackFake):
    """A scripted OpenAI-compatible server on 127.0.0.1; an async context manager.

    `script()` queues replies, used one per chat-completion request in order; with the queue empty,
    the fake answers `{"spoken": "You said: <last user message>"}`. Every request body is kept in
    `requests` (and the whole request in `recorded`). Requests without `Authorization: Bearer ...`
    (or, when `api_key` is given, with another key) get OpenAI's 401 error.
    """

    def __init__(self, *, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.recorded: list[RecordedRequest] = []
        self._script: deque[ScriptedReply] = deque()
        super().__init__(self.app(), host=host, port=port)

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url`: `http://127.0.0.1:PORT/v1`."""
        return f"{self._server.url}/v1"

    # -- scripting -------------------------------------------------------------------------------
    def script(self, reply: str | ReplyFn, *, token_delay_s: float = 0.0, first_token_delay_s: float = 0.0,
               chunk_chars: int = 4, status: int = 200, error_after_chars: int | None = None,
               hang: bool = False, tool_calls: list[ScriptedToolCall] | None = None,
               error_message: str | None = None) -> ScriptedReply:
        """Queue the answer to the next chat-completion request.

        `reply` is the assistant's text (or a function of the request's messages). It streams in
        pieces of `chunk_chars` characters, `token_delay_s` apart, the first after
        `first_token_delay_s`. `status` other than 200 answers with OpenAI's error JSON instead.
        `error_after_chars` streams that many characters and then an error event (the stream ends
        without `[DONE]`). `hang` streams the reply and then neither finishes nor closes the stream
        (with an empty reply: the client gets nothing but the opening chunk). `tool_calls` are
        function calls made after the text (streamed as OpenAI streams them: the name first, then
        the arguments in pieces); the round then finishes with `tool_calls`. `error_message` is
        the message of a scripted error status.
        """
        scripted = ScriptedReply(reply, token_delay_s=token_delay_s, first_token_delay_s=first_token_delay_s,
                                 chunk_chars=chunk_chars, status=status,
                                 error_after_chars=error_after_chars, hang=hang,
                                 tool_calls=tuple(tool_calls or ()), error_message=error_message)
        self._script.append(scripted)
        return scripted

    def reset(self) -> None:
        """Forget the scripted replies and the recorded requests (to share one server across tests)."""
        self._script.clear()
        self.requests.clear()
        self.recorded.clear()

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        return len(self._script)

    # -- the app ---------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ]

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.recorded.append(RecordedRequest(request.method, request.url.path, dict(request.headers), body))
        return body

    def _auth_error(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return openai_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                     "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                                     "YOUR_KEY).")
        if self.api_key is not None and token.strip() != self.api_key:
            return openai_error(401, "Incorrect API key provided.", code="invalid_api_key")
        return None

    async def _models(self, request: Request) -> Response:
        await self._record(request)
        if (denied := self._auth_error(request)) is not None:
            return denied
        return JSONResponse({"object": "list", "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
        ]})

    async def _chat_completions(self, request: Request) -> Response:
        body = await self._record(request)
        if isinstance(body, dict):
            self.requests.append(body)
        if (denied := self._auth_error(request)) is not None:
            return denied
        if not isinstance(body, dict):
            return openai_error(400, "We could not parse the JSON body of your request.")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return openai_error(400, "you must provide a model parameter", param="model")
        if not isinstance(messages, list) or not messages:
            return openai_error(400, "'messages' must be a non-empty array", param="messages")
        scripted = self._script.popleft() if self._script else ScriptedReply(default_reply)
        if scripted.status != 200:
            error_text = scripted.error_message or f"scripted error {scripted.status}"
            return openai_error(scripted.status, error_text,
                                type_=_ERROR_TYPES.get(scripted.status, "server_error"))
        text = scripted.text_for(messages)
        completion_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(scripted, text, completion_id, created, model, messages, include_usage),
                media_type="text/event-stream", headers={"cache-control": "no-cache"})
        if scripted.first_token_delay_s:
            await asyncio.sleep(scripted.first_token_delay_s)
        if scripted.hang:
            await self._stopping.wait()
            return openai_error(503, "server shutting down", type_="server_error")
        if scripted.error_after_chars is not None:
            return openai_error(500, "The server had an error while processing your request.",
                                type_="server_error")
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if scripted.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": json.dumps(dict(c.arguments))}} for c in scripted.tool_calls]
        return JSONResponse({
            "id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if scripted.tool_calls else "stop"}],
            "usage": _usage(messages, text), "system_fingerprint": "fp_fake",
        })

    async def _stream(self, scripted: ScriptedReply, text: str, completion_id: str, created: int, model: str,
                      messages: list[dict[str, Any]], include_usage: bool) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            return _sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                         "model": model, "system_fingerprint": "fp_fake",
                         "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": finish_reason}]})

        if scripted.first_token_delay_s:
            await asyncio.sleep(scripted.first_token_delay_s)
        yield chunk({"role": "assistant"})
        sent = 0
        for i, piece in enumerate(_chunks(text, scripted.chunk_chars)):
            if scripted.error_after_chars is not None and sent + len(piece) > scripted.error_after_chars:
                head = piece[:scripted.error_after_chars - sent]
                if head:
                    yield chunk({"content": head})
                yield _sse(_STREAM_ERROR)
                return
            if i and scripted.token_delay_s:
                await asyncio.sleep(scripted.token_delay_s)
            yield chunk({"content": piece})
            sent += len(piece)
        if scripted.error_after_chars is not None:  # at or past the end of the text
            yield _sse(_STREAM_ERROR)
            return
        if scripted.hang:
            await self._stopping.wait()
            return
        for index, call in enumerate(scripted.tool_calls):
            yield chunk({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                         "function": {"name": call.name, "arguments": ""}}]})
            for piece in _chunks(json.dumps(dict(call.arguments)), scripted.chunk_chars):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        if scripted.token_delay_s:
            await asyncio.sleep(scripted.token_delay_s)
        yield chunk({}, "tool_calls" if scripted.tool_calls else "stop")
        if include_usage:
            yield _sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                        "model": model, "system_fingerprint": "fp_fake", "choices": [],
                        "usage": _usage(messages, text)})
        yield _sse("[DONE]")


def _usage(messages: list[dict[str, Any]], text: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
    completion = len(text) // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
