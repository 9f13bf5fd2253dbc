"""`TelnyxSimulator`: a local Telnyx Call Control v2 look-alike (REST actions + Ed25519-signed
webhook events + media streaming).

Point a gateway's `telnyx.apiBaseUrl` at `sim.base_url`, give it `sim.api_key`,
`sim.connection_id` and `sim.public_key`; calls dialled through the REST API ring a scripted
`Callee`, and everything that happens comes back as signed webhooks, in order, per call.

>>> async with TelnyxSimulator(time_scale=0.05) as sim:
...     sim.script("+15550001111", Callee(replies=["Yes, please."]))
...     ...  # let the gateway dial +15550001111, then:
...     call = next(iter(sim.calls.values()))
...     await call.wait_heard("Hello")

Telnyx behaviour reproduced: `client_state` is the last value a command set and rides on every
later webhook; commands on an ended call get 422 with code 90018; a repeated `command_id` is
ignored; speak and DTMF play one after another; inbound calls wait `parked` until answered or
rejected; `streaming.started` is sent before the media WebSocket's `start`; `transfer` dials a
new leg (its webhooks carry `target_leg_client_state`), bridges it on answer (`call.bridged` on
both legs), and hangs the call up when the bridged person does, while an unanswered leg leaves
the call as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import re
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import uuid4

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voicecall.testing import simbase
from voicecall.testing.loopback import LoopbackServer
from voicecall.testing.telnyx.media import MediaClient, StreamCodec
from voicecall.testing.telnyx.signing import TestKey

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
END_WAIT_S = 2.0
FAILURE_RETRIES = 2
"""Further attempts after a webhook got no 2xx answer (Telnyx retries failed deliveries)."""
ALREADY_ENDED = ("90018", "Call has already ended",
                 "This call is no longer active and can't receive commands.")

Outcome = Literal["answer", "busy", "no-answer", "failed"]
OUTCOME_CAUSES = {"busy": "user_busy", "no-answer": "timeout", "failed": "destination_out_of_order"}
"""The `hangup_cause` Telnyx reports for a far end that never answers."""


@dataclass
class Callee:
    """How the far end behaves: the person answering an outbound call, or the inbound caller."""

    outcome: Outcome = "answer"
    answer_after_s: float = 0.5
    replies: list[str] = field(default_factory=list)
    """What the callee says, one reply each time the app listens after it has spoken."""
    reply_delay_s: float = 0.3
    hangup_after_s: float | None = None
    """Hang up this long after answer (`normal_clearing`, from the callee)."""
    machine: bool = False
    """Answering-machine detection (when asked for) reports `machine` instead of `human`."""
    confidence: float = 0.93
    codec: StreamCodec = "PCMU"
    """The call's own codec, streamed when the app asks for `stream_codec: "default"`."""
    hangup_cause: str | None = None
    """Overrides the cause of a busy / no-answer / failed outcome."""


@dataclass(slots=True)
class WebhookRecord:
    """One webhook delivery attempt (a retry is its own record)."""

    event_type: str
    call_control_id: str
    url: str
    body: bytes
    headers: dict[str, str]
    attempt: int
    status_code: int | None = None
    error: str | None = None

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)["data"]
        return dict(data["payload"])


@dataclass(slots=True)
class DialRecord:
    """One `transfer` of a call: who was dialled, as whom, and how it went."""

    number: str
    caller_id: str
    status: str = "ringing"
    """`ringing`, `answered` (bridged), then `completed`; or `busy`, `no-answer`, `failed`,
    `canceled` when the person was never reached."""


@dataclass(slots=True)
class ApiRecord:
    """One REST request the simulator received."""

    method: str
    path: str
    body: dict[str, Any]
    status_code: int


class SimCall(simbase.Observable):
    """One simulated call and everything observable about it."""

    def __init__(self, sim: TelnyxSimulator, *, direction: Literal["incoming", "outgoing"],
                 from_: str, to: str, callee: Callee, webhook_url: str,
                 client_state: str | None = None, timeout_s: float = 30.0,
                 amd: str | None = None, stream: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._sim = sim
        self.call_control_id = "v3:" + secrets.token_urlsafe(24)
        self.call_leg_id = str(uuid4())
        self.call_session_id = str(uuid4())
        self.direction = direction
        self.from_ = from_
        self.to = to
        self.callee = dataclasses.replace(callee, replies=list(callee.replies))
        self.webhook_url = webhook_url
        self.client_state = client_state
        self.timeout_s = timeout_s
        self.amd = amd
        self.stream_request = stream
        self.state = "parked" if direction == "incoming" else "bridging"
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.hangup_cause: str | None = None
        self.hangup_source: str | None = None
        self.said: list[str] = []
        """Texts the app spoke that played to the end."""
        self.spoken: list[dict[str, Any]] = []
        """Every `speak` body (voice, language, payload), in order."""
        self.digits_heard = ""
        self.replies_given: list[str] = []
        self.transcribing = False
        self.transcription_starts = 0
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.media: MediaClient | None = None
        self.dials: list[DialRecord] = []
        """The transfers of this call, in order."""
        self.transfer_leg: SimCall | None = None
        """The leg the latest transfer dialled."""
        self.transferred_from: SimCall | None = None
        """For a transfer's leg: the call it is put through from (and `dial` its record)."""
        self.dial: DialRecord | None = None
        self._command_ids: set[str] = set()
        self._spoke_since_reply = True
        self._playout: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._webhooks: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._end = asyncio.Event()
        self._finished = asyncio.Event()
        self._answer_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    def __repr__(self) -> str:
        return (f"<SimCall {self.call_control_id} {self.direction} {self.from_}->{self.to} "
                f"{self.state} cause={self.hangup_cause}>")

    def _describe(self) -> str:
        return f"{self!r} said={self.said} commands={[c for c, _ in self.commands]}"

    @property
    def is_ended(self) -> bool:
        return self.state == "hangup"

    @property
    def webhooks(self) -> list[WebhookRecord]:
        return [r for r in self._sim.requests if r.call_control_id == self.call_control_id]

    @property
    def event_types(self) -> list[str]:
        """The event type of every first delivery attempt, in order."""
        return [r.event_type for r in self.webhooks if r.attempt == 1]

    # -- driving the callee --------------------------------------------------------------------
    def reply(self, text: str) -> None:
        """The callee says `text` now (heard if the app is transcribing)."""
        self._sim._spawn(self._say(text))

    def press(self, digits: str) -> None:
        """The callee presses keys: `dtmf` on an open media stream, else `call.dtmf.received`."""
        if self.media is not None and self.media.open:
            self.media.feed.press(digits)
            return
        for digit in digits:
            self._sim.emit(self, "call.dtmf.received", {"digit": digit})

    def send_audio(self, pcm16: bytes) -> None:
        """The callee speaks 8 kHz 16-bit PCM into the media stream (encoded in its codec)."""
        if self.media is None:
            raise RuntimeError("no media stream on this call")
        self.media.feed.add_pcm(pcm16)

    async def hangup(self, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """The callee hangs up; returns the hangup cause."""
        self._request_end("normal_clearing", "callee")
        await self.wait_ended(timeout)
        return self.hangup_cause or ""

    # -- waiting -------------------------------------------------------------------------------
    async def wait_ended(self, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """Wait for the hangup, then for every webhook of the call to be delivered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.wait_until(lambda: self.is_ended, timeout, "hangup")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), max(0.0, deadline - loop.time()))
        return self.hangup_cause or ""

    async def wait_heard(self, text: str, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """Wait until speech containing `text` has played to the end; returns it."""
        await self.wait_until(lambda: any(text in s for s in self.said), timeout, f"heard {text!r}")
        return next(s for s in self.said if text in s)

    async def wait_answered(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_until(lambda: self.answered_at is not None, timeout, "answer")

    async def wait_stream(self, timeout: float = 5.0) -> MediaClient:  # noqa: ASYNC109
        """Wait until the media stream has sent its `start`; returns it."""
        await self.wait_until(lambda: self.media is not None and self.media.started, timeout,
                              "media stream")
        assert self.media is not None
        return self.media

    # -- internals -----------------------------------------------------------------------------
    def _request_end(self, cause: str, source: str) -> None:
        if self.hangup_cause is None and not self.is_ended:
            self.hangup_cause, self.hangup_source = cause, source
            self._end.set()

    def _first_command(self, command_id: Any) -> bool:
        """False for a repeated `command_id` (Telnyx ignores the repeat)."""
        if not isinstance(command_id, str) or not command_id:
            return True
        if command_id in self._command_ids:
            return False
        self._command_ids.add(command_id)
        return True

    async def _say(self, text: str) -> None:
        """The callee speaks: a partial, then the final transcription, when transcribing."""
        await self._sim.sleep(self.callee.reply_delay_s)
        self.replies_given.append(text)
        self._spoke_since_reply = False
        if self.media is not None and self.media.open:
            return  # on a stream the app hears audio, not Telnyx transcriptions
        if not self.transcribing or self.is_ended:
            return
        words = text.split()
        if len(words) > 1:
            self._sim.emit(self, "call.transcription", self._transcription(" ".join(words[:-1]), False))
        self._sim.emit(self, "call.transcription", self._transcription(text, True))

    def _transcription(self, text: str, final: bool) -> dict[str, Any]:
        return {"transcription_data": {"transcript": text, "is_final": final,
                                       "confidence": self.callee.confidence,
                                       "transcription_track": "inbound"}}

    def _maybe_reply(self) -> None:
        """The app listens and has spoken since the callee last did: the callee answers."""
        if (self.transcribing and self._playout.empty() and self._spoke_since_reply
                and self.callee.replies and not self.is_ended):
            self._spoke_since_reply = False
            self.reply(self.callee.replies.pop(0))


@dataclass(frozen=True, slots=True)
class _Pending:
    """A webhook waiting its turn; `sent` is set once it has been delivered (or given up)."""

    event_type: str
    payload: dict[str, Any]
    sent: asyncio.Event


@dataclass(frozen=True, slots=True)
class _Error:
    status: int
    code: str
    title: str
    detail: str = ""

    def response(self) -> JSONResponse:
        return JSONResponse({"errors": [{"code": self.code, "title": self.title,
                                         "detail": self.detail or self.title}]},
                            status_code=self.status)


def _ok(data: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"data": data or {"result": "ok"}})


def _valid_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TelnyxSimulator(simbase.CallDirectory[SimCall, Callee]):
    """A local Telnyx: REST on a loopback port, scripted callees, signed webhooks to your app."""

    def __init__(self, *, api_key: str | None = None, connection_id: str | None = None,
                 key: TestKey | None = None, time_scale: float = 1.0, speak_ms_per_char: int = 30,
                 duplicate_webhooks: int = 0, host: str = "127.0.0.1", port: int = 0,
                 webhook_timeout_s: float = 15.0, default_callee: Callee | None = None) -> None:
        super().__init__(default_callee or Callee(), time_scale)
        self.api_key = api_key or "KEY" + secrets.token_hex(16)
        self.connection_id = connection_id or str(secrets.randbelow(10**18) + 10**18)
        self.key = key or TestKey.generate()
        self.speak_ms_per_char = speak_ms_per_char
        self.duplicate_webhooks = max(0, duplicate_webhooks)
        """Extra deliveries of every webhook (`meta.attempt` 2, 3, ...), as Telnyx retries."""
        self.webhook_timeout_s = webhook_timeout_s
        self.requests: list[WebhookRecord] = []
        self.api_requests: list[ApiRecord] = []
        self._server = LoopbackServer(host, port)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def public_key(self) -> str:
        """The webhook verification key for `telnyx.publicKey` (base64, as the portal shows it)."""
        return self.key.public_key_base64

    @property
    def base_url(self) -> str:
        """For `telnyx.apiBaseUrl` (the `/v2` root, as Telnyx's SDK takes it)."""
        return f"{self._server.base_url}/v2"

    async def start(self) -> None:
        if self._server.running:
            return
        self._closing = False
        self._http = simbase.webhook_client(self.webhook_timeout_s)
        await self._server.start(self._app())

    async def stop(self) -> None:
        """End live calls (briefly letting their last webhooks go out), then shut down."""
        self._closing = True
        for call in self.calls.values():
            call._request_end("normal_clearing", "unknown")
        await simbase.drain(self._tasks, END_WAIT_S)
        await self._server.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> TelnyxSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- public controls -------------------------------------------------------------------------
    def place_inbound(self, from_: str, to: str, webhook_url: str, *,
                      callee: Callee | None = None) -> SimCall:
        """A caller dials the connection's number: `call.initiated` (incoming, parked) goes to
        `webhook_url`, and the call waits for `answer`, `reject` or `hangup`."""
        if not self._server.running or self._closing:
            raise RuntimeError("TelnyxSimulator is not running")
        call = SimCall(self, direction="incoming", from_=from_, to=to,
                       callee=callee or self.default_callee, webhook_url=webhook_url)
        self._launch(call)
        return call

    def emit(self, call: SimCall, event_type: str, extra: dict[str, Any] | None = None) -> asyncio.Event:
        """Queue a webhook for `call` (delivered in order, signed, with the current client_state);
        the returned event is set once it has been delivered."""
        payload = {"call_control_id": call.call_control_id, "call_leg_id": call.call_leg_id,
                   "call_session_id": call.call_session_id, "connection_id": self.connection_id,
                   "client_state": call.client_state, "from": call.from_, "to": call.to,
                   **(extra or {})}
        pending = _Pending(event_type, payload, asyncio.Event())
        call._webhooks.put_nowait(pending)
        return pending.sent

    # -- webhooks ----------------------------------------------------------------------------------
    def envelope(self, event_type: str, payload: dict[str, Any], *, url: str, attempt: int = 1,
                 event_id: str | None = None) -> bytes:
        """A webhook body exactly as Telnyx sends it."""
        return json.dumps({
            "data": {"event_type": event_type, "id": event_id or str(uuid4()),
                     "occurred_at": _now_iso(), "payload": payload, "record_type": "event"},
            "meta": {"attempt": attempt, "delivered_to": url},
        }, separators=(",", ":")).encode()

    async def _webhook_loop(self, call: SimCall) -> None:
        while True:
            item = await call._webhooks.get()
            if item is None:
                return
            event_id = str(uuid4())
            copies = 1 + self.duplicate_webhooks
            for attempt in range(1, 1 + copies + FAILURE_RETRIES):
                rec = await self._deliver(call, item.event_type, item.payload, attempt, event_id)
                delivered = rec.status_code is not None and rec.status_code < 300
                if delivered and attempt >= copies:
                    break
            item.sent.set()

    async def _deliver(self, call: SimCall, event_type: str, payload: dict[str, Any], attempt: int,
                       event_id: str) -> WebhookRecord:
        body = self.envelope(event_type, payload, url=call.webhook_url, attempt=attempt,
                             event_id=event_id)
        headers = {**self.key.headers(body), "content-type": "application/json",
                   "user-agent": "telnyx-webhooks"}
        rec = WebhookRecord(event_type, call.call_control_id, call.webhook_url, body, headers, attempt)
        self.requests.append(rec)
        try:
            assert self._http is not None, "simulator not started"
            response = await self._http.post(call.webhook_url, content=body, headers=headers)
            rec.status_code = response.status_code
        except httpx.HTTPError as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
        call._bump()
        return rec

    # -- call lifecycles -------------------------------------------------------------------------
    def _launch(self, call: SimCall) -> None:
        self.calls[call.call_control_id] = call
        call._tasks.append(self._spawn(self._webhook_loop(call)))
        self._spawn(self._run_call(call))

    async def _run_call(self, call: SimCall) -> None:
        body = await simbase.run_until(self._lifecycle(call), call._end)
        if not body.cancelled() and body.exception() is None and call.hangup_cause is None:
            call.hangup_cause, call.hangup_source = body.result(), "callee"
        self._settle_dial(call)
        await self._finish(call)
        self._end_bridge(call)

    @staticmethod
    def _settle_dial(call: SimCall) -> None:
        """A transfer's leg is over: how the transfer went, recorded before its hangup goes out."""
        if call.dial is not None:
            outcomes = {cause: outcome for outcome, cause in OUTCOME_CAUSES.items()}
            call.dial.status = "completed" if call.answered_at is not None else \
                outcomes.get(call.hangup_cause or "", "canceled")

    @staticmethod
    def _end_bridge(call: SimCall) -> None:
        """After `call` has hung up: a transfer's leg that was bridged takes the call down with it
        (its hangup webhook has gone out first); a call that hangs up cancels or ends its leg."""
        origin = call.transferred_from
        if origin is not None:
            if call.answered_at is not None:
                origin._request_end("normal_clearing", "callee")
            origin._bump()
        leg = call.transfer_leg
        if leg is not None and not leg.is_ended:
            leg._request_end("normal_clearing" if leg.answered_at else "originator_cancel", "caller")

    async def _lifecycle(self, call: SimCall) -> str:
        """The call up to its natural end; returns the hangup cause."""
        callee = call.callee
        self.emit(call, "call.initiated", {"direction": call.direction, "state": call.state,
                                           "start_time": _now_iso()})
        if call.direction == "incoming":
            await call._answer_requested.wait()
        else:
            if callee.outcome == "failed":
                await self.sleep(0.1)
                return callee.hangup_cause or OUTCOME_CAUSES["failed"]
            if callee.outcome == "no-answer" or callee.answer_after_s >= call.timeout_s:
                await self.sleep(call.timeout_s)
                return callee.hangup_cause or OUTCOME_CAUSES["no-answer"]
            await self.sleep(callee.answer_after_s)
            if callee.outcome == "busy":
                return callee.hangup_cause or OUTCOME_CAUSES["busy"]
        await self._answered(call)
        if callee.hangup_after_s is not None:
            await self.sleep(callee.hangup_after_s)
            return "normal_clearing"
        await asyncio.Event().wait()  # up until someone hangs up
        return "normal_clearing"

    async def _answered(self, call: SimCall) -> None:
        call.answered_at = time.time()
        call.state = "answered"
        call._bump()
        self.emit(call, "call.answered", {"state": "answered", "start_time": _now_iso()})
        if call.amd and call.amd != "disabled":
            await self.sleep(0.2)
            self.emit(call, "call.machine.detection.ended",
                      {"result": "machine" if call.callee.machine else "human"})
        call._tasks.append(self._spawn(self._playout_loop(call)))
        if call.stream_request:
            self._open_stream(call, call.stream_request)
        origin = call.transferred_from
        if origin is not None and call.dial is not None and not origin.is_ended:
            call.dial.status = "answered"
            for leg in (origin, call):
                self.emit(leg, "call.bridged", {"state": "bridged"})
            origin._bump()

    def _open_stream(self, call: SimCall, request: dict[str, Any]) -> None:
        codec = request.get("stream_codec") or "default"
        used: StreamCodec = "PCMA" if codec == "PCMA" else "PCMU" if codec == "PCMU" else call.callee.codec
        call.media = MediaClient(url=request["stream_url"], call_control_id=call.call_control_id,
                                 call_session_id=call.call_session_id, from_=call.from_, to=call.to,
                                 client_state=call.client_state, codec=used,
                                 bidirectional=request.get("stream_bidirectional_mode") == "rtp",
                                 on_change=call._bump)
        announced = self.emit(call, "streaming.started", {"stream_url": request["stream_url"]})
        call._tasks.append(self._spawn(self._run_stream(call, call.media, announced)))

    async def _run_stream(self, call: SimCall, media: MediaClient, announced: asyncio.Event) -> None:
        await announced.wait()  # streaming.started goes out before the WebSocket's `start`
        try:
            await media.run()
        except Exception as exc:
            self.emit(call, "streaming.failed", {"failure_reason": str(exc)[:200],
                                                 "stream_id": media.stream_id,
                                                 "stream_type": "websocket"})
            return
        if not call.is_ended:
            self.emit(call, "streaming.stopped", {"stream_url": media.url})

    async def _playout_loop(self, call: SimCall) -> None:
        """Speak and DTMF commands play one after another, timed like a phone call."""
        while True:
            call._maybe_reply()
            kind, body = await call._playout.get()
            if kind == "speak":
                text = str(body.get("payload", ""))
                self.emit(call, "call.speak.started", {})
                await self.sleep(len(text) * self.speak_ms_per_char / 1000)
                call.said.append(text)
                call._spoke_since_reply = True
                self.emit(call, "call.speak.ended", {"status": "completed"})
            else:
                digits = str(body.get("digits", ""))
                for digit in digits:
                    pause = {"w": 0.5, "W": 1.0}.get(digit)
                    await self.sleep(pause if pause else int(body.get("duration_millis") or 250) / 1000 + 0.1)
                    if pause is None:
                        call.digits_heard += digit
            call._bump()

    async def _finish(self, call: SimCall) -> None:
        if call.media is not None:
            await call.media.close()
        for task in call._tasks[1:]:
            task.cancel()
        await asyncio.gather(*call._tasks[1:], return_exceptions=True)
        while not call._playout.empty():  # speech never played: Telnyx reports the hangup
            kind, _ = call._playout.get_nowait()
            if kind == "speak":
                self.emit(call, "call.speak.ended", {"status": "call_hangup"})
        call.state = "hangup"
        call.ended_at = time.time()
        cause = call.hangup_cause or "normal_clearing"
        self.emit(call, "call.hangup", {"hangup_cause": cause,
                                        "hangup_source": call.hangup_source or "unknown",
                                        "sip_hangup_cause": "unspecified", "state": "hangup",
                                        "start_time": _now_iso()})
        call._webhooks.put_nowait(None)
        await asyncio.gather(call._tasks[0], return_exceptions=True)
        call._finished.set()
        call._bump()

    # -- REST API --------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v2/calls", self._dial, methods=["POST"]),
            Route("/v2/calls/{call_id}", self._get_call, methods=["GET"]),
            Route("/v2/calls/{call_id}/actions/{action}", self._action, methods=["POST"]),
        ])

    def call_json(self, call: SimCall) -> dict[str, Any]:
        return {"call_control_id": call.call_control_id, "call_leg_id": call.call_leg_id,
                "call_session_id": call.call_session_id, "is_alive": not call.is_ended,
                "record_type": "call", "client_state": call.client_state}

    async def _guard(self, request: Request) -> tuple[dict[str, Any], Response | None]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 self.api_key.encode()):
            denied = _Error(401, "10009", "Authentication failed",
                            "The API key is missing or wrong.").response()
            return {}, self._log(request, {}, denied)
        if not isinstance(body, dict):
            return {}, self._log(request, {}, _Error(400, "10015", "Bad Request",
                                                     "The body is not a JSON object.").response())
        return body, None

    def _log(self, request: Request, body: dict[str, Any], response: Response) -> Response:
        self.api_requests.append(ApiRecord(request.method, request.url.path, body,
                                           response.status_code))
        return response

    @staticmethod
    def _check_leg(body: dict[str, Any], *, webhook_required: bool) -> _Error | None:
        """The fields of a new leg (a dial, or a transfer's): numbers, webhook URL, ring time."""
        for name in ("to", "from"):
            if not isinstance(body.get(name), str) or not E164.match(body[name]):
                return _Error(422, "10015", f"Invalid '{name}'", f"'{name}' must be an E.164 number.")
        webhook = body.get("webhook_url")
        if (webhook_required or webhook is not None) and not _valid_url(webhook):
            return _Error(422, "10015", "Invalid webhook_url", "webhook_url must be an http(s) URL.")
        timeout = body.get("timeout_secs", 30)
        if not isinstance(timeout, int) or not 5 <= timeout <= 600:
            return _Error(422, "10015", "Invalid timeout_secs", "timeout_secs must be 5 to 600.")
        return None

    def _check_dial(self, body: dict[str, Any]) -> _Error | None:
        if body.get("connection_id") != self.connection_id:
            return _Error(422, "10015", "Invalid connection_id", "connection_id is not a Call Control "
                          "application of this account.")
        if (error := self._check_leg(body, webhook_required=True)) is not None:
            return error
        if body.get("stream_url") is not None and not str(body["stream_url"]).startswith(("ws://", "wss://")):
            return _Error(422, "10015", "Invalid stream_url", "stream_url must be a ws(s):// URL.")
        if body.get("stream_codec", "default") not in ("PCMU", "PCMA", "default"):
            return _Error(422, "10015", "Unsupported stream_codec", "This simulator streams PCMU or PCMA.")
        return None

    async def _dial(self, request: Request) -> Response:
        body, denied = await self._guard(request)
        if denied is not None:
            return denied
        error = self._check_dial(body)
        if error is not None:
            return self._log(request, body, error.response())
        repeat = next((c for c in self.calls.values()
                       if body.get("command_id") and f"dial:{body['command_id']}" in c._command_ids), None)
        if repeat is not None:
            return self._log(request, body, _ok(self.call_json(repeat)))
        callee = self.callee_for(body["to"])
        call = SimCall(self, direction="outgoing", from_=body["from"], to=body["to"], callee=callee,
                       webhook_url=body["webhook_url"], client_state=body.get("client_state"),
                       timeout_s=float(body.get("timeout_secs", 30)),
                       amd=body.get("answering_machine_detection"),
                       stream=self._stream_fields(body))
        if body.get("command_id"):
            call._command_ids.add(f"dial:{body['command_id']}")
        self.calls[call.call_control_id] = call

        async def launch() -> None:  # after the response is on the wire, like Telnyx
            if not self._closing:
                self._launch(call)
        return self._log(request, body, JSONResponse({"data": self.call_json(call) | {"is_alive": False}},
                                                     background=BackgroundTask(launch)))

    @staticmethod
    def _stream_fields(body: dict[str, Any]) -> dict[str, Any] | None:
        if not body.get("stream_url"):
            return None
        return {k: v for k, v in body.items() if k.startswith("stream_")}

    async def _get_call(self, request: Request) -> Response:
        body, denied = await self._guard(request)
        if denied is not None:
            return denied
        call = self.calls.get(request.path_params["call_id"])
        if call is None:
            return self._log(request, body, _Error(404, "10005", "Resource not found").response())
        return self._log(request, body, _ok(self.call_json(call)))

    async def _action(self, request: Request) -> Response:
        body, denied = await self._guard(request)
        if denied is not None:
            return denied
        call = self.calls.get(request.path_params["call_id"])
        action = request.path_params["action"]
        if call is None:
            return self._log(request, body, _Error(404, "10005", "Resource not found").response())
        if call.is_ended or call.hangup_cause is not None:
            return self._log(request, body, _Error(422, *ALREADY_ENDED).response())
        handler = getattr(self, f"_do_{action}", None)
        if handler is None:
            return self._log(request, body, _Error(422, "10015", "Unsupported action",
                                                   f"The simulator does not run {action!r}.").response())
        error = handler(call, body, dry_run=True)
        if error is not None:
            return self._log(request, body, error.response())
        if call._first_command(body.get("command_id")):
            call.commands.append((action, body))
            if isinstance(body.get("client_state"), str):
                call.client_state = body["client_state"]
            handler(call, body, dry_run=False)
            call._bump()
        return self._log(request, body, _ok())

    # Each action handler validates (dry_run=True, returning an error or None) and then runs.
    def _do_answer(self, call: SimCall, body: dict[str, Any], *, dry_run: bool) -> _Error | None:
        if call.direction != "incoming" or call.answered_at is not None:
            return _Error(422, "90019", "Call is not parked", "Only a parked inbound call can be answered.")
        if dry_run:
            return None
        call.stream_request = self._stream_fields(body)
        call._answer_requested.set()
        return None

    def _do_reject(self, call: SimCall, body: dict[str, Any], *, dry_run: bool) -> _Error | None:
        if call.direction != "incoming" or call.answered_at is not None:
            return _Error(422, "90019", "Call is not parked", "Only a parked inbound call can be rejected.")
        if not dry_run:
            call._request_end("call_rejected", "callee")
        return None

    def _do_hangup(self, call: SimCall, body: dict[str, Any], *, dry_run: bool) -> _Error | None:
        if not dry_run:
            cause = "normal_clearing" if call.answered_at is not None else "originator_cancel"
            call._request_end(cause, "caller")
        return None

    def _active(self, call: SimCall) -> _Error | None:
        if call.answered_at is None:
            return _Error(422, "90019", "Call is not answered", "The call has not been answered yet.")
        return None

    def _do_speak(self, call: SimCall, body: dict[str, Any], *, dry_run: bool) -> _Error | None:
        text, voice = body.get("payload"), body.get("voice")
        if not isinstance(text, str) or not text or len(text) > 3000:
            return _Error(422, "10015", "Invalid payload", "payload must be 1 to 3000 characters.")
        if not isinstance(voice, str) or not voice:
            return _Error(422, "10015", "Missing voice", "voice is required.")
        if (error := self._active(call)) is not None or dry_run:
            return error
        call.spoken.append(body)
        call._playout.put_nowait(("speak", body))
        return None

    def _do_send_dtmf(self, call: SimCall, body: dict[str, Any], *, dry_run: bool) -> _Error | None:
        digits = body.get("digits")
        if not isinstance(digits, str) or not re.fullmatch(r"[0-9A-D*#wW]+", digits):
            return _Error(422, "10015", "Invalid digits", "digits may hold 0-9 A-D * # w W.")
        if (error := self._active(call)) is not None or dry_run:
            return error
        call._playout.put_nowait(("dtmf", body))
        return None

    def _do_transfer(self, call: SimCall, body: dict[str, Any], *, dry_run: bool) -> _Error | None:
        leg_fields = {"from": call.from_, **body}  # without `from`, the call's caller id
        if (error := self._check_leg(leg_fields, webhook_required=False)) is not None:
            return error
        to, from_, timeout = leg_fields["to"], leg_fields["from"], leg_fields.get("timeout_secs", 30)
        if (error := self._active(call)) is not None:
            return error
        if call.transfer_leg is not None and not call.transfer_leg.is_ended:
            return _Error(422, "90020", "Call is being transferred", "A transfer is in progress.")
        if dry_run:
            return None
        leg = SimCall(self, direction="outgoing", from_=from_, to=to, callee=self.callee_for(to),
                      webhook_url=body.get("webhook_url") or call.webhook_url,
                      client_state=body.get("target_leg_client_state"), timeout_s=float(timeout))
        leg.transferred_from, leg.dial = call, DialRecord(to, from_)
        call.transfer_leg = leg
        call.dials.append(leg.dial)
        self._launch(leg)
        return None

    def _do_transcription_start(self, call: SimCall, body: dict[str, Any], *,
                                dry_run: bool) -> _Error | None:
        if (error := self._active(call)) is not None:
            return error
        if call.transcribing:
            return _Error(422, "10015", "Transcription already started",
                          "Stop the running transcription before starting another.")
        if dry_run:
            return None
        call.transcribing = True
        call.transcription_starts += 1
        call._maybe_reply()
        return None

    def _do_client_state_update(self, call: SimCall, body: dict[str, Any], *,
                                dry_run: bool) -> _Error | None:
        if not isinstance(body.get("client_state"), str):
            return _Error(422, "10015", "Missing client_state", "client_state is required.")
        if not dry_run:
            call._maybe_reply()  # the new state is set by the caller of every action
        return None

    def _do_transcription_stop(self, call: SimCall, body: dict[str, Any], *,
                               dry_run: bool) -> _Error | None:
        if not dry_run:
            call.transcribing = False
        return None


__all__ = ["ApiRecord", "Callee", "DialRecord", "SimCall", "TelnyxSimulator", "WebhookRecord"]
