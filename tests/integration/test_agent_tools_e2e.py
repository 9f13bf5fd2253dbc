"""User tools of the responder on live calls: an MCP server (stdio and streamable HTTP) and plain
HTTP tools, called by the fake model, their results spoken; a filler while a slow tool runs."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fixtures.mcp_orders_server import build_server
from tests.helpers import eventually
from voicecall.agent.mcp_tools import McpServer, McpTools
from voicecall.agent.turn import TurnContext
from voicecall.calls.events import CallEvent
from voicecall.gateway.runtime import Runtime
from voicecall.providers.mock import MockProvider
from voicecall.testing.fakes import FakeOpenAI, LoopbackServer, ScriptedToolCall
from voicecall.testing.gateway import running_gateway

ORDERS_SERVER = str(Path(__file__).resolve().parents[1] / "fixtures" / "mcp_orders_server.py")
FRIEND = "+15557770001"
OUR_NUMBER = "+15550000000"
GREETING = "Thanks for calling Acme."


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def config(fake: FakeOpenAI, **responder: Any) -> dict[str, Any]:
    return {"inboundPolicy": "open", "inboundGreeting": GREETING,
            "responder": {"baseUrl": fake.base_url, **responder}}


ENV = {"OPENAI_API_KEY": "sk-test-not-real"}


def speaks_tool_result(template: str) -> Any:
    """A fake-model reply that speaks `template` filled from the last tool result (JSON fields)."""
    def reply(messages: list[dict[str, Any]]) -> str:
        result = next(m["content"] for m in reversed(messages) if m["role"] == "tool")
        return json.dumps({"spoken": template.format(**json.loads(result))})
    return reply


async def caller_asks(gateway: Runtime, pcid: str, question: str) -> MockProvider:
    mock = gateway.provider
    assert isinstance(mock, MockProvider)
    event = {"callId": pcid, "providerCallId": pcid, "direction": "inbound", "from": FRIEND,
             "to": OUR_NUMBER, "timestamp": int(time.time() * 1000)}
    await gateway.service.apply_events([CallEvent.model_validate({**event, "type": "call.initiated"}),
                                        CallEvent.model_validate({**event, "type": "call.answered"})])
    record = await eventually(lambda: gateway.service.live(pcid))
    await eventually(lambda: record.state.value == "listening")
    await mock.inject(pcid, speech=question)
    return mock


def turn() -> TurnContext:
    return TurnContext(call_id="c1", direction="inbound", from_=FRIEND, to=OUR_NUMBER, session_key="k",
                       agent_id="main", user_text="")


async def test_a_stdio_mcp_servers_tool_is_called_by_the_model_and_its_result_spoken(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script("", tool_calls=[ScriptedToolCall("order_status", {"order": "42"})])
    fake.script(speaks_tool_result("Order {order} is {status}."))
    servers = {"orders": {"command": sys.executable, "args": [ORDERS_SERVER]}}
    async with running_gateway(tmp_path, config(fake, mcpServers=servers), env=ENV) as gateway:
        mock = await caller_asks(gateway, "pc-m", "Where is my order 42?")
        await eventually(lambda: "Order 42 is out for delivery." in mock.heard("pc-m"), within=15)
        record = gateway.service.live("pc-m")
        assert record is not None
        tools = [t.text for t in record.transcript if t.speaker == "tool"]
        assert tools == ['order_status {"order": "42"} -> {"order": "42", "status": "out for delivery"}']
    offered = [t["function"]["name"] for t in fake.requests[0]["tools"]]
    assert offered == ["end_call", "send_dtmf", "call_info", "order_status", "add_refunds"]
    assert fake.requests[0]["tools"][3]["function"]["parameters"]["required"] == ["order"]


async def test_mcp_tools_are_listed_again_when_the_server_says_they_changed() -> None:
    tools = McpTools(McpServer("orders", command=sys.executable, args=(ORDERS_SERVER,)))
    await tools.start()
    try:
        assert tools.tool_names == ["order_status", "add_refunds"]
        assert (await tools.call("add_refunds", {}, turn())).content == "refunds on"
        await eventually(lambda: "refund_order" in tools.tool_names, within=5)
        refund = await tools.call("refund_order", {"order": "7"}, turn())
        assert (refund.content, refund.is_error) == ("order 7 refunded", False)
    finally:
        await tools.stop()


async def test_an_mcp_server_over_streamable_http_serves_its_tools_with_our_headers() -> None:
    app = build_server().streamable_http_app()
    seen: list[bytes | None] = []

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]).get(b"authorization"))
        await app(scope, receive, send)

    async with app.router.lifespan_context(app), LoopbackServer(recording) as server:
        tools = McpTools(McpServer("orders", url=f"{server.url}/mcp", headers={"Authorization": "Bearer t1"}))
        await tools.start()
        try:
            assert "order_status" in tools.tool_names
            result = await tools.call("order_status", {"order": "9"}, turn())
            assert json.loads(result.content) == {"order": "9", "status": "out for delivery"}
        finally:
            await tools.stop()
    assert seen and set(seen) == {b"Bearer t1"}


async def test_an_mcp_server_that_fails_offers_no_tools_and_says_why() -> None:
    tools = McpTools(McpServer("broken", command=sys.executable, args=("-c", "import sys; sys.exit(3)")),
                     connect_timeout_s=10)
    started = time.monotonic()
    await tools.start()
    try:
        assert time.monotonic() - started < 10
        assert tools.tool_names == [] and tools.error
        outcome = await tools.call("order_status", {}, turn())
        assert outcome.is_error and "not connected" in outcome.content
    finally:
        await tools.stop()


async def test_an_http_tool_gets_the_arguments_and_its_reply_is_spoken(
        tmp_path: Path, fake: FakeOpenAI) -> None:
    posted: list[tuple[dict[str, Any], dict[str, str]]] = []

    async def table(request: Request) -> Response:
        posted.append((await request.json(), dict(request.headers)))
        return JSONResponse({"time": "seven", "people": 4})

    async def broken(request: Request) -> Response:
        return PlainTextResponse("database down", status_code=503)

    app = Starlette(routes=[Route("/book", table, methods=["POST"]),
                            Route("/broken", broken, methods=["POST"])])
    async with LoopbackServer(app) as endpoint:
        http_tools = [
            {"name": "book_table", "description": "Book a table.", "url": f"{endpoint.url}/book",
             "parameters": {"type": "object", "properties": {"people": {"type": "integer"}}},
             "headers": {"Authorization": "Bearer tool-secret"}},
            {"name": "check_stock", "description": "Check stock.", "url": f"{endpoint.url}/broken"}]
        fake.script("", tool_calls=[ScriptedToolCall("book_table", {"people": 4}),
                                    ScriptedToolCall("check_stock", {})])
        fake.script(_booked_reply)
        async with running_gateway(tmp_path, config(fake, tools=http_tools), env=ENV) as gateway:
            mock = await caller_asks(gateway, "pc-h", "A table for four, please.")
            await eventually(lambda: "Booked for 4 at seven." in mock.heard("pc-h"))
            record = gateway.service.live("pc-h")
            assert record is not None
            call_id = record.call_id
    body, headers = posted[0]
    assert body == {"people": 4}
    assert headers["authorization"] == "Bearer tool-secret" and headers["x-voicecall-call-id"] == call_id
    results = [m["content"] for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert results == ['{"time": "seven", "people": 4}', "check_stock: HTTP 503 database down"]


def _booked_reply(messages: list[dict[str, Any]]) -> str:
    booked = json.loads(next(m["content"] for m in messages if m["role"] == "tool"))
    return json.dumps({"spoken": f"Booked for {booked['people']} at {booked['time']}."})


async def test_a_slow_tool_gets_the_filler_said_while_it_runs(tmp_path: Path, fake: FakeOpenAI) -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.8)
        return PlainTextResponse("It is sunny.")

    async with LoopbackServer(Starlette(routes=[Route("/weather", slow, methods=["POST"])])) as endpoint:
        tools = [{"name": "weather", "description": "Today's weather.", "url": f"{endpoint.url}/weather"}]
        fake.script("", tool_calls=[ScriptedToolCall("weather", {})])
        fake.script(json.dumps({"spoken": "Sunny all day."}))
        settings = config(fake, tools=tools, fillerAfterMs=150, filler="Let me look that up.")
        async with running_gateway(tmp_path, settings, env=ENV) as gateway:
            mock = await caller_asks(gateway, "pc-s", "Weather?")
            await eventually(lambda: "Sunny all day." in mock.heard("pc-s"))
            assert mock.heard("pc-s") == [GREETING, "Let me look that up.", "Sunny all day."]
