"""Replay keys (verified webhook requests and the reply each got) and rejected inbound keys."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from voicecall.shared.clock import now_ms
from voicecall.store.sqlite.connection import dumps
from voicecall.store.sqlite.writer import Op

EXPIRED_KEYS_PER_PRUNE = 5_000  # bounds how long one retention pass holds the commit


def lookup(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    """The reply stored for `key` (`{}` if it was stored without one); None if the key is
    unknown or has expired (an expired row may still be there until retention removes it)."""
    row = conn.execute("SELECT expires_at, reply FROM replay_keys WHERE key=?", (key,)).fetchone()
    if row is None or row[0] < now_ms():
        return None
    return dict(json.loads(row[1])) if row[1] else {}


def remember_op(key: str, reply: dict[str, Any], ttl_ms: int) -> Op[None]:
    """Store `key` with `reply`, unless it is stored and live: then the first reply stays (a
    concurrent duplicate of the request must get the answer the first one got). An expired
    row is replaced."""
    text = dumps(reply)

    def op(conn: sqlite3.Connection) -> None:
        now = now_ms()
        conn.execute(
            "INSERT INTO replay_keys(key, expires_at, reply) VALUES (?,?,?) ON CONFLICT(key)"
            " DO UPDATE SET expires_at=excluded.expires_at, reply=excluded.reply"
            " WHERE replay_keys.expires_at < ?", (key, now + ttl_ms, text, now))

    return op


def drop_expired(conn: sqlite3.Connection) -> None:
    """Delete up to EXPIRED_KEYS_PER_PRUNE expired keys, oldest first (through the expiry index)."""
    conn.execute("DELETE FROM replay_keys WHERE key IN (SELECT key FROM replay_keys"
                 " WHERE expires_at < ? ORDER BY expires_at LIMIT ?)",
                 (now_ms(), EXPIRED_KEYS_PER_PRUNE))


def add_rejected_op(key: str) -> Op[bool]:
    """Remember a rejected inbound call's dedupe key; the op returns True if it was new."""
    def op(conn: sqlite3.Connection) -> bool:
        cur = conn.execute("INSERT OR IGNORE INTO rejected_keys(key, at) VALUES (?,?)",
                           (key, now_ms()))
        return cur.rowcount == 1

    return op


def forget_rejected_op(key: str) -> Op[None]:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM rejected_keys WHERE key=?", (key,))

    return op


def is_rejected(conn: sqlite3.Connection, key: str) -> bool:
    return conn.execute("SELECT 1 FROM rejected_keys WHERE key=?", (key,)).fetchone() is not None
