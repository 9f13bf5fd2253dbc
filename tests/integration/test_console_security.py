"""The web console's guard, over real loopback HTTP against a running gateway: nothing but the
sign-in page answers without a session, a login code works once, the token signs in too, and a
state-changing request without the session's CSRF token changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from voicecall.gateway.runtime import Runtime
from voicecall.testing.gateway import running_gateway

CALLEE = "+15555550123"
NEVER_ANSWERS = {"mock": {"answerAfterMs": 120_000}}
CONSOLE_GETS = ["/console/static/app.js", "/console/static/style.css", "/console/static/index.html",
                "/console/api/session", "/console/api/history", "/console/api/calls/anything",
                "/console/events"]
CONSOLE_POSTS = ["/console/api/rpc", "/console/logout"]


def client(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.control_url, trust_env=False, timeout=5,
                             follow_redirects=False)


async def login_code(runtime: Runtime) -> str:
    code: str = (await runtime.api.call("console.loginCode", {}))["code"]
    return code


async def signed_in(runtime: Runtime, http: httpx.AsyncClient) -> str:
    """Sign `http` in with a fresh code; the session's CSRF token."""
    reply = await http.get("/login", params={"code": await login_code(runtime)})
    assert reply.status_code == 303 and reply.headers["location"] == "/"
    session = await http.get("/console/api/session")
    assert session.status_code == 200
    csrf: str = session.json()["csrf"]
    return csrf


@pytest.fixture
async def runtime(tmp_path: Path) -> Runtime:  # type: ignore[misc]
    async with running_gateway(tmp_path, NEVER_ANSWERS) as started:
        yield started


async def test_every_console_route_refuses_a_request_without_a_session(runtime: Runtime) -> None:
    async with client(runtime) as http:
        page = await http.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        for path in CONSOLE_GETS:
            reply = await http.get(path)
            assert reply.status_code == 401, path
        for path in CONSOLE_POSTS:
            reply = await http.post(path, json={"method": "voicecall.status"},
                                    headers={"x-csrf-token": "anything"})
            assert reply.status_code == 401, path
        # a made-up or stolen-looking cookie is no session either
        http.cookies.set("voicecall_console", "forged-session-id")
        assert (await http.get("/console/api/session")).status_code == 401
        assert (await http.get("/console/events")).status_code == 401
        assert (await http.get("/")).status_code == 303
        # the control token as a bearer is the API's key, not the console's
        bearer = {"authorization": f"Bearer {runtime.token}"}
        assert (await http.get("/console/api/session", headers=bearer)).status_code == 401
        login = await http.get("/login")
        assert login.status_code == 200 and "Control token" in login.text


async def test_a_login_code_signs_in_once_with_an_httponly_strict_cookie(runtime: Runtime) -> None:
    code = await login_code(runtime)
    async with client(runtime) as first, client(runtime) as second:
        reply = await first.get("/login", params={"code": code})
        assert reply.status_code == 303
        cookie = reply.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        page = await first.get("/")
        assert page.status_code == 200 and "/console/static/app.js" in page.text
        assert (await first.get("/console/static/app.js")).status_code == 200

        again = await second.get("/login", params={"code": code})
        assert again.status_code == 401 and "already used or has expired" in again.text
        assert "set-cookie" not in again.headers
        assert (await second.get("/console/api/session")).status_code == 401
        wrong = await second.get("/login", params={"code": "not-a-code"})
        assert wrong.status_code == 401


async def test_the_control_token_signs_in_and_a_wrong_one_does_not(runtime: Runtime) -> None:
    async with client(runtime) as http:
        wrong = await http.post("/login", data={"token": "not-the-token-at-all"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        ok = await http.post("/login", data={"token": runtime.token})
        assert ok.status_code == 303
        assert (await http.get("/console/api/session")).status_code == 200


async def test_a_post_without_the_csrf_token_changes_nothing(runtime: Runtime) -> None:
    async with client(runtime) as http:
        csrf = await signed_in(runtime, http)
        place = {"method": "voicecall.initiate", "params": {"to": CALLEE, "message": "Hi"}}
        for headers in ({}, {"x-csrf-token": ""}, {"x-csrf-token": csrf[:-1] + "x"}):
            refused = await http.post("/console/api/rpc", json=place, headers=headers)
            assert refused.status_code == 403
        assert runtime.service.active_calls() == []
        assert (await runtime.api.call("voicecall.list", {}))["calls"] == []

        placed = await http.post("/console/api/rpc", json=place, headers={"x-csrf-token": csrf})
        assert placed.status_code == 200, placed.text
        call_id = placed.json()["result"]["callId"]
        end = {"method": "voicecall.end", "params": {"callId": call_id}}
        assert (await http.post("/console/api/rpc", json=end)).status_code == 403
        assert runtime.service.live(call_id) is not None
        # signing out needs the token too, and then the session is gone
        assert (await http.post("/console/logout", json={})).status_code == 403
        assert (await http.post("/console/logout", json={},
                                headers={"x-csrf-token": csrf})).status_code == 200
        assert (await http.post("/console/api/rpc", json=end,
                                headers={"x-csrf-token": csrf})).status_code == 401
        assert runtime.service.live(call_id) is not None


async def test_the_console_only_reaches_its_own_methods_and_shows_a_call_page(
        runtime: Runtime) -> None:
    async with client(runtime) as http:
        csrf = await signed_in(runtime, http)
        headers = {"x-csrf-token": csrf}
        for method in ("mock.inject", "console.loginCode", "voicecall.tail"):
            reply = await http.post("/console/api/rpc", json={"method": method}, headers=headers)
            assert reply.status_code == 400, method
        placed = await http.post("/console/api/rpc", headers=headers, json={
            "method": "voicecall.initiate", "params": {"to": CALLEE, "message": "Hi"}})
        call_id = placed.json()["result"]["callId"]
        page = (await http.get(f"/console/api/calls/{call_id}")).json()
        assert page["call"]["callId"] == call_id and page["stream"] is None
        assert [h["state"] for h in page["history"]][:1] == ["initiated"]
        assert (await http.get("/console/api/calls/nope")).status_code == 404


async def test_history_searches_filters_and_pages_ended_calls(runtime: Runtime) -> None:
    ids = []
    for i in range(23):
        placed = await runtime.api.call("voicecall.initiate", {"to": f"+1555555{i:04d}",
                                                               "message": "Hi"})
        await runtime.api.call("voicecall.end", {"callId": placed["callId"]})
        ids.append(placed["callId"])
    live = await runtime.api.call("voicecall.initiate", {"to": CALLEE, "message": "Hi"})
    async with client(runtime) as http:
        await signed_in(runtime, http)
        first = (await http.get("/console/api/history")).json()
        assert len(first["calls"]) == 20 and first["nextOffset"] == 20
        assert live["callId"] not in {c["callId"] for c in first["calls"]}
        second = (await http.get("/console/api/history", params={"offset": 20})).json()
        assert len(second["calls"]) == 3 and second["nextOffset"] is None
        assert {c["callId"] for c in first["calls"] + second["calls"]} == set(ids)
        found = (await http.get("/console/api/history", params={"q": "5555550007"})).json()
        assert [c["callId"] for c in found["calls"]] == [ids[7]]
        inbound = (await http.get("/console/api/history", params={"direction": "inbound"})).json()
        assert inbound["calls"] == []
        bad = await http.get("/console/api/history", params={"direction": "sideways"})
        assert bad.status_code == 400
