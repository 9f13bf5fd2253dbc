"""Bring the original plugin's call history into the store at start (docs/decisions.md D91).

The original kept every record snapshot in `calls.jsonl` in the same `voice-calls/` directory the
SQLite store uses. The first start that finds it imports it (the last snapshot of each call wins)
and leaves a marker with the file's digest next to it, so later starts skip the same content; a
file that changed is imported again, which replaces the same calls with their newer snapshots.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

from voicecall.shared.clock import now_ms
from voicecall.store import SQLiteCallStore

__all__ = ["HISTORY_FILE", "HISTORY_LOGGER", "IMPORTED_MARKER", "import_original_history"]

HISTORY_FILE = "calls.jsonl"
IMPORTED_MARKER = "calls.jsonl.imported"
HISTORY_LOGGER = "voicecall.history"

log = logging.getLogger(HISTORY_LOGGER)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _imported_digest(marker: Path) -> str | None:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    digest = data.get("sha256") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) else None


def _write_marker(marker: Path, digest: str, calls: int) -> None:
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"sha256": digest, "calls": calls, "importedAt": now_ms()}) + "\n",
                   encoding="utf-8")
    os.replace(tmp, marker)


async def import_original_history(store: SQLiteCallStore, directory: Path) -> int | None:
    """Import `<directory>/calls.jsonl` unless this content was imported before.

    Returns how many calls came in, or None when there was nothing (new) to import. A file that
    cannot be read is logged and left alone: the gateway starts without it.
    """
    source = directory / HISTORY_FILE
    if not source.is_file():
        return None
    marker = directory / IMPORTED_MARKER
    try:
        digest = _digest(source)
        if _imported_digest(marker) == digest:
            return None
        calls = await store.import_jsonl(source)
        _write_marker(marker, digest, calls)
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("could not import the call history in %s: %s", source, exc.__class__.__name__)
        with contextlib.suppress(OSError):
            marker.with_name(f".{marker.name}.{os.getpid()}.tmp").unlink()
        return None
    log.info("imported %d call records from %s (the original voice-call plugin's history)", calls, source)
    return calls
