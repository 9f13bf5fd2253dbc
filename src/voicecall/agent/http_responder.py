"""`HttpResponder`: the turn POSTed as JSON to the user's endpoint; text, JSON or SSE back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Mapping,
)
from typing import Any
from urllib.parse import urlsplit

import httpx

from voicecall.agent.turn import (
    IDLE_FLUSH_S,
    ChunkJoiner,
    PerLoop,
    ResponderError,
    TurnContext,
    excerpt,
    safe_url,
    seconds,
    sentence_stream,
)

log = logging.getLogger(__name__)


# -- HTTP ------------------------------------------------------------------------------------------
_TEXT_FIELDS = ("spoken", "text")
_SSE_TEXT_FIELDS = ("spoken", "text", "delta", "content")
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
            raise ResponderError(f"responder URL must be http(s)://host/..., got {safe_url(url)!r}")
        self.url = url
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self._clients: PerLoop[httpx.AsyncClient] = PerLoop()

    def __repr__(self) -> str:
        return f"HttpResponder(url={safe_url(self.url)!r})"

    async def reply(self, ctx: TurnContext) -> AsyncIterator[str]:
        timeout_s = self.timeout_s if self.timeout_s is not None else ctx.timeout_s
        async for sentence in sentence_stream(lambda: self._deltas(ctx, timeout_s), spoken=False,
                                              timeout_s=timeout_s, what="responder endpoint",
                                              idle_flush_s=IDLE_FLUSH_S):
            yield sentence

    async def aclose(self) -> None:
        for client in self._clients.take_current():
            await client.aclose()

    async def _deltas(self, ctx: TurnContext, timeout_s: float) -> AsyncGenerator[str, None]:
        client = self._clients.get(None, lambda: httpx.AsyncClient(follow_redirects=False))
        headers = {"accept": "text/event-stream, application/json, text/plain", **self.headers}
        where = safe_url(self.url)
        try:
            async with client.stream("POST", self.url, json=turn_payload(ctx), headers=headers,
                                     timeout=timeout_s) as response:
                if not 200 <= response.status_code < 300:
                    body = await _read_some(response)
                    detail = excerpt(body)
                    raise ResponderError(f"responder endpoint {where} returned HTTP {response.status_code}"
                                         + (f": {detail}" if detail else ""))
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
            raise ResponderError(f"responder endpoint timed out after {seconds(timeout_s)}") from None
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
    join = ChunkJoiner()
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
