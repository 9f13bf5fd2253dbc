"""The local Twilio simulator against a tiny fake app (and a tiny Media Streams server), loopback only."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from websockets.asyncio.server import ServerConnection, serve

from voicecall.testing.twilio import Callee, SimCall, TwilioSimulator, WebhookRecord, sign, signing_string

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCALE = 0.02
TO = "+15550001111"
FROM = "+15005550006"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>'


# -- a tiny app that serves TwiML and records what Twilio sent ---------------------------------------
@dataclass
class Hit:
    path: str
    method: str
    url: str
    headers: dict[str, str]
    params: dict[str, str]
    at: float


Handler = Callable[[Hit], str]


@dataclass
class FakeApp:
    routes: dict[str, Handler] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    base_url: str = ""

    async def handle(self, request: Request) -> Response:
        body = (await request.body()).decode()
        params = dict(parse_qsl(body, keep_blank_values=True))
        hit = Hit(request.url.path, request.method, str(request.url), dict(request.headers), params,
                  time.monotonic())
        self.hits.append(hit)
        handler = self.routes.get(request.url.path)
        if handler is None:
            return Response("", media_type="text/plain")
        return Response(XML_HEAD + handler(hit), media_type="application/xml")

    def on(self, path: str, twiml: str | Handler) -> None:
        self.routes[path] = twiml if callable(twiml) else (lambda _hit: twiml)

    def url(self, path: str) -> str:
        return self.base_url + path

    def at(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield

    async def main_loop(self) -> None:
        while not self.should_exit:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def serving(app: FakeApp) -> AsyncIterator[FakeApp]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    app.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    starlette = Starlette(routes=[Route("/{path:path}", app.handle, methods=["GET", "POST"])])
    server = _QuietServer(uvicorn.Config(starlette, log_level="warning", access_log=False, lifespan="off",
                                         ws="none"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    try:
        yield app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_app() -> AsyncIterator[FakeApp]:
    async with serving(FakeApp()) as fake:
        yield fake


@pytest.fixture
def app(shared_app: FakeApp) -> FakeApp:
    shared_app.routes.clear()
    shared_app.hits.clear()
    return shared_app


@pytest_asyncio.fixture(loop_scope="module")
async def sim() -> AsyncIterator[TwilioSimulator]:
    async with TwilioSimulator(time_scale=SCALE) as simulator:
        yield simulator


def api(sim: TwilioSimulator, token: str | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=sim.api_url, auth=(sim.account_sid, token or sim.auth_token),
                             trust_env=False)


async def create(sim: TwilioSimulator, app: FakeApp, *, to: str = TO, url_path: str = "/voice?callId=c1",
                 events: tuple[str, ...] = ("initiated", "ringing", "answered", "completed"),
                 **extra: str) -> SimCall:
    data: list[tuple[str, str]] = [("To", to), ("From", FROM), ("Url", app.url(url_path)),
                                   ("StatusCallback", app.url("/status?callId=c1&type=status")),
                                   *(("StatusCallbackEvent", e) for e in events), *extra.items()]
    async with api(sim) as client:
        resp = await client.post("/Calls.json", content=urlencode(data),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 201, resp.text
    return sim.call(resp.json()["sid"])


async def until(pred: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def assert_signed(sim: TwilioSimulator, hit: Hit) -> None:
    validator = RequestValidator(sim.auth_token)
    params = hit.params if hit.method == "POST" else {}
    assert validator.validate(hit.url, params, hit.headers["x-twilio-signature"]), hit


# -- signatures ------------------------------------------------------------------------------------
async def test_sign_matches_twilio_vectors() -> None:
    t1 = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
          "From": "+12349013030", "To": "+18005551212"}
    assert sign("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", t1) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    token = "test_auth_token_0123456789abcdef"
    t5 = [("b", "2"), ("b", "1"), ("a", "x"), ("b", "2")]
    url = "https://agent.example.test/twilio/gather"
    assert signing_string(url, t5) == url + "axb1b2"
    assert sign(token, url, t5) == "p9lDSogQ3XXvNbu/e7u5J07CK0M="
    assert sign(token, "wss://agent.example.test/twilio/media") == "4rc0+sZm+1ZTYyG1f8lkWW4gCsM="
    params = {"Zeta": "1", "alpha": "ä ö", "Beta": ""}
    expected = RequestValidator(token).compute_signature(url + "?q=1", params)
    assert sign(token, url + "?q=1", params) == expected


# -- REST ------------------------------------------------------------------------------------------
async def test_rest_auth_and_validation_errors(sim: TwilioSimulator, app: FakeApp) -> None:
    async with api(sim, token="wrong") as client:
        resp = await client.post("/Calls.json", data={"To": TO, "From": FROM, "Url": app.url("/v")})
    assert resp.status_code == 401
    assert resp.json()["code"] == 20003 and resp.json()["status"] == 401
    async with httpx.AsyncClient(trust_env=False) as client:
        resp = await client.get(sim.api_url + "/Calls/CA00.json")
    assert resp.status_code == 401
    cases = [({"To": "555-1234", "From": FROM, "Url": app.url("/v")}, 21211),
             ({"To": TO, "From": "nobody", "Url": app.url("/v")}, 21212),
             ({"To": TO, "From": FROM}, 21200),
             ({"To": TO, "From": FROM, "Url": "not a url"}, 21205)]
    async with api(sim) as client:
        for data, code in cases:
            resp = await client.post("/Calls.json", data=data)
            body = resp.json()
            assert (resp.status_code, body["code"]) == (400, code), (data, body)
            assert set(body) == {"code", "message", "more_info", "status"}
            assert body["more_info"].endswith(str(code))
        resp = await client.get("/Calls/CA0123456789abcdef0123456789abcdef.json")
        assert (resp.status_code, resp.json()["code"]) == (404, 20404)
    assert sim.calls == {}


async def test_create_returns_call_json_and_twiml_is_ignored_with_url(sim: TwilioSimulator,
                                                                       app: FakeApp) -> None:
    app.on("/voice", "<Response><Say>From the URL</Say></Response>")
    async with api(sim) as client:
        resp = await client.post("/Calls.json", data={
            "To": TO, "From": FROM, "Url": app.url("/voice"),
            "Twiml": "<Response><Say>inline</Say></Response>"})
        assert resp.status_code == 201
        body = resp.json()
        assert re.fullmatch(r"CA[0-9a-f]{32}", body["sid"])
        assert body["status"] == "queued" and body["direction"] == "outbound-api"
        assert (body["to"], body["from"], body["account_sid"]) == (TO, FROM, sim.account_sid)
        for key in ("date_created", "date_updated", "parent_call_sid", "phone_number_sid", "start_time",
                    "end_time", "duration", "price", "price_unit", "answered_by", "api_version",
                    "forwarded_from", "caller_name", "queue_time", "uri", "subresource_uris"):
            assert key in body
        assert parsedate_to_datetime(body["date_created"]).tzinfo is not None
        assert body["date_created"].endswith("+0000")
        call = sim.call(body["sid"])
        await call.wait_ended()
        assert call.said == ["From the URL"]
        resp = await client.get(f"/Calls/{call.sid}.json")
        assert resp.json()["status"] == "completed" and resp.json()["end_time"]


# -- outbound flow ---------------------------------------------------------------------------------
async def test_status_callbacks_sequence_and_signatures(sim: TwilioSimulator, app: FakeApp) -> None:
    app.on("/voice", "<Response><Say voice=\"Polly.Joanna\" language=\"en-US\">Hello there</Say>"
                     "<Hangup/></Response>")
    call = await create(sim, app)
    assert await call.wait_ended() == "completed"
    statuses = app.at("/status")
    assert [h.params["CallStatus"] for h in statuses] == ["initiated", "ringing", "in-progress", "completed"]
    assert [h.params["SequenceNumber"] for h in statuses] == ["0", "1", "2", "3"]
    for hit in statuses:
        assert hit.params["CallbackSource"] == "call-progress-events"
        assert hit.params["Direction"] == "outbound-api" and hit.params["ApiVersion"] == "2010-04-01"
        assert parsedate_to_datetime(hit.params["Timestamp"])
        assert hit.headers["content-type"] == "application/x-www-form-urlencoded"
        assert hit.headers["i-twilio-idempotency-token"]
        assert "callId=c1&type=status" in hit.url
        assert_signed(sim, hit)
    assert "CallDuration" in statuses[-1].params and "CallDuration" not in statuses[0].params
    [voice] = app.at("/voice")
    assert voice.params["CallStatus"] == "in-progress" and voice.url.endswith("/voice?callId=c1")
    assert_signed(sim, voice)
    assert call.heard == [("say", "Hello there")]
    assert call.spoken[0].voice == "Polly.Joanna" and call.spoken[0].language == "en-US"
    assert call.statuses == ["queued", "initiated", "ringing", "in-progress", "completed"]
    assert len({h.headers["i-twilio-idempotency-token"] for h in app.hits}) == len(app.hits)


async def test_only_completed_callback_by_default(sim: TwilioSimulator, app: FakeApp) -> None:
    app.on("/voice", "<Response/>")
    call = await create(sim, app, events=())
    await call.wait_ended()
    assert [h.params["CallStatus"] for h in app.at("/status")] == ["completed"]
    assert app.at("/status")[0].params["SequenceNumber"] == "0"


async def test_space_separated_events_and_get_status_callback(sim: TwilioSimulator, app: FakeApp) -> None:
    app.on("/voice", "<Response/>")
    call = await create(sim, app, events=("ringing completed",), StatusCallbackMethod="GET")
    await call.wait_ended()
    hits = app.at("/status")
    assert [h.method for h in hits] == ["GET", "GET"]
    assert [dict(parse_qsl(urlsplit(h.url).query))["CallStatus"] for h in hits] == ["ringing", "completed"]
    for hit in hits:
        assert "callId=c1&type=status&CallSid=" in hit.url
        assert_signed(sim, hit)


async def test_say_takes_time_and_is_heard(app: FakeApp) -> None:
    text = "x" * 100  # 100 chars * 30 ms = 3 s simulated
    app.on("/voice", f"<Response><Say>{text}</Say></Response>")
    async with TwilioSimulator(time_scale=0.05) as sim:
        call = await create(sim, app)
        await call.wait_status("in-progress")
        started = time.monotonic()
        await call.wait_heard(text)
        assert time.monotonic() - started >= 0.12  # 3 s * 0.05 = 0.15 s
        await call.wait_ended()
    assert call.heard == [("say", text)] and call.interrupted == []


async def test_gather_speech_posts_result_to_action_with_query(sim: TwilioSimulator, app: FakeApp) -> None:
    sim.script(TO, Callee(replies=["I would like a table."], reply_delay_s=0.2, confidence=0.87))
    app.on("/voice", '<Response><Gather input="speech" action="/gather?turn=7" method="POST" timeout="5">'
                     "<Say>How can I help?</Say></Gather><Say>Nobody there</Say></Response>")
    app.on("/gather", "<Response><Say>Got it</Say><Hangup/></Response>")
    call = await create(sim, app)
    await call.wait_ended()
    [gather] = app.at("/gather")
    assert gather.url.endswith("/gather?turn=7")
    assert gather.params["SpeechResult"] == "I would like a table."
    assert gather.params["Confidence"] == "0.87" and gather.params["CallStatus"] == "in-progress"
    assert_signed(sim, gather)
    assert call.said == ["How can I help?", "Got it"]
    assert call.gathers[0].kind == "speech" and not call.gathers[0].timed_out


async def test_gather_timeout_runs_next_verb(sim: TwilioSimulator, app: FakeApp) -> None:
    app.on("/voice", '<Response><Gather input="speech" action="/gather" timeout="2"/>'
                     "<Say>Nobody there</Say></Response>")
    call = await create(sim, app)
    await call.wait_ended()
    assert app.at("/gather") == []
    assert call.said == ["Nobody there"] and call.gathers[0].timed_out


async def test_gather_dtmf_and_action_on_empty_result(sim: TwilioSimulator, app: FakeApp) -> None:
    sim.script(TO, Callee(digits=["42#"], reply_delay_s=0.1))
    app.on("/voice", '<Response><Gather input="dtmf" action="/keys"/></Response>')
    app.on("/keys", '<Response><Gather input="speech" action="/empty" actionOnEmptyResult="true" '
                    'timeout="1"/></Response>')
    app.on("/empty", "<Response><Hangup/></Response>")
    call = await create(sim, app)
    await call.wait_ended()
    assert app.at("/keys")[0].params["Digits"] == "42"
    [empty] = app.at("/empty")
    assert "SpeechResult" not in empty.params and "Digits" not in empty.params


async def test_redirect_get_and_play_digits(sim: TwilioSimulator, app: FakeApp) -> None:
    app.on("/voice", '<Response><Play digits="12w3"/><Redirect method="GET">next?step=2</Redirect>'
                     "<Say>never</Say></Response>")
    app.on("/next", "<Response><Play>https://example.test/a.mp3</Play></Response>")
    call = await create(sim, app)
    await call.wait_ended()
    [nxt] = app.at("/next")
    assert nxt.method == "GET"
    query = dict(parse_qsl(urlsplit(nxt.url).query))
    assert query["step"] == "2" and query["CallSid"] == call.sid
    assert_signed(sim, nxt)
    assert call.digits_heard == "12w3"
    assert call.heard == [("digits", "12w3"), ("play", "https://example.test/a.mp3")]


async def test_rest_update_replaces_running_twiml(sim: TwilioSimulator, app: FakeApp) -> None:
    long_text = "This is a very long announcement. " * 30
    app.on("/voice", f"<Response><Say>{long_text}</Say></Response>")
    call = await create(sim, app)
    await call.wait_status("in-progress")
    await asyncio.sleep(0.1)
    async with api(sim) as client:
        resp = await client.post(f"/Calls/{call.sid}.json",
                                 data={"Twiml": "<Response><Say>New words</Say><Hangup/></Response>"})
        assert resp.status_code == 200 and resp.json()["status"] == "in-progress"
        assert await call.wait_ended() == "completed"
        assert call.heard == [("say", "New words")]
        assert call.interrupted == [("say", long_text.strip())]
        resp = await client.post(f"/Calls/{call.sid}.json", data={"Twiml": "<Response/>"})
        assert (resp.status_code, resp.json()["code"]) == (400, 21220)
        assert resp.json()["message"] == "Call is not in-progress. Cannot redirect."
        resp = await client.post(f"/Calls/{call.sid}.json", data={"Status": "completed"})
        assert resp.json()["code"] == 21220


async def test_rest_hangup_and_url_update(sim: TwilioSimulator, app: FakeApp) -> None:
    app.on("/voice", '<Response><Pause length="100"/></Response>')
    app.on("/other", '<Response><Say>Redirected</Say><Pause length="100"/></Response>')
    call = await create(sim, app)
    await call.wait_status("in-progress")
    async with api(sim) as client:
        await client.post(f"/Calls/{call.sid}.json", data={"Url": app.url("/other"), "Method": "POST"})
        await call.wait_heard("Redirected")
        resp = await client.post(f"/Calls/{call.sid}.json", data={"Status": "completed"})
    assert resp.status_code == 200 and resp.json()["status"] == "completed"
    await call.wait_ended()
    assert app.at("/status")[-1].params["CallStatus"] == "completed"


@pytest.mark.parametrize("outcome, status", [("busy", "busy"), ("no-answer", "no-answer"),
                                              ("failed", "failed")])
async def test_unanswered_outcomes(sim: TwilioSimulator, app: FakeApp, outcome: Any, status: str) -> None:
    sim.script(TO, Callee(outcome=outcome, answer_after_s=1))
    call = await create(sim, app, Timeout="5")
    assert await call.wait_ended() == status
    assert app.at("/voice") == []
    last = app.at("/status")[-1]
    assert last.params["CallStatus"] == status and last.params["CallDuration"] == "0"
    assert "in-progress" not in [h.params["CallStatus"] for h in app.at("/status")]
    async with api(sim) as client:
        assert (await client.get(f"/Calls/{call.sid}.json")).json()["status"] == status


async def test_answering_machine_detection(sim: TwilioSimulator, app: FakeApp) -> None:
    sim.script(TO, Callee(answered_by="machine_start"))
    app.on("/voice", "<Response/>")
    call = await create(sim, app, MachineDetection="Enable")
    await call.wait_ended()
    assert app.at("/voice")[0].params["AnsweredBy"] == "machine_start"
    answered = [h for h in app.at("/status") if h.params["CallStatus"] == "in-progress"]
    assert answered[0].params["AnsweredBy"] == "machine_start"
    assert call.answered_by == "machine_start"


async def test_callee_hangs_up_and_bad_twiml(sim: TwilioSimulator, app: FakeApp) -> None:
    sim.script(TO, Callee(hangup_after_s=2))
    app.on("/voice", '<Response><Pause length="60"/></Response>')
    call = await create(sim, app)
    assert await call.wait_ended() == "completed"
    assert int(app.at("/status")[-1].params["CallDuration"]) >= 2  # simulated seconds (plus overhead)
    app.on("/bad", "<Response><Say>unclosed</Response>")
    bad = await create(sim, app, to="+15550002222", url_path="/bad")
    assert await bad.wait_ended() == "completed"
    assert bad.errors[0][0] == 12100


# -- inbound -----------------------------------------------------------------------------------------
async def test_inbound_call_flow(sim: TwilioSimulator, app: FakeApp) -> None:
    app.on("/incoming", '<Response><Say>Hi caller</Say><Gather input="speech" action="/turn"/></Response>')
    app.on("/turn", "<Response><Say>Bye</Say><Hangup/></Response>")
    call = await sim.place_inbound("+15551230000", FROM, app.url("/incoming"),
                                   callee=Callee(replies=["Book a table"], reply_delay_s=0.1),
                                   status_callback=app.url("/status"))
    assert await call.wait_ended() == "completed"
    [first] = app.at("/incoming")
    assert first.params["Direction"] == "inbound" and first.params["CallStatus"] == "ringing"
    assert first.params["From"] == "+15551230000"
    assert_signed(sim, first)
    assert app.at("/turn")[0].params["SpeechResult"] == "Book a table"
    assert app.at("/turn")[0].params["CallStatus"] == "in-progress"
    assert call.said == ["Hi caller", "Bye"]
    assert call.statuses == ["ringing", "in-progress", "completed"]
    assert [h.params["CallStatus"] for h in app.at("/status")] == ["completed"]


@pytest.mark.parametrize("reason, status", [("busy", "busy"), (None, "no-answer")])
async def test_inbound_reject(sim: TwilioSimulator, app: FakeApp, reason: str | None, status: str) -> None:
    attr = f' reason="{reason}"' if reason else ""
    app.on("/incoming", f"<Response><Reject{attr}/></Response>")
    call = await sim.place_inbound("+15551230000", FROM, app.url("/incoming"))
    assert await call.wait_ended() == status
    assert "in-progress" not in call.statuses and call.answered_at is None


async def test_enqueue_plays_wait_url_until_hangup(sim: TwilioSimulator, app: FakeApp) -> None:
    app.on("/incoming", '<Response><Say voice="alice">Please hold.</Say>'
                        '<Enqueue waitUrl="/voice/hold-music">hold-queue</Enqueue></Response>')
    app.on("/voice/hold-music", '<Response><Say>All agents are busy.</Say><Play loop="0">'
                                "https://example.test/music.mp3</Play></Response>")
    call = await sim.place_inbound("+15551230000", FROM, app.url("/incoming"))
    await call.wait_heard("All agents are busy.")
    assert ("enqueue", "hold-queue") in call.heard and call.enqueued == "hold-queue"
    assert app.at("/voice/hold-music")[0].params["QueuePosition"] == "1"
    assert await call.hangup() == "completed"


# -- replays -----------------------------------------------------------------------------------------
async def test_webhook_retries_send_identical_signed_requests(app: FakeApp) -> None:
    app.on("/voice", "<Response><Say>Once</Say></Response>")
    async with TwilioSimulator(time_scale=SCALE, webhook_retries=2) as sim:
        call = await create(sim, app, events=("completed",))
        await call.wait_ended()
    voice = app.at("/voice")
    assert len(voice) == 3
    assert len({(h.url, h.headers["x-twilio-signature"], h.headers["i-twilio-idempotency-token"],
                 tuple(sorted(h.params.items()))) for h in voice}) == 1
    assert len(app.at("/status")) == 3
    assert call.said == ["Once"]  # the TwiML ran once
    records: list[WebhookRecord] = [r for r in sim.requests if r.kind == "voice"]
    assert [r.attempt for r in records] == [0, 1, 2]


# -- Media Streams -------------------------------------------------------------------------------------
@dataclass
class StreamServer:
    url: str = ""
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    path: str = ""
    script: Callable[[ServerConnection, StreamServer], Any] | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m.get("event") == name]

    async def wait_for(self, pred: Callable[[], bool], within: float = 3.0) -> None:
        deadline = time.monotonic() + within
        while not pred():
            assert time.monotonic() < deadline, "stream server: condition not met"
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def stream_server(script: Callable[[ServerConnection, StreamServer], Any] | None = None,
                        ) -> AsyncIterator[StreamServer]:
    state = StreamServer(script=script)

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        state.headers = dict(ws.request.headers)
        state.path = ws.request.path
        reader = asyncio.create_task(read(ws))
        try:
            if state.script is not None:
                await state.script(ws, state)
            await reader
        finally:
            reader.cancel()
            state.closed.set()

    async def read(ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                state.messages.append((time.monotonic(), json.loads(raw)))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        state.url = f"ws://127.0.0.1:{port}/twilio/media"
        yield state


async def test_connect_stream_protocol(sim: TwilioSimulator, app: FakeApp) -> None:
    async def talk(ws: ServerConnection, st: StreamServer) -> None:
        await st.wait_for(lambda: bool(st.events("start")))
        sid = st.events("start")[0]["streamSid"]
        await ws.send(json.dumps({"event": "media", "streamSid": sid,
                                  "media": {"payload": base64.b64encode(b"\x7f" * 800).decode()}}))
        await ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "m1"}}))
        st.headers["sent-m1"] = str(time.monotonic())
        await st.wait_for(lambda: any(m["mark"]["name"] == "m1" for m in st.events("mark")))
        await ws.send(json.dumps({"event": "media", "streamSid": sid,
                                  "media": {"payload": base64.b64encode(b"\x7f" * 8000).decode()}}))
        await ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "m2"}}))
        await ws.send(json.dumps({"event": "clear", "streamSid": sid}))
        await ws.send(json.dumps({"event": "mark", "streamSid": "MZwrong", "mark": {"name": "bad"}}))

    async with stream_server(talk) as st:
        app.on("/voice", f'<Response><Connect><Stream url="{st.url}"><Parameter name="token" value="abc123"/>'
                         "</Stream></Connect></Response>")
        call = await create(sim, app)
        await st.wait_for(lambda: any(m["mark"]["name"] == "m2" for m in st.events("mark")))
        call.press("5")
        await st.wait_for(lambda: bool(st.events("dtmf")))
        await asyncio.sleep(0.2)
        assert await call.hangup() == "completed"
        await asyncio.wait_for(st.closed.wait(), 3)

    assert RequestValidator(sim.auth_token).compute_signature(st.url, {}) == st.headers["x-twilio-signature"]
    names = [m["event"] for _, m in st.messages]
    assert names[:2] == ["connected", "start"] and names[-1] == "stop"
    connected, start = st.messages[0][1], st.messages[1][1]
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    info = start["start"]
    assert info["customParameters"] == {"token": "abc123"} and info["callSid"] == call.sid
    assert info["accountSid"] == sim.account_sid and info["tracks"] == ["inbound"]
    assert info["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert re.fullmatch(r"MZ[0-9a-f]{32}", start["streamSid"]) and start["sequenceNumber"] == "1"
    seqs = [int(m["sequenceNumber"]) for _, m in st.messages[1:]]
    assert seqs == list(range(1, len(seqs) + 1))
    media = [(t, m) for t, m in st.messages if m["event"] == "media"]
    assert len(media) >= 10
    first = media[0][1]["media"]
    assert (first["chunk"], first["timestamp"], first["track"]) == ("1", "0", "inbound")
    assert base64.b64decode(first["payload"]) == b"\xff" * 160
    span = media[-1][0] - media[0][0]
    assert 0.012 <= span / (len(media) - 1) <= 0.035  # about one frame per 20 ms
    m1_at = next(t for t, m in st.messages if m["event"] == "mark" and m["mark"]["name"] == "m1")
    assert m1_at - float(st.headers["sent-m1"]) >= 0.08  # 800 bytes = 100 ms of playout first
    assert [m["mark"]["name"] for m in st.events("mark")] == ["m1", "m2"]  # m2 returned by clear
    assert st.events("dtmf")[0]["dtmf"] == {"track": "inbound_track", "digit": "5"}
    assert st.events("stop")[0]["stop"] == {"accountSid": sim.account_sid, "callSid": call.sid}
    assert len(call.received_audio) == 8800 and call.marks == ["m1", "m2"]
    assert call.streams[0].cleared_bytes > 7000
    assert [code for code, _ in call.warnings] == [31951]


async def test_stream_closed_by_app_goes_to_connect_action(sim: TwilioSimulator, app: FakeApp) -> None:
    async def close_soon(ws: ServerConnection, st: StreamServer) -> None:
        await st.wait_for(lambda: len(st.events("media")) >= 3)
        await ws.close()

    async with stream_server(close_soon) as st:
        app.on("/voice", f'<Response><Connect action="/after"><Stream url="{st.url}"/></Connect>'
                         "<Say>skipped</Say></Response>")
        app.on("/after", "<Response><Say>After the stream</Say></Response>")
        call = await create(sim, app)
        assert await call.wait_ended() == "completed"
    assert call.said == ["After the stream"]
    assert_signed(sim, app.at("/after")[0])
    assert call.streams[0].closed_by == "app" and "stop" not in call.streams[0].sent_events()


async def test_start_stream_fork_runs_alongside_twiml(sim: TwilioSimulator, app: FakeApp) -> None:
    async with stream_server() as st:
        app.on("/voice", f'<Response><Start><Stream name="fork" url="{st.url}" statusCallback="/ss"/>'
                         "</Start><Say>While streaming, hello there, how are you doing today?</Say>"
                         '<Pause length="10"/><Stop><Stream name="fork"/></Stop>'
                         '<Pause length="2"/></Response>')
        call = await create(sim, app)
        await asyncio.wait_for(st.closed.wait(), 3)
        assert call.said == ["While streaming, hello there, how are you doing today?"]
        assert not call.is_ended
        assert await call.wait_ended() == "completed"
    names = [m["event"] for _, m in st.messages]
    assert names[:2] == ["connected", "start"] and names[-1] == "stop" and "media" in names
    assert "mark" not in names and "dtmf" not in names
    await until(lambda: len(app.at("/ss")) == 2)
    events = [h.params["StreamEvent"] for h in app.at("/ss")]
    assert events == ["stream-started", "stream-stopped"]
    assert app.at("/ss")[0].params["StreamName"] == "fork"
    assert_signed(sim, app.at("/ss")[0])


async def test_unknown_verbs_and_unreachable_stream_are_skipped(sim: TwilioSimulator, app: FakeApp) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    app.on("/voice", f'<Response><Frobnicate/><Connect><Stream url="ws://127.0.0.1:{dead_port}/m"/>'
                     "</Connect><Say>Still here</Say></Response>")
    call = await create(sim, app)
    assert await call.wait_ended() == "completed"
    assert call.said == ["Still here"]
    assert any("Frobnicate" in message for _, message in call.warnings)
    assert [code for code, _ in call.errors] == [31902]


# -- load-generator support: streams left for an outside client, webhooks from many addresses ------
async def test_callee_that_does_not_open_streams_holds_the_call_for_an_outside_client(
        sim: TwilioSimulator, app: FakeApp) -> None:
    async with stream_server() as st:
        app.on("/voice", f'<Response><Connect><Stream url="{st.url}"><Parameter name="token" value="t-1"/>'
                         "</Stream></Connect><Say>after</Say></Response>")
        sim.script(TO, Callee(answer_after_s=0.1, open_streams=False))
        call = await create(sim, app)
        await call.wait_until(lambda: bool(call.streams), what="stream request")
        other = await create(sim, app, to="+15550002222")  # the default callee opens its stream
        await st.wait_for(lambda: bool(st.events("start")))
        await asyncio.sleep(0.3)
        assert not call.is_ended and call.status == "in-progress"
        assert call.streams[0].started_at is None and call.said == []
        assert sim.stream_entries() == [{"callSid": call.sid, "customParameters": {"token": "t-1"}}]
        assert sim.stream_entries([other]) == []
        assert [m["start"]["callSid"] for m in st.events("start")] == [other.sid]
        assert await call.hangup() == "completed"
        assert await other.hangup() == "completed"
    assert sim.stream_entries() == []
    assert call.said == []


@dataclass
class AddressApp(FakeApp):
    clients: list[str] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.clients.append(request.client.host if request.client else "")
        return await super().handle(request)


async def test_webhooks_go_out_from_the_given_source_addresses_in_turn() -> None:
    addresses = ["127.0.0.2", "127.0.0.3"]
    async with serving(AddressApp()) as app, \
            TwilioSimulator(time_scale=SCALE, webhook_source_addresses=addresses) as sim:
        assert isinstance(app, AddressApp)
        app.on("/voice", "<Response><Say>Hi</Say></Response>")
        for _ in range(2):
            call = await create(sim, app, events=("initiated", "completed"))
            await call.wait_ended()
        assert len(app.clients) == 6
        assert set(app.clients) == set(addresses)
        assert app.clients[:2] == addresses
