"""What every carrier simulator needs besides its carrier's protocol: waiting on a simulated
call's observable state, its directory of calls and scripted far ends, draining its tasks, and
the client it sends webhooks with. (Serving its REST API: `testing/loopback.py`.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

import httpx

__all__ = ["CallDirectory", "Observable", "drain", "run_until", "webhook_client"]


class Observable:
    """State that tests wait on: `_bump()` after every change wakes `wait_until` callers."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def _bump(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def _describe(self) -> str:
        """What a timeout error shows about the current state."""
        return repr(self)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0,  # noqa: ASYNC109
                         what: str = "condition") -> None:
        """Wait until `predicate()` is true; TimeoutError after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {what} within {timeout}s: {self._describe()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))


class _Dialled(Protocol):
    @property
    def to(self) -> str: ...


T = TypeVar("T")
CallT = TypeVar("CallT", bound=_Dialled)
CalleeT = TypeVar("CalleeT")


class CallDirectory(Generic[CallT, CalleeT]):
    """A simulator's calls, its scripted far ends by number, and its simulated clock."""

    def __init__(self, default_callee: CalleeT, time_scale: float) -> None:
        self.default_callee = default_callee
        self.time_scale = time_scale
        self.calls: dict[str, CallT] = {}
        self._scripts: dict[str, CalleeT] = {}

    def script(self, to_number: str, callee: CalleeT) -> None:
        """Outbound calls to `to_number` reach this callee (others get `default_callee`)."""
        self._scripts[to_number] = callee

    def callee_for(self, to_number: str) -> CalleeT:
        return self._scripts.get(to_number, self.default_callee)

    def call(self, call_id: str) -> CallT:
        """The call with this carrier id (KeyError if unknown)."""
        return self.calls[call_id]

    async def wait_for_call(self, *, to: str | None = None, timeout: float = 5.0) -> CallT:  # noqa: ASYNC109
        """The first call (optionally to `to`) once one exists."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for call in self.calls.values():
                if to is None or call.to == to:
                    return call
            if loop.time() > deadline:
                raise TimeoutError(f"no call{' to ' + to if to else ''} within {timeout}s")
            await asyncio.sleep(0.01)

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of simulated time."""
        await asyncio.sleep(max(0.0, seconds) * self.time_scale)


async def drain(tasks: set[asyncio.Task[Any]], grace_s: float) -> None:
    """Let `tasks` (which may spawn more) finish for up to `grace_s`, then cancel the rest."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while tasks and (remaining := deadline - loop.time()) > 0:
        await asyncio.wait(set(tasks), timeout=remaining)
    for task in list(tasks):
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_until(lifecycle: Coroutine[Any, Any, T], ended: asyncio.Event) -> asyncio.Task[T]:
    """Run a call's `lifecycle` until it returns or `ended` is set (it is then cancelled and
    awaited); returns its finished task, to read the result, exception or cancellation from."""
    body = asyncio.create_task(lifecycle)
    ender = asyncio.create_task(ended.wait())
    try:
        await asyncio.wait({body, ender}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ender.cancel()
        if not body.done():
            body.cancel()
        await asyncio.gather(body, ender, return_exceptions=True)
    return body


def webhook_client(timeout_s: float, local_address: str | None = None) -> httpx.AsyncClient:
    """The HTTP client a simulator sends webhooks with (no proxies, no redirects followed),
    optionally from a given local address."""
    transport = httpx.AsyncHTTPTransport(local_address=local_address) if local_address else None
    return httpx.AsyncClient(timeout=timeout_s, trust_env=False, follow_redirects=False,
                             transport=transport)
