"""Asynchronous `continue`: start it now, collect its result later (continue.start/.result)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from voicecall.service.errors import CallError

OPERATION_TTL_S = 600.0
"""A finished operation nobody collected is forgotten after this long."""


@dataclass(slots=True)
class Operation:
    call_id: str
    task: asyncio.Task[str]
    created: float = field(default_factory=time.monotonic)


class Operations:
    """Background `continue` operations by operation id."""

    def __init__(self) -> None:
        self._operations: dict[str, Operation] = {}

    def start(self, call_id: str, work: Coroutine[Any, Any, str]) -> str:
        """Run `work` in the background; returns the operation id to poll."""
        self._prune()
        operation_id = uuid.uuid4().hex
        task = asyncio.create_task(work, name=f"continue:{call_id}")
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        self._operations[operation_id] = Operation(call_id=call_id, task=task)
        return operation_id

    async def result(self, operation_id: str, wait_s: float = 0) -> dict[str, Any]:
        """The operation's outcome, waiting up to `wait_s` for it; a finished one is forgotten."""
        op = self._operations.get(operation_id)
        if op is None:
            raise CallError(f"Operation not found: {operation_id}", code=-32004)
        if wait_s > 0 and not op.task.done():
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(op.task), wait_s)
        if not op.task.done():
            return {"operationId": operation_id, "done": False, "callId": op.call_id}
        del self._operations[operation_id]
        exc = op.task.exception()
        if exc is not None:
            return {"operationId": operation_id, "done": True, "success": False,
                    "callId": op.call_id, "error": str(exc)}
        return {"operationId": operation_id, "done": True, "success": True,
                "callId": op.call_id, "transcript": op.task.result()}

    def tasks(self) -> list[asyncio.Task[str]]:
        return [op.task for op in self._operations.values()]

    def _prune(self) -> None:
        cutoff = time.monotonic() - OPERATION_TTL_S
        for key in [k for k, op in self._operations.items()
                    if op.task.done() and op.created < cutoff]:
            del self._operations[key]
