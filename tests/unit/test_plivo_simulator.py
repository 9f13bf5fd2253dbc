"""The Plivo simulator's own contract: its REST API answers as Plivo's does, and its XML
interpreter runs documents as Plivo does (a tiny app on loopback answers its callbacks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from voicecall.providers.plivo.signature import sign_v3
from voicecall.testing.loopback import LoopbackServer
from voicecall.testing.plivo import Callee, PlivoSimulator

Documents = Callable[[str, dict[str, str]], str]


class App:
    """A webhook that answers each callback with `documents(kind, params)` and records them."""

    def __init__(self, documents: Documents) -> None:
        self.documents = documents
        self.seen: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.server = LoopbackServer()
        self.url = ""

    async def _hook(self, request: Request) -> Response:
        params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        kind = request.query_params.get("k", "answer")
        self.seen.append((kind, params, dict(request.headers)))
        return Response(self.documents(kind, params), media_type="text/xml")

    async def __aenter__(self) -> App:
        self.url = await self.server.start(Starlette(routes=[Route("/hook", self._hook,
                                                                   methods=["POST"])])) + "/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()


@pytest.fixture
async def sim() -> AsyncIterator[PlivoSimulator]:
    async with PlivoSimulator(time_scale=0.01, speak_ms_per_char=5) as simulator:
        yield simulator


def client(sim: PlivoSimulator, token: str | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=sim.api_url, auth=(sim.auth_id, token or sim.auth_token))


async def test_create_call_answers_201_call_fired_and_validates_like_plivo(
        sim: PlivoSimulator) -> None:
    async with client(sim) as api:
        fired = await api.post("Call/", json={"from": "15550000000", "to": "15555550123",
                                              "answer_url": "http://127.0.0.1:9/a"})
        missing = await api.post("Call/", json={"from": "15550000000", "to": "15555550123"})
        no_slash = await api.post(sim.api_url + "Call", json={})
    assert fired.status_code == 201 and fired.json()["message"] == "call fired"
    assert fired.json()["request_uuid"] in sim.calls
    assert missing.status_code == 400 and "answer_url" in missing.json()["error"]
    assert no_slash.status_code == 404  # every Plivo path ends with a slash


async def test_wrong_credentials_get_401_with_plivos_error_shape(sim: PlivoSimulator) -> None:
    async with client(sim, token="wrong") as api:
        denied = await api.get("Call/")
    assert denied.status_code == 401 and set(denied.json()) == {"api_id", "error"}


async def test_hangup_is_204_then_404_and_tolerates_a_json_body(sim: PlivoSimulator) -> None:
    async with App(lambda kind, p: "<Response><Wait length=\"60\"/></Response>") as app:
        sim.script("+15555550123", Callee(answer_after_s=0.1))
        async with client(sim) as api:
            uuid = (await api.post("Call/", json={
                "from": "1555", "to": "15555550123", "answer_url": app.url,
                "hangup_url": app.url + "?k=hangup"})).json()["request_uuid"]
            await sim.call(uuid).wait_until(lambda: sim.call(uuid).status == "in-progress")
            first = await api.request("DELETE", f"Call/{uuid}/", json={"call_uuid": uuid})
            second = await api.delete(f"Call/{uuid}/")
        assert (first.status_code, second.status_code) == (204, 404)
        assert await sim.call(uuid).wait_ended() == "completed"
        hangup = next(seen for seen in app.seen if seen[0] == "hangup")
        assert hangup[1]["HangupSource"] == "API Request" and hangup[1]["CallStatus"] == "completed"


async def test_a_live_call_is_read_with_status_live_and_an_ended_one_as_its_record(
        sim: PlivoSimulator) -> None:
    async with App(lambda kind, p: "<Response><Wait length=\"60\"/></Response>") as app:
        sim.script("+15555550123", Callee(answer_after_s=0.1))
        async with client(sim) as api:
            uuid = (await api.post("Call/", json={
                "from": "1555", "to": "15555550123", "answer_url": app.url})).json()["request_uuid"]
            await sim.call(uuid).wait_until(lambda: sim.call(uuid).status == "in-progress")
            live = await api.get(f"Call/{uuid}/", params={"status": "live"})
            record_while_live = await api.get(f"Call/{uuid}/")
            await api.delete(f"Call/{uuid}/")
            await sim.call(uuid).wait_ended()
            live_after = await api.get(f"Call/{uuid}/", params={"status": "live"})
            record = await api.get(f"Call/{uuid}/")
        assert live.status_code == 200 and live.json()["call_status"] == "in-progress"
        assert (record_while_live.status_code, live_after.status_code) == (404, 404)
        assert record.status_code == 200 and record.json()["call_state"] == "ANSWER"


async def test_callbacks_are_form_posts_signed_with_v3_over_the_exact_url(
        sim: PlivoSimulator) -> None:
    async with App(lambda kind, p: "<Response><Speak>Hi</Speak></Response>") as app:
        call = await sim.place_inbound("15557770001", "15550000000", app.url)
        assert await call.wait_ended() == "completed"
        _kind, params, headers = app.seen[0]
        expected = sign_v3(sim.auth_token, "POST", app.url, list(params.items()),
                           headers["x-plivo-signature-v3-nonce"])
        assert headers["x-plivo-signature-v3"] == headers["x-plivo-signature-ma-v3"] == expected
        assert call.said == ["Hi"] and call.hangup_cause == "END_OF_XML_INSTRUCTIONS"


async def test_getinput_without_an_answer_falls_through_to_the_next_element(
        sim: PlivoSimulator) -> None:
    doc = ('<Response><GetInput action="{url}?k=action" inputType="speech" executionTimeout="5">'
           '<Speak>Say something</Speak></GetInput><Speak>Nothing heard</Speak></Response>')
    async with App(lambda kind, p: doc.format(url=app.url)) as app:
        call = await sim.place_inbound("15557770001", "15550000000", app.url,
                                       callee=Callee(replies=[]), hangup_url=app.url + "?k=hangup")
        await call.wait_ended()
    assert call.said == ["Say something", "Nothing heard"]
    assert [(kind, p.get("Event")) for kind, p, _h in app.seen] == [
        ("answer", "StartApp"), ("hangup", "Hangup")]


async def test_getinput_posts_the_speech_and_the_action_xml_takes_over(
        sim: PlivoSimulator) -> None:
    def documents(kind: str, params: dict[str, str]) -> str:
        if kind == "action":
            return f"<Response><Speak>You said {params['Speech']}</Speak></Response>"
        return (f'<Response><GetInput action="{app.url}?k=action" inputType="speech">'
                "</GetInput><Speak>never reached</Speak></Response>")

    async with App(documents) as app:
        call = await sim.place_inbound("15557770001", "15550000000", app.url,
                                       callee=Callee(replies=["hello"], reply_delay_s=0.1))
        await call.wait_ended()
    assert call.said == ["You said hello"]
    action = next(p for kind, p, _h in app.seen if kind == "action")
    assert action["InputType"] == "speech" and action["Digits"] == ""


@pytest.mark.parametrize("doc,error", [
    ("not xml", "not XML"), ("<Reply/>", "not <Response>"),
    ("<Response><Say>Hi</Say></Response>", "unknown element <Say>"),
    ('<Response><Hangup reason="later"/></Response>', "rejected or busy"),
])
async def test_documents_plivo_would_refuse_end_the_call_as_invalid_answer_xml(
        sim: PlivoSimulator, doc: str, error: str) -> None:
    async with App(lambda kind, p: doc) as app:
        call = await sim.place_inbound("15557770001", "15550000000", app.url)
        await asyncio.wait_for(call.wait_ended(), 5)
    assert call.hangup_cause == "INVALID_ANSWER_XML"
    assert any(error in e and e.startswith("8011") for e in call.errors)
