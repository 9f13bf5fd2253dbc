"""A carrier simulator's REST listener: an ASGI app served on a loopback port of its own."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from voicecall.server.serving import EmbeddedServer, serve_on

__all__ = ["LoopbackServer"]

STOP_TIMEOUT_S = 5.0


class LoopbackServer:
    """Serves one app on `host:port` (port 0: any free one) until `stop()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    async def start(self, app: Any) -> str:
        """Bind and serve `app`; returns the base URL (`http://host:port`)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family, backlog=128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._server, self._task = await serve_on(app, sock, graceful_shutdown_s=2, fast_exit=True)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving (bounded); a second call does nothing."""
        server, task, self._server, self._task = self._server, self._task, None, None
        if server is None:
            return
        server.should_exit = True
        if task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, STOP_TIMEOUT_S)
