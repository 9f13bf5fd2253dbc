"""The `voice_call` tool over MCP: listed with its JSON Schema, calls reach the gateway, failures
come back as data."""

from __future__ import annotations

import json
from pathlib import Path

from mcp import Client

from tests.helpers import eventually
from voicecall.agent.mcp_server import build_mcp_server
from voicecall.agent.tool import tool_schema
from voicecall.testing.gateway import running_gateway


async def test_mcp_lists_the_tool_and_places_a_call_through_the_gateway(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gateway, Client(build_mcp_server(gateway.api.call)) as client:
        tools = (await client.list_tools()).tools
        assert [t.name for t in tools] == ["voice_call"]
        assert tools[0].input_schema == tool_schema()["function"]["parameters"]
        placed = await client.call_tool("voice_call", {"action": "initiate_call", "message": "Hello",
                                                       "to": "+15555550123", "mode": "notify"})
        assert not placed.is_error
        call_id = json.loads(placed.content[0].text)["callId"]  # type: ignore[union-attr]
        record = await eventually(lambda: gateway.service.live(call_id) or None, 5)
        assert record.to == "+15555550123"
        status = await client.call_tool("voice_call", {"action": "get_status", "callId": call_id})
        assert status.structured_content is not None
        assert status.structured_content["call"]["callId"] == call_id


async def test_mcp_tool_errors_are_data_not_crashes(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gateway, Client(build_mcp_server(gateway.api.call)) as client:
        missing = await client.call_tool("voice_call", {"action": "end_call"})
        assert missing.is_error and missing.structured_content == {"error": "callId required"}
        unknown = await client.call_tool("voice_call", {"action": "end_call", "callId": "nope"})
        assert unknown.is_error and "nope" in json.dumps(unknown.structured_content)
        other = await client.call_tool("something_else", {})
        assert other.is_error
