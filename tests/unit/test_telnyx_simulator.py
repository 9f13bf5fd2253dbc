"""The Telnyx simulator on its own: Telnyx-shaped REST errors, idempotent command ids, and
webhooks signed so that both our verifier and the official SDK's accept them, in order."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from telnyx.lib.webhook_verification import verify_webhook_signature

from voicecall.providers.base import WebhookRequest
from voicecall.providers.telnyx.signature import load_public_key, verify_telnyx_webhook
from voicecall.testing.loopback import LoopbackServer
from voicecall.testing.telnyx import Callee, SimCall, TelnyxSimulator


class Receiver:
    """A tiny webhook endpoint that records what the simulator posts."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.server = LoopbackServer()

    async def handle(self, request: Request) -> PlainTextResponse:
        self.received.append((await request.body(), dict(request.headers)))
        return PlainTextResponse("OK")

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/hook"


@pytest.fixture
async def sim() -> AsyncIterator[TelnyxSimulator]:
    async with TelnyxSimulator(time_scale=0.02, speak_ms_per_char=1) as simulator:
        yield simulator


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.server.start(Starlette(routes=[Route("/hook", r.handle, methods=["POST"])]))
    yield r
    await r.server.stop()


def client(sim: TelnyxSimulator, key: str | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=sim.base_url,
                             headers={"authorization": f"Bearer {key or sim.api_key}"})


def dial(sim: TelnyxSimulator, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {"connection_id": sim.connection_id, "to": "+15555550123", "from": "+15550000000",
            "webhook_url": receiver.url, **extra}


async def answered_call(sim: TelnyxSimulator, http: httpx.AsyncClient, receiver: Receiver,
                        **extra: Any) -> SimCall:
    """A call dialled through the REST API to +15555550123, once it is answered."""
    response = await http.post("/calls", json=dial(sim, receiver, **extra))
    call = sim.call(response.json()["data"]["call_control_id"])
    await call.wait_answered()
    return call


async def test_a_wrong_api_key_gets_telnyx_shaped_401(sim: TelnyxSimulator, receiver: Receiver) -> None:
    async with client(sim, "wrong") as http:
        response = await http.post("/calls", json=dial(sim, receiver))
    assert response.status_code == 401
    assert response.json()["errors"][0]["title"] == "Authentication failed"


@pytest.mark.parametrize("change", [{"to": "12345"}, {"connection_id": "other"},
                                    {"webhook_url": "ftp://x"}, {"timeout_secs": 2}])
async def test_invalid_dials_get_422_with_a_code_and_title(sim: TelnyxSimulator, receiver: Receiver,
                                                           change: dict[str, Any]) -> None:
    async with client(sim) as http:
        response = await http.post("/calls", json=dial(sim, receiver, **change))
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["code"] and error["title"] and sim.calls == {}


async def test_webhooks_are_signed_for_our_verifier_and_the_sdk_and_arrive_in_order(
        sim: TelnyxSimulator, receiver: Receiver) -> None:
    sim.script("+15555550123", Callee(answer_after_s=0.1))
    async with client(sim) as http:
        call = await answered_call(sim, http, receiver, client_state="YWJj")
        pcid = call.call_control_id
        spoken = await http.post(f"/calls/{pcid}/actions/speak",
                                 json={"payload": "Hi there", "voice": "female", "command_id": "s1"})
        again = await http.post(f"/calls/{pcid}/actions/speak",
                                json={"payload": "Hi there", "voice": "female", "command_id": "s1"})
        assert spoken.json() == again.json() == {"data": {"result": "ok"}}
        await call.wait_heard("Hi there")
        await http.post(f"/calls/{pcid}/actions/hangup", json={})
        assert await call.wait_ended() == "normal_clearing"
        late = await http.post(f"/calls/{pcid}/actions/speak", json={"payload": "x", "voice": "female"})
    assert late.status_code == 422 and late.json()["errors"][0]["code"] == "90018"
    assert call.said == ["Hi there"]  # the repeated command_id was ignored
    types = [json.loads(body)["data"]["event_type"] for body, _ in receiver.received]
    assert types == ["call.initiated", "call.answered", "call.speak.started", "call.speak.ended",
                     "call.hangup"]
    key = load_public_key(sim.public_key)
    for body, headers in receiver.received:
        request = WebhookRequest("POST", receiver.url, "/hook", {}, headers, body, "127.0.0.1")
        assert verify_telnyx_webhook(request, public_key=key).ok
        verify_webhook_signature(body.decode(), headers, sim.public_key)  # raises if not
        assert json.loads(body)["data"]["payload"]["client_state"] == "YWJj"


async def test_a_transfer_dials_a_leg_with_its_own_state_bridges_it_and_the_callers_hangup_ends_both(
        sim: TelnyxSimulator, receiver: Receiver) -> None:
    sim.script("+15555550123", Callee(answer_after_s=0.05))
    sim.script("+15557770099", Callee(answer_after_s=0.05))
    async with client(sim) as http:
        call = await answered_call(sim, http, receiver, client_state="YQ==")
        pcid = call.call_control_id
        moved = await http.post(f"/calls/{pcid}/actions/transfer", json={
            "to": "+15557770099", "timeout_secs": 10, "target_leg_client_state": "Yg=="})
        assert moved.status_code == 200
        await call.wait_until(lambda: [d.status for d in call.dials] == ["answered"], 5, "bridge")
        again = await http.post(f"/calls/{pcid}/actions/transfer", json={"to": "+15557770099"})
        assert again.status_code == 422  # one transfer at a time
        leg = call.transfer_leg
        assert leg is not None and (leg.from_, leg.to) == ("+15550000000", "+15557770099")
        await call.hangup()  # the caller hangs up on the person
        await leg.wait_ended()
    assert call.dials[0].status == "completed" and leg.hangup_source == "caller"
    states = {(json.loads(body)["data"]["event_type"], json.loads(body)["data"]["payload"]["client_state"])
              for body, _ in receiver.received}
    assert {("call.bridged", "YQ=="), ("call.bridged", "Yg=="), ("call.initiated", "Yg=="),
            ("call.hangup", "Yg=="), ("call.hangup", "YQ==")} <= states


@pytest.mark.parametrize("outcome,status", [("busy", "busy"), ("no-answer", "no-answer"),
                                            ("failed", "failed")])
async def test_a_transfer_nobody_takes_leaves_the_call_up(
        sim: TelnyxSimulator, receiver: Receiver, outcome: str, status: str) -> None:
    sim.script("+15555550123", Callee(answer_after_s=0.05))
    sim.script("+15557770099", Callee(outcome=outcome, answer_after_s=0.05))  # type: ignore[arg-type]
    async with client(sim) as http:
        call = await answered_call(sim, http, receiver)
        await http.post(f"/calls/{call.call_control_id}/actions/transfer",
                        json={"to": "+15557770099", "timeout_secs": 5})
        await call.wait_until(lambda: [d.status for d in call.dials] == [status], 10, "no transfer")
        assert not call.is_ended
        await call.hangup()
