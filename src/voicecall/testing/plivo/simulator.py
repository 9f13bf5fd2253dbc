"""`PlivoSimulator`: a local Plivo (Voice API REST + signed callbacks + Plivo XML + audio streams).

Point a gateway's `plivo.apiBaseUrl` at `sim.base_url` with `sim.auth_id` / `sim.auth_token`:
calls it places ring a scripted `Callee`, fetch the gateway's XML and run it; `place_inbound()`
makes the simulator call the gateway's answer URL.

>>> async with PlivoSimulator(time_scale=0.05) as sim:
...     sim.script("+15550001111", Callee(replies=["Yes, please."]))
...     ...  # let the gateway call +15550001111, then:
...     call = next(iter(sim.calls.values()))
...     await call.wait_heard("Hello")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import re
import secrets
import string
import time
import xml.etree.ElementTree as ET
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit
from uuid import uuid4

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voicecall.providers.plivo.signature import sign_v2, sign_v3
from voicecall.testing import simbase
from voicecall.testing.loopback import LoopbackServer
from voicecall.testing.plivo.call import CallbackRecord, Callee, PlivoCall
from voicecall.testing.plivo.media import PlivoStream
from voicecall.testing.plivo.xml import Handoff, XmlInterpreter

__all__ = ["ApiCall", "PlivoSimulator"]

FINISH_WAIT_S = 2.0
HANGUP_CAUSES = {  # Plivo's cause name → (code, human name)
    "NORMAL_CLEARING": (4000, "Normal Hangup"),
    "END_OF_XML_INSTRUCTIONS": (4010, "End Of XML Instructions"),
    "ORIGINATOR_CANCEL": (1000, "Canceled"),
    "USER_BUSY": (3010, "Busy Line"),
    "CALL_REJECTED": (3020, "Rejected"),
    "NO_ANSWER": (3000, "No Answer"),
    "UNALLOCATED_NUMBER": (2000, "Invalid Destination Address"),
    "ANSWER_URL_ERROR": (7011, "Error Reaching Answer URL"),
    "INVALID_ANSWER_XML": (8011, "Invalid Answer XML"),
    "MACHINE_DETECTED": (4000, "Normal Hangup"),
}


@dataclass(slots=True)
class ApiCall:
    """One REST request the simulator received."""

    method: str
    path: str
    body: dict[str, Any]
    status_code: int


def _digits(number: str) -> str:
    return number if number.startswith("sip:") else re.sub(r"[^0-9]", "", number)


def _valid_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"api_id": str(uuid4()), "error": message}, status_code=status)


class PlivoSimulator:
    """A local Plivo: REST on its own loopback port, scripted far ends, callbacks to your app."""

    def __init__(self, *, auth_id: str | None = None, auth_token: str | None = None,
                 time_scale: float = 1.0, speak_ms_per_char: int = 30, webhook_retries: int = 0,
                 host: str = "127.0.0.1", port: int = 0, callback_timeout_s: float = 15.0,
                 default_callee: Callee | None = None, v2_only: bool = False,
                 distinct_request_uuid: bool = False) -> None:
        self.auth_id = auth_id or "MA" + "".join(secrets.choice(string.ascii_uppercase + string.digits)
                                                 for _ in range(18))
        self.auth_token = auth_token or secrets.token_urlsafe(30)
        self.time_scale = time_scale
        self.speak_ms_per_char = speak_ms_per_char
        self.webhook_retries = max(0, webhook_retries)
        """Extra identical copies of every callback, as Plivo sends on retries."""
        self.host = host
        self.port = port
        self.callback_timeout_s = callback_timeout_s
        self.default_callee = default_callee or Callee()
        self.v2_only = v2_only
        """Sign callbacks with the legacy V2 headers only."""
        self.distinct_request_uuid = distinct_request_uuid
        """Give API-placed calls a CallUUID other than the `request_uuid` the API answered with
        (Plivo does for calls to several destinations); else both are the same."""
        self.base_url = ""
        self.calls: dict[str, PlivoCall] = {}
        self.requests: list[CallbackRecord] = []
        self.api_requests: list[ApiCall] = []
        self._scripts: dict[str, Callee] = {}
        self._interp = XmlInterpreter(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None
        self._listener = LoopbackServer(host, port)
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """`base_url` + `/v1/Account/{auth_id}/` (every Plivo path ends with a slash)."""
        return f"{self.base_url}/v1/Account/{self.auth_id}/"

    async def start(self) -> None:
        """Serve the REST API on loopback; callbacks go out through one HTTP client."""
        if not self._listener.running:
            self._closing = False
            self._http = httpx.AsyncClient(timeout=self.callback_timeout_s, trust_env=False)
            self.base_url = await self._listener.start(self._app())
            self.port = self._listener.port

    async def stop(self) -> None:
        """Hang up live calls (letting their hangup callbacks go out), then shut down."""
        self._closing = True
        for call in self.calls.values():
            call.request_end("completed", "NORMAL_CLEARING", "Plivo")
        await simbase.drain(self._tasks, FINISH_WAIT_S)
        await self._listener.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> PlivoSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- scripting and inspection ----------------------------------------------------------------
    def script(self, to_number: str, callee: Callee) -> None:
        """How the far end at `to_number` behaves when the app calls it."""
        self._scripts[_digits(to_number)] = callee

    def callee_for(self, number: str) -> Callee:
        """How `number` answers: its script, else the default far end."""
        return self._scripts.get(_digits(number), self.default_callee)

    def call(self, call_uuid: str) -> PlivoCall:
        return self.calls[call_uuid]

    async def wait_for_call(self, *, timeout: float = 5.0) -> PlivoCall:  # noqa: ASYNC109
        """The first call placed through the REST API, once there is one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.calls:
            if loop.time() > deadline:
                raise TimeoutError("no call was placed")
            await asyncio.sleep(0.01)
        return next(iter(self.calls.values()))

    async def place_inbound(self, from_: str, to: str, answer_url: str, *,
                            callee: Callee | None = None,
                            hangup_url: str | None = None) -> PlivoCall:
        """Someone at `from_` calls `to`, a number whose application has `answer_url` (and
        `hangup_url`, the answer URL unless given)."""
        call = PlivoCall(uuid=str(uuid4()), direction="inbound", from_=_digits(from_),
                         to=_digits(to), callee=callee or self.default_callee,
                         answer_url=answer_url, hangup_url=hangup_url or answer_url)
        self.calls[call.uuid] = call
        self._spawn(self._run(call, self._inbound(call)))
        return call

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.scaled(seconds))

    def scaled(self, seconds: float) -> float:
        """Simulated seconds as real ones."""
        return max(0.0, seconds * self.time_scale)

    def speak_seconds(self, text: str) -> float:
        return len(text) * self.speak_ms_per_char / 1000

    # -- callbacks ---------------------------------------------------------------------------------
    def _params(self, call: PlivoCall) -> dict[str, str]:
        params = {"CallUUID": call.uuid, "From": call.from_, "To": call.to,
                  "CallStatus": call.status, "Direction": call.direction}
        if call.direction == "outbound":
            params.update(ALegUUID=call.uuid, ALegRequestUUID=call.request_uuid,
                          RequestUUID=call.request_uuid)
        return params

    def signed_headers(self, url: str, params: dict[str, str]) -> dict[str, str]:
        """The signature headers Plivo puts on a POST of `params` to `url`."""
        nonce = "".join(secrets.choice(string.digits) for _ in range(20))
        v2 = sign_v2(self.auth_token, url, nonce)
        headers = {"X-Plivo-Signature-V2": v2, "X-Plivo-Signature-Ma-V2": v2,
                   "X-Plivo-Signature-V2-Nonce": nonce}
        if not self.v2_only:
            v3 = sign_v3(self.auth_token, "POST", url, list(params.items()), nonce)
            headers.update({"X-Plivo-Signature-V3": v3, "X-Plivo-Signature-Ma-V3": v3,
                            "X-Plivo-Signature-V3-Nonce": nonce})
        return headers

    async def callback(self, call: PlivoCall, kind: str, url: str,
                       extra: dict[str, str] | None = None) -> str | None:
        """POST a signed, form-encoded callback, then `webhook_retries` identical copies (same
        nonce and signature, as a retry is); the first answer's body, None when it failed.

        A request on the wire is finished even if the call is transferred or hung up meanwhile
        (the app sees whole requests)."""
        params = {**self._params(call), **(extra or {})}
        headers = self.signed_headers(url, params)
        first: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

        async def deliveries() -> None:
            for _copy in range(1 + self.webhook_retries):
                body = await self._post(CallbackRecord(kind, call.uuid, url, params, headers))
                if not first.done():
                    first.set_result(body)

        self._spawn(deliveries())
        return await asyncio.shield(first)

    async def _post(self, record: CallbackRecord) -> str | None:
        self.requests.append(record)
        assert self._http is not None, "simulator not started"
        try:
            response = await self._http.post(record.url, content=urlencode(record.params),
                                             headers={**record.headers, "content-type":
                                                      "application/x-www-form-urlencoded"})
        except httpx.HTTPError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            return None
        record.status_code, record.body = response.status_code, response.text
        return response.text if response.is_success else None

    def _notify(self, call: PlivoCall, kind: str, url: str | None,
                extra: dict[str, str] | None = None) -> None:
        """A callback whose answer does not matter (ring, machine detection), in the background."""
        if url:
            self._spawn(self.callback(call, kind, url, extra))

    # -- call lifecycles ---------------------------------------------------------------------------
    async def _run(self, call: PlivoCall, lifecycle: Coroutine[Any, Any, tuple[str, str, str]]) -> None:
        """Run a call until it ends by itself or someone hangs up; then send its hangup callback."""
        body = asyncio.ensure_future(lifecycle)
        ender = asyncio.ensure_future(call.end_requested.wait())
        await asyncio.wait({body, ender}, return_when=asyncio.FIRST_COMPLETED)
        ender.cancel()
        if not body.done():
            body.cancel()
            await asyncio.gather(body, return_exceptions=True)
        if body.cancelled():
            status, cause, source = call.end_status or ("completed", "NORMAL_CLEARING", "Plivo")
        elif (exc := body.exception()) is not None:
            call.errors.append(f"simulator error: {exc!r}")
            status, cause, source = ("completed" if call.answered_at else "failed", "NORMAL_CLEARING",
                                     "Error")
        else:
            status, cause, source = body.result()
        if status == "completed" and call.answered_at is None:
            status = "cancel" if source == "API Request" else "no-answer"
        call.ended_at = time.time()
        call.hangup_cause, call.hangup_source = cause, source
        call.set_status(status)
        code, name = HANGUP_CAUSES.get(cause, (4000, "Normal Hangup"))
        if call.hangup_url:
            await self.callback(call, "hangup", call.hangup_url, {
                "Event": "Hangup", "HangupCause": cause, "HangupCauseCode": str(code),
                "HangupCauseName": name, "HangupSource": source,
                "Duration": str(call.duration_s), "BillDuration": str(call.duration_s)})
        call.finished.set()
        call.changed()

    async def _outbound(self, call: PlivoCall) -> tuple[str, str, str]:
        callee = call.callee
        if callee.outcome == "failed":
            await self.sleep(0.1)
            return "failed", "UNALLOCATED_NUMBER", "Carrier"
        call.set_status("ringing")
        self._notify(call, "ring", call.ring_url, {"Event": "Ring"})
        if callee.outcome == "no-answer" or callee.answer_after_s >= call.ring_timeout_s:
            await self.sleep(call.ring_timeout_s)
            return "no-answer", "NO_ANSWER", "Callee"
        await self.sleep(callee.answer_after_s)
        if callee.outcome == "busy":
            return "busy", "USER_BUSY", "Callee"
        return await self._answered(call)

    async def _inbound(self, call: PlivoCall) -> tuple[str, str, str]:
        return await self._answered(call)

    async def _answered(self, call: PlivoCall) -> tuple[str, str, str]:
        call.answered_at = time.time()
        call.set_status("in-progress")
        if callee_hangup := call.callee.hangup_after_s:
            self._spawn(self._hang_up_later(call, callee_hangup))
        if call.machine_detection_url:
            machine = call.callee.answered_by.startswith("machine")
            self._notify(call, "machine", call.machine_detection_url,
                         {"Machine": "true" if machine else "false"})
        return await self._documents(call, Handoff(next_url=call.answer_url), "answer")

    async def _hang_up_later(self, call: PlivoCall, seconds: float) -> None:
        await self.sleep(seconds)
        call.request_end("completed", "NORMAL_CLEARING", "Callee")

    async def _documents(self, call: PlivoCall, first: Handoff, kind: str) -> tuple[str, str, str]:
        """Fetch and run documents until one ends the call; a transfer replaces the running one."""
        handoff = first
        while True:
            doc = asyncio.ensure_future(self._follow(call, handoff, kind))
            transfer = asyncio.ensure_future(call.transfers.get())
            done, _ = await asyncio.wait({doc, transfer}, return_when=asyncio.FIRST_COMPLETED)
            for task in (doc, transfer):
                if task not in done:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            if doc in done:
                return doc.result()
            handoff, kind = Handoff(next_url=transfer.result()), "transfer"

    async def _follow(self, call: PlivoCall, handoff: Handoff, kind: str) -> tuple[str, str, str]:
        """Run `handoff` and every document it leads to (redirects, GetInput actions)."""
        while True:
            if handoff.hangup is not None:
                status = "busy" if handoff.hangup == "USER_BUSY" else "completed"
                return status, handoff.hangup, "Answer XML"
            text = handoff.next_xml
            if text is None:
                assert handoff.next_url is not None
                text = await self.callback(call, kind, handoff.next_url,
                                           {"Event": "StartApp"} if kind == "answer" else None)
                if text is None:
                    call.errors.append(f"7011 Error Reaching Answer URL: {handoff.next_url}")
                    return "completed", "ANSWER_URL_ERROR", "Error"
            handoff, kind = await self._interp.run(call, text), "redirect"

    async def run_stream(self, call: PlivoCall, el: ET.Element) -> None:
        """`<Stream>`: dial the app's WebSocket; with keepCallAlive, stay until it closes."""
        url = (el.text or "").strip()
        extra = el.get("extraHeaders") or ""
        if not url.startswith(("ws://", "wss://")):
            call.errors.append(f"stream URL is not a WebSocket URL: {url!r}")
            return
        if extra and not all(re.fullmatch(r"[A-Za-z0-9]+=[A-Za-z0-9]+", kv) for kv in extra.split(",")):
            call.errors.append(f"extraHeaders must be alphanumeric k=v pairs: {extra!r}")
            return
        stream = PlivoStream(url=url, call_uuid=call.uuid, auth_id=self.auth_id,
                             extra_headers=extra, feed=call.feed, on_change=call.changed)
        call.streams.append(stream.record)
        call.streaming = True
        task = asyncio.ensure_future(stream.run())
        if (el.get("keepCallAlive") or "false") != "true":
            self._spawn(self._stream_in_background(call, task))
            return
        try:
            await task  # cancelling the document (a transfer, a hang-up) closes the stream
        except Exception as exc:
            call.errors.append(f"stream failed: {exc!r}")
        finally:
            call.streaming = False

    @staticmethod
    async def _stream_in_background(call: PlivoCall, task: asyncio.Future[None]) -> None:
        try:
            await task
        except Exception as exc:
            call.errors.append(f"stream failed: {exc!r}")
        finally:
            call.streaming = False

    # -- REST API ----------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        base = "/v1/Account/{auth_id}/"
        app = Starlette(routes=[
            Route(base + "Call/", self._calls, methods=["POST", "GET"]),
            Route(base + "Call/{uuid}/", self._one_call, methods=["GET", "POST", "DELETE"]),
            Route(base + "Call/{uuid}/DTMF/", self._dtmf, methods=["POST"]),
            Route(base + "Request/{uuid}/", self._request, methods=["DELETE"]),
        ])
        app.router.redirect_slashes = False  # a path without its trailing slash is not found
        return app

    def _authorized(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (scheme.lower() == "basic" and request.path_params.get("auth_id") == self.auth_id
                and hmac.compare_digest(user.encode(), self.auth_id.encode())
                and hmac.compare_digest(password.encode(), self.auth_token.encode()))

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            return {"__invalid__": True}
        return body if isinstance(body, dict) else {"__invalid__": True}

    async def _guarded(self, request: Request, handle: Any) -> Response:
        body = await self._body(request)
        if not self._authorized(request):
            response: Response = _error(401, "Authentication credentials invalid")
        elif body.get("__invalid__"):
            response = _error(400, "the request body is not a JSON object")
        else:
            response = await handle(request, body)
        self.api_requests.append(ApiCall(request.method, request.url.path, body,
                                         response.status_code))
        return response

    async def _calls(self, request: Request) -> Response:
        async def handle(request: Request, body: dict[str, Any]) -> Response:
            if request.method == "GET":
                live = [c.uuid for c in self.calls.values() if not c.is_ended]
                return JSONResponse({"api_id": str(uuid4()), "calls": live})
            return self._create(body)
        return await self._guarded(request, handle)

    def _create(self, body: dict[str, Any]) -> Response:
        for name in ("from", "to", "answer_url"):
            if not body.get(name):
                return _error(400, f"{name} parameter is required")
        to, from_ = str(body["to"]), str(body["from"])
        if "<" in to:
            return _error(400, "the simulator places calls to one destination only")
        if not _digits(to) or not _digits(from_):
            return _error(400, f"invalid number: {to if not _digits(to) else from_}")
        for name in ("answer_url", "hangup_url", "ring_url", "machine_detection_url"):
            if body.get(name) is not None and not _valid_url(body[name]):
                return _error(400, f"{name} is not a valid URL")
        try:
            ring_timeout = float(body.get("ring_timeout", 120))
        except (TypeError, ValueError):
            return _error(400, "ring_timeout must be a number of seconds")
        call = PlivoCall(uuid=str(uuid4()), direction="outbound", from_=_digits(from_),
                         to=_digits(to), callee=self._scripts.get(_digits(to), self.default_callee),
                         answer_url=str(body["answer_url"]), hangup_url=body.get("hangup_url"),
                         ring_url=body.get("ring_url"),
                         machine_detection_url=body.get("machine_detection_url")
                         if body.get("machine_detection") in ("true", "hangup", True) else None,
                         ring_timeout_s=ring_timeout)
        if self.distinct_request_uuid:
            call.request_uuid = str(uuid4())
        self.calls[call.uuid] = call

        async def launch() -> None:  # once the 201 is on the wire, as Plivo does
            if not self._closing:
                self._spawn(self._run(call, self._outbound(call)))
        return JSONResponse({"api_id": str(uuid4()), "message": "call fired",
                             "request_uuid": call.request_uuid}, status_code=201,
                            background=BackgroundTask(launch))

    def _live(self, request: Request) -> PlivoCall | None:
        """The live call the path names: by CallUUID, or by request_uuid on `Request/`."""
        uuid = request.path_params["uuid"]
        call = self.calls.get(uuid)
        if call is None and "/Request/" in request.url.path:
            call = next((c for c in self.calls.values() if c.request_uuid == uuid), None)
        return call if call is not None and not call.is_ended and call.end_status is None else None

    async def _one_call(self, request: Request) -> Response:
        async def handle(request: Request, body: dict[str, Any]) -> Response:
            if request.method == "GET":
                return self._read_call(request)
            call = self._live(request)
            if call is None or (call.answered_at is None and request.method == "POST"):
                return _error(404, "call not found or not in progress")
            if request.method == "DELETE":
                call.request_end("completed", "NORMAL_CLEARING", "API Request")
                with contextlib.suppress(TimeoutError):
                    await call.wait_until(lambda: call.is_ended, FINISH_WAIT_S, "end")
                return Response(status_code=204)
            return self._transfer(call, body)
        return await self._guarded(request, handle)

    def _read_call(self, request: Request) -> Response:
        """As Plivo: `?status=live` reads a call in progress; a plain GET reads the record of a
        call that has ended. Each is a 404 for the other kind of call."""
        known = self.calls.get(request.path_params["uuid"])
        live = request.query_params.get("status") == "live"
        if known is None or known.is_ended == live:
            return _error(404, "call not found")
        body = {"api_id": str(uuid4()), "call_uuid": known.uuid, "direction": known.direction,
                "from_number": known.from_, "to_number": known.to}
        if live:
            return JSONResponse({**body, "call_status": known.status})
        return JSONResponse({**body, "call_state": "ANSWER" if known.answered_at else "NO ANSWER",
                             "hangup_cause_name": known.hangup_cause or "Normal Hangup"})

    def _transfer(self, call: PlivoCall, body: dict[str, Any]) -> Response:
        legs = body.get("legs")
        if legs not in ("aleg", "bleg", "both"):
            return _error(400, "legs must be aleg, bleg or both")
        url = body.get("aleg_url")
        if legs != "bleg" and not _valid_url(url):
            return _error(400, "aleg_url is not a valid URL")
        if (body.get("aleg_method") or "POST").upper() != "POST":
            return _error(400, "the simulator fetches transfer URLs with POST only")
        call.transfers.put_nowait(str(url))
        return JSONResponse({"api_id": str(uuid4()), "message": "call transferred"},
                            status_code=202)

    async def _dtmf(self, request: Request) -> Response:
        async def handle(request: Request, body: dict[str, Any]) -> Response:
            call = self._live(request)
            if call is None:
                return _error(404, "call not found or not in progress")
            digits = str(body.get("digits") or "")
            if not digits or any(c not in "0123456789*#wW" for c in digits):
                return _error(400, "digits must be 0-9 * # w W")
            call.hear("digits", digits)
            return JSONResponse({"api_id": str(uuid4()), "message": "digits sent"},
                                status_code=202)
        return await self._guarded(request, handle)

    async def _request(self, request: Request) -> Response:
        async def handle(request: Request, body: dict[str, Any]) -> Response:
            call = self._live(request)
            if call is None or call.answered_at is not None:
                return _error(404, "request not found")
            call.request_end("cancel", "ORIGINATOR_CANCEL", "API Request")
            return Response(status_code=204)
        return await self._guarded(request, handle)
