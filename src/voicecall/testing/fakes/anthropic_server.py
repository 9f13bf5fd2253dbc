"""A local stand-in for Anthropic's Messages API, for tests: real HTTP on 127.0.0.1, scripted
replies streamed as Messages server-sent events, tool use included.

    async with FakeAnthropic() as fake:
        fake.script("", tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})])
        fake.script('{"spoken": "Sunny in Paris."}')
        client = AsyncAnthropic(base_url=fake.base_url, api_key="sk-ant-test")

Served route: `POST /v1/messages` (streamed: `message_start`, per block `content_block_start`,
`content_block_delta` (`text_delta` / `input_json_delta`), `content_block_stop`, then
`message_delta` with the stop reason and `message_stop`; or a whole `message`). Requests are
checked the way the API checks them: the key (`x-api-key`, or `Authorization: Bearer` as newer
SDKs send it) and the `anthropic-version` header, `model`,
`max_tokens`, strictly alternating `user`/`assistant` turns (stricter than the API, which merges
consecutive ones: a client relying on that is caught), and every `tool_result` answering a
`tool_use` of the turn before.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from voicecall.testing.fakes.openai_server import (
    LoopbackFake,
    RecordedRequest,
    ReplyFn,
    ScriptedReply,
    ScriptedToolCall,
)


def anthropic_error(status: int, type_: str, message: str) -> JSONResponse:
    """An error response in Anthropic's shape."""
    return JSONResponse({"type": "error", "error": {"type": type_, "message": message}}, status_code=status)


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


def _event(name: str, payload: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i:i + size] for i in range(0, len(text), size)]


def _user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
            return " ".join(str(t) for t in texts)
    return ""


def default_reply(messages: list[dict[str, Any]]) -> str:
    """`{"spoken": "You said: <last user text>"}`."""
    return json.dumps({"spoken": f"You said: {_user_text(messages)}"})


def check_messages(messages: Any) -> str | None:
    """What the API would refuse in `messages`, or None."""
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    previous_uses: set[str] = set()
    last_role = None
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if role == last_role:
            return f"messages.{i}: roles must alternate between 'user' and 'assistant'"
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if role == "user":
            for block in blocks:
                if block.get("type") == "tool_result" and block.get("tool_use_id") not in previous_uses:
                    return (f"messages.{i}: tool_result block(s) provided when previous message does not "
                            "contain a matching tool_use")
        previous_uses = {b.get("id") for b in blocks if role == "assistant" and b.get("type") == "tool_use"}
        last_role = role
    if messages[0].get("role") != "user":
        return "messages: first message must use the 'user' role"
    return None


class FakeAnthropic(LoopbackFake):
    """A scripted Anthropic Messages API on 127.0.0.1; an async context manager.

    `script()` queues replies, one per request in order; with the queue empty, the fake answers
    `{"spoken": "You said: <last user text>"}`. Request bodies are kept in `requests` (and whole
    requests in `recorded`). A request without a key (or, when `api_key` is given, with another
    one) gets Anthropic's 401 error.
    """

    def __init__(self, *, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.recorded: list[RecordedRequest] = []
        self._script: deque[ScriptedReply] = deque()
        super().__init__(Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])]),
                         host=host, port=port)

    @property
    def base_url(self) -> str:
        """What an Anthropic client takes as `base_url`: `http://127.0.0.1:PORT`."""
        return self.url

    def script(self, reply: str | ReplyFn, *, token_delay_s: float = 0.0, first_token_delay_s: float = 0.0,
               chunk_chars: int = 4, status: int = 200, error_after_chars: int | None = None,
               tool_calls: list[ScriptedToolCall] | None = None) -> ScriptedReply:
        """Queue the answer to the next request: `reply` text (or a function of the messages)
        streamed in `chunk_chars` pieces, then `tool_calls` as `tool_use` blocks. `status` other
        than 200 answers with Anthropic's error JSON; `error_after_chars` streams that much text
        and then an `error` event."""
        scripted = ScriptedReply(reply, token_delay_s=token_delay_s, first_token_delay_s=first_token_delay_s,
                                 chunk_chars=chunk_chars, status=status, error_after_chars=error_after_chars,
                                 tool_calls=tuple(tool_calls or ()))
        self._script.append(scripted)
        return scripted

    def reset(self) -> None:
        self._script.clear()
        self.requests.clear()
        self.recorded.clear()

    async def _messages(self, request: Request) -> Response:
        """`POST /v1/messages`: record the request, refuse it as the API would, else answer it."""
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.recorded.append(RecordedRequest(request.method, request.url.path, dict(request.headers), body))
        if isinstance(body, dict):
            self.requests.append(body)
        if not self._authorized(request):
            return anthropic_error(401, "authentication_error", "invalid x-api-key")
        if (problem := _request_problem(request, body)) is not None:
            return anthropic_error(400, "invalid_request_error", problem)
        scripted = self._script.popleft() if self._script else ScriptedReply(default_reply)
        if scripted.status != 200:
            return anthropic_error(scripted.status, _ERROR_TYPES.get(scripted.status, "api_error"),
                                   f"scripted error {scripted.status}")
        text = scripted.text_for(body["messages"])
        message_id = "msg_" + secrets.token_hex(12)
        if body.get("stream"):
            return StreamingResponse(self._stream(scripted, text, message_id, body["model"]),
                                     media_type="text/event-stream", headers={"cache-control": "no-cache"})
        return await _whole_message(scripted, text, message_id, body["model"])

    def _authorized(self, request: Request) -> bool:
        """A key in `x-api-key` (or `Authorization: Bearer`), and the expected one when set."""
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        key = request.headers.get("x-api-key", "") or (bearer.strip() if scheme.lower() == "bearer" else "")
        return bool(key) and (self.api_key is None or key == self.api_key)

    async def _stream(self, scripted: ScriptedReply, text: str, message_id: str,
                      model: str) -> AsyncIterator[bytes]:
        if scripted.first_token_delay_s:
            await asyncio.sleep(scripted.first_token_delay_s)
        yield _event("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}})
        yield _event("ping", {"type": "ping"})
        index = 0
        if text:
            yield _event("content_block_start", {"type": "content_block_start", "index": 0,
                                                 "content_block": {"type": "text", "text": ""}})
            sent = 0
            for i, piece in enumerate(_pieces(text, scripted.chunk_chars)):
                if scripted.error_after_chars is not None and sent + len(piece) > scripted.error_after_chars:
                    yield _event("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                      "message": "Overloaded"}})
                    return
                if i and scripted.token_delay_s:
                    await asyncio.sleep(scripted.token_delay_s)
                yield _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                     "delta": {"type": "text_delta", "text": piece}})
                sent += len(piece)
            yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            index = 1
        for call in scripted.tool_calls:
            block = {"type": "tool_use", "id": _tool_id(call), "name": call.name, "input": {}}
            yield _event("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": block})
            for piece in _pieces(json.dumps(dict(call.arguments)), scripted.chunk_chars):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield _event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": delta})
            yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        yield _event("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": "tool_use" if scripted.tool_calls else "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": len(text) // 4 + 1}})
        yield _event("message_stop", {"type": "message_stop"})


def _request_problem(request: Request, body: Any) -> str | None:
    """What the API would refuse in an authenticated request, in its words, or None."""
    if not request.headers.get("anthropic-version"):
        return "anthropic-version: header is required"
    if not isinstance(body, dict):
        return "The request body is not valid JSON."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    return check_messages(body.get("messages"))


async def _whole_message(scripted: ScriptedReply, text: str, message_id: str, model: str) -> JSONResponse:
    """The reply as one `message` (a request without `stream`), after the first-token delay."""
    if scripted.first_token_delay_s:
        await asyncio.sleep(scripted.first_token_delay_s)
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": _tool_id(c), "name": c.name, "input": dict(c.arguments)}
                for c in scripted.tool_calls]
    return JSONResponse({
        "id": message_id, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": "tool_use" if scripted.tool_calls else "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": len(text) // 4 + 1}})


def _tool_id(call: ScriptedToolCall) -> str:
    return call.id if call.id.startswith("toolu_") else "toolu_" + call.id.removeprefix("call_")
