"""Call records: the `calls` table (the whole record as JSON) and the log rows a save appends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from voicecall.calls.model import CallRecord
from voicecall.shared.clock import now_ms
from voicecall.store.protocol import CallQuery
from voicecall.store.sqlite.connection import dumps
from voicecall.store.sqlite.writer import Op

_UPSERT = (
    "INSERT INTO calls(call_id, provider_call_id, state, terminal, started_at, updated_at, record)"
    " VALUES (?,?,?,?,?,?,?) ON CONFLICT(call_id) DO UPDATE SET"
    " provider_call_id=excluded.provider_call_id, state=excluded.state,"
    " terminal=excluded.terminal, started_at=excluded.started_at,"
    " updated_at=excluded.updated_at, record=excluded.record"
)
_APPEND = "INSERT INTO log(at, call_id, kind, data) VALUES (?,?,?,?)"


def save_op(record: CallRecord, events: Iterable[dict[str, Any]],
            turn: dict[str, Any] | None) -> Op[bool]:
    """The write for `store.save`: the record as it is now (serialized here, so later changes
    to it are not part of this save), its events and its turn.

    The `calls` row is written unless it already holds the very same text; a `snapshot` log
    row is added when the state differs from the stored one, and always for a terminal state.
    The op returns whether the state differs from the stored one (True for a new call).
    Raises (here, before anything is queued) if the record or a row cannot be written as JSON.
    """
    text = record.to_json()
    call_id = record.call_id
    state = record.state
    row = (call_id, record.provider_call_id, state.value, int(state.is_terminal),
           record.started_at)
    event_rows = [dumps(event) for event in events]
    turn_text = dumps(turn) if turn is not None else None

    def op(conn: sqlite3.Connection) -> bool:
        now = now_ms()
        stored = conn.execute("SELECT state, record = ? FROM calls WHERE call_id=?",
                              (text, call_id)).fetchone()
        if stored is None or not stored[1]:
            conn.execute(_UPSERT, (*row, now, text))
        log = [(now, call_id, "event", data) for data in event_rows]
        changed = stored is None or stored[0] != state.value
        if state.is_terminal or changed:
            log.append((now, call_id, "snapshot", text))
        if turn_text is not None:
            log.append((now, call_id, "turn", turn_text))
        conn.executemany(_APPEND, log)
        return changed

    return op


def import_op(records: list[CallRecord]) -> Op[int]:
    """Write imported records whole (over any stored under the same id), each with a snapshot."""
    rows = [(r.call_id, r.provider_call_id, r.state.value, int(r.is_terminal), r.started_at,
             r.to_json()) for r in records]

    def op(conn: sqlite3.Connection) -> int:
        now = now_ms()
        for call_id, provider_call_id, state, terminal, started_at, text in rows:
            conn.execute(_APPEND, (now, call_id, "snapshot", text))
            conn.execute(_UPSERT, (call_id, provider_call_id, state, terminal, started_at, now,
                                   text))
        return len(rows)

    return op


def get(conn: sqlite3.Connection, call_id: str) -> CallRecord | None:
    """A call by our id, or else the most recently updated one with that carrier id."""
    row = conn.execute("SELECT record FROM calls WHERE call_id=?", (call_id,)).fetchone()
    if row is None:
        row = conn.execute("SELECT record FROM calls WHERE provider_call_id=?"
                           " ORDER BY updated_at DESC LIMIT 1", (call_id,)).fetchone()
    return CallRecord.model_validate_json(row[0]) if row else None


def live(conn: sqlite3.Connection) -> list[CallRecord]:
    rows = conn.execute("SELECT record FROM calls WHERE terminal=0 ORDER BY started_at")
    return [CallRecord.model_validate_json(text) for (text,) in rows]


def recent(conn: sqlite3.Connection, limit: int) -> list[CallRecord]:
    rows = conn.execute("SELECT record FROM calls ORDER BY updated_at DESC LIMIT ?", (limit,))
    return [CallRecord.model_validate_json(text) for (text,) in rows]


def query(conn: sqlite3.Connection, q: CallQuery) -> list[CallRecord]:
    """Calls matching `q`, live and ended, newest start first (ties by id, so pages are stable)."""
    where: list[str] = []
    args: list[Any] = []
    if q.states:
        where.append(f"state IN ({','.join('?' * len(q.states))})")
        args.extend(q.states)
    if q.direction is not None:
        where.append("json_extract(record, '$.direction') = ?")
        args.append(q.direction)
    if q.since_ms is not None:
        where.append("updated_at >= ?")
        args.append(q.since_ms)
    sql = "SELECT record FROM calls"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC, call_id DESC LIMIT ? OFFSET ?"
    rows = conn.execute(sql, (*args, max(q.limit, 0), max(q.offset, 0)))
    return [CallRecord.model_validate_json(text) for (text,) in rows]
