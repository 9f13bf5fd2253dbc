"""MCP tool servers that are not there at start, or go away later (D94): no tools meanwhile, a
tool call is an error result at once, and the tools come back when the server does; retries are
spaced out and the logs name the server, never its secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import pytest
from starlette.types import Receive, Scope, Send

from tests.fixtures.mcp_orders_server import build_server
from tests.helpers import eventually, free_port
from voicecall.agent.chat import ToolCall
from voicecall.agent.mcp_tools import McpServer, McpTools, Reconnect
from voicecall.agent.tools import Toolbox
from voicecall.agent.turn import TurnContext
from voicecall.cli.common import main_options
from voicecall.testing.fakes import LoopbackServer

GATED = str(Path(__file__).resolve().parents[1] / "fixtures" / "mcp_gated_server.py")
FAST = Reconnect(first_s=0.1, max_s=0.4, probe_s=0.2)
SECRET = "s3cret-value-never-logged"


def turn() -> TurnContext:
    return TurnContext(call_id="c1", direction="inbound", from_="+15557770001", to="+15550000000",
                       session_key="k", agent_id="main", user_text="")


def gated(gate: Path, *extra: str, reconnect: Reconnect = FAST) -> McpTools:
    return McpTools(McpServer("orders", command=sys.executable, args=(GATED, str(gate), *extra),
                              env={"ORDERS_TOKEN": SECRET}),
                    connect_timeout_s=15, reconnect=reconnect)


async def order_status(toolbox: Toolbox) -> tuple[str, bool, float]:
    """Ask for order 5 through the toolbox, as the model would; the result and how long it took."""
    _specs, owners = toolbox.specs(turn())
    started = time.monotonic()
    outcome = await toolbox.run(ToolCall("t1", "order_status", {"order": "5"}), owners, turn())
    return outcome.content, outcome.is_error, time.monotonic() - started


async def test_a_stdio_server_that_fails_at_start_offers_its_tools_once_it_starts(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    tools = gated(gate)
    await tools.start()
    try:
        assert tools.tool_names == [] and tools.error and not tools.connected
        toolbox = Toolbox([tools], timeout_s=10)
        specs, owners = toolbox.specs(turn())
        assert specs == [] and owners == {}
        gate.touch()
        await eventually(lambda: tools.tool_names == ["order_status", "add_refunds"], within=20)
        content, is_error, _ = await order_status(toolbox)
        assert not is_error and json.loads(content)["status"] == "out for delivery"
        assert tools.connections == 1 and tools.attempts >= 2 and tools.error is None
    finally:
        await tools.stop()


async def test_a_stdio_server_that_dies_loses_its_tools_and_gets_them_back_when_it_restarts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voicecall.agent.mcp_tools")
    gate = tmp_path / "gate"
    gate.touch()
    tools = gated(gate)
    toolbox = Toolbox([tools], timeout_s=10)
    await tools.start()
    try:
        assert tools.tool_names == ["order_status", "add_refunds"]
        gate.unlink()  # the server dies
        await eventually(lambda: not tools.tool_names, within=10)
        content, is_error, took = await order_status(toolbox)
        assert is_error and took < 1, (content, took)
        assert content == "no tool named 'order_status'"  # no longer offered to the model
        assert "not connected" in (await tools.call("order_status", {"order": "5"}, turn())).content
        gate.touch()  # back
        await eventually(lambda: tools.tool_names == ["order_status", "add_refunds"], within=20)
        content, is_error, _ = await order_status(toolbox)
        assert not is_error and json.loads(content)["order"] == "5"
        assert tools.connections == 2
    finally:
        await tools.stop()
    logged = caplog.text
    assert "MCP server 'orders'" in logged and "disconnected" in logged and "connected again" in logged
    assert SECRET not in logged


async def test_a_call_on_a_connection_that_died_unnoticed_is_an_error_result_and_reconnects(
        tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    # no `subscriptions/listen` and a slow probe: nothing notices the death but the call itself
    tools = gated(gate, "--no-listen", reconnect=Reconnect(first_s=0.1, max_s=0.4, probe_s=600))
    toolbox = Toolbox([tools], timeout_s=10)
    await tools.start()
    try:
        assert tools.tool_names == ["order_status", "add_refunds"]
        await asyncio.sleep(0.5)  # a server without `subscriptions/listen` is kept, not redialed
        assert (tools.attempts, tools.connections) == (1, 1) and tools.connected
        _specs, owners = toolbox.specs(turn())
        gate.unlink()
        await asyncio.sleep(0.3)  # the server's gate watcher polls every 20 ms: it is gone now
        started = time.monotonic()
        outcome = await toolbox.run(ToolCall("t1", "order_status", {"order": "5"}), owners, turn())
        assert outcome.is_error and time.monotonic() - started < 2
        assert "MCP server 'orders' is not connected" in outcome.content
        assert "connection was lost during order_status" in outcome.content
        await eventually(lambda: not tools.connected, within=5)
        gate.touch()
        await eventually(lambda: tools.tool_names == ["order_status", "add_refunds"], within=20)
        assert tools.connections == 2
    finally:
        await tools.stop()


async def test_a_server_that_never_comes_is_retried_with_growing_delays_not_in_a_storm(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voicecall.agent.mcp_tools")
    url = f"http://user:{SECRET}@127.0.0.1:{free_port()}/mcp?key={SECRET}"
    tools = McpTools(McpServer("orders", url=url, headers={"Authorization": f"Bearer {SECRET}"}),
                     connect_timeout_s=5, reconnect=Reconnect(first_s=0.1, max_s=0.4))
    await tools.start()
    try:
        began = time.monotonic()
        first = tools.attempts
        await eventually(lambda: tools.attempts >= first + 4, within=10)
        # 0.1, 0.2, 0.4, 0.4 s apart (within a fifth): 1.1 s at least for four more tries
        assert time.monotonic() - began >= 0.8
        assert tools.tool_names == [] and tools.error
        outcome = await tools.call("order_status", {}, turn())
        assert outcome.is_error and "not connected" in outcome.content
    finally:
        await tools.stop()
    assert "MCP server 'orders' (http://127.0.0.1:" in caplog.text
    assert SECRET not in caplog.text and SECRET not in (tools.error or "")


def test_reconnect_delays_double_from_the_first_up_to_the_cap() -> None:
    policy = Reconnect(first_s=1.0, max_s=8.0)
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (60, 8.0)]:
        for _ in range(20):
            delay = policy.delay(failures)
            assert base * 0.8 <= delay <= min(8.0, base * 1.2), (failures, delay)


async def test_an_http_server_down_at_start_serves_its_tools_with_our_headers_once_it_listens() -> None:
    app = build_server().streamable_http_app()
    seen: list[bytes | None] = []

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]).get(b"authorization"))
        await app(scope, receive, send)

    port = free_port()
    tools = McpTools(McpServer("orders", url=f"http://127.0.0.1:{port}/mcp",
                               headers={"Authorization": "Bearer t1"}), connect_timeout_s=10,
                     reconnect=FAST)
    await tools.start()
    try:
        assert tools.tool_names == [] and tools.error
        async with app.router.lifespan_context(app), LoopbackServer(recording, port=port):
            await eventually(lambda: "order_status" in tools.tool_names, within=15)
            result = await tools.call("order_status", {"order": "9"}, turn())
            assert json.loads(result.content) == {"order": "9", "status": "out for delivery"}
        # the server went away: its tools go too, and a call says so at once
        await eventually(lambda: not tools.tool_names, within=10)
        _content, is_error, took = await order_status(Toolbox([tools], timeout_s=10))
        assert is_error and took < 1
        down = await tools.call("order_status", {"order": "9"}, turn())
        assert down.is_error and "not connected" in down.content
    finally:
        await tools.stop()
    assert seen and set(seen) == {b"Bearer t1"}


def test_verbose_cli_logging_leaves_out_the_http_clients_request_urls() -> None:
    httpx2_log = logging.getLogger("httpx2")
    before = httpx2_log.level
    try:
        main_options(config=None, verbose=True, version=False)
        # its INFO line per request carries the URL with its query (a server's key, say)
        assert httpx2_log.level == logging.WARNING
    finally:
        httpx2_log.setLevel(before)
