"""`voicecall tail --file`: follow a calls.jsonl the way the original's `tail` does.

The last `since` lines first, then new lines as the file grows (polled by size from the last
offset); a file that shrinks was rotated or truncated, so reading restarts from its start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["follow_jsonl", "last_lines"]


def last_lines(path: Path, count: int) -> tuple[list[str], int]:
    """The last `count` complete lines of `path` and the offset just after them."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # a half-written last line is read once it is complete
    lines = [line for line in data[:end].decode("utf-8", errors="replace").splitlines() if line.strip()]
    return (lines[-count:] if count else []), end


def follow_jsonl(path: Path, since: int, poll_s: float, show: Callable[[str], None], *,
                 stop: Callable[[], bool] = lambda: False) -> None:
    """Show the last `since` lines, then every new line until `stop()` is true (never, by default).

    FileNotFoundError when the file is missing at the start; a file removed later counts as
    empty until it comes back.
    """
    lines, offset = last_lines(path, since)
    for line in lines:
        show(line)
    pending = b""
    while not stop():
        time.sleep(poll_s)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < offset:
            offset, pending = 0, b""
        if size == offset:
            continue
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read(size - offset)
        offset += len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            if raw.strip():
                show(raw.decode("utf-8", errors="replace"))
