"""Opening the database file, and the JSON text written into its rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

DB_NAME = "calls.sqlite3"
BUSY_TIMEOUT_MS = 5_000  # how long a statement waits for another process's lock
CACHE_KIB = 64 * 1024


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are begun explicitly), in WAL mode with
    synchronous=NORMAL: a commit is an append to the WAL, and the fsync happens when the
    checkpointer copies the WAL into the database (see `checkpointer.py`). A commit survives
    the process being killed; an OS crash or power loss can lose the newest transactions."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints run on the checkpointer's own connection, never inside a commit.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return conn


def dumps(value: Any) -> str:
    """`value` as compact ASCII JSON text; TypeError for what JSON cannot hold."""
    return json.dumps(value, separators=(",", ":"))
