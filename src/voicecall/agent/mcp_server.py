"""The `voice_call` agent tool served over MCP (Model Context Protocol), for any agent host.

`voicecall mcp` runs it on stdio; each tool call goes to the running gateway's control API (or,
with none running, a standalone runtime), exactly as the CLI does. Results are the tool's JSON;
failures come back as data (`{"error": ...}`, flagged `isError`), never as a crash.
"""

from __future__ import annotations

import json
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from voicecall.agent.tool import TOOL_DESCRIPTION, TOOL_NAME, Invoke, dispatch_tool, tool_schema

__all__ = ["build_mcp_server", "serve_mcp_stdio"]


def _result(payload: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(payload, ensure_ascii=False))],
        structured_content=payload, is_error="error" in payload)


def build_mcp_server(invoke: Invoke, *, version: str = "") -> Server[Any]:
    """An MCP server with one tool, `voice_call`, dispatched through `invoke(method, params)`."""
    parameters = tool_schema()["function"]["parameters"]
    tool = types.Tool(name=TOOL_NAME, description=TOOL_DESCRIPTION, input_schema=parameters)

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name != TOOL_NAME:
            return _result({"error": f"unknown tool {params.name!r}; this server has {TOOL_NAME}"})
        return _result(await dispatch_tool(dict(params.arguments or {}), invoke))

    return Server("voicecall", version=version, on_list_tools=list_tools, on_call_tool=call_tool)


async def serve_mcp_stdio(invoke: Invoke, *, version: str = "") -> None:
    """Serve MCP on this process's stdin/stdout until the client disconnects."""
    server = build_mcp_server(invoke, version=version)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
