"""Per-call named timers on the event loop (max duration, ring timeout, notify hang-up)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class TimerSet:
    """At most one timer per (call, kind); scheduling again replaces the old one."""

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def schedule(self, call_id: str, kind: str, delay_s: float,
                 action: Callable[[], Awaitable[object]]) -> None:
        self.cancel(call_id, kind)
        key = (call_id, kind)

        async def run() -> None:
            await asyncio.sleep(max(0.0, delay_s))
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]
            try:
                await action()
            except Exception:
                log.exception("timer %s for call %s failed", kind, call_id)

        self._tasks[key] = asyncio.create_task(run(), name=f"timer:{kind}:{call_id}")

    def pending(self, call_id: str) -> list[str]:
        return [kind for (cid, kind), t in self._tasks.items() if cid == call_id and not t.done()]

    def cancel(self, call_id: str, kind: str | None = None) -> None:
        """Cancel one kind of timer, or every timer of the call. Never cancels the caller."""
        current = asyncio.current_task()
        for key in [k for k in self._tasks if k[0] == call_id and (kind is None or k[1] == kind)]:
            task = self._tasks.pop(key)
            if task is not current:
                task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
