"""The public webhook server: carrier callbacks in, carrier replies out.

Pipeline for `serve.path` (ARCHITECTURE.md): limits → verify → replay check → parse → apply
(persisted) → reply. The path matches exactly (no prefixes), only POST is allowed, and the
carrier's required signature headers are checked before the body is read.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse, PlainTextResponse, Response

from voicecall.providers.base import (
    EventOutcome,
    ParsedWebhook,
    Provider,
    WebhookParseError,
    WebhookRequest,
)
from voicecall.security.limits import (
    BODY_TIMEOUT_S,
    MAX_BODY_BYTES,
    BodyIncomplete,
    BodyTimeout,
    BodyTooLarge,
    InFlightLimiter,
    read_body,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
class ReplyWrite(Protocol):
    """A request key and its reply, to be written with the request's last event."""

    written: bool


class ApplyEvents(Protocol):
    async def __call__(self, events: list[Any], *,
                       reply: Any = None) -> list[EventOutcome]: ...


class ReplayStore(Protocol):
    """Where verified request keys live, with the reply each got (persisted, SPEC Q12)."""

    async def lookup_replay(self, key: str) -> dict[str, Any] | None: ...
    async def remember_reply(self, key: str, reply: dict[str, Any]) -> None: ...
    def reply_write(self, key: str, reply: dict[str, Any]) -> ReplyWrite: ...


HEALTH_PATH = "/health"


def normalize_path(path: str) -> str:
    """Trim, ensure a leading slash, drop a trailing one (except for the root)."""
    path = path.strip()
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


class WebhookApp:
    """ASGI app for carrier webhooks and the health check."""

    def __init__(
        self, *, provider: Provider, apply_events: ApplyEvents, replays: ReplayStore,
        path: str, skip_signature_verification: bool = False,
        max_body_bytes: int = MAX_BODY_BYTES, body_timeout_s: float = BODY_TIMEOUT_S,
        limiter: InFlightLimiter | None = None,
    ) -> None:
        self.provider = provider
        self.apply_events = apply_events
        self.replays = replays
        self.path = normalize_path(path)
        self.skip_signature_verification = skip_signature_verification
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.limiter = limiter or InFlightLimiter()
        # A carrier whose webhook reply never depends on the outcome of applying its events
        # says so (the mock); its reply can be stored with the events.
        self.reply_known_early = provider.webhook_reply_ignores_outcomes
        self._required_headers = () if skip_signature_verification else provider.required_headers
        self._last_response: tuple[dict[str, Any], RawResponse] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path = scope.get("path", "/")
        if path != self.path:
            path = normalize_path(path)
        if path == HEALTH_PATH and path != self.path:
            response: Response | RawResponse = JSONResponse({"ok": True, "provider": self.provider.name})
        elif path != self.path:
            response = PlainTextResponse("Not Found", status_code=404)
        elif scope["method"] != "POST":
            response = PlainTextResponse("Method Not Allowed", status_code=405,
                                         headers={"allow": "POST"})
        else:
            response = await self._webhook(scope, receive)
        await response(scope, receive, send)

    async def _webhook(self, scope: Scope, receive: Receive) -> Response | RawResponse:
        # ASGI servers send lower-case names (the spec requires it; uvicorn does).
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        for required in self._required_headers:
            if required not in headers:
                return PlainTextResponse("Unauthorized", status_code=401)
        client = scope.get("client")
        slot = self.limiter.acquire(client[0] if client else None)
        if slot is None:
            return PlainTextResponse("Too Many Requests", status_code=429)
        try:
            return await self._handle(scope, receive, headers)
        except Exception:
            log.exception("webhook handling failed")
            return PlainTextResponse("Internal Server Error", status_code=500)
        finally:
            self.limiter.release(slot)

    async def _handle(self, scope: Scope, receive: Receive,
                      headers: dict[str, str]) -> Response | RawResponse:
        try:
            length = int(headers["content-length"]) if "content-length" in headers else None
        except ValueError:
            return PlainTextResponse("Bad Request: invalid Content-Length", status_code=400)
        try:
            body = await read_body(receive, content_length=length,
                                   max_bytes=self.max_body_bytes, timeout_s=self.body_timeout_s)
        except BodyTooLarge:
            return PlainTextResponse("Payload Too Large", status_code=413)
        except BodyTimeout:
            return PlainTextResponse("Request Timeout", status_code=408)
        except BodyIncomplete:
            return PlainTextResponse("Bad Request: incomplete body", status_code=400)
        request = _request(scope, headers, body)
        verification = self.provider.verify_webhook(request)
        if not verification.ok:
            log.warning("webhook rejected: %s", verification.reason or "verification failed")
            return PlainTextResponse("Unauthorized", status_code=401)
        if not verification.request_key:
            log.warning("webhook rejected: verification succeeded without request identity key")
            return PlainTextResponse("Unauthorized", status_code=401)
        key = verification.request_key
        try:
            parsed = self.provider.parse_webhook(request, verification)
        except WebhookParseError as exc:
            return PlainTextResponse(f"Bad Request: {exc}", status_code=400)
        stored = await self.replays.lookup_replay(key)
        if stored is None and self.reply_known_early:
            # The reply does not depend on what applying does: it is written in the same
            # transaction as the (last) event, one group-commit round instead of two.
            row = _reply_row(await self.provider.webhook_reply(request, parsed, None))
            write = self.replays.reply_write(key, row)
            await self.apply_events(parsed.events, reply=write)
            if not write.written:  # the last event changed nothing (or there was none)
                await self.replays.remember_reply(key, row)
            return self._response(row)
        if stored is not None:
            log.warning("replay detected; acknowledging without side effects")
            if stored:
                return self._response(stored)
            reply = await self.provider.webhook_reply(request, parsed, None)
        else:
            # Not marked until applied: if applying fails, the carrier's retry is applied.
            outcomes = await self.apply_events(parsed.events)
            reply = await self.provider.webhook_reply(request, parsed, outcomes)
        row = _reply_row(reply)
        if stored is None:
            # Committed before the answer goes out: a replay, even after a restart, gets it.
            await self.replays.remember_reply(key, row)
        return self._response(row)

    def _response(self, row: dict[str, Any]) -> RawResponse:
        """The reply for `row`; the last one is reused, as a carrier's replies are often the
        same (building one encodes its headers)."""
        last = self._last_response
        if last is not None and last[0] == row:
            return last[1]
        response = RawResponse(row["body"], row["status"], row["headers"])
        self._last_response = (copy.deepcopy(row), response)
        return response


def _reply_row(reply: ParsedWebhook) -> dict[str, Any]:
    """A carrier's answer as it is sent and stored for replays (`status`, `headers`, `body`)."""
    return {"status": reply.status,
            "headers": reply.headers or {"content-type": "text/plain; charset=utf-8"},
            "body": "OK" if reply.body is None else reply.body}


class RawResponse:
    """A reply sent with two plain ASGI messages; the same bytes and headers as Starlette's
    `Response(body, status_code, headers)` (content-length added unless given), built cheaper.
    Sending does not change it, so one can answer many requests."""

    __slots__ = ("body", "raw_headers", "status_code")

    def __init__(self, body: str, status_code: int, headers: Mapping[str, str]) -> None:
        self.status_code = status_code
        self.body = body.encode("utf-8")
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if not (status_code < 200 or status_code in (204, 304)) and all(
                k != b"content-length" for k, _v in raw):
            raw.append((b"content-length", str(len(self.body)).encode("latin-1")))
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def _request(scope: Scope, headers: dict[str, str], body: bytes) -> WebhookRequest:
    host = headers.get("host", "localhost")
    raw = scope.get("raw_path")  # as sent: signatures cover the undecoded path
    raw_path = raw.decode("latin-1") if isinstance(raw, (bytes, bytearray)) else scope.get("path", "/")
    query_string = scope.get("query_string", b"").decode("latin-1")
    url = f"{scope.get('scheme', 'http')}://{host}{raw_path}"
    if query_string:
        url += "?" + query_string
    client = scope.get("client")
    return WebhookRequest(  # positional: binding seven keywords costs about 1 us
        scope["method"], url, scope.get("path", "/"),
        dict(parse_qsl(query_string, keep_blank_values=True)) if query_string else {},
        headers, body, client[0] if client else "")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
