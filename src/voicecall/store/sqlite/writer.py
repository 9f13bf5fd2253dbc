"""Group commit on the event loop: writes submitted close together share one transaction.

A write is an op, a function of the connection. `submit` queues it and returns a future that
resolves once the transaction holding it is committed (or fails). The queue is committed on
the next loop iteration; while it keeps growing (busy webhooks: more writes arrived during the
last iteration) it waits one more iteration, up to `max_delay_s` after its first write and
`max_ops` writes. When writes come one at a time nothing waits; under load a commit's fixed
cost is shared by many writes.

Each op runs inside a SAVEPOINT of its own, so an op that raises is rolled back and fails
alone while the others commit. If the transaction itself fails (BEGIN or COMMIT), every op in
it fails with that error and nothing of it is kept.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], T]
_Queued = tuple[Op[Any], "asyncio.Future[Any]"]
_Outcome = tuple[Any, BaseException | None]

MAX_DELAY_S = 0.010
MAX_OPS = 64
GATE_TIMEOUT_S = 1.0  # the longest a commit waits for the checkpointer (see `checkpointer.py`)


class StoreClosed(RuntimeError):
    """A write was submitted to, or left pending in, a closed store."""


class GroupCommitWriter:
    """Commits the ops submitted from one event loop on one connection (see the module)."""

    def __init__(self, conn: sqlite3.Connection, gate: threading.Lock, *,
                 max_delay_s: float = MAX_DELAY_S, max_ops: int = MAX_OPS,
                 on_commit: Callable[[int], object] | None = None) -> None:
        self._conn = conn
        self._gate = gate  # also taken by the checkpointer when it restarts the WAL
        self.max_delay_s = max_delay_s
        self.max_ops = max(1, max_ops)
        self.on_commit = on_commit  # told each committed transaction's op count
        self._pending: list[_Queued] = []
        self._opened_at = 0.0  # loop time of the pending batch's first op
        self._seen = 0  # the batch's size when last looked at
        self._closed = False

    def submit(self, op: Op[T]) -> asyncio.Future[T]:
        """Queue `op`; the future resolves with its result once it is committed."""
        if self._closed:
            raise StoreClosed("store is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        batch = self._pending
        batch.append((op, fut))
        if len(batch) >= self.max_ops:
            self.flush()
        elif len(batch) == 1:
            self._opened_at = loop.time()
            self._seen = 1
            loop.call_soon(self._gather, loop, batch)
        return fut

    def _gather(self, loop: asyncio.AbstractEventLoop, batch: list[_Queued]) -> None:
        if batch is not self._pending:
            return  # committed already (full, or flushed by `close`)
        if self._seen < len(batch) and loop.time() - self._opened_at < self.max_delay_s:
            self._seen = len(batch)
            loop.call_soon(self._gather, loop, batch)
            return
        self.flush()

    def flush(self) -> None:
        """Commit whatever is pending now."""
        batch, self._pending = self._pending, []
        if batch:
            self._commit(batch)

    def close(self) -> None:
        """Commit what is pending; later submits fail."""
        self.flush()
        self._closed = True

    def _commit(self, batch: list[_Queued]) -> None:
        conn = self._conn
        outcomes: list[_Outcome] | None = None
        failure: BaseException | None = None
        gated = self._gate.acquire(timeout=GATE_TIMEOUT_S)
        try:
            outcomes = _transaction(conn, [op for op, _fut in batch])
        except Exception as exc:
            failure = exc
        finally:
            if gated:
                self._gate.release()
            _resolve(batch, outcomes, failure)
        if outcomes is not None and self.on_commit is not None:
            self.on_commit(len(batch))


def _transaction(conn: sqlite3.Connection, ops: list[Op[Any]]) -> list[_Outcome]:
    """Run `ops` in one committed transaction, each in a savepoint of its own."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [_isolated(conn, op) for op in ops]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _isolated(conn: sqlite3.Connection, op: Op[Any]) -> _Outcome:
    conn.execute("SAVEPOINT op")
    try:
        value = op(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return None, exc
    conn.execute("RELEASE op")
    return value, None


def _resolve(batch: list[_Queued], outcomes: list[_Outcome] | None,
             failure: BaseException | None) -> None:
    """Settle every future of `batch`: with its op's outcome if the transaction committed,
    else with the transaction's error."""
    for i, (_op, fut) in enumerate(batch):
        if fut.done():  # cancelled by its waiter; the write committed (or not) all the same
            continue
        if outcomes is None:
            fut.set_exception(failure or StoreClosed("the transaction was not committed"))
            continue
        value, error = outcomes[i]
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)
