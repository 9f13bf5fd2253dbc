"""What the fake realtime model servers share: one WebSocket route on a loopback server, its
clients' JSON messages, the background tasks their scripts spawn (cancelled on exit), and
waiting for a condition."""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Self

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from voicecall.testing.fakes.openai_server import LoopbackServer

__all__ = ["ModelServer"]


class ModelServer(ABC):
    """A scripted model server on 127.0.0.1 answering WebSockets at `path` with `_endpoint`."""

    def __init__(self, path: str, *, host: str, port: int) -> None:
        self.host = host
        self._tasks: set[asyncio.Task[None]] = set()
        endpoint: Callable[[WebSocket], Awaitable[None]] = self._endpoint
        self._loopback = LoopbackServer(Starlette(routes=[WebSocketRoute(path, endpoint)]),
                                        host=host, port=port, ws="websockets")

    @abstractmethod
    async def _endpoint(self, websocket: WebSocket) -> None:
        """Serve one client connection."""

    @abstractmethod
    async def end_session(self, *, code: int = 1000) -> None:
        """Close the newest session from the model's side."""

    async def __aenter__(self) -> Self:
        await self._loopback.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.end_session(code=1001)
        await self._loopback.stop()

    async def wait_until(self, predicate: Callable[[], bool], within_s: float = 5.0) -> None:
        deadline = time.monotonic() + within_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.005)

    @staticmethod
    async def _json_messages(websocket: WebSocket) -> AsyncIterator[dict[str, Any]]:
        """The client's text frames, parsed as JSON, until it disconnects (binary ones skipped)."""
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                yield json.loads(text)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
