"""The public webhook server: carrier callbacks in, carrier replies out.

Pipeline for `serve.path` (docs/design.md): limits → verify → replay check → parse → apply
(persisted) → reply. The path matches exactly (no prefixes), only POST is allowed, and the
carrier's required signature headers are checked before the body is read.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any, Protocol
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse, PlainTextResponse, Response

from voicecall.providers.base import (
    EventOutcome,
    ParsedWebhook,
    Provider,
    Verification,
    WebhookParseError,
    WebhookRequest,
)
from voicecall.security.client_address import client_address
from voicecall.security.limits import (
    BODY_TIMEOUT_S,
    MAX_BODY_BYTES,
    BodyIncomplete,
    BodyTimeout,
    BodyTooLarge,
    InFlightLimiter,
    ReadBudget,
    read_body,
)
from voicecall.service.rejections import clean_reason
from voicecall.shared.asgi import Receive, Scope, Send

log = logging.getLogger(__name__)


class ApplyEvents(Protocol):
    """Applies parsed events and persists them before returning (the call service)."""

    async def __call__(self, events: list[Any]) -> list[EventOutcome]: ...


class ReplayStore(Protocol):
    """Where verified request keys live, with the reply each got; persisted, so a replay is
    recognised after a restart too (docs/decisions.md)."""

    async def lookup_replay(self, key: str) -> dict[str, Any] | None: ...
    async def remember_reply(self, key: str, reply: dict[str, Any]) -> None: ...


class RejectionSink(Protocol):
    """Where refused webhooks are counted against the call they name (the call service's
    `WebhookRejections`); it must never change the call."""

    def record(self, claimed_call_id: str | None, reason: str) -> tuple[str, int] | None:
        """Our call id and its refusal count, or None when the request names no live call."""
        ...


class WebhookObserver(Protocol):
    """Told how each webhook request ended and how long it took (metrics, D110)."""

    def __call__(self, outcome: str, seconds: float) -> None: ...


# How a request ended when its status alone does not say (a replay answers 200 like a new one).
_outcome: contextvars.ContextVar[str | None] = contextvars.ContextVar("webhook_outcome", default=None)
_OUTCOMES = {401: "rejected_signature", 400: "rejected_malformed", 408: "rejected_timeout",
             413: "rejected_too_large", 429: "rejected_rate_limited", 500: "error"}


def outcome_of(status: int) -> str:
    """A webhook's outcome label: `accepted`, `replay`, `rejected_<reason>` or `error`."""
    marked = _outcome.get()
    if marked is not None:
        return marked
    if status < 400:
        return "accepted"
    return _OUTCOMES.get(status, f"rejected_{status}")


HEALTH_PATH = "/health"
_CLOSE = {"connection": "close"}


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
        limiter: InFlightLimiter | None = None, rejections: RejectionSink | None = None,
        reads: ReadBudget | None = None, trusted_proxies: frozenset[str] = frozenset(),
        observer: WebhookObserver | None = None,
    ) -> None:
        self.provider = provider
        self.observer = observer
        self.rejections = rejections
        self.apply_events = apply_events
        self.replays = replays
        self.path = normalize_path(path)
        self.skip_signature_verification = skip_signature_verification
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.limiter = limiter or InFlightLimiter()
        """In-flight verified requests per client (429 beyond it)."""
        self.reads = reads or ReadBudget()
        """Bodies being read before verification; over it, the oldest read loses its slot."""
        self.trusted_proxies = trusted_proxies
        """Proxies whose `X-Forwarded-For` names the client the budgets are kept for."""
        self._required_headers = () if skip_signature_verification else provider.required_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path = scope.get("path", "/")
        if path != self.path:
            path = normalize_path(path)
        if path == HEALTH_PATH and path != self.path:
            response: Response = JSONResponse({"ok": True, "provider": self.provider.name})
        elif path != self.path:
            response = PlainTextResponse("Not Found", status_code=404)
        elif scope["method"] != "POST":
            response = PlainTextResponse("Method Not Allowed", status_code=405,
                                         headers={"allow": "POST"})
        else:
            started = time.perf_counter()
            _outcome.set(None)
            response = await self._webhook(scope, receive)
            if self.observer is not None:
                self.observer(outcome_of(response.status_code), time.perf_counter() - started)
        await response(scope, receive, send)

    async def _webhook(self, scope: Scope, receive: Receive) -> Response:
        # ASGI servers send lower-case names (the spec requires it; uvicorn does).
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        for required in self._required_headers:
            # An entry may name alternatives, `a|b`: one of them is enough (D80).
            if not any(name in headers for name in required.split("|")):
                log.warning("webhook rejected: the %s header is missing", required)
                return PlainTextResponse("Unauthorized", status_code=401)
        key = self._client_key(scope, headers)
        try:
            request = await self._read(scope, receive, headers, key)
            if isinstance(request, Response):
                return request
            verification = self.provider.verify_webhook(request)
            if not verification.ok or not verification.request_key:
                reason = (verification.reason or "verification failed") if not verification.ok \
                    else "verification succeeded without a request identity key"
                self._rejected(reason, verification.call_id)
                return PlainTextResponse("Unauthorized", status_code=401)
            # Only verified requests count against the in-flight budget: unverified ones cannot
            # take the slots a genuine carrier needs (D60).
            slot = self.limiter.acquire(key)
            if slot is None:
                return PlainTextResponse("Too Many Requests", status_code=429)
            try:
                return await self._handle(request, verification)
            finally:
                self.limiter.release(slot)
        except Exception:
            log.exception("webhook handling failed")
            return PlainTextResponse("Internal Server Error", status_code=500)

    def _client_key(self, scope: Scope, headers: dict[str, str]) -> str | None:
        """Whose budgets a request counts against: the socket's address, or behind a trusted
        proxy (a tunnel), the client it forwards for (D60)."""
        client = scope.get("client")
        if not client:
            return None
        if not self.trusted_proxies:
            return str(client[0])
        forwarded = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"]
        return client_address(str(client[0]), forwarded_for=forwarded,
                              real_ip=headers.get("x-real-ip"), trusted_proxies=self.trusted_proxies)

    async def _read(self, scope: Scope, receive: Receive, headers: dict[str, str],
                    key: str | None) -> WebhookRequest | Response:
        """The request with its body, read under the limits and the read budget, or the
        refusal to send instead."""
        try:
            length = int(headers["content-length"]) if "content-length" in headers else None
        except ValueError:
            return PlainTextResponse("Bad Request: invalid Content-Length", status_code=400)
        if length is not None and length < 0:
            return PlainTextResponse("Bad Request: invalid Content-Length", status_code=400)
        try:
            body = await read_body(receive, content_length=length, max_bytes=self.max_body_bytes,
                                   timeout_s=self.body_timeout_s, budget=self.reads, key=key)
        except BodyTooLarge:  # the rest of an unread body is not waited for: the connection closes
            return PlainTextResponse("Payload Too Large", status_code=413, headers=_CLOSE)
        except BodyTimeout:
            return PlainTextResponse("Request Timeout", status_code=408, headers=_CLOSE)
        except BodyIncomplete:
            return PlainTextResponse("Bad Request: incomplete body", status_code=400, headers=_CLOSE)
        return _request(scope, headers, body)

    async def _handle(self, request: WebhookRequest, verification: Verification) -> Response:
        key = verification.request_key
        assert key is not None
        try:
            parsed = self.provider.parse_webhook(request, verification)
        except WebhookParseError as exc:
            return PlainTextResponse(f"Bad Request: {exc}", status_code=400)
        stored = await self.replays.lookup_replay(key)
        if stored is not None:
            log.warning("replay detected; acknowledging without side effects")
            _outcome.set("replay")
            if stored:
                return _response(stored)
            row = _reply_row(await self.provider.webhook_reply(request, parsed, None))
            return _response(row)
        # The key is stored only once the events are applied: if applying fails, the carrier's
        # retry is applied. Both writes are committed before the answer goes out, so a replay,
        # even after a restart, gets the same answer without side effects.
        outcomes = await self.apply_events(parsed.events)
        row = _reply_row(await self.provider.webhook_reply(request, parsed, outcomes))
        await self.replays.remember_reply(key, row)
        return _response(row)

    def _rejected(self, reason: str, claimed_call_id: str | None) -> None:
        """Log a refused webhook and count it against the call it names; nothing else changes."""
        reason = clean_reason(reason)
        counted = self.rejections.record(claimed_call_id, reason) if self.rejections else None
        if counted is None:
            log.warning("webhook rejected: %s", reason)
        else:
            log.warning("webhook rejected for call %s (%d rejected so far): %s",
                        counted[0], counted[1], reason)


def _reply_row(reply: ParsedWebhook) -> dict[str, Any]:
    """A carrier's answer as it is sent and stored for replays (`status`, `headers`, `body`)."""
    return {"status": reply.status,
            "headers": reply.headers or {"content-type": "text/plain; charset=utf-8"},
            "body": "OK" if reply.body is None else reply.body}


def _response(row: dict[str, Any]) -> Response:
    return Response(row["body"], status_code=row["status"], headers=row["headers"])


def _request(scope: Scope, headers: dict[str, str], body: bytes) -> WebhookRequest:
    host = headers.get("host", "localhost")
    raw = scope.get("raw_path")  # as sent: signatures cover the undecoded path
    raw_path = raw.decode("latin-1") if isinstance(raw, (bytes, bytearray)) else scope.get("path", "/")
    query_string = scope.get("query_string", b"").decode("latin-1")
    url = f"{scope.get('scheme', 'http')}://{host}{raw_path}"
    if query_string:
        url += "?" + query_string
    client = scope.get("client")
    return WebhookRequest(
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
