"""SQLite call store (WAL): every change is committed before the caller goes on (so a webhook is
acknowledged only after its write), cheaply: commits append to the WAL and a background thread
checkpoints it.

Tables:
- `calls`: the current record of every call (JSON without its transcript and dedupe keys, which
  grow: they live in `call_items`, so an event writes only what it adds);
- `call_items`: a call's transcript entries and processed-event (dedupe) keys, in order, one row
  per save that added any (an event's key and the transcript entry it added share a row). The
  row id is the call's `calls` rowid in the high 32 bits and a per-call sequence number in the
  low 32: one plain table B-tree whose interior pages hold only integers, in which each call's
  rows are contiguous, so a load reads one range;
- `recent_items`: where saves put new `call_items` rows (their ids already assigned), appended in
  commit order, so the saves of one transaction share its last page or two; moved into
  `call_items` every FOLD_ROWS rows, in id order, so each call's range there grows a page at a
  time. Inserting each row straight into its call's range dirtied about 1.7 pages per save (the
  end of a range is in the middle of the tree: a page and its neighbours are rebalanced every few
  inserts); before `call_items`, separate transcript and key tables dirtied about 3.4. Reads
  take a call's rows from both tables in one statement;
- `log`: append-only snapshots, events and turns (`tail`, `latency`), newest kept up to a cap;
  `seq` is a plain rowid (one past the largest), not AUTOINCREMENT (which reads and writes
  `sqlite_sequence` on every insert, about 1 % of a webhook's cost): retention never deletes the
  newest row, so no `seq` is ever handed out twice and `tail` cursors stay valid. Stores made
  before keep their AUTOINCREMENT table, which behaves the same;
- `request_keys`: verified webhook identities with an expiry and the reply each got (replays
  survive restarts, SPEC Q12), found through an index on `(run, digest)`: `run` numbers
  consecutive stretches of keys (KEY_RUN_MIN_KEYS or more each, see `_KeyRuns`) and `digest`
  is a 64-bit digest of the key. A new key lands in the current run's small subtree, whose
  pages a transaction's keys share, instead of on a random leaf of an index over every key
  (one page written per key); a lookup seeks once per live run (~2 us each), and a Bloom
  filter spares new requests (all but ~0.4 %) any lookup;
- `rejected_keys`: dedupe keys of rejected inbound calls (SPEC Q15);
- `provider_state`: carrier-side state a call needs after a restart (SPEC Q11).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic_core import PydanticSerializationError, to_json

from voicecall.calls.model import TERMINAL_STATES, CallRecord, TranscriptEntry

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    provider_call_id TEXT,
    state TEXT NOT NULL,
    terminal INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_provider_id ON calls(provider_call_id);
CREATE INDEX IF NOT EXISTS calls_live ON calls(terminal, started_at);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    call_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_turns ON log(seq) WHERE kind = 'turn';
CREATE INDEX IF NOT EXISTS log_snapshots ON log(call_id, seq) WHERE kind = 'snapshot';
CREATE TABLE IF NOT EXISTS request_keys (
    digest INTEGER NOT NULL, key TEXT NOT NULL, expires_at INTEGER NOT NULL, reply TEXT,
    run INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS call_items (id INTEGER PRIMARY KEY, key TEXT, entry TEXT);
CREATE TABLE IF NOT EXISTS recent_items (
    seq INTEGER PRIMARY KEY, id INTEGER NOT NULL, key TEXT, entry TEXT
);
CREATE TABLE IF NOT EXISTS rejected_keys (key TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS provider_state (call_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY, messages TEXT NOT NULL, updated_at INTEGER NOT NULL
);
"""

DB_NAME = "calls.sqlite3"
CHECKPOINT_INTERVAL_S = 1.0
RESET_FRAMES = 16_384  # 64 MiB of WAL with 4 KiB pages
PRUNE_EVERY_WRITES = 500
FOLD_ROWS = 2_048
MAX_KEYS_KEPT = 500
EXPIRED_REPLAY_KEYS_PER_PRUNE = 5_000
CACHE_KIB = 64 * 1024
GROUP_COMMIT_MAX_DELAY_S = 0.010
GROUP_COMMIT_MAX_OPS = 64  # a commit of 64 webhooks' writes holds the loop for a few ms
KEY_RUN_MIN_KEYS = 1_024  # a run's subtree: ~5 index pages, shared by a transaction's keys
KEY_RUNS_PER_STORE = 128  # runs grow with the live keys to keep about this many
_HEAD_EXCLUDE = {"transcript", "processed_event_ids"}
_ITEM_BITS = 32  # call_items.id = calls.rowid << _ITEM_BITS | per-call sequence number
_ITEM_MASK = (1 << _ITEM_BITS) - 1


_stdlib_json = json.JSONEncoder(separators=(",", ":")).encode


def _json(obj: Any) -> str:
    """`obj` as compact ASCII JSON text (one event's is written per webhook), by pydantic-core's
    serializer: under half the cost of the standard library's C encoder for a small dict, and
    the text `json.dumps(obj, separators=(",", ":"))` writes (but for the exponent of a very
    small float: `1.5e-7`, not `1.5e-07`). What it cannot write (a lone surrogate, a type JSON
    has no form for) goes to the standard library, which escapes the one and refuses the
    other with its usual TypeError."""
    try:
        return to_json(obj, ensure_ascii=True).decode()
    except PydanticSerializationError:
        return _stdlib_json(obj)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One row of the append-only log: a record snapshot, an event, or a completed turn."""

    seq: int
    at: int
    call_id: str
    kind: str
    data: dict[str, Any]

    def to_json_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "callId": self.call_id, "kind": self.kind,
                "data": self.data}


_Op = Callable[[sqlite3.Connection], Any]


def _now_ms() -> int:
    return int(time.time() * 1000)


class SQLiteCallStore:
    """Call store on one SQLite file, used from the event loop; each operation commits in its
    own transaction before its coroutine resumes."""

    def __init__(
        self, directory: str | Path, *, max_log_rows: int = 200_000,
        max_ended_calls: int = 20_000, replay_ttl_ms: int = 24 * 3600 * 1000,
    ) -> None:
        if max_log_rows < 1:
            # Retention keeps the newest row, so a `seq` is never handed out twice (see SCHEMA).
            raise ValueError("max_log_rows must be at least 1")
        self.directory = Path(directory).expanduser()
        self.path = self.directory / DB_NAME
        self.max_log_rows = max_log_rows
        self.max_ended_calls = max_ended_calls
        self.replay_ttl_ms = replay_ttl_ms
        self._conn: sqlite3.Connection | None = None
        self._batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._batch_opened = 0.0  # loop time of the batch's first write
        self._batch_seen = 0  # its size when last looked at
        self._writes_since_prune = 0
        self._recent_rows = FOLD_ROWS  # unknown until the first fold: fold soon
        # What the database holds per live call, as of the open transaction (so writes that
        # share one see each other's rows); all cleared when a transaction or an op fails.
        self._stored: dict[str, _Stored] = {}
        self._appends = _Appends()
        self._replay_filter = _KeyFilter()
        self._key_runs = _KeyRuns()
        self._last_reply: tuple[dict[str, Any], str] | None = None
        self._checkpointer: threading.Thread | None = None
        self._write_gate = threading.Lock()  # held by the checkpointer's WAL-restarting pass
        self._closing = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Create the directory and schema, then start the background checkpointer."""
        if self._conn is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        _prepare(conn)
        _migrate_request_keys(conn)
        self._replay_filter = _KeyFilter.of(_live_digests(conn))
        self._key_runs = _KeyRuns.of(conn)
        self._conn = conn
        self._closing.clear()
        self._checkpointer = threading.Thread(target=self._checkpoint_forever, daemon=True,
                                              name="voicecall-store-checkpoint")
        self._checkpointer.start()

    def close(self) -> None:
        if self._conn is None:
            return
        if self._batch:
            self._commit_batch()
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=30)
            self._checkpointer = None
        self._conn.close()
        self._conn = None

    async def __aenter__(self) -> SQLiteCallStore:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        # Checkpoints (and their fsync) run on a background connection, never inside a commit
        # that a webhook is waiting for.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        # The replay-key and per-call indexes are read and written at random places: keep
        # their pages in memory (the default cache is 2 MiB) instead of re-reading them.
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        return conn

    def _checkpoint_forever(self) -> None:
        """Move the WAL into the database every second, off the request path."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        try:
            while not self._closing.wait(CHECKPOINT_INTERVAL_S):
                # PASSIVE never blocks the writer. Once a pass has copied every frame, the next
                # write transaction starts the WAL over from the beginning. Under steady load a
                # commit nearly always lands during the pass, so that never happens and the
                # WAL grows without end: past RESET_FRAMES, a second pass copies the frames
                # written during the first, and a last one the few written during the second,
                # with commits held back (a stall of a few ms to a few tens of ms, rare), so the
                # WAL starts over.
                with contextlib.suppress(sqlite3.Error):
                    _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames >= RESET_FRAMES:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        with self._write_gate:
                            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Retention: cap the log and the ended-call history; drop expired replay keys.

        Each step touches only what it deletes (no scans of the big tables): ended calls beyond
        the cap and their rows, and expired replay keys oldest first (keys are inserted in
        expiry order, and a lookup ignores an expired key that is still there).
        """
        conn.execute("DELETE FROM log WHERE seq <= (SELECT MAX(seq) FROM log) - ?",
                     (self.max_log_rows,))
        ended = conn.execute("SELECT COUNT(*) FROM calls WHERE terminal = 1").fetchone()[0]
        if ended > self.max_ended_calls:
            rows = conn.execute(
                "SELECT call_id, rowid FROM calls WHERE terminal = 1 ORDER BY updated_at DESC"
                " LIMIT -1 OFFSET ?", (self.max_ended_calls,)).fetchall()
            gone = [(cid,) for cid, _no in rows]
            gone_nos = [no for _cid, no in rows]
            for table in ("calls", "provider_state"):
                conn.executemany(f"DELETE FROM {table} WHERE call_id=?", gone)
            for table in ("call_items", "recent_items"):
                conn.executemany(f"DELETE FROM {table} WHERE id BETWEEN ? AND ?",
                                 [_item_range(no) for no in gone_nos])
        conn.execute("DELETE FROM provider_state WHERE call_id NOT IN (SELECT call_id FROM calls)")
        # Only when the oldest key has expired: the delete reads its whole window of keys
        # (about 2 ms per pass for 5 000 live keys, every PRUNE_EVERY_WRITES writes).
        now = _now_ms()
        oldest = conn.execute("SELECT expires_at FROM request_keys ORDER BY rowid LIMIT 1").fetchone()
        if oldest is not None and oldest[0] < now:
            conn.execute("DELETE FROM request_keys WHERE rowid IN (SELECT rowid FROM request_keys"
                         " ORDER BY rowid LIMIT ?) AND expires_at < ?",
                         (EXPIRED_REPLAY_KEYS_PER_PRUNE, now))
        if self._replay_filter.count > self._replay_filter.capacity:
            self._replay_filter = _KeyFilter.of(_live_digests(conn))

    async def prune(self) -> None:
        """Apply retention now (it also runs by itself every 500 writes)."""
        await self._submit(self._prune)

    async def _submit(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` in a write transaction that is committed before this returns. It may read
        and write anything: the rows that earlier ops of the transaction appended are written
        first (see `_Appends`)."""
        appends = self._appends

        def flushed_op(conn: sqlite3.Connection) -> T:
            appends.flush(conn)
            return op(conn)

        return await self._enqueue(flushed_op)

    def _enqueue(self, op: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue `op` for the next group commit; the future resolves once it is committed.

        Group commit on the event loop: writes submitted close together share one transaction
        (see `_gather_or_commit`). In WAL mode with synchronous=NORMAL a commit is one append to
        the WAL (fsync happens in the background checkpointer), so this costs less than a round
        trip to a writer thread. A commit survives the process being killed; only an OS crash
        or power loss can lose the newest transactions. One failing op fails alone (see
        `_commit_batch`).
        """
        if self._conn is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        batch = self._batch
        batch.append((op, fut))
        if len(batch) == 1:
            self._batch_opened = loop.time()
            self._batch_seen = 1
            loop.call_soon(self._gather_or_commit, loop, batch)
        return fut

    def _gather_or_commit(self, loop: asyncio.AbstractEventLoop, batch: list[Any]) -> None:
        """Commit the open batch one loop iteration after its first write, or later while it
        still grows: a write that arrived during the last iteration means more are on their
        way (busy webhooks), so the batch waits one more iteration, up to
        GROUP_COMMIT_MAX_DELAY_S after its first write and GROUP_COMMIT_MAX_OPS writes.

        This is PostgreSQL's `commit_delay` with `commit_siblings`, made adaptive: when writes
        come one at a time (a quiet gateway) nothing grows and nothing waits; under load a
        commit's fixed cost (the WAL frames of the pages that every transaction touches: the
        tables' last pages, the database header) is shared by several times more writes.
        """
        if batch is not self._batch:
            return  # committed already (by `close`)
        size = len(batch)
        if (self._batch_seen < size < GROUP_COMMIT_MAX_OPS
                and loop.time() - self._batch_opened < GROUP_COMMIT_MAX_DELAY_S):
            self._batch_seen = size
            loop.call_soon(self._gather_or_commit, loop, batch)
            return
        self._commit_batch()

    def _commit_batch(self) -> None:
        """Commit the pending ops in one transaction and resolve their futures.

        The ops run one after another with no savepoints (each costs two statements); if one
        raises, the whole transaction is rolled back and the batch runs again with a savepoint
        around each op, so only the failing one fails. Ops are re-runnable: they change nothing
        outside the database but the per-call caches, which a failure clears.
        """
        batch, self._batch = self._batch, []
        conn = self._conn
        if conn is None:
            for _op, fut in batch:
                if not fut.done():
                    fut.set_exception(RuntimeError("store is closed"))
            return
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        try:
            try:
                results = self._transaction(conn, batch, isolate=False)
            except _OpFailed as failed:
                self._clear_caches()
                if len(batch) == 1:
                    results = [(batch[0][1], None, failed.error)]
                else:
                    results = self._transaction(conn, batch, isolate=True)
        except Exception as exc:  # the transaction itself failed: nothing in it committed
            self._clear_caches()
            results = [(fut, None, exc) for _op, fut in batch]
        for fut, value, error in results:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(value)

    def _transaction(self, conn: sqlite3.Connection,
                     batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]],
                     *, isolate: bool) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """Run `batch` in one committed transaction. Without `isolate`, an op that raises rolls
        everything back (`_OpFailed`); with it, each op has a savepoint and fails alone."""
        with self._write_gate:
            return self._run(conn, batch, isolate=isolate)

    def _run(self, conn: sqlite3.Connection,
             batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]],
             *, isolate: bool) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        appends = self._appends
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op, fut in batch:
                if not isolate:
                    try:
                        value = op(conn)
                    except Exception as exc:
                        raise _OpFailed(exc) from exc
                    results.append((fut, value, None))
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    value = op(conn)
                    appends.flush(conn)  # inside the savepoint: a failing op's rows go with it
                except Exception as exc:
                    appends.clear()
                    conn.execute("ROLLBACK TO op")
                    self._clear_caches()
                    results.append((fut, None, exc))
                else:
                    results.append((fut, value, None))
                conn.execute("RELEASE op")
            try:
                appends.flush(conn)
            except Exception as exc:  # one op's rows, surely: run again with each op alone
                raise _OpFailed(exc) from exc
            if self._recent_rows >= FOLD_ROWS:
                _fold(conn)
                self._recent_rows = 0
            self._writes_since_prune += len(batch)
            if self._writes_since_prune >= PRUNE_EVERY_WRITES:
                self._writes_since_prune = 0
                self._prune(conn)
            conn.execute("COMMIT")
        except BaseException:
            appends.clear()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _clear_caches(self) -> None:
        self._stored.clear()

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only `op` (no write transaction)."""
        if self._conn is None:
            raise RuntimeError("store is not open")
        return op(self._conn)

    def run_sync(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run one operation from a thread with no event loop (CLI reads)."""
        conn = self._connect()
        try:
            _prepare(conn)
            return op(conn)
        finally:
            conn.close()

    # -- records -----------------------------------------------------------------------------
    def save(self, record: CallRecord, *, events: Iterable[dict[str, Any]] = (),
             turn: dict[str, Any] | None = None,
             reply: ReplyWrite | None = None) -> asyncio.Future[None]:
        """Persist the current record, append its snapshot (and any events/turn) to the log;
        await the result (a future, not a coroutine: one frame less on every webhook's path).

        Writes only what changed since the last save of the call: the `calls` row when its head
        (the record without transcript and dedupe keys) changed, the new transcript entries and
        dedupe keys, and the log rows. `updated_at` is therefore when the head last changed.
        `reply` (from `reply_write`) is written in the same transaction.

        The head is serialized only when one of its fields or a top-level metadata entry was
        assigned since the last write, so nothing may change a metadata value in place (event
        application and the service assign at the top level, as rollback points also assume).
        """
        # The record's field dict, read once (a pydantic model's attributes are slow to read):
        # the same object for as long as the record lives, so `op` reads it when it runs.
        values = record.__dict__
        cid: str = values["call_id"]
        state = values["state"].value
        terminal = values["state"] in TERMINAL_STATES
        # Event application sets fields and top-level metadata keys only (as rollback points
        # assume): the same field values and metadata entries mean the same head, and the
        # comparison (identity first: the transcript and key lists are the same objects) costs
        # a fraction of serializing it. The fields are copied only when they changed.
        known_rows = self._stored.get(cid)
        basis = known_rows.fields if known_rows is not None else None
        fields: tuple[dict[str, Any], dict[str, Any]] | None = None
        head: str | None = None  # None: unchanged as of this call
        if (terminal or basis is None or basis[0] != values
                or basis[1] != values["metadata"]):
            head, fields = _head_of(record)
        event_rows = [_json(e) for e in events]
        turn_text = _json(turn) if turn is not None else None

        appends = self._appends

        def op(conn: sqlite3.Connection) -> None:
            now = _now_ms()
            stored_rows = self._stored.get(cid)
            written, written_fields = head, fields
            if written is None and (stored_rows is None or stored_rows.fields is not basis):
                # An earlier save in this transaction wrote other head fields (never under the
                # per-call lock, which keeps one save per call in flight; checked anyway).
                written, written_fields = _head_of(record)
            if written is not None and (terminal or stored_rows is None
                                        or stored_rows.head != written):
                conn.execute(
                    "INSERT INTO calls(call_id, provider_call_id, state, terminal, started_at,"
                    " updated_at, record) VALUES (?,?,?,?,?,?,?) ON CONFLICT(call_id) DO UPDATE"
                    " SET provider_call_id=excluded.provider_call_id, state=excluded.state,"
                    " terminal=excluded.terminal, updated_at=excluded.updated_at,"
                    " record=excluded.record",
                    (cid, values["provider_call_id"], state, int(terminal), values["started_at"],
                     now, written),
                )
            transcript: list[TranscriptEntry] = values["transcript"]
            keys: list[str] = values["processed_event_ids"]
            if stored_rows is None:  # read once the `calls` row exists (written just above)
                appends.flush(conn)
                stored_rows = _Stored(*_stored_items(conn, cid))
            stored, known, top = stored_rows.entries, stored_rows.keys, stored_rows.top
            if stored > len(transcript):  # rolled back in memory: drop what is gone
                appends.flush(conn)
                _fold(conn)
                _drop_entries(conn, top, stored - len(transcript))
                stored = len(transcript)
            new_keys = _new_keys(keys, known)
            if stored == len(transcript) - 1 and len(new_keys) <= 1:  # the usual case
                top += 1
                self._recent_rows += 1
                appends.items.append((top, new_keys[0] if new_keys else None,
                                      transcript[stored].to_json()))
            elif stored < len(transcript) or new_keys:
                entries = [e.to_json() for e in transcript[stored:]]
                items = [(top + i + 1, new_keys[i] if i < len(new_keys) else None,
                          entries[i] if i < len(entries) else None)
                         for i in range(max(len(entries), len(new_keys)))]
                appends.items.extend(items)
                top += len(items)
                self._recent_rows += len(items)
                # Rows holding only a key are dropped once MAX_KEYS_KEPT newer keys exist (a
                # load reads no more), checked every MAX_KEYS_KEPT rows rather than per save.
                if (top - len(items)) // MAX_KEYS_KEPT != top // MAX_KEYS_KEPT:
                    _trim_keys(conn, top)
            rows = [(now, cid, "event", e) for e in event_rows]
            # A snapshot row when the state changes (as the original's calls.jsonl), and always
            # for the final one; the `calls` row holds the current record in between.
            if terminal or stored_rows.state != state:
                rows.append((now, cid, "snapshot", record.to_json()))
            if turn_text is not None:
                rows.append((now, cid, "turn", turn_text))
            appends.log.extend(rows)
            if reply is not None:
                reply(conn)
            # What the database now holds for the call (this transaction included).
            if terminal:
                self._stored.pop(cid, None)
                return
            if written is not None:
                stored_rows.head = written
                stored_rows.fields = written_fields
            stored_rows.state = state
            stored_rows.entries = len(transcript)
            stored_rows.top = top
            self._stored[cid] = stored_rows
            known.update(new_keys)
            if len(known) > 4 * MAX_KEYS_KEPT:
                known.intersection_update(keys)

        return self._enqueue(op)

    async def get(self, call_id: str) -> CallRecord | None:
        """A call by our id, or else by the carrier's id."""
        return await self._read(lambda conn: _get(conn, call_id))

    async def live_calls(self) -> list[CallRecord]:
        return await self._read(_live)

    async def recent_calls(self, limit: int = 50) -> list[CallRecord]:
        return await self._read(lambda conn: _recent(conn, limit))

    async def log_since(self, after_seq: int, limit: int = 500,
                        kinds: tuple[str, ...] | None = None) -> list[LogEntry]:
        return await self._read(lambda conn: _log_since(conn, after_seq, limit, kinds))

    async def last_log(self, limit: int, kinds: tuple[str, ...] | None = None) -> list[LogEntry]:
        return await self._read(lambda conn: _last_log(conn, limit, kinds))

    async def state_history(self, call_id: str) -> list[dict[str, Any]]:
        """The states a call went through, in order, with the time each was first persisted."""
        def op(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            history: list[dict[str, Any]] = []
            rows = conn.execute("SELECT at, data FROM log WHERE call_id=? AND kind='snapshot'"
                                " ORDER BY seq", (call_id,))
            for at, data in rows:
                state = json.loads(data).get("state")
                if not history or history[-1]["state"] != state:
                    history.append({"state": state, "at": at})
            return history

        return await self._read(op)

    # -- replay and rejected keys ------------------------------------------------------------
    async def mark_replay(self, key: str) -> bool:
        """Remember a verified request key; True if it was already seen (a replay)."""
        expires = _now_ms() + self.replay_ttl_ms
        digest = _digest(key)

        return await self._submit(lambda conn: not self._store_key(conn, (digest, key, expires, None)))

    def _store_key(self, conn: sqlite3.Connection, row: tuple[int, str, int, str | None]) -> bool:
        """Insert a request key row `(digest, key, expires_at, reply)` unless the key is stored
        and live (then False: the first reply stays, as a concurrent duplicate of the request
        would otherwise add a second). A key the filter in use now has not seen is surely new
        (no read); a key seen again after its row expired gets a new row (see `_FIND_KEY`)."""
        digest, key = row[0], row[1]
        runs = self._key_runs
        # Added before the row is (it may say yes too early, never no), and before the lookup:
        # a stored key is added twice, which only overcounts.
        if self._replay_filter.add(digest):
            self._appends.flush(conn)
            found = runs.find(conn, digest, key)
            if found is not None and found[1] >= _now_ms():
                return False
        self._appends.keys.append((*row, runs.take(self._replay_filter.count)))
        return True

    async def lookup_replay(self, key: str) -> dict[str, Any] | None:
        """The reply stored for an already-applied request (`{}` if none was kept), else None."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("store is not open")
        digest = _digest(key)
        if not self._replay_filter.might_contain(digest):
            return None  # surely not stored: no read (the usual case, a new request)
        row = self._key_runs.find(conn, digest, key)
        if row is None or row[1] < _now_ms():
            return None
        return dict(json.loads(row[2])) if row[2] else {}

    async def remember_reply(self, key: str, reply: dict[str, Any]) -> None:
        """Record a request as applied, with the answer it got (a replay gets the same answer).

        Committed before this returns, so the request is answered only once its key is durable:
        a replay after a restart still gets this reply. It usually shares the commit of other
        requests' writes.
        """
        await self._submit(self.reply_write(key, reply))

    def reply_write(self, key: str, reply: dict[str, Any]) -> ReplyWrite:
        """The write `remember_reply` does, to hand to `save` instead: a webhook whose reply is
        known before its event is applied records both in one transaction (one group-commit
        round instead of two). `written` says whether a save ran it."""
        return ReplyWrite(self, key, _now_ms() + self.replay_ttl_ms, self._reply_text(reply))

    def _reply_text(self, reply: dict[str, Any]) -> str:
        """`reply` as JSON; the last one is kept, as a carrier's replies are often the same."""
        last = self._last_reply
        if last is not None and last[0] == reply:
            return last[1]
        text = _json(reply)
        self._last_reply = (copy.deepcopy(reply), text)
        return text

    async def forget_replay(self, key: str) -> None:
        """Forget a request key whose side effects failed, so the carrier's retry is applied."""
        digest = _digest(key)
        runs = self._key_runs
        await self._submit(lambda conn: conn.execute(
            f"{_IN_RUNS} DELETE FROM request_keys WHERE run IN runs AND digest=?3 AND key=?4",
            (runs.oldest(conn), runs.current, digest, key)))

    async def add_rejected_key(self, key: str) -> bool:
        """Remember a rejected inbound call's dedupe key; True if it was new."""
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("INSERT OR IGNORE INTO rejected_keys(key, at) VALUES (?,?)",
                               (key, _now_ms()))
            return cur.rowcount == 1

        return await self._submit(op)

    async def is_rejected(self, key: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute("SELECT 1 FROM rejected_keys WHERE key=?", (key,)).fetchone() is not None

        return await self._read(op)

    async def forget_rejected_key(self, key: str) -> None:
        await self._submit(lambda conn: conn.execute(
            "DELETE FROM rejected_keys WHERE key=?", (key,)))

    # -- carrier-side state ------------------------------------------------------------------
    async def put_provider_state(self, call_id: str, data: dict[str, Any]) -> None:
        text = _json(data)
        await self._submit(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO provider_state(call_id, data) VALUES (?,?)", (call_id, text)))

    async def get_provider_state(self, call_id: str) -> dict[str, Any] | None:
        def op(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT data FROM provider_state WHERE call_id=?",
                               (call_id,)).fetchone()
            return json.loads(row[0]) if row else None

        return await self._read(op)

    # -- conversation memory (sessions) ------------------------------------------------------
    async def session_messages(self, key: str) -> list[dict[str, Any]]:
        """The remembered chat messages of a session, oldest first."""
        def op(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            row = conn.execute("SELECT messages FROM sessions WHERE key=?", (key,)).fetchone()
            return list(json.loads(row[0])) if row else []

        return await self._read(op)

    async def append_session(self, key: str, messages: list[dict[str, Any]], *, keep: int = 200) -> None:
        """Add messages to a session's memory, keeping the newest `keep`."""
        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT messages FROM sessions WHERE key=?", (key,)).fetchone()
            merged = (json.loads(row[0]) if row else []) + messages
            conn.execute("INSERT OR REPLACE INTO sessions(key, messages, updated_at) VALUES (?,?,?)",
                         (key, json.dumps(merged[-keep:], separators=(",", ":")), _now_ms()))

        await self._submit(op)

    # -- JSONL import / export (reference §6.1) ------------------------------------------------
    async def export_jsonl(self, path: str | Path) -> int:
        """Write every snapshot in the log as one CallRecord JSON per line; returns the count."""
        return await self._submit(lambda conn: _export(conn, Path(path)))

    async def import_jsonl(self, path: str | Path) -> int:
        """Load a `calls.jsonl` (last snapshot per call wins); invalid lines are skipped."""
        records = list(_read_jsonl(Path(path)))

        def op(conn: sqlite3.Connection) -> int:
            now = _now_ms()
            for record in records:
                text = json.dumps(record.to_json_dict(), separators=(",", ":"))
                conn.execute("INSERT INTO log(at, call_id, kind, data) VALUES (?,?,?,?)",
                             (now, record.call_id, "snapshot", text))
                # The record text carries its transcript and keys: a call imported over a stored
                # one loses its old items (its rowid, which numbers them, is kept).
                no = conn.execute(
                    "INSERT INTO calls(call_id, provider_call_id, state, terminal, started_at,"
                    " updated_at, record) VALUES (?,?,?,?,?,?,?) ON CONFLICT(call_id) DO UPDATE"
                    " SET provider_call_id=excluded.provider_call_id, state=excluded.state,"
                    " terminal=excluded.terminal, started_at=excluded.started_at,"
                    " updated_at=excluded.updated_at, record=excluded.record RETURNING rowid",
                    (record.call_id, record.provider_call_id, record.state.value,
                     1 if record.is_terminal else 0, record.started_at, now, text)).fetchone()[0]
                for table in ("call_items", "recent_items"):
                    conn.execute(f"DELETE FROM {table} WHERE id BETWEEN ? AND ?", _item_range(no))
            self._clear_caches()
            return len(records)

        return await self._submit(op)


class _Stored:
    """What the database holds for one live call (see `SQLiteCallStore._stored`)."""

    __slots__ = ("entries", "fields", "head", "keys", "state", "top")

    def __init__(self, entries: int, keys: set[str], top: int) -> None:
        self.entries = entries  # transcript entries stored
        self.keys = keys  # dedupe keys stored (a superset of the record's newest)
        self.top = top  # the call's last call_items id
        self.state: str | None = None  # the state of the last snapshot logged
        self.head: str | None = None  # the `calls` row's record JSON as last written
        # The head's fields (a copy of the record's field dict and of its metadata's top level)
        # as last written: a save whose fields are all the same objects skips serializing it.
        self.fields: tuple[dict[str, Any], dict[str, Any]] | None = None


class _Appends:
    """Rows for the append-only tables (`recent_items`, `log`, `request_keys`) that `save` and
    `ReplyWrite` add, written with one `executemany` per table once the transaction's ops have
    run: an `execute` per row cost about 4 000 instructions more per row, a few per cent of a
    webhook. Whatever reads those tables, or writes them itself, inside a transaction flushes
    them first (`_submit` does it for every other op), so rows keep their order and are seen."""

    __slots__ = ("items", "keys", "log")

    def __init__(self) -> None:
        self.items: list[tuple[int, str | None, str | None]] = []
        self.log: list[tuple[int, str, str, str]] = []
        self.keys: list[tuple[int, str, int, str | None, int]] = []

    def flush(self, conn: sqlite3.Connection) -> None:
        if self.items:
            conn.executemany("INSERT INTO recent_items(id, key, entry) VALUES (?,?,?)", self.items)
            self.items.clear()
        if self.log:
            conn.executemany("INSERT INTO log(at, call_id, kind, data) VALUES (?,?,?,?)", self.log)
            self.log.clear()
        if self.keys:
            conn.executemany("INSERT INTO request_keys(digest, key, expires_at, reply, run)"
                             " VALUES (?,?,?,?,?)", self.keys)
            self.keys.clear()

    def clear(self) -> None:
        """Drop what was not written (the transaction or the op that added it failed)."""
        self.items.clear()
        self.log.clear()
        self.keys.clear()


class ReplyWrite:
    """Stores a request key with its reply (see `SQLiteCallStore.reply_write`); re-runnable."""

    __slots__ = ("_row", "_store", "written")

    def __init__(self, store: SQLiteCallStore, key: str, expires_at: int, text: str) -> None:
        self._store = store
        self._row: tuple[int, str, int, str | None] = (_digest(key), key, expires_at, text)
        self.written = False

    def __call__(self, conn: sqlite3.Connection) -> None:
        self._store._store_key(conn, self._row)
        self.written = True


_IN_RUNS = ("WITH RECURSIVE runs(run) AS (SELECT ?1 UNION ALL SELECT run + 1 FROM runs"
            " WHERE run < ?2)")
"""The runs `?1` to `?2`, for `run IN runs`: one index seek per run (a range on `run` would
read every key of every run in it)."""

_FIND_KEY = (f"{_IN_RUNS} SELECT rowid, expires_at, reply FROM request_keys WHERE run IN runs"
             " AND digest=?3 AND key=?4 ORDER BY rowid DESC LIMIT 1")
"""The newest row of a key (parameters: first run, current run, digest, key): a key seen again
after its row expired (the filter, built from live keys, does not know it) gets a new row, and
the expired one waits for the prune."""


class _KeyRuns:
    """Which run a new request key goes into, and which runs may hold live keys.

    A run is a stretch of consecutive keys, so the `(run, digest)` index has each run's keys in
    a subtree of their own, and a transaction's new keys all land in the current run's subtree:
    a few pages, shared, instead of one random page of the whole index per key. A run takes
    KEY_RUN_MIN_KEYS keys, or a 1/KEY_RUNS_PER_STORE share of the live keys when there are more,
    so lookups (one seek per run) stay about KEY_RUNS_PER_STORE seeks once the number of live
    keys is steady, a few hundred while it grows. With millions of live keys a run's subtree
    is as big as a single index over every key was, and a key costs what it did then. Each open
    of the store starts a new run. A transaction that rolls back has still advanced the count:
    its run just ends up smaller.
    """

    __slots__ = ("current", "left")

    def __init__(self, current: int = 0) -> None:
        self.current = current
        self.left = 0  # keys the current run still takes (0: the next key starts a run)

    @classmethod
    def of(cls, conn: sqlite3.Connection) -> _KeyRuns:
        (high,) = conn.execute("SELECT MAX(run) FROM request_keys").fetchone()
        return cls(high or 0)

    def oldest(self, conn: sqlite3.Connection) -> int:
        """The oldest run that holds keys; read when needed (one index seek), as only lookups
        past the newest runs need it, and they are rare."""
        (low,) = conn.execute("SELECT MIN(run) FROM request_keys").fetchone()
        return self.current if low is None else int(low)

    def find(self, conn: sqlite3.Connection, digest: int,
             key: str) -> tuple[int, int, str | None] | None:
        """The newest row `(rowid, expires_at, reply)` of `key`, or None. The current and the
        previous run first (two seeks): a carrier's retries come within minutes."""
        recent = max(self.current - 1, 0)
        row = conn.execute(_FIND_KEY, (recent, self.current, digest, key)).fetchone()
        if row is None and recent > 0:
            oldest = self.oldest(conn)
            if oldest < recent:
                row = conn.execute(_FIND_KEY, (oldest, recent - 1, digest, key)).fetchone()
        return row  # type: ignore[no-any-return]

    def take(self, live_keys: int) -> int:
        """The run for one more key, given about how many live keys there are."""
        if self.left <= 0:
            self.current += 1
            self.left = max(KEY_RUN_MIN_KEYS, live_keys // KEY_RUNS_PER_STORE)
        self.left -= 1
        return self.current


@functools.lru_cache(maxsize=256)
def _digest(key: str) -> int:
    """A stable 64-bit digest of a request key (signed, as SQLite stores integers); cached, as
    a webhook's key is digested for its lookup and again for its write."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def _live_digests(conn: sqlite3.Connection) -> Iterator[int]:
    return (d for (d,) in conn.execute("SELECT digest FROM request_keys WHERE expires_at >= ?",
                                       (_now_ms(),)))


class _KeyFilter:
    """A Bloom filter over the stored request keys' digests: False means the key is surely not
    stored, so a new request (nearly every one) costs no read. It is built from the table when
    the store opens and given every digest before it is written; a false positive costs one
    read. Two probes, the digest's low and high 32 bits (it is already a uniform hash), written
    out rather than looped over: this runs twice per webhook, in Python. Past its capacity (32
    bits per key, about 0.4 % false positives) it answers "maybe" until the next prune rebuilds
    it, with room for twice as many keys.
    """

    def __init__(self, bits: int = 1 << 24) -> None:
        assert bits & (bits - 1) == 0 and bits <= 1 << 32, "a power of two, at most 2**32"
        self._mask = bits - 1
        self._bits = bytearray(bits // 8)
        self.count = 0
        self.capacity = bits // 32

    @classmethod
    def of(cls, digests: Iterable[int]) -> _KeyFilter:
        digests = list(digests)
        bits = 1 << 24
        while len(digests) > bits // 64:
            bits <<= 1
        made = cls(bits)
        for digest in digests:
            made.add(digest)
        return made

    def add(self, digest: int) -> bool:
        """Add `digest`; whether it may have been there already (`might_contain` before it)."""
        bits, mask = self._bits, self._mask
        a = digest & mask
        b = (digest >> 32) & mask
        byte_a, bit_a = a >> 3, 1 << (a & 7)
        byte_b, bit_b = b >> 3, 1 << (b & 7)
        seen = bits[byte_a] & bit_a and bits[byte_b] & bit_b
        bits[byte_a] |= bit_a
        bits[byte_b] |= bit_b
        self.count += 1
        return bool(seen) or self.count > self.capacity + 1

    def might_contain(self, digest: int) -> bool:
        if self.count > self.capacity:
            return True  # too full to say no; `_prune` rebuilds it bigger
        bits, mask = self._bits, self._mask
        a = digest & mask
        b = (digest >> 32) & mask
        return bool(bits[a >> 3] & (1 << (a & 7)) and bits[b >> 3] & (1 << (b & 7)))


class _OpFailed(Exception):
    """An op raised inside an unisolated batch (the transaction was rolled back)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _prepare(conn: sqlite3.Connection) -> None:
    """Create the schema, and move a store written before `call_items` existed into it."""
    conn.executescript(SCHEMA)
    conn.execute("DROP INDEX IF EXISTS log_kind")  # every kind indexed, before `log_turns`
    old = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name IN ('transcript','processed_keys')")}
    if old:
        _migrate_items(conn, old)


@contextlib.contextmanager
def _migration(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction for a schema migration: committed, or rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate_items(conn: sqlite3.Connection, old: set[str]) -> None:
    """Copy the per-call `transcript` and `processed_keys` tables into `call_items`, in one
    transaction, then drop them (rows of calls no longer in `calls` were orphans)."""
    with _migration(conn):
        for cid, no in conn.execute("SELECT call_id, rowid FROM calls").fetchall():
            entries = [e for (e,) in conn.execute(
                "SELECT entry FROM transcript WHERE call_id=? ORDER BY idx", (cid,))] \
                if "transcript" in old else []
            keys = [k for (k,) in conn.execute(
                "SELECT key FROM processed_keys WHERE call_id=? ORDER BY seq", (cid,))] \
                if "processed_keys" in old else []
            base = no << _ITEM_BITS
            conn.executemany("INSERT INTO call_items(id, key, entry) VALUES (?,?,?)", [
                (base + i + 1, keys[i] if i < len(keys) else None,
                 entries[i] if i < len(entries) else None)
                for i in range(max(len(entries), len(keys)))])
        for table in sorted(old):
            conn.execute(f"DROP TABLE {table}")


def _migrate_request_keys(conn: sqlite3.Connection) -> None:
    """Bring the request keys of an older store up to date, in one transaction: give
    `request_keys` indexed on `digest` alone its `run` column (every old key in run 0) and the
    `(run, digest)` index, and move the live keys of `replay_keys` (a text primary key, before
    `request_keys`) over. Only the gateway's store does this when it opens (readers such as the
    CLI never do), and it looks at the schema inside the transaction, so two processes opening
    one old store migrate it once."""
    conn.create_function("voicecall_digest", 1, _digest, deterministic=True)
    with _migration(conn):
        columns = {name for (_cid, name, *_rest) in conn.execute("PRAGMA table_info(request_keys)")}
        if "run" not in columns:
            conn.execute("ALTER TABLE request_keys ADD COLUMN run INTEGER NOT NULL DEFAULT 0")
        conn.execute("CREATE INDEX IF NOT EXISTS request_keys_run ON request_keys(run, digest)")
        conn.execute("DROP INDEX IF EXISTS request_keys_digest")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='replay_keys'").fetchone():
            conn.execute("INSERT INTO request_keys(digest, key, expires_at, reply)"
                         " SELECT voicecall_digest(key), key, expires_at, reply FROM replay_keys"
                         " WHERE expires_at >= ? ORDER BY expires_at", (_now_ms(),))
            conn.execute("DROP TABLE replay_keys")


def _fold(conn: sqlite3.Connection) -> None:
    """Move the rows of `recent_items` into `call_items` (inside the caller's transaction)."""
    conn.execute("INSERT INTO call_items(id, key, entry) SELECT id, key, entry FROM recent_items"
                 " ORDER BY id")
    conn.execute("DELETE FROM recent_items")


_ITEMS_OF_CALL = ("SELECT id, key, entry FROM call_items WHERE id BETWEEN ?1 AND ?2 UNION ALL"
                  " SELECT id, key, entry FROM recent_items WHERE id BETWEEN ?1 AND ?2 ORDER BY id")


def _item_range(no: int) -> tuple[int, int]:
    """The first and last possible `call_items` ids of the call whose `calls` rowid is `no`."""
    base = no << _ITEM_BITS
    return base, base | _ITEM_MASK


def _stored_items(conn: sqlite3.Connection, cid: str) -> tuple[int, set[str], int]:
    """What `call_items` holds for a call: its transcript length, its keys and its last id (the
    id before its first when it has none; the call's `calls` row must exist)."""
    no = conn.execute("SELECT rowid FROM calls WHERE call_id=?", (cid,)).fetchone()[0]
    low, high = _item_range(no)
    entries, keys, top = 0, set(), low
    for item_id, key, entry in conn.execute(_ITEMS_OF_CALL, (low, high)):
        top = item_id
        entries += entry is not None
        if key is not None:
            keys.add(key)
    return entries, keys, top


def _drop_entries(conn: sqlite3.Connection, top: int, count: int) -> None:
    """Forget a call's newest `count` transcript entries (its keys stay; call after `_fold`)."""
    low = top & ~_ITEM_MASK
    rows = conn.execute("SELECT id, key FROM call_items WHERE id BETWEEN ? AND ? AND entry IS NOT NULL"
                        " ORDER BY id DESC LIMIT ?", (low, top, count)).fetchall()
    conn.executemany("DELETE FROM call_items WHERE id=?", [(i,) for i, k in rows if k is None])
    conn.executemany("UPDATE call_items SET entry=NULL WHERE id=?",
                     [(i,) for i, k in rows if k is not None])


def _trim_keys(conn: sqlite3.Connection, top: int) -> None:
    """Delete a call's key-only rows older than its newest MAX_KEYS_KEPT keys (those already
    folded into `call_items`; rows still in `recent_items` wait for a later trim)."""
    low = top & ~_ITEM_MASK
    conn.execute(
        "DELETE FROM call_items WHERE id > ? AND entry IS NULL AND id < (SELECT id FROM call_items"
        " WHERE id BETWEEN ? AND ? AND key IS NOT NULL ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (low, low, top, MAX_KEYS_KEPT - 1))


def _head_of(record: CallRecord) -> tuple[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The `calls` row's record JSON (without transcript and keys), with the copies of the
    record's field dict and metadata that a later save compares with (`_Stored.fields`)."""
    values = record.__dict__
    head = record.model_dump_json(by_alias=True, exclude_none=True, exclude=_HEAD_EXCLUDE)
    return head, (dict(values), dict(values["metadata"]))


def _new_keys(keys: list[str], known: set[str]) -> list[str]:
    """The dedupe keys at the end of `keys` that are not stored yet (usually just the last one)."""
    if keys and keys[-1] not in known and (len(keys) == 1 or keys[-2] in known):
        return [keys[-1]]  # the usual case, without the loop
    fresh: list[str] = []
    for key in reversed(keys):
        if key in known:
            break
        fresh.append(key)
    fresh.reverse()
    return fresh


def _load(conn: sqlite3.Connection, no: int, head: str) -> CallRecord:
    """A whole record: its head row (`calls` rowid `no`) plus its transcript and newest keys."""
    data = json.loads(head)
    if "transcript" not in data or "processedEventIds" not in data:
        items = [(k, e) for _i, k, e in conn.execute(_ITEMS_OF_CALL, _item_range(no))]
        if "transcript" not in data:
            data["transcript"] = [json.loads(e) for _k, e in items if e is not None]
        if "processedEventIds" not in data:
            data["processedEventIds"] = [k for k, _e in items if k is not None][-MAX_KEYS_KEPT:]
    return CallRecord.model_validate(data)


def _get(conn: sqlite3.Connection, call_id: str) -> CallRecord | None:
    row = conn.execute("SELECT rowid, record FROM calls WHERE call_id=?", (call_id,)).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT rowid, record FROM calls WHERE provider_call_id=? ORDER BY updated_at DESC LIMIT 1",
            (call_id,)).fetchone()
    return _load(conn, *row) if row else None


def _live(conn: sqlite3.Connection) -> list[CallRecord]:
    rows = conn.execute("SELECT rowid, record FROM calls WHERE terminal=0 ORDER BY started_at").fetchall()
    return [_load(conn, *r) for r in rows]


def _recent(conn: sqlite3.Connection, limit: int) -> list[CallRecord]:
    rows = conn.execute("SELECT rowid, record FROM calls ORDER BY updated_at DESC LIMIT ?",
                        (limit,)).fetchall()
    return [_load(conn, *r) for r in rows]


def _kind_clause(kinds: tuple[str, ...] | None) -> tuple[str, tuple[str, ...]]:
    """The log filter for `kinds`. Only turns are indexed (`log_turns`, for `latency`; the
    planner uses that partial index only for this literal term): every event would otherwise
    also write an index entry, and the other kinds are read by scanning back from the end."""
    if not kinds:
        return "", ()
    if kinds == ("turn",):
        return " AND kind = 'turn'", ()
    return f" AND kind IN ({','.join('?' * len(kinds))})", kinds


def _entries(rows: Iterable[tuple[int, int, str, str, str]]) -> list[LogEntry]:
    return [LogEntry(seq, at, call_id, kind, json.loads(data))
            for seq, at, call_id, kind, data in rows]


def _log_since(conn: sqlite3.Connection, after: int, limit: int,
               kinds: tuple[str, ...] | None) -> list[LogEntry]:
    clause, args = _kind_clause(kinds)
    rows = conn.execute(f"SELECT seq, at, call_id, kind, data FROM log WHERE seq > ?{clause}"
                        " ORDER BY seq LIMIT ?", (after, *args, limit)).fetchall()
    return _entries(rows)


def _last_log(conn: sqlite3.Connection, limit: int,
              kinds: tuple[str, ...] | None) -> list[LogEntry]:
    clause, args = _kind_clause(kinds)
    rows = conn.execute(f"SELECT seq, at, call_id, kind, data FROM log WHERE 1=1{clause}"
                        " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
    return _entries(reversed(rows))


def _export(conn: sqlite3.Connection, path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for (data,) in conn.execute("SELECT data FROM log WHERE kind='snapshot' ORDER BY seq"):
            fh.write(data + "\n")
            count += 1
    return count


def _read_jsonl(path: Path) -> Iterator[CallRecord]:
    latest: dict[str, CallRecord] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = CallRecord.model_validate_json(line)
            except ValueError:
                continue
            latest[record.call_id] = record
    yield from latest.values()
