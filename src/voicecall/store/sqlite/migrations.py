"""From the layouts written before `PRAGMA user_version` was set (version 0) to version 1.

Those layouts kept a call's record in `calls` without its transcript and dedupe keys, which
lived elsewhere:
- `transcript(call_id, idx, entry)` and `processed_keys(call_id, seq, key)`, the oldest;
- then `call_items(id, key, entry)`, numbered `calls.rowid << 32 | n`, and later also
  `recent_items(seq, id, key, entry)`, rows not yet moved into `call_items`.
Request keys were kept in `replay_keys(key, expires_at[, reply])`, then in
`request_keys(digest, key, expires_at, reply[, run])`.

Version 1 keeps the whole record in `calls` and the request keys in a new `replay_keys`. The
schema module runs `before_create`, creates the tables, then runs `after_create`, all in one
transaction.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from voicecall.shared.clock import now_ms
from voicecall.store.sqlite.connection import dumps

MAX_KEYS_KEPT = 500  # a record loaded from the old layouts had at most its newest 500 keys
_ITEM_BITS = 32
_ITEM_MASK = (1 << _ITEM_BITS) - 1
_OLD_REPLAY_KEYS = "legacy_replay_keys"
_DROPPED = ("transcript", "processed_keys", "call_items", "recent_items", "request_keys",
            _OLD_REPLAY_KEYS)


def before_create(conn: sqlite3.Connection, version: int) -> None:
    """Move old tables whose names the current layout reuses out of the way."""
    if version == 0 and "replay_keys" in _tables(conn):
        conn.execute(f"ALTER TABLE replay_keys RENAME TO {_OLD_REPLAY_KEYS}")


def after_create(conn: sqlite3.Connection, version: int) -> None:
    """Copy what the old tables hold into the current ones, then drop the old tables."""
    if version != 0:
        return
    tables = _tables(conn)
    _rebuild_records(conn, tables)
    _copy_live_request_keys(conn, tables)
    for table in _DROPPED:
        if table in tables:
            conn.execute(f"DROP TABLE {table}")
    conn.execute("DROP INDEX IF EXISTS log_kind")  # every log kind indexed, long ago


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _rebuild_records(conn: sqlite3.Connection, tables: set[str]) -> None:
    """Put each call's transcript and newest dedupe keys back into its record JSON. A record
    that already has them (imported from a calls.jsonl) kept them there, and is left as it is."""
    rows = conn.execute("SELECT rowid, call_id, record FROM calls").fetchall()
    for rowid, call_id, text in rows:
        data: dict[str, Any] = json.loads(text)
        if "transcript" in data and "processedEventIds" in data:
            continue
        entries, keys = _items(conn, tables, call_id, rowid)
        data.setdefault("transcript", entries)
        data.setdefault("processedEventIds", keys[-MAX_KEYS_KEPT:])
        conn.execute("UPDATE calls SET record=? WHERE rowid=?", (dumps(data), rowid))


def _items(conn: sqlite3.Connection, tables: set[str], call_id: str,
           rowid: int) -> tuple[list[Any], list[str]]:
    """A call's transcript entries and dedupe keys, oldest first, from whichever old tables
    there are (the separate tables held older rows than `call_items`)."""
    entries: list[Any] = []
    keys: list[str] = []
    if "transcript" in tables:
        entries += [json.loads(e) for (e,) in conn.execute(
            "SELECT entry FROM transcript WHERE call_id=? ORDER BY idx", (call_id,))]
    if "processed_keys" in tables:
        keys += [k for (k,) in conn.execute(
            "SELECT key FROM processed_keys WHERE call_id=? ORDER BY seq", (call_id,))]
    for key, entry in _numbered_items(conn, tables, rowid):
        if entry is not None:
            entries.append(json.loads(entry))
        if key is not None:
            keys.append(key)
    return entries, keys


def _numbered_items(conn: sqlite3.Connection, tables: set[str],
                    rowid: int) -> list[tuple[str | None, str | None]]:
    """A call's `(key, entry)` rows of `call_items` and `recent_items`, in id order."""
    parts = [f"SELECT id, key, entry FROM {t} WHERE id BETWEEN ?1 AND ?2"
             for t in ("call_items", "recent_items") if t in tables]
    if not parts:
        return []
    low = rowid << _ITEM_BITS
    rows = conn.execute(" UNION ALL ".join(parts) + " ORDER BY id", (low, low | _ITEM_MASK))
    return [(key, entry) for _id, key, entry in rows]


def _copy_live_request_keys(conn: sqlite3.Connection, tables: set[str]) -> None:
    """Copy the request keys that have not expired. A key stored twice keeps its first reply,
    as it would have when it was stored; the older table goes first."""
    now = now_ms()
    for table in (_OLD_REPLAY_KEYS, "request_keys"):
        if table not in tables:
            continue
        reply = "reply" if "reply" in _columns(conn, table) else "NULL"
        conn.execute(
            f"INSERT OR IGNORE INTO replay_keys(key, expires_at, reply)"
            f" SELECT key, expires_at, {reply} FROM {table} WHERE expires_at >= ? ORDER BY rowid",
            (now,))
