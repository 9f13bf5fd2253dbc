"""The control API server: JSON-RPC 2.0 over `POST /rpc` and a live event stream at
`GET /events` (server-sent events), on its own loopback listener with a bearer token.

It is never mounted on the webhook port, because tunnels expose that port to the internet.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from voicecall.server.rpc import ControlApi
from voicecall.service import CallError
from voicecall.shared import bounded_json

if TYPE_CHECKING:
    from voicecall.server.console import ConsoleAuth
    from voicecall.server.console.browser_call import BrowserCalls
    from voicecall.server.console.routes import StreamStats
    from voicecall.server.metrics import GatewayMetrics

log = logging.getLogger(__name__)
ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
MAX_RPC_BODY = 1024 * 1024
SSE_KEEPALIVE_S = 15.0


def _authorized(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": err}


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to be over `limit` bytes (from its
    Content-Length, before reading, or while reading): it is never held whole (D63)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _valid_id(value: Any) -> bool:
    """A JSON-RPC id: a string, a number or null."""
    return value is None or isinstance(value, str) or (
        isinstance(value, int | float) and not isinstance(value, bool))


def build_control_app(api: ControlApi, token: str, *, metrics: GatewayMetrics | None = None,
                      metrics_public: bool = False, readiness: ReadinessCheck | None = None,
                      console: ConsoleAuth | None = None,
                      stream_stats: StreamStats | None = None,
                      browser_calls: BrowserCalls | None = None) -> Starlette:
    """The control API as a Starlette app, guarded by `token`. `/health`, `/ready` and (with
    `metrics_public`) `/metrics` answer without it and say nothing about the configuration."""

    async def rpc(request: Request) -> Response:
        if not _authorized(request, token):
            return PlainTextResponse("Unauthorized", status_code=401,
                                     headers={"www-authenticate": "Bearer"})
        body = await _bounded_body(request, MAX_RPC_BODY)
        if body is None:  # the rest is not read: the connection closes
            return PlainTextResponse("Payload Too Large", status_code=413,
                                     headers={"connection": "close"})
        try:
            message = bounded_json.loads(body)
        except bounded_json.JsonRefused as exc:
            return JSONResponse(_error(None, PARSE_ERROR, f"Parse error: {exc}"))
        except ValueError:  # UnicodeDecodeError too
            return JSONResponse(_error(None, PARSE_ERROR, "Parse error: body is not JSON"))
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or not isinstance(
                message.get("method"), str):
            return JSONResponse(_error(message.get("id") if isinstance(message, dict) else None,
                                       INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0"
                                       " object with a method"))
        request_id = message.get("id")
        if not _valid_id(request_id):
            return JSONResponse(_error(None, INVALID_REQUEST, "Invalid Request: id must be a "
                                       "string, a number or null"))
        params = message.get("params") or {}
        if not isinstance(params, dict):
            return JSONResponse(_error(request_id, -32602, "params must be an object"))
        try:
            result = await api.call(message["method"], params)
        except CallError as exc:
            data = {"callId": exc.call_id} if exc.call_id else None
            return JSONResponse(_error(request_id, exc.code, str(exc), data))
        except Exception as exc:
            log.exception("rpc %s failed", message["method"])
            return JSONResponse(_error(request_id, INTERNAL_ERROR, f"Internal error: {exc}"))
        return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def events(request: Request) -> Response:
        if not _authorized(request, token):
            return PlainTextResponse("Unauthorized", status_code=401,
                                     headers={"www-authenticate": "Bearer"})
        try:
            after = int(request.query_params.get("after", "-1"))
        except ValueError:
            return PlainTextResponse("after must be an integer", status_code=400)
        return StreamingResponse(_stream(api, after), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    async def health(request: Request) -> Response:
        body: dict[str, Any] = {"ok": True, "activeCalls": len(api.service.active_calls())}
        fingerprint = api.config_info.get("configFingerprint")
        if fingerprint:
            body["configFingerprint"] = fingerprint
        return JSONResponse(body)

    async def ready(request: Request) -> Response:
        checks = await readiness() if readiness is not None else {}
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics_page(request: Request) -> Response:
        if metrics is None:
            return PlainTextResponse("Not Found", status_code=404)
        if not metrics_public and not _authorized(request, token):
            return PlainTextResponse("Unauthorized", status_code=401,
                                     headers={"www-authenticate": "Bearer"})
        from voicecall.server.metrics import CONTENT_TYPE

        return Response(metrics.render(), media_type=CONTENT_TYPE)

    extra: list[Any] = []
    if console is not None:  # the web console (D111), signed in through the control API
        from voicecall.server.console import console_routes

        async def login_code(params: Any) -> dict[str, Any]:
            return {"code": console.issue_code()}

        api.methods["console.loginCode"] = login_code
        extra = console_routes(api, console, stream_stats=stream_stats, browser_calls=browser_calls)
    return Starlette(routes=[
        Route("/rpc", rpc, methods=["POST"]),
        Route("/events", events, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
        *extra,
    ])


async def _stream(api: ControlApi, after: int) -> AsyncIterator[str]:
    """Log entries as SSE, from `after` (or from now when negative), live as they are persisted."""
    service, store = api.service, api.service.store
    version = await service.wait_for_change(-1, 0)
    if after < 0:
        last = await store.last_log(1)
        after = last[-1].seq if last else 0
    while True:
        entries = await store.log_since(after)
        for entry in entries:
            after = entry.seq
            yield f"id: {entry.seq}\nevent: {entry.kind}\ndata: {json.dumps(entry.to_json_dict())}\n\n"
        if entries:
            continue
        new_version = await service.wait_for_change(version, SSE_KEEPALIVE_S)
        if new_version == version:
            yield ": keep-alive\n\n"
        version = new_version
        await asyncio.sleep(0)
