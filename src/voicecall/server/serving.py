"""Serve an ASGI app with uvicorn inside a host program (the gateway, simulators, fakes)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any, Literal

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from voicecall.server.connection_guard import ConnectionGuard, guarded_protocol

STARTUP_TIMEOUT_S = 10.0
WsImpl = Literal["auto", "none", "websockets", "websockets-sansio", "wsproto"]


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host; with `fast_exit` it notices
    `should_exit` within 10 ms instead of uvicorn's 100 ms tick (quick test teardown)."""

    def __init__(self, config: uvicorn.Config, *, fast_exit: bool = False) -> None:
        super().__init__(config)
        self.fast_exit = fast_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def main_loop(self) -> None:
        if not self.fast_exit:
            await super().main_loop()
            return
        while not self.should_exit:  # noqa: ASYNC110 (uvicorn signals exit with a plain attribute)
            await asyncio.sleep(0.01)


async def serve_on(app: Any, sock: socket.socket, *, graceful_shutdown_s: float = 5.0,
                   fast_exit: bool = False, ws: WsImpl | type[asyncio.Protocol] = "none",
                   guard: ConnectionGuard | None = None,
                   startup_timeout_s: float = STARTUP_TIMEOUT_S) -> tuple[EmbeddedServer, asyncio.Task[None]]:
    """Start serving `app` on an already-bound listening socket; returns once it accepts.
    With `guard`, connections get a header deadline and per-client caps (the public port)."""
    http: Any = guarded_protocol(AutoHTTPProtocol, guard) if guard is not None else "auto"
    # proxy_headers off: forwarded headers are trusted only under the webhookSecurity rules.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", ws=ws,
                            http=http, proxy_headers=False,
                            timeout_graceful_shutdown=int(graceful_shutdown_s) or 1)
    server = EmbeddedServer(config, fast_exit=fast_exit)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + startup_timeout_s
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during startup")
            if loop.time() > deadline:
                raise TimeoutError("server did not start in time")
            await asyncio.sleep(0.005)
    except BaseException:
        server.should_exit = True
        task.cancel()
        raise
    return server, task
