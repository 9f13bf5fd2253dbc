"""The tables, and bringing a database file to the current layout (`PRAGMA user_version`).

docs/store.md describes each table and what is written when.
"""

from __future__ import annotations

import sqlite3

from voicecall.store.sqlite import migrations

SCHEMA_VERSION = 1
"""0: a new file, or one written before the layout was versioned (see `migrations.py`)."""

TABLES = (
    # One row per call: the whole record as JSON, plus the columns lookups and retention need.
    """CREATE TABLE IF NOT EXISTS calls (
        call_id TEXT PRIMARY KEY,
        provider_call_id TEXT,
        state TEXT NOT NULL,
        terminal INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        record TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS calls_provider_id ON calls(provider_call_id)",
    "CREATE INDEX IF NOT EXISTS calls_live ON calls(terminal, started_at)",
    # Append-only: snapshots, events and turns. `seq` is one past the largest (retention always
    # keeps the newest row, so no `seq` is handed out twice). Stores made before may have an
    # AUTOINCREMENT `seq`, which behaves the same.
    """CREATE TABLE IF NOT EXISTS log (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        call_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS log_turns ON log(seq) WHERE kind = 'turn'",
    "CREATE INDEX IF NOT EXISTS log_snapshots ON log(call_id, seq) WHERE kind = 'snapshot'",
    # Verified webhook request keys with the reply each got, until they expire.
    """CREATE TABLE IF NOT EXISTS replay_keys (
        key TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL,
        reply TEXT
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS replay_keys_expiry ON replay_keys(expires_at)",
    "CREATE TABLE IF NOT EXISTS rejected_keys (key TEXT PRIMARY KEY, at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS provider_state (call_id TEXT PRIMARY KEY, data TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS sessions (
        key TEXT PRIMARY KEY,
        messages TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    )""",
)


class SchemaTooNew(RuntimeError):
    """The file was written by a newer version of voicecall, with a layout this one cannot read."""


def version_of(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def prepare(conn: sqlite3.Connection) -> None:
    """Create the tables of a new file, or migrate an older layout, in one transaction.

    The version is read again inside the transaction, so two processes opening one old file
    at once migrate it once; if anything fails, nothing of the migration is kept.
    """
    if version_of(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = version_of(conn)
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(f"{version} (this voicecall reads up to {SCHEMA_VERSION})")
        if version < SCHEMA_VERSION:
            migrations.before_create(conn, version)
            for statement in TABLES:
                conn.execute(statement)
            migrations.after_create(conn, version)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
