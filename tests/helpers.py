"""Small helpers shared by the socket-level tests."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
