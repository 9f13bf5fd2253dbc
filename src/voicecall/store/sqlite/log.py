"""Reading the append-only log, and retention (the log, ended calls, expired replay keys)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from voicecall.store.protocol import LogEntry
from voicecall.store.sqlite import replay
from voicecall.store.sqlite.writer import Op

_COLUMNS = "SELECT seq, at, call_id, kind, data FROM log"


def _kind_clause(kinds: tuple[str, ...] | None) -> tuple[str, tuple[str, ...]]:
    """The filter for `kinds`. Only turns are indexed (`log_turns`, which the planner uses only
    for this literal term); other kinds are read by scanning back from the end."""
    if not kinds:
        return "", ()
    if kinds == ("turn",):
        return " AND kind = 'turn'", ()
    return f" AND kind IN ({','.join('?' * len(kinds))})", kinds


def _entries(rows: Iterable[tuple[int, int, str, str, str]]) -> list[LogEntry]:
    return [LogEntry(seq, at, call_id, kind, json.loads(data))
            for seq, at, call_id, kind, data in rows]


def since(conn: sqlite3.Connection, after: int, limit: int,
          kinds: tuple[str, ...] | None) -> list[LogEntry]:
    """Up to `limit` entries after `after` (a `seq`), oldest first."""
    clause, args = _kind_clause(kinds)
    rows = conn.execute(f"{_COLUMNS} WHERE seq > ?{clause} ORDER BY seq LIMIT ?",
                        (after, *args, limit)).fetchall()
    return _entries(rows)


def last(conn: sqlite3.Connection, limit: int, kinds: tuple[str, ...] | None) -> list[LogEntry]:
    """The newest `limit` entries, oldest first."""
    clause, args = _kind_clause(kinds)
    rows = conn.execute(f"{_COLUMNS} WHERE 1=1{clause} ORDER BY seq DESC LIMIT ?",
                        (*args, limit)).fetchall()
    return _entries(reversed(rows))


def state_history(conn: sqlite3.Connection, call_id: str) -> list[dict[str, Any]]:
    """The states a call went through, in order, with the time each was first logged."""
    history: list[dict[str, Any]] = []
    rows = conn.execute("SELECT at, data FROM log WHERE call_id=? AND kind='snapshot'"
                        " ORDER BY seq", (call_id,))
    for at, data in rows:
        state = json.loads(data).get("state")
        if not history or history[-1]["state"] != state:
            history.append({"state": state, "at": at})
    return history


def retention_op(max_log_rows: int, max_ended_calls: int) -> Op[None]:
    """Keep the newest `max_log_rows` log rows (so the newest `seq` always stays and none is
    handed out twice) and the `max_ended_calls` most recently updated ended calls (live calls
    are never removed); drop the carrier state of calls that are gone, and expired replay keys.
    Each step reads only what it deletes, through an index."""
    def op(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM log WHERE seq <= (SELECT MAX(seq) FROM log) - ?", (max_log_rows,))
        (ended,) = conn.execute("SELECT COUNT(*) FROM calls WHERE terminal=1").fetchone()
        if ended > max_ended_calls:
            conn.execute("DELETE FROM calls WHERE rowid IN (SELECT rowid FROM calls WHERE terminal=1"
                         " ORDER BY updated_at DESC LIMIT -1 OFFSET ?)", (max_ended_calls,))
        conn.execute("DELETE FROM provider_state WHERE call_id NOT IN (SELECT call_id FROM calls)")
        replay.drop_expired(conn)

    return op
