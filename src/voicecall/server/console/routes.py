"""The web console's routes on the control listener (D111): sign-in, the page and its assets,
a JSON API over the control API's methods, and the live event stream.

Every route but the sign-in ones refuses a request without a live session (pages redirect to
the sign-in page, everything else is 401), and every POST must carry the session's CSRF token
in `X-CSRF-Token`, checked before anything is read or changed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from voicecall.server.console.auth import COOKIE, ConsoleAuth, ConsoleSession
from voicecall.server.console.browser_call import BrowserCalls
from voicecall.server.console.history import call_detail, search_history
from voicecall.server.rpc import ControlApi
from voicecall.service import CallError

KEEPALIVE_S = 15.0
CHANGE_COALESCE_S = 0.1
StreamStats = Callable[[str], Mapping[str, Any] | None]
MAX_BODY = 64 * 1024
CSRF_HEADER = "x-csrf-token"
# What the console may ask the control API: reading, placing and steering calls.
CONSOLE_METHODS = frozenset({
    "voicecall.initiate", "voicecall.speak", "voicecall.dtmf", "voicecall.transfer",
    "voicecall.end", "voicecall.status", "voicecall.list", "voicecall.latency",
    "voicecall.media.stats",
})
_ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                ".svg": "image/svg+xml"}
_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "cache-control": "no-store",
}


def _static() -> Any:
    return resources.files("voicecall.server.console").joinpath("static")


def _asset(name: str) -> bytes | None:
    """A file shipped in `console/static` by its plain name (no paths)."""
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    item = _static().joinpath(name)
    return item.read_bytes() if item.is_file() else None


def _login_page(error: str | None = None, status: int = 200) -> HTMLResponse:
    page = (_asset("login.html") or b"").decode()
    message = f'<p class="error" role="alert">{error}</p>' if error else ""
    # The sign-in page carries its own style: the console's assets need a session.
    headers = {**_SECURITY_HEADERS, "content-security-policy":
               "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"}
    return HTMLResponse(page.replace("<!--error-->", message), status_code=status, headers=headers)


def _signed_in(response: Response, session: ConsoleSession) -> Response:
    response.set_cookie(COOKIE, session.session_id, max_age=12 * 3600, httponly=True,
                        samesite="strict", path="/")
    return response


async def _small_body(request: Request) -> bytes | None:
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _changes(api: ControlApi, auth: ConsoleAuth) -> AsyncIterator[str]:
    """SSE: a `change` event each time anything about a call is persisted (a transcript line
    too, which the control API's log stream only carries with a state change); the page then
    reloads what it shows. It ends when the gateway stops, so no open page holds up shutdown."""
    version = await api.service.wait_for_change(-1, 0)
    yield f"event: change\ndata: {version}\n\n"
    closing = asyncio.ensure_future(auth.closing.wait())
    try:
        while True:
            waiting = asyncio.ensure_future(api.service.wait_for_change(version, KEEPALIVE_S))
            await asyncio.wait({waiting, closing}, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                waiting.cancel()
                return
            new_version = waiting.result()
            if new_version == version:
                yield ": keep-alive\n\n"
                continue
            version = new_version
            yield f"event: change\ndata: {version}\n\n"
            await asyncio.sleep(CHANGE_COALESCE_S)  # a burst of writes is one reload
    finally:
        closing.cancel()


def console_routes(api: ControlApi, auth: ConsoleAuth, *, stream_stats: StreamStats | None = None,
                   browser_calls: BrowserCalls | None = None) -> list[BaseRoute]:
    """The console's routes; with `browser_calls`, the browser-call WebSocket too."""

    def current(request: Request) -> ConsoleSession | None:
        return auth.session(request.cookies.get(COOKIE))

    def refuse() -> Response:
        return JSONResponse({"error": "sign in first"}, status_code=401)

    def guarded_post(handler: Callable[[Request, ConsoleSession, Any], Awaitable[Response]]) -> Any:
        async def run(request: Request) -> Response:
            session = current(request)
            if session is None:
                return refuse()
            if not auth.csrf_ok(session, request.headers.get(CSRF_HEADER)):
                return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
            body = await _small_body(request)
            if body is None:
                return JSONResponse({"error": "request too large"}, status_code=413)
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                return JSONResponse({"error": "body is not JSON"}, status_code=400)
            if not isinstance(payload, dict):
                return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
            return await handler(request, session, payload)
        return run

    def guarded_get(handler: Callable[[Request, ConsoleSession], Awaitable[Response]]) -> Any:
        async def run(request: Request) -> Response:
            session = current(request)
            if session is None:
                return refuse()
            return await handler(request, session)
        return run

    async def index(request: Request) -> Response:
        if current(request) is None:
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse(_asset("index.html") or b"", headers=_SECURITY_HEADERS)

    async def login_get(request: Request) -> Response:
        code = request.query_params.get("code")
        if code is None:
            return _login_page()
        session = auth.redeem_code(code)
        if session is None:
            return _login_page("This login link was already used or has expired. Run "
                               "<code>voicecall console</code> again, or enter the token.", 401)
        return _signed_in(RedirectResponse("/", status_code=303), session)

    async def login_post(request: Request) -> Response:
        body = await _small_body(request)
        fields = dict(parse_qsl((body or b"").decode("utf-8", "replace")))
        session = auth.sign_in_with_token(fields.get("token", "").strip())
        if session is None:
            return _login_page("That is not the control token.", 401)
        return _signed_in(RedirectResponse("/", status_code=303), session)

    async def logout(request: Request, session: ConsoleSession, payload: Any) -> Response:
        auth.sign_out(session.session_id)
        response = JSONResponse({"signedOut": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    async def asset(request: Request) -> Response:
        if current(request) is None:
            return PlainTextResponse("Unauthorized", status_code=401)
        name = request.path_params["name"]
        data = _asset(name)
        if data is None:
            return PlainTextResponse("Not Found", status_code=404)
        suffix = name[name.rfind("."):]
        return Response(data, media_type=_ASSET_TYPES.get(suffix, "application/octet-stream"),
                        headers=_SECURITY_HEADERS)

    async def whoami(request: Request, session: ConsoleSession) -> Response:
        return JSONResponse({"csrf": session.csrf, "name": session.name,
                             "browserCalls": browser_calls is not None})

    async def no_browser_calls(websocket: WebSocket) -> None:
        await websocket.close(1008)  # refused at the upgrade (403), signed in or not

    async def rpc(request: Request, session: ConsoleSession, payload: Any) -> Response:
        method, params = payload.get("method"), payload.get("params") or {}
        if method not in CONSOLE_METHODS or not isinstance(params, dict):
            return JSONResponse({"error": f"the console cannot call {method!r}"}, status_code=400)
        try:
            return JSONResponse({"result": await api.call(method, params)})
        except CallError as exc:
            return JSONResponse({"error": str(exc), "code": exc.code}, status_code=400)

    async def call_page(request: Request, session: ConsoleSession) -> Response:
        detail = await call_detail(api, request.path_params["call_id"], stream_stats)
        if detail is None:
            return JSONResponse({"error": "no such call"}, status_code=404)
        return JSONResponse(detail)

    async def history(request: Request, session: ConsoleSession) -> Response:
        try:
            return JSONResponse(await search_history(api, request.query_params))
        except CallError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def live_events(request: Request, session: ConsoleSession) -> Response:
        return StreamingResponse(_changes(api, auth), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    return [
        Route("/", index, methods=["GET"]),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/console/logout", guarded_post(logout), methods=["POST"]),
        Route("/console/static/{name}", asset, methods=["GET"]),
        Route("/console/api/session", guarded_get(whoami), methods=["GET"]),
        Route("/console/api/rpc", guarded_post(rpc), methods=["POST"]),
        Route("/console/api/calls/{call_id}", guarded_get(call_page), methods=["GET"]),
        Route("/console/api/history", guarded_get(history), methods=["GET"]),
        Route("/console/events", guarded_get(live_events), methods=["GET"]),
        WebSocketRoute("/console/call", browser_calls.endpoint if browser_calls is not None
                       else no_browser_calls),
    ]
