"""User tools from an MCP server (stdio or streamable HTTP), through the official `mcp` client
(docs/decisions.md D101).

The connection is opened at gateway start and kept for the gateway's life, in a task of its own
(the client's context must be entered and left in one task). Its tools are listed once then, and
listed again when the server says they changed (`notifications/tools/list_changed`, subscribed
to with `subscriptions/listen` where the protocol needs it). A server that
cannot be reached offers no tools; the gateway still starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp import Client, types
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.shared._httpx_utils import create_mcp_http_client  # the SDK's client defaults (timeouts)

from voicecall.agent.chat import ToolSpec
from voicecall.agent.tools import ToolOutcome
from voicecall.agent.turn import TurnContext, safe_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class McpServer:
    """Where an MCP server is: a program to start (stdio) or a URL (streamable HTTP)."""

    name: str
    command: str | None = None
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def where(self) -> str:
        return self.command or "" if self.url is None else safe_url(self.url)


class McpTools:
    """The tools of one MCP server, for the responder's toolbox."""

    def __init__(self, server: McpServer, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.server = server
        self.label = f"MCP server {server.name!r}"
        self.connect_timeout_s = connect_timeout_s
        self._client: Client | None = None
        self._tools: list[types.Tool] = []
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self.error: str | None = None

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self._tools]

    async def start(self) -> None:
        """Connect and list the tools (bounded); a failure is logged and leaves no tools."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name=f"voicecall-mcp-{self.server.name}")
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({ready, self._task}, timeout=self.connect_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not self._ready.is_set():
            self.error = self.error or f"no answer within {self.connect_timeout_s:g} s"
            log.warning("%s (%s): no tools: %s", self.label, self.server.where, self.error)
            await self.stop()
        else:
            log.info("%s: tools %s", self.label, ", ".join(self.tool_names) or "(none)")

    async def stop(self) -> None:
        self._stop.set()
        for task in (self._refresh, self._task):
            if task is None or task.done():
                continue
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._client = None

    def _target(self) -> Any:
        s = self.server
        if s.url is not None:
            return streamable_http_client(s.url, http_client=create_mcp_http_client(headers=dict(s.headers)))
        return StdioServerParameters(command=s.command or "", args=list(s.args), env=dict(s.env) or None)

    async def _run(self) -> None:
        try:
            async with Client(self._target(), message_handler=self._on_message) as client:
                self._client = client
                self._tools = list((await client.list_tools()).tools)
                self._ready.set()
                watcher = asyncio.create_task(self._watch(client),
                                              name=f"voicecall-mcp-watch-{self.server.name}")
                try:
                    await self._stop.wait()
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await watcher
        except Exception as exc:
            self.error = str(exc) or type(exc).__name__
            if self._ready.is_set():
                log.warning("%s disconnected: %s", self.label, self.error)
        finally:
            self._client = None
            self._tools = []

    async def _watch(self, client: Client) -> None:
        """List the tools again whenever the server says they changed (a `subscriptions/listen`
        stream on current protocols; older ones notify unasked, see `_on_message`)."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    await self._relist()
        except ListenNotSupportedError:
            return
        except Exception as exc:
            log.info("%s: no tool-change updates: %s", self.label, exc)

    async def _on_message(self, message: Any) -> None:
        changed = isinstance(message, types.ToolListChangedNotification) and self._client is not None
        if changed and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._relist(),
                                                name=f"voicecall-mcp-relist-{self.server.name}")

    async def _relist(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            self._tools = list((await client.list_tools()).tools)
            log.info("%s: tools changed: %s", self.label, ", ".join(self.tool_names) or "(none)")
        except Exception as exc:
            log.warning("%s: could not list its changed tools: %s", self.label, exc)

    def specs(self, ctx: TurnContext) -> list[ToolSpec]:
        return [ToolSpec(t.name, t.description or t.title or t.name, dict(t.input_schema))
                for t in self._tools]

    async def call(self, name: str, arguments: dict[str, Any], ctx: TurnContext) -> ToolOutcome:
        client = self._client
        if client is None:
            return ToolOutcome(f"{self.label} is not connected", is_error=True)
        result = await client.call_tool(name, arguments)
        return ToolOutcome(result_text(result), is_error=bool(result.is_error))


def result_text(result: types.CallToolResult) -> str:
    """A tool result as text for the model: its text parts, else its structured content."""
    texts = [part.text for part in result.content if isinstance(part, types.TextContent)]
    if texts:
        return "\n".join(texts)
    if result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "(no content)"
