"""`TwilioSimulator`: a local Twilio look-alike (REST API + signed webhooks + TwiML + Media Streams).

Point a gateway's `twilio.apiBaseUrl` at `sim.base_url` and give it `sim.account_sid` /
`sim.auth_token`; outbound calls placed through the REST API ring a scripted `Callee`, fetch the
gateway's TwiML and run it; `place_inbound()` makes the simulator call the gateway.

>>> async with TwilioSimulator(time_scale=0.02) as sim:
...     sim.script("+15550001111", Callee(replies=["Yes, please."]))
...     ...  # let the gateway place a call to +15550001111, then:
...     call = next(iter(sim.calls.values()))
...     await call.wait_heard("Hello")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hmac
import secrets
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from uuid import uuid4

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voicecall.testing import simbase
from voicecall.testing.far_end import Callee, CallerFeed
from voicecall.testing.loopback import LoopbackServer
from voicecall.testing.twilio.media import MediaStream, StreamError, StreamRecord
from voicecall.testing.twilio.rest_params import Form, InvalidParameter, parse_create, valid_url
from voicecall.testing.twilio.signing import SIGNATURE_HEADER, sign
from voicecall.testing.twilio.twiml import Document, GatherRecord, TwimlInterpreter

API_VERSION = "2010-04-01"
TERMINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
STARTUP_TIMEOUT_S = 10.0
END_WAIT_S = 2.0

@dataclass(slots=True)
class WebhookRecord:
    """One HTTP request the simulator sent to the app (every retry is its own record)."""

    kind: str  # voice / status / gather / redirect / connect / wait / stream-status / amd
    call_sid: str
    url: str  # exactly as requested (GET params included)
    method: str
    params: dict[str, str]
    headers: dict[str, str]
    attempt: int = 0
    status_code: int | None = None
    body: str = ""
    content_type: str = ""
    error: str | None = None
    at: float = 0.0
    replied_at: float | None = None
    """When the app's answer arrived (None without one)."""

    @property
    def signature(self) -> str:
        return self.headers.get(SIGNATURE_HEADER, "")


@dataclass(slots=True)
class ApiRecord:
    """One REST request the simulator received."""

    method: str
    path: str
    params: list[tuple[str, str]]
    status_code: int
    at: float


@dataclass(slots=True)
class SayRecord:
    """A `<Say>` that played to the end."""

    text: str
    voice: str | None
    language: str | None


@dataclass(slots=True)
class DialRecord:
    """One `<Dial>`: who was called, as whom, and how it went (Twilio's `DialCallStatus`)."""

    number: str
    caller_id: str | None
    status: str = "ringing"
    duration_s: int = 0


@dataclass(frozen=True, slots=True)
class _Fetch:
    url: str
    method: str
    extra: dict[str, str]


def _rfc2822(ts: float | None) -> str | None:
    return None if ts is None else format_datetime(datetime.fromtimestamp(ts, UTC))


class SimCall(simbase.Observable):
    """One simulated call and everything observable about it."""

    def __init__(self, sim: TwilioSimulator, *, sid: str, direction: str, from_: str, to: str,
                 callee: Callee, url: str | None, method: str = "POST", twiml: str | None = None,
                 status_callback: str | None = None, status_callback_method: str = "POST",
                 status_callback_events: Iterable[str] = ("completed",), timeout_s: float = 60.0,
                 machine_detection: str | None = None, status: str = "queued") -> None:
        super().__init__()
        self._sim = sim
        self.sid = sid
        self.account_sid = sim.account_sid
        self.direction = direction
        self.from_ = from_
        self.to = to
        self.callee = dataclasses.replace(callee, replies=list(callee.replies), digits=list(callee.digits))
        self.url = url
        self.method = method
        self.twiml = twiml
        self.status_callback = status_callback
        self.status_callback_method = status_callback_method
        self.status_callback_events = set(status_callback_events)
        self.timeout_s = timeout_s
        self.machine_detection = machine_detection
        self.async_amd_callback: str | None = None
        self.async_amd_method = "POST"
        self.time_limit_s: float | None = None
        self.status = status
        self.answered_by: str | None = None
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self.created_at = time.time()
        self.updated_at = self.created_at
        self.started_at: float | None = self.created_at if direction == "inbound" else None
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.timeline: list[tuple[float, str]] = [(0.0, status)]
        self.heard: list[tuple[str, str]] = []
        self.spoken: list[SayRecord] = []
        self.interrupted: list[tuple[str, str]] = []
        self.gathers: list[GatherRecord] = []
        self.dials: list[DialRecord] = []
        self.documents: list[Document] = []
        self.streams: list[StreamRecord] = []
        self.received_audio = bytearray()
        self.marks: list[str] = []
        self.marks_echoed: list[str] = []
        self.enqueued: str | None = None
        self.warnings: list[tuple[int | None, str]] = []
        self.errors: list[tuple[int | None, str]] = []
        self.feed = CallerFeed()
        self.input_event = asyncio.Event()
        self._end_requested = asyncio.Event()
        self._end_status: str | None = None
        self._finished = asyncio.Event()
        self._redirects: asyncio.Queue[Document | _Fetch] = asyncio.Queue()
        self._status_q: asyncio.Queue[tuple[str, str, dict[str, str]] | None] = asyncio.Queue()
        self._status_worker: asyncio.Task[None] | None = None
        self._status_seq = 0
        self._aux: list[asyncio.Task[None]] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        self._bg_streams: list[tuple[str | None, asyncio.Task[None]]] = []
        self._active_stream: MediaStream | None = None

    def __repr__(self) -> str:
        return f"<SimCall {self.sid} {self.direction} {self.from_}->{self.to} {self.status}>"

    # -- derived views ---------------------------------------------------------------------------
    @property
    def is_ended(self) -> bool:
        return self.status in TERMINAL

    @property
    def statuses(self) -> list[str]:
        """Every status the call has had, in order."""
        return [s for _, s in self.timeline]

    @property
    def events(self) -> list[tuple[float, str]]:
        """Alias of `timeline`: (seconds since creation, status)."""
        return self.timeline

    @property
    def said(self) -> list[str]:
        """Texts of the `<Say>`s that fully played."""
        return [v for k, v in self.heard if k == "say"]

    @property
    def digits_heard(self) -> str:
        """All DTMF the app sent with `<Play digits>`, concatenated."""
        return "".join(v for k, v in self.heard if k == "digits")

    @property
    def duration_s(self) -> int:
        """Simulated seconds from answer to end (0 when never answered); Twilio's CallDuration."""
        if self.answered_at is None:
            return 0
        end = self.ended_at if self.ended_at is not None else time.time()
        scale = self._sim.time_scale
        return max(0, round((end - self.answered_at) / scale)) if scale > 0 else 0

    @property
    def webhooks(self) -> list[WebhookRecord]:
        """Every webhook the simulator sent for this call (retries included)."""
        return [r for r in self._sim.requests if r.call_sid == self.sid]

    @property
    def active_stream(self) -> StreamRecord | None:
        """The `<Connect><Stream>` now open, if any."""
        return self._active_stream.record if self._active_stream is not None else None

    # -- recording (used by the interpreter) -----------------------------------------------------
    def _set_status(self, status: str) -> None:
        self.status = status
        self.updated_at = time.time()
        self.timeline.append((asyncio.get_running_loop().time() - self._t0, status))
        self._bump()

    def record_heard(self, kind: str, value: str) -> None:
        self.heard.append((kind, value))
        self._bump()

    def record_say(self, text: str, voice: str | None, language: str | None) -> None:
        self.spoken.append(SayRecord(text, voice, language))
        self.record_heard("say", text)

    def warn(self, code: int | None, message: str) -> None:
        self.warnings.append((code, message))

    def error(self, code: int | None, message: str) -> None:
        self.errors.append((code, message))
        self._bump()

    def peek_input(self, inputs: set[str]) -> tuple[str, str] | None:
        """The callee's next answer to a Gather accepting `inputs`, without consuming it."""
        if "speech" in inputs and self.callee.replies:
            return "speech", self.callee.replies[0]
        if "dtmf" in inputs and self.callee.digits:
            return "dtmf", self.callee.digits[0]
        return None

    def consume_input(self, kind: str) -> None:
        (self.callee.replies if kind == "speech" else self.callee.digits).pop(0)

    def _request_end(self, status: str) -> None:
        if self._end_status is None and not self.is_ended:
            self._end_status = status
            self._end_requested.set()

    # -- driving the callee at run time ------------------------------------------------------------
    def reply(self, text: str) -> None:
        """The callee says `text` (answers the current or next speech Gather)."""
        self.callee.replies.append(text)
        self.input_event.set()

    def press(self, digits: str) -> None:
        """The callee presses keys: DTMF events on an open `<Connect><Stream>`, else a Gather answer."""
        if self._active_stream is not None:
            self.feed.press(digits)
        else:
            self.callee.digits.append(digits)
            self.input_event.set()

    def send_audio(self, mulaw: bytes) -> None:
        """The callee speaks raw μ-law 8 kHz audio into the media stream."""
        self.feed.add_audio(mulaw)

    async def hangup(self, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """The callee hangs up; returns the final status."""
        return await self._sim.hangup(self.sid, timeout=timeout)

    # -- waiting ---------------------------------------------------------------------------------
    def _describe(self) -> str:
        return f"{self!r} (statuses={self.statuses}, heard={self.heard}, errors={self.errors})"

    async def wait_status(self, *statuses: str, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """Wait until the call has had one of `statuses` (now or earlier); returns which."""
        await self.wait_until(lambda: any(s in statuses for s in self.statuses), timeout,
                              f"status in {statuses}")
        return next(s for s in self.statuses if s in statuses)

    async def wait_ended(self, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """Wait for a terminal status, then (within the same timeout) until every webhook of the call,
        final status callback and retries included, has been delivered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.wait_until(lambda: self.is_ended, timeout, "end")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), max(0.0, deadline - loop.time()))
        return self.status

    async def wait_heard(self, text: str, timeout: float = 5.0) -> tuple[str, str]:  # noqa: ASYNC109
        """Wait until something whose value contains `text` has fully played; returns that entry."""
        def found() -> tuple[str, str] | None:
            return next((h for h in self.heard if text in h[1]), None)
        await self.wait_until(lambda: found() is not None, timeout, f"heard {text!r}")
        entry = found()
        assert entry is not None
        return entry

    async def wait_stream(self, timeout: float = 5.0) -> StreamRecord:  # noqa: ASYNC109
        """Wait until a media stream has been opened for this call; returns its record."""
        await self.wait_until(lambda: any(s.started_at is not None for s in self.streams), timeout,
                              "media stream")
        return next(s for s in self.streams if s.started_at is not None)


def _twilio_error(code: int, message: str, status: int) -> JSONResponse:
    return JSONResponse({"code": code, "message": message,
                         "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
                        status_code=status)


class TwilioSimulator(simbase.CallDirectory[SimCall, Callee]):
    """A local Twilio: REST on its own loopback port, scripted callees, webhooks to your app."""

    def __init__(self, *, account_sid: str | None = None, auth_token: str | None = None,
                 time_scale: float = 1.0, say_ms_per_char: int = 30, webhook_retries: int = 0,
                 host: str = "127.0.0.1", port: int = 0, webhook_timeout_s: float = 15.0,
                 default_callee: Callee | None = None,
                 webhook_source_addresses: Sequence[str] = (), api_latency_s: float = 0.0) -> None:
        super().__init__(default_callee or Callee(), time_scale)
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.say_ms_per_char = say_ms_per_char
        self.webhook_retries = max(0, webhook_retries)
        self.webhook_timeout_s = webhook_timeout_s
        self.webhook_source_addresses = tuple(webhook_source_addresses)
        """Local addresses to send webhooks from, in turn (e.g. 127.0.0.2, 127.0.0.3, ...), the way
        Twilio's requests come from many IPs; empty: the system's choice."""
        self.api_latency_s = api_latency_s
        """How long each REST request takes to reach the API (a WAN round trip to Twilio's
        API and its processing); 0 on loopback."""
        self.base_url = ""
        self.requests: list[WebhookRecord] = []
        self.api_requests: list[ApiRecord] = []
        self._interp = TwimlInterpreter(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._call_tasks: set[asyncio.Task[Any]] = set()
        self._stream_callbacks: dict[str, tuple[str, str, str | None]] = {}
        self._http: httpx.AsyncClient | None = None
        self._http_sources: list[httpx.AsyncClient] = []
        self._http_turn = 0
        self._server = LoopbackServer(host, port)
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def webhooks(self) -> list[WebhookRecord]:
        """Alias of `requests`: every webhook sent, retries included."""
        return self.requests

    @property
    def api_url(self) -> str:
        """`base_url` + `/2010-04-01/Accounts/{AccountSid}`."""
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}"

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        """The REST API's port (the bound one once started)."""
        return self._server.port

    async def start(self) -> None:
        """Bind the REST listener and start serving."""
        if self._server.running:
            return
        self._closing = False
        self._http = simbase.webhook_client(self.webhook_timeout_s)
        self._http_sources = [simbase.webhook_client(self.webhook_timeout_s, address)
                              for address in self.webhook_source_addresses]
        self.base_url = await self._server.start(self._app())

    async def stop(self) -> None:
        """End live calls (briefly letting them send `stop` and final callbacks), then shut down."""
        self._closing = True
        for call in self.calls.values():
            call._request_end("completed")
        await simbase.drain(self._tasks, END_WAIT_S)  # calls, callbacks, retries
        await self._server.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        for client in self._http_sources:
            await client.aclose()
        self._http_sources = []

    async def __aenter__(self) -> TwilioSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, call_task: bool = False) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if call_task:
            self._call_tasks.add(task)
            task.add_done_callback(self._call_tasks.discard)
        return task

    # -- public controls ---------------------------------------------------------------------------
    async def place_inbound(self, from_: str, to: str, webhook_url: str, *, callee: Callee | None = None,
                            method: str = "POST", status_callback: str | bool | None = True,
                            status_callback_method: str = "POST",
                            status_callback_events: Sequence[str] = ("completed",)) -> SimCall:
        """Twilio calls the app: POST `webhook_url` (CallStatus=ringing, Direction=inbound), then run
        whatever TwiML it answers with. Returns as soon as the call exists.

        `status_callback` is the number's "call status changes" URL: True (default) uses `webhook_url`,
        a string another URL, False/None none at all (then the app never hears that the caller hung up).
        """
        if not self._server.running or self._closing:
            raise RuntimeError("TwilioSimulator is not running")
        callback = webhook_url if status_callback is True else (status_callback or None)
        call = SimCall(self, sid="CA" + secrets.token_hex(16), direction="inbound", from_=from_, to=to,
                       callee=callee or Callee(), url=webhook_url, method=method.upper(),
                       status_callback=callback,
                       status_callback_method=status_callback_method.upper(),
                       status_callback_events=status_callback_events, status="ringing")
        self.calls[call.sid] = call
        self._queue_status(call, "ringing")
        self._spawn(self._run_call(call, self._documents(call, _Fetch(webhook_url, call.method, {}))),
                    call_task=True)
        return call

    async def hangup(self, call_sid: str, *, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """The callee hangs up (status `completed`); returns the final status."""
        call = self.calls[call_sid]
        call._request_end("completed")
        return await call.wait_ended(timeout)

    # -- the hooks the interpreter uses ---------------------------------------------------------------
    def say_seconds(self, text: str) -> float:
        """Simulated seconds it takes to say `text`."""
        return len(text) * self.say_ms_per_char / 1000.0

    def answer(self, call: SimCall) -> None:
        """Mark the call answered: status in-progress, answered callback, callee hang-up timer."""
        if call.answered_at is not None:
            return
        call.answered_at = time.time()
        self._transition(call, "in-progress")
        if call.callee.hangup_after_s is not None:
            call._aux.append(self._spawn(self._end_after(call, call.callee.hangup_after_s, "completed")))
        if call.time_limit_s is not None:
            call._aux.append(self._spawn(self._end_after(call, call.time_limit_s, "completed")))
        if call.async_amd_callback and call.answered_by is not None:
            params = {"CallSid": call.sid, "AccountSid": call.account_sid,
                      "AnsweredBy": call.answered_by, "MachineDetectionDuration": "0"}
            call._aux.append(self._spawn(self._deliver_quietly(
                call, "amd", call.async_amd_callback, call.async_amd_method, params)))

    async def fetch(self, call: SimCall, url: str, method: str, extra: dict[str, str],
                    kind: str) -> Document | None:
        """Request TwiML from the app; None (with the Twilio error recorded) when that fails."""
        rec = await self._deliver(call, kind, url, method, {**self._params(call), **extra})
        if rec.error is not None:
            call.error(11205, f"HTTP connection failure: {url}: {rec.error}")
            return None
        if rec.status_code is None or not 200 <= rec.status_code < 300:
            call.error(11200, f"HTTP retrieval failure: {url} returned {rec.status_code}")
            return None
        ctype = rec.content_type.lower()
        if ctype and "xml" not in ctype and "html" not in ctype:
            call.error(12300, f"Invalid Content-Type {rec.content_type!r} from {url}")
            return None
        return Document(rec.body, url)

    def new_stream(self, call: SimCall, url: str, *, custom_parameters: dict[str, str], name: str | None,
                   bidirectional: bool, track: str, status_callback: str | None,
                   status_callback_method: str) -> MediaStream:
        """A media stream session for this call (not yet opened)."""
        stream = MediaStream(url=url, account_sid=self.account_sid, call_sid=call.sid,
                             auth_token=self.auth_token, feed=call.feed,
                             custom_parameters=custom_parameters, name=name, bidirectional=bidirectional,
                             track=track, audio_sink=call.received_audio if bidirectional else None,
                             marks_sink=call.marks if bidirectional else None,
                             marks_echoed_sink=call.marks_echoed if bidirectional else None,
                             on_warning=call.warn)
        if status_callback:
            self._stream_callbacks[stream.stream_sid] = (status_callback, status_callback_method, name)
        return stream

    async def run_stream(self, call: SimCall, stream: MediaStream) -> None:
        """Run a stream to its end, tracking it on the call and sending stream status callbacks."""
        call.streams.append(stream.record)
        if stream.bidirectional:
            call._active_stream = stream
        call._bump()
        self._stream_status(call, stream, "stream-started")
        event = "stream-stopped"
        try:
            await stream.run()
        except StreamError as exc:
            event = "stream-error"
            self._stream_status(call, stream, event, error=exc.message)
            raise
        finally:
            if call._active_stream is stream:
                call._active_stream = None
            if event == "stream-stopped":
                self._stream_status(call, stream, event)
            call._bump()

    async def hold_stream(self, call: SimCall, stream: MediaStream) -> None:
        """`Callee.open_streams` off: record the `<Connect><Stream>` and stay in it (as if the stream
        were open) until the call is hung up or redirected; an outside client opens the stream."""
        call.streams.append(stream.record)
        call._bump()
        await asyncio.Event().wait()

    def stream_entries(self, calls: Iterable[SimCall] | None = None) -> list[dict[str, Any]]:
        """`{"callSid", "customParameters"}` for each live call (of `calls`, default all) that holds
        an unopened `<Connect><Stream>`: the entries of a load generator's calls file."""
        entries: list[dict[str, Any]] = []
        for call in self.calls.values() if calls is None else calls:
            if call.is_ended or not call.streams:
                continue
            record = call.streams[-1]
            if record.bidirectional and record.started_at is None:
                entries.append({"callSid": call.sid, "customParameters": dict(record.custom_parameters)})
        return entries

    def start_background_stream(self, call: SimCall, stream: MediaStream) -> None:
        """Run a `<Start><Stream>` fork alongside the call's TwiML."""
        async def run() -> None:
            try:
                await self.run_stream(call, stream)
            except StreamError as exc:
                call.error(exc.code, exc.message)
        call._bg_streams.append((stream.record.name, self._spawn(run())))

    async def stop_background_stream(self, call: SimCall, name: str | None) -> None:
        """`<Stop><Stream name>`: stop the named fork (all forks when no name)."""
        keep: list[tuple[str | None, asyncio.Task[None]]] = []
        stop: list[tuple[str | None, asyncio.Task[None]]] = []
        for entry in call._bg_streams:
            (stop if name is None or entry[0] == name else keep).append(entry)
        call._bg_streams = keep
        for _, task in stop:
            task.cancel()
        await asyncio.gather(*(t for _, t in stop), return_exceptions=True)

    # -- webhooks --------------------------------------------------------------------------------------
    def params_of(self, call: SimCall) -> dict[str, str]:
        """The parameters every webhook about `call` carries (CallSid, numbers, status...)."""
        return self._params(call)

    async def notify(self, call: SimCall, kind: str, url: str, method: str,
                     params: dict[str, str]) -> None:
        """Send one signed callback whose answer Twilio ignores (a failure is a call warning)."""
        await self._deliver_quietly(call, kind, url, method, params)

    def _params(self, call: SimCall, status: str | None = None) -> dict[str, str]:
        return {"CallSid": call.sid, "AccountSid": call.account_sid, "From": call.from_, "To": call.to,
                "CallStatus": status or call.status, "ApiVersion": API_VERSION,
                "Direction": call.direction}

    async def _deliver(self, call: SimCall, kind: str, url: str, method: str,
                       params: dict[str, str]) -> WebhookRecord:
        """Send one signed webhook (plus `webhook_retries` identical copies); the first attempt's record."""
        method = method.upper() if method.upper() in ("GET", "POST") else "POST"
        headers = {"I-Twilio-Idempotency-Token": str(uuid4()), "User-Agent": "TwilioProxy/1.1",
                   "Accept": "*/*"}
        body: bytes | None
        if method == "GET":
            target = url + ("&" if urlsplit(url).query else "?") + urlencode(params) if params else url
            body = None
            headers[SIGNATURE_HEADER] = sign(self.auth_token, target, None)
        else:
            target = url
            body = urlencode(params).encode()
            headers[SIGNATURE_HEADER] = sign(self.auth_token, url, params)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        first: asyncio.Future[WebhookRecord] = asyncio.get_running_loop().create_future()

        async def attempts() -> None:
            for attempt in range(1 + self.webhook_retries):
                rec = WebhookRecord(kind=kind, call_sid=call.sid, url=target, method=method,
                                    params=dict(params), headers=dict(headers), attempt=attempt,
                                    at=time.time())
                self.requests.append(rec)
                try:
                    await self._send(rec, body)
                finally:
                    if not first.done():
                        first.set_result(rec)

        # A request on the wire is finished even if the call is hung up or redirected meanwhile (the
        # app sees whole requests); retries follow the first answer without holding up the call.
        task = self._spawn(attempts())
        call._deliveries.add(task)
        task.add_done_callback(call._deliveries.discard)
        return await asyncio.shield(first)

    async def _send(self, rec: WebhookRecord, body: bytes | None) -> None:
        try:
            assert self._http is not None, "simulator not started"
            client = self._http
            if self._http_sources:
                client = self._http_sources[self._http_turn % len(self._http_sources)]
                self._http_turn += 1
            resp = await client.request(rec.method, rec.url, content=body, headers=rec.headers)
            rec.replied_at = time.time()
            rec.status_code = resp.status_code
            rec.body = resp.text
            rec.content_type = resp.headers.get("content-type", "")
        except httpx.HTTPError as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            rec.error = "cancelled (simulator stopped)"
            raise

    async def _deliver_quietly(self, call: SimCall, kind: str, url: str, method: str,
                               params: dict[str, str]) -> None:
        rec = await self._deliver(call, kind, url, method, params)
        if rec.error is not None or rec.status_code is None or rec.status_code >= 300:
            call.warn(15003, f"{kind} callback to {url} got {rec.status_code or rec.error}")

    def _stream_status(self, call: SimCall, stream: MediaStream, event: str,
                       error: str | None = None) -> None:
        target = self._stream_callbacks.get(stream.stream_sid)
        if target is None:
            return
        url, method, name = target
        params = {"AccountSid": call.account_sid, "CallSid": call.sid, "StreamSid": stream.stream_sid,
                  "StreamName": name or stream.stream_sid, "StreamEvent": event,
                  "Timestamp": _rfc2822(time.time()) or ""}
        if error is not None:
            params["StreamError"] = error
        self._spawn(self._deliver_quietly(call, "stream-status", url, method, params))

    def _queue_status(self, call: SimCall, status: str) -> None:
        """Queue a status callback for `status` if the call subscribed to its event."""
        event = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}.get(
            status, "completed")
        if not call.status_callback or event not in call.status_callback_events:
            return
        params = self._params(call, status)
        params.update({"CallbackSource": "call-progress-events", "SequenceNumber": str(call._status_seq),
                       "Timestamp": _rfc2822(time.time()) or ""})
        call._status_seq += 1
        if call.answered_by is not None:
            params["AnsweredBy"] = call.answered_by
        if status in TERMINAL:
            params["CallDuration"] = str(call.duration_s)
            params["Duration"] = str(-(-call.duration_s // 60))  # billed minutes, rounded up
        call._status_q.put_nowait((call.status_callback, call.status_callback_method, params))
        if call._status_worker is None:
            call._status_worker = self._spawn(self._status_loop(call))

    async def _status_loop(self, call: SimCall) -> None:
        """Deliver a call's status callbacks one at a time, in order (responses are ignored)."""
        while True:
            item = await call._status_q.get()
            if item is None:
                return
            url, method, params = item
            await self._deliver_quietly(call, "status", url, method, params)

    # -- call lifecycles -------------------------------------------------------------------------------
    def _transition(self, call: SimCall, status: str) -> None:
        call._set_status(status)
        self._queue_status(call, status)

    async def _end_after(self, call: SimCall, seconds: float, status: str) -> None:
        await self.sleep(seconds)
        call._request_end(status)

    async def _run_call(self, call: SimCall, lifecycle: Coroutine[Any, Any, str]) -> None:
        """Run the call's lifecycle until it ends by itself or someone ends it; then finish it."""
        body = await simbase.run_until(lifecycle, call._end_requested)
        if body.cancelled():
            status = call._end_status or "completed"
        elif (exc := body.exception()) is not None:
            call.error(None, f"simulator error: {exc!r}")
            status = "completed" if call.answered_at is not None else "failed"
        else:
            status = body.result()
        await self._finish(call, status)

    async def _finish(self, call: SimCall, status: str) -> None:
        aux = [*call._aux, *(t for _, t in call._bg_streams)]
        call._bg_streams = []
        for task in aux:
            task.cancel()
        await asyncio.gather(*aux, return_exceptions=True)
        if status not in TERMINAL:
            status = "completed"
        call.ended_at = time.time()
        self._transition(call, status)
        if call._status_worker is not None:
            call._status_q.put_nowait(None)
            await asyncio.gather(call._status_worker, return_exceptions=True)
        while call._deliveries:  # requests still on the wire, webhook retries
            await asyncio.gather(*call._deliveries, return_exceptions=True)
        call._finished.set()
        call._bump()

    async def _outbound(self, call: SimCall) -> str:
        callee = call.callee
        call.started_at = time.time()
        self._transition(call, "initiated")
        if callee.outcome == "failed":
            await self.sleep(0.1)
            return "failed"
        self._transition(call, "ringing")
        if callee.outcome == "no-answer" or callee.answer_after_s >= call.timeout_s:
            await self.sleep(call.timeout_s)
            return "no-answer"
        await self.sleep(callee.answer_after_s)
        if callee.outcome == "busy":
            return "busy"
        extra: dict[str, str] = {}
        if call.machine_detection:
            call.answered_by = callee.answered_by
            if call.async_amd_callback is None:
                extra["AnsweredBy"] = callee.answered_by
        self.answer(call)
        first: Document | _Fetch = (_Fetch(call.url, call.method, extra) if call.url
                                    else Document(call.twiml or "", None))
        return await self._documents(call, first)

    async def _documents(self, call: SimCall, first: Document | _Fetch) -> str:
        """Run TwiML; a REST update (`Url`/`Twiml`) cancels the running document and starts the new one."""
        source = first
        while True:
            while not call._redirects.empty():
                source = call._redirects.get_nowait()
            doc_task = asyncio.create_task(self._run_source(call, source))
            redirect = asyncio.create_task(call._redirects.get())
            try:
                done, _ = await asyncio.wait({doc_task, redirect}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                pending = [t for t in (doc_task, redirect) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
            if doc_task in done:
                return doc_task.result()
            source = redirect.result()

    async def _run_source(self, call: SimCall, source: Document | _Fetch) -> str:
        if isinstance(source, _Fetch):
            doc = await self.fetch(call, source.url, source.method, source.extra, "voice")
            if doc is None:
                return "completed" if call.answered_at is not None else "failed"
        else:
            doc = source
        return await self._interp.run(call, doc)

    # -- REST API --------------------------------------------------------------------------------------
    def call_json(self, call: SimCall) -> dict[str, Any]:
        """The Call resource as Twilio's REST API returns it."""
        uri = f"/{API_VERSION}/Accounts/{call.account_sid}/Calls/{call.sid}"
        return {
            "sid": call.sid, "date_created": _rfc2822(call.created_at),
            "date_updated": _rfc2822(call.updated_at), "parent_call_sid": None,
            "account_sid": call.account_sid, "to": call.to, "to_formatted": call.to,
            "from": call.from_, "from_formatted": call.from_, "phone_number_sid": None,
            "status": "queued" if call.status == "initiated" else call.status,
            "start_time": _rfc2822(call.started_at), "end_time": _rfc2822(call.ended_at),
            "duration": str(call.duration_s) if call.is_ended else None,
            "price": None, "price_unit": "USD", "direction": call.direction,
            "answered_by": call.answered_by, "api_version": API_VERSION, "forwarded_from": None,
            "group_sid": None, "caller_name": None, "queue_time": "0", "trunk_sid": None,
            "uri": uri + ".json",
            "subresource_uris": {name: f"{uri}/{name.replace('_', '/')}.json" for name in (
                "notifications", "recordings", "payments", "events", "siprec", "streams",
                "user_defined_message_subscriptions", "user_defined_messages")},
        }

    def _app(self) -> Starlette:
        base = f"/{API_VERSION}/Accounts/{{account}}"
        return Starlette(routes=[
            Route(base + "/Calls.json", self._calls_endpoint, methods=["GET", "POST"]),
            Route(base + "/Calls/{call_sid}.json", self._call_endpoint, methods=["GET", "POST"]),
        ])

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (hmac.compare_digest(user.encode(), self.account_sid.encode())
                and hmac.compare_digest(password.encode(), self.auth_token.encode())
                and request.path_params.get("account") == self.account_sid)

    async def _guard(self, request: Request) -> tuple[Form, Response | None]:
        if self.api_latency_s > 0:
            await asyncio.sleep(self.api_latency_s)
        form = Form(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        if not self._authorized(request):
            resp: Response = _twilio_error(20003, "Authenticate", 401)
            resp.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return form, resp
        return form, None

    def _log(self, request: Request, form: Form, resp: Response) -> Response:
        self.api_requests.append(ApiRecord(request.method, request.url.path, form.pairs, resp.status_code,
                                           time.time()))
        return resp

    async def _calls_endpoint(self, request: Request) -> Response:
        form, denied = await self._guard(request)
        if denied is not None:
            return self._log(request, form, denied)
        if request.method == "GET":
            calls = [self.call_json(c) for c in reversed(self.calls.values())]
            return self._log(request, form, JSONResponse({"calls": calls, "page": 0, "page_size": len(calls),
                                                          "next_page_uri": None, "previous_page_uri": None}))
        return self._log(request, form, self._create(form))

    def _create(self, form: Form) -> Response:
        """Create an outbound call from a validated form; it rings once the 201 is on the wire."""
        try:
            params = parse_create(form)
        except InvalidParameter as exc:
            return _twilio_error(exc.code, exc.message, 400)
        call = SimCall(self, sid="CA" + secrets.token_hex(16), direction="outbound-api", from_=params.from_,
                       to=params.to, callee=self.callee_for(params.to), url=params.url, method=params.method,
                       twiml=params.twiml, status_callback=params.status_callback,
                       status_callback_method=params.status_callback_method,
                       status_callback_events=params.status_callback_events, timeout_s=params.timeout_s,
                       machine_detection=params.machine_detection)
        call.time_limit_s = params.time_limit_s
        call.async_amd_callback = params.async_amd_callback
        call.async_amd_method = params.async_amd_method
        self.calls[call.sid] = call

        async def launch() -> None:  # after the 201 is on the wire, like Twilio
            if self._closing:
                return
            self._spawn(self._run_call(call, self._outbound(call)), call_task=True)
        return JSONResponse(self.call_json(call), status_code=201, background=BackgroundTask(launch))

    async def _call_endpoint(self, request: Request) -> Response:
        form, denied = await self._guard(request)
        if denied is not None:
            return self._log(request, form, denied)
        sid = request.path_params["call_sid"]
        call = self.calls.get(sid)
        if call is None:
            return self._log(request, form, _twilio_error(
                20404, f"The requested resource {request.url.path} was not found", 404))
        if request.method == "GET":
            return self._log(request, form, JSONResponse(self.call_json(call)))
        return self._log(request, form, await self._update(call, form))

    async def _update(self, call: SimCall, form: Form) -> Response:
        if call.is_ended or call._end_status is not None:
            return _twilio_error(21220, "Call is not in-progress. Cannot redirect.", 400)
        status = form.get("Status")
        url, twiml = form.get("Url"), form.get("Twiml")
        if status is not None and status not in ("completed", "canceled"):
            return _twilio_error(21200, f"Invalid Status: {status}", 400)
        if url and not valid_url(url):
            return _twilio_error(21205, f"Url is not a valid URL: {url}", 400)
        method = (form.get("Method") or "POST").upper()
        if form.get("StatusCallback"):
            call.status_callback = form.get("StatusCallback")
            call.status_callback_method = (form.get("StatusCallbackMethod") or "POST").upper()
        if status is not None:
            if call.answered_at is None:
                call._request_end("canceled")
            elif status == "completed":
                call._request_end("completed")
            if call._end_status is not None:
                with contextlib.suppress(TimeoutError):
                    await call.wait_until(lambda: call.is_ended, END_WAIT_S, "end")
            return JSONResponse(self.call_json(call))
        if url:
            call._redirects.put_nowait(_Fetch(url, method, {}))
        elif twiml:
            call._redirects.put_nowait(Document(twiml, call.url))
        return JSONResponse(self.call_json(call))


__all__ = ["ApiRecord", "Callee", "SayRecord", "SimCall", "TwilioSimulator", "WebhookRecord"]

if __name__ == "__main__":
    from voicecall.testing.twilio.standalone import main

    main()
