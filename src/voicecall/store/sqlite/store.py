"""`SQLiteCallStore`: the call store on one SQLite file, used from one event loop.

Writes go through the group-commit writer and are committed before their coroutine returns;
reads run directly on the same connection, between commits, so they see committed data only.
docs/store.md describes the tables and what is written when.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from voicecall.calls.model import CallRecord
from voicecall.store.protocol import CallQuery, LogEntry
from voicecall.store.sqlite import export, log, records, replay, sessions
from voicecall.store.sqlite.checkpointer import Checkpointer
from voicecall.store.sqlite.connection import DB_NAME, connect
from voicecall.store.sqlite.schema import prepare
from voicecall.store.sqlite.writer import GroupCommitWriter, Op, StoreClosed

if TYPE_CHECKING:
    from voicecall.store.protocol import CallStore

T = TypeVar("T")

PRUNE_EVERY_WRITES = 500


class SQLiteCallStore:
    """Calls, the log, replay keys and carrier state in `<directory>/calls.sqlite3`."""

    def __init__(
        self, directory: str | Path, *, max_log_rows: int = 200_000,
        max_ended_calls: int = 20_000, replay_ttl_ms: int = 24 * 3600 * 1000,
    ) -> None:
        if max_log_rows < 1:
            # Retention keeps the newest row, so a `seq` is never handed out twice.
            raise ValueError("max_log_rows must be at least 1")
        self.directory = Path(directory).expanduser()
        self.path = self.directory / DB_NAME
        self.max_log_rows = max_log_rows
        self.max_ended_calls = max_ended_calls
        self.replay_ttl_ms = replay_ttl_ms
        self._conn: sqlite3.Connection | None = None
        self._writer: GroupCommitWriter | None = None
        self._checkpointer: Checkpointer | None = None
        self._writes_since_prune = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Create the directory and the tables (or migrate an older file), then start the
        background checkpointer. Opening an open store does nothing."""
        if self._conn is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        try:
            prepare(conn)
        except BaseException:
            conn.close()
            raise
        gate = threading.Lock()
        self._conn = conn
        self._writer = GroupCommitWriter(conn, gate)
        self._checkpointer = Checkpointer(self.path, gate)
        self._checkpointer.start()

    def close(self) -> None:
        """Commit pending writes, stop the checkpointer and close the file."""
        conn, writer, checkpointer = self._conn, self._writer, self._checkpointer
        if conn is None:
            return
        try:
            if writer is not None:
                writer.close()
        finally:
            if checkpointer is not None:
                checkpointer.stop()
            conn.close()
            self._conn = self._writer = self._checkpointer = None

    async def __aenter__(self) -> Self:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def _write(self, op: Op[T]) -> T:
        """Run `op` in a write transaction that is committed before this returns. Every
        PRUNE_EVERY_WRITES writes, retention joins the same commit."""
        writer = self._writer
        if writer is None:
            raise StoreClosed("store is not open")
        fut = writer.submit(op)
        self._writes_since_prune += 1
        if self._writes_since_prune >= PRUNE_EVERY_WRITES:
            self._writes_since_prune = 0
            writer.submit(self._retention()).add_done_callback(_ignore_outcome)
        return await fut

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StoreClosed("store is not open")
        return query(self._conn)

    def _retention(self) -> Op[None]:
        return log.retention_op(self.max_log_rows, self.max_ended_calls)

    async def prune(self) -> None:
        """Apply retention now (it also runs by itself every PRUNE_EVERY_WRITES writes)."""
        await self._write(self._retention())

    # -- records and the log -----------------------------------------------------------------
    async def save(self, record: CallRecord, *, events: Iterable[dict[str, Any]] = (),
                   turn: dict[str, Any] | None = None) -> bool:
        """Persist the record as it is now, with its events, a snapshot when its state changed
        (and always for a terminal state) and its turn; committed before this returns.
        True when the state differs from the stored one (or the call is new)."""
        return await self._write(records.save_op(record, events, turn))

    async def get(self, call_id: str) -> CallRecord | None:
        """A call by our id, or else by the carrier's id."""
        return self._read(lambda conn: records.get(conn, call_id))

    async def live_calls(self) -> list[CallRecord]:
        """Calls not in a terminal state, oldest first."""
        return self._read(records.live)

    async def recent_calls(self, limit: int = 50) -> list[CallRecord]:
        """The most recently updated calls, newest first."""
        return self._read(lambda conn: records.recent(conn, limit))

    async def list_calls(self, query: CallQuery) -> list[CallRecord]:
        """Live and ended calls matching `query`, newest start first."""
        return self._read(lambda conn: records.query(conn, query))

    async def state_history(self, call_id: str) -> list[dict[str, Any]]:
        """The states a call went through, in order, with the time each was first persisted."""
        return self._read(lambda conn: log.state_history(conn, call_id))

    async def log_since(self, after_seq: int, limit: int = 500,
                        kinds: tuple[str, ...] | None = None) -> list[LogEntry]:
        return self._read(lambda conn: log.since(conn, after_seq, limit, kinds))

    async def last_log(self, limit: int, kinds: tuple[str, ...] | None = None) -> list[LogEntry]:
        return self._read(lambda conn: log.last(conn, limit, kinds))

    # -- replay and rejected keys ------------------------------------------------------------
    async def lookup_replay(self, key: str) -> dict[str, Any] | None:
        """The reply stored for an already-applied request (`{}` if it was stored without
        one); None if the key is unknown or expired."""
        return self._read(lambda conn: replay.lookup(conn, key))

    async def remember_reply(self, key: str, reply: dict[str, Any]) -> None:
        """Record a request as applied, with the reply it got; committed before this returns,
        so a replay, even after a restart, gets the same reply. A key that is stored and live
        keeps its first reply."""
        await self._write(replay.remember_op(key, reply, self.replay_ttl_ms))

    async def add_rejected_key(self, key: str) -> bool:
        """Remember a rejected inbound call's dedupe key; True if it was new."""
        return await self._write(replay.add_rejected_op(key))

    async def is_rejected(self, key: str) -> bool:
        return self._read(lambda conn: replay.is_rejected(conn, key))

    async def forget_rejected_key(self, key: str) -> None:
        await self._write(replay.forget_rejected_op(key))

    # -- carrier-side state and conversation memory ------------------------------------------
    async def put_provider_state(self, call_id: str, data: dict[str, Any]) -> None:
        await self._write(sessions.put_provider_state_op(call_id, data))

    async def get_provider_state(self, call_id: str) -> dict[str, Any] | None:
        return self._read(lambda conn: sessions.provider_state(conn, call_id))

    async def session_messages(self, key: str) -> list[dict[str, Any]]:
        """The remembered chat messages of a session, oldest first."""
        return self._read(lambda conn: sessions.session_messages(conn, key))

    async def append_session(self, key: str, messages: list[dict[str, Any]], *,
                             keep: int = 200) -> None:
        """Add messages to a session's memory, keeping the newest `keep`."""
        await self._write(sessions.append_session_op(key, messages, keep))

    # -- calls.jsonl import / export ---------------------------------------------------------
    async def export_jsonl(self, path: str | Path) -> int:
        """Write every snapshot in the log as one CallRecord JSON per line; returns the count."""
        return self._read(lambda conn: export.export(conn, Path(path)))

    async def import_jsonl(self, path: str | Path) -> int:
        """Load a calls.jsonl (the last snapshot per call wins, replacing a stored call of the
        same id); invalid lines are skipped. Returns how many calls were imported."""
        return await self._write(records.import_op(export.read(Path(path))))


def _ignore_outcome(fut: asyncio.Future[None]) -> None:
    """Retention that ran by itself failed alone (its savepoint); the next pass tries again."""
    if not fut.cancelled():
        fut.exception()


if TYPE_CHECKING:
    def _conforms(store: SQLiteCallStore) -> CallStore:
        return store  # mypy checks here that SQLiteCallStore is a CallStore
