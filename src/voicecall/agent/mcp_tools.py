"""User tools from an MCP server (stdio or streamable HTTP), through the official `mcp` client
(docs/decisions.md D101).

The connection is opened at gateway start and kept for the gateway's life, in a task of its own
(the client's context must be entered and left in one task). Its tools are listed once then, and
listed again when the server says they changed (`notifications/tools/list_changed`, subscribed
to with `subscriptions/listen` where the protocol needs it). A server that cannot be reached, or
that goes away later, offers no tools meanwhile and is connected to again with a growing delay
(D94); the gateway still starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import Client, MCPError, types
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost

from voicecall.agent.chat import ToolSpec
from voicecall.agent.tools import ToolOutcome
from voicecall.agent.turn import TurnContext, safe_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)
"""The SDK's own defaults: a server may hold a response stream open for minutes."""


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


@dataclass(frozen=True)
class Reconnect:
    """When to try a lost or unreachable server again: `first_s` after the first failure,
    doubling up to `max_s` (each delay jittered by a fifth, so gateways do not retry in step);
    `probe_s` is how often a server without `subscriptions/listen` is asked for its tools to
    notice it went away."""

    first_s: float = 1.0
    max_s: float = 60.0
    probe_s: float = 15.0

    def delay(self, failures: int) -> float:
        """The wait before attempt `failures + 1` (`failures` >= 1)."""
        base = min(self.max_s, self.first_s * 2 ** min(failures - 1, 30))
        return float(min(self.max_s, base * random.uniform(0.8, 1.2)))


class _Lost(Exception):
    """The connection went away while it was in use."""


class McpTools:
    """The tools of one MCP server, for the responder's toolbox."""

    def __init__(self, server: McpServer, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 reconnect: Reconnect = Reconnect()) -> None:
        self.server = server
        self.label = f"MCP server {server.name!r}"
        self.connect_timeout_s = connect_timeout_s
        self.reconnect = reconnect
        self._client: Client | None = None
        self._tools: list[types.Tool] = []
        self._tried = asyncio.Event()
        """The first connection attempt is over (either way)."""
        self._stop = asyncio.Event()
        self._lost = asyncio.Event()
        """Set when a tool call finds the connection gone; the session then ends."""
        self._task: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self.error: str | None = None
        self.attempts = 0
        """How many times a connection was tried."""
        self.connections = 0
        """How many times a connection was made (1 after a clean start)."""

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self._tools]

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        """Connect and list the tools (bounded); a failure is logged, leaves no tools for now and
        is retried in the background."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name=f"voicecall-mcp-{self.server.name}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), self.connect_timeout_s + STOP_TIMEOUT_S)

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
        self._tools = []

    async def _run(self) -> None:
        """Connect, serve until the connection is lost, wait, connect again; until `stop`."""
        failures = 0
        while not self._stop.is_set():
            before, began = self.connections, asyncio.get_running_loop().time()
            self.attempts += 1
            try:
                await self._session()
            except Exception as exc:
                self.error = describe(exc)
            finally:
                self._client = None
                self._tools = []
                self._tried.set()
            if self._stop.is_set():
                return
            was_connected = self.connections > before
            lasted = asyncio.get_running_loop().time() - began
            # a connection that keeps dropping at once is retried no faster than one that fails
            failures = 1 if was_connected and lasted >= self.reconnect.max_s else failures + 1
            delay = self.reconnect.delay(failures)
            if was_connected:
                log.warning("%s (%s) disconnected: %s; its tools are gone until it is back "
                            "(next try in %.1f s)", self.label, self.server.where, self.error, delay)
            elif failures == 1 or failures % 10 == 0:
                log.warning("%s (%s): no tools: %s (attempt %d; next try in %.1f s)", self.label,
                            self.server.where, self.error, failures, delay)
            else:
                log.info("%s: still unreachable: %s (attempt %d; next try in %.1f s)", self.label,
                         self.error, failures, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _session(self) -> None:
        """One connection: open it and list the tools (within `connect_timeout_s`), then keep it
        until `stop`; raises why it ended otherwise."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    client = await stack.enter_async_context(
                        Client(await self._target(stack), message_handler=self._on_message))
                    tools = list((await client.list_tools()).tools)
            except TimeoutError:
                raise _Lost(f"no answer within {self.connect_timeout_s:g} s") from None
            self._lost.clear()
            self._client, self._tools = client, tools
            self.connections += 1
            self.error = None
            self._tried.set()
            log.info("%s: %s tools %s", self.label, "connected," if self.connections == 1 else
                     "connected again,", ", ".join(self.tool_names) or "(none)")
            watcher = asyncio.create_task(self._watch(client),
                                          name=f"voicecall-mcp-watch-{self.server.name}")
            stop = asyncio.create_task(self._stop.wait())
            lost = asyncio.create_task(self._lost.wait())
            try:
                await asyncio.wait({watcher, stop, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watcher, stop, lost):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if self._stop.is_set():
                return
            failure = watcher.exception() if watcher.done() and not watcher.cancelled() else None
            self.error = describe(failure) if failure else self.error or "the server closed the connection"
            self._client, self._tools = None, []
            raise _Lost(self.error)

    async def _target(self, stack: contextlib.AsyncExitStack) -> Any:
        s = self.server
        if s.url is not None:  # our own HTTP client: the documented way to send headers
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=dict(s.headers), timeout=HTTP_TIMEOUT))
            return streamable_http_client(s.url, http_client=http)
        return StdioServerParameters(command=s.command or "", args=list(s.args), env=dict(s.env) or None)

    async def _watch(self, client: Client) -> None:
        """Follow the connection until it is lost (returns or raises then): list the tools again
        whenever the server says they changed (a `subscriptions/listen` stream on current
        protocols; older ones notify unasked, see `_on_message`, and are asked for their tools
        every `probe_s` so a server that went away is noticed)."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    await self._relist()
        except ListenNotSupportedError:
            pass
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                raise
            log.info("%s: no tool-change updates: %s", self.label, describe(exc))
        await self._probe(client)  # the stream ended (or never was): ask from time to time

    async def _probe(self, client: Client) -> None:
        while True:
            await asyncio.sleep(self.reconnect.probe_s)
            async with asyncio.timeout(self.connect_timeout_s):
                self._tools = list((await client.list_tools(cache_mode="bypass")).tools)

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
            async with asyncio.timeout(self.connect_timeout_s):
                self._tools = list((await client.list_tools(cache_mode="bypass")).tools)
            log.info("%s: tools changed: %s", self.label, ", ".join(self.tool_names) or "(none)")
        except Exception as exc:
            log.warning("%s: could not list its changed tools: %s", self.label, describe(exc))

    def specs(self, ctx: TurnContext) -> list[ToolSpec]:
        return [ToolSpec(t.name, t.description or t.title or t.name, dict(t.input_schema))
                for t in self._tools]

    async def call(self, name: str, arguments: dict[str, Any], ctx: TurnContext) -> ToolOutcome:
        client = self._client
        if client is None:
            why = f": {self.error}" if self.error else ""
            return ToolOutcome(f"{self.label} is not connected{why}; its tools are unavailable "
                               "for now", is_error=True)
        try:
            result = await client.call_tool(name, arguments)
        except MCPError as exc:
            if exc.code != types.CONNECTION_CLOSED:
                raise
            self.error = "connection lost"
            self._lost.set()
            return ToolOutcome(f"{self.label} is not connected: the connection was lost during "
                               f"{name}; its tools are unavailable for now", is_error=True)
        return ToolOutcome(result_text(result), is_error=bool(result.is_error))


def describe(exc: BaseException) -> str:
    """A failure in a few words, for logs and the model: never headers or environment values
    (the SDK's errors do not carry them; URLs are ours to print through `safe_url`)."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return describe(exc.exceptions[0])
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, SubscriptionLost):
        return "connection lost (the server went away)"
    return str(exc) or type(exc).__name__


def result_text(result: types.CallToolResult) -> str:
    """A tool result as text for the model: its text parts, else its structured content."""
    texts = [part.text for part in result.content if isinstance(part, types.TextContent)]
    if texts:
        return "\n".join(texts)
    if result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "(no content)"
