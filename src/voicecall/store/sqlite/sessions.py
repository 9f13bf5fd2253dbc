"""Small keyed state beside the calls: carrier-side state per call, conversation memory."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from voicecall.shared.clock import now_ms
from voicecall.store.sqlite.connection import dumps
from voicecall.store.sqlite.writer import Op


def put_provider_state_op(call_id: str, data: dict[str, Any]) -> Op[None]:
    text = dumps(data)

    def op(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT OR REPLACE INTO provider_state(call_id, data) VALUES (?,?)",
                     (call_id, text))

    return op


def provider_state(conn: sqlite3.Connection, call_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT data FROM provider_state WHERE call_id=?", (call_id,)).fetchone()
    return dict(json.loads(row[0])) if row else None


def session_messages(conn: sqlite3.Connection, key: str) -> list[dict[str, Any]]:
    row = conn.execute("SELECT messages FROM sessions WHERE key=?", (key,)).fetchone()
    return list(json.loads(row[0])) if row else []


def append_session_op(key: str, messages: list[dict[str, Any]], keep: int) -> Op[None]:
    """Add `messages` to the session's memory, keeping the newest `keep`."""
    added = json.loads(dumps(messages))  # a copy, and a TypeError now for what JSON cannot hold

    def op(conn: sqlite3.Connection) -> None:
        merged = session_messages(conn, key) + added
        conn.execute("INSERT OR REPLACE INTO sessions(key, messages, updated_at) VALUES (?,?,?)",
                     (key, dumps(merged[-keep:]), now_ms()))

    return op
