"""The calls.jsonl format: one CallRecord JSON per line, as the log's snapshots hold them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from voicecall.calls.model import CallRecord


def export(conn: sqlite3.Connection, path: Path) -> int:
    """Write every snapshot in the log, oldest first; returns how many."""
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for (data,) in conn.execute("SELECT data FROM log WHERE kind='snapshot' ORDER BY seq"):
            fh.write(data + "\n")
            count += 1
    return count


def read(path: Path) -> list[CallRecord]:
    """The last valid record per call in a calls.jsonl; lines that are not one are skipped."""
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
    return list(latest.values())
