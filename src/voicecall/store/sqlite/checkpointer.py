"""A background thread that copies the WAL into the database file, off the request path.

Commits only append to the WAL (synchronous=NORMAL, automatic checkpoints off); this thread
runs a PASSIVE checkpoint every `interval_s`, which never blocks the writer. A new write
starts the WAL over from its beginning only once a checkpoint has copied every frame, and
under steady load a commit nearly always lands during the pass. So once the WAL holds
`reset_frames` frames, the next pass runs with the writer's gate held: no commit lands during
it, it copies everything, and the WAL starts over. A commit waits for the gate at most
`writer.GATE_TIMEOUT_S`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from voicecall.store.sqlite.connection import BUSY_TIMEOUT_MS

INTERVAL_S = 1.0
RESET_FRAMES = 16_384  # 64 MiB of WAL with 4 KiB pages
STOP_TIMEOUT_S = 10.0
GATE_TIMEOUT_S = 1.0  # a commit holds the gate for a few ms


class Checkpointer:
    """Checkpoints the WAL of the database at `path` until stopped."""

    def __init__(self, path: Path, gate: threading.Lock, *, interval_s: float = INTERVAL_S,
                 reset_frames: int = RESET_FRAMES) -> None:
        self._path = path
        self._gate = gate
        self._interval_s = interval_s
        self._reset_frames = reset_frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="voicecall-store-checkpoint")
        self._thread.start()

    def stop(self) -> None:
        """Stop after a last checkpoint that empties the WAL (waits at most STOP_TIMEOUT_S)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
            self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            while not self._stop.wait(self._interval_s):
                with contextlib.suppress(sqlite3.Error):
                    self._pass(conn)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def _pass(self, conn: sqlite3.Connection) -> None:
        _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames >= self._reset_frames and self._gate.acquire(timeout=GATE_TIMEOUT_S):
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                self._gate.release()
