"""Request limits: bounded bodies, bounded read time, a budget of body reads per client before
verification, and bounded in-flight verified requests per client after it (D32, D60)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from voicecall.shared.asgi import Message, Receive

MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 5.0
BODY_GRACE_S = 2.0
MIN_BODY_BYTES_PER_S = 8 * 1024
MAX_IN_FLIGHT_PER_CLIENT = 8
MAX_READS_PER_CLIENT = 64
MAX_READS = 1024
MAX_TRACKED_CLIENTS = 4096
_SHARED_KEY = "<unknown>"


class BodyTooLarge(Exception):
    """The body is over the cap (413)."""


class BodyTimeout(Exception):
    """The client did not send its body in time (408)."""


class BodyIncomplete(Exception):
    """The client went away before sending the whole body; nothing may be applied."""


class InFlightLimiter:
    """At most `per_key` concurrent verified requests per client address (429 beyond that)."""

    def __init__(self, per_key: int = MAX_IN_FLIGHT_PER_CLIENT,
                 max_keys: int = MAX_TRACKED_CLIENTS) -> None:
        self.per_key = per_key
        self.max_keys = max_keys
        self._counts: dict[str, int] = {}

    def acquire(self, key: str | None) -> str | None:
        """Take a slot; returns the key to release, or None when the client is over its limit."""
        key = key or _SHARED_KEY
        if key not in self._counts and len(self._counts) >= self.max_keys:
            key = _SHARED_KEY  # too many distinct clients: they share one bucket
        count = self._counts.get(key, 0)
        if count >= self.per_key:
            return None
        self._counts[key] = count + 1
        return key

    def release(self, key: str) -> None:
        count = self._counts.get(key, 0) - 1
        if count <= 0:
            self._counts.pop(key, None)
        else:
            self._counts[key] = count


class ReadSlot:
    """One body being read: its client's key and the deadline that eviction moves to now."""

    __slots__ = ("deadline", "key")

    def __init__(self, key: str, deadline: asyncio.Timeout) -> None:
        self.key = key
        self.deadline = deadline

    def evict(self) -> None:
        """End the read at once: it fails as a timeout (408)."""
        self.deadline.reschedule(asyncio.get_running_loop().time())


class ReadBudget:
    """The budget of unverified requests: at most `per_key` bodies read at once per client and
    `total` overall. A request over the budget is never refused: the oldest read of its client
    (or, over `total`, the oldest of all) loses its slot instead. A genuine carrier sends its
    body at once, so only slow senders lose slots, and they cannot lock anyone out (D60)."""

    def __init__(self, per_key: int = MAX_READS_PER_CLIENT, total: int = MAX_READS,
                 max_keys: int = MAX_TRACKED_CLIENTS) -> None:
        self.per_key = per_key
        self.total = total
        self.max_keys = max_keys
        self.evicted = 0
        self._all: OrderedDict[ReadSlot, None] = OrderedDict()
        self._by_key: dict[str, OrderedDict[ReadSlot, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def admit(self, key: str | None, deadline: asyncio.Timeout) -> ReadSlot:
        key = key or _SHARED_KEY
        if key not in self._by_key and len(self._by_key) >= self.max_keys:
            key = _SHARED_KEY
        mine = self._by_key.setdefault(key, OrderedDict())
        if len(mine) >= self.per_key:
            self._evict(next(iter(mine)))
        elif len(self._all) >= self.total:
            self._evict(next(iter(self._all)))
        slot = ReadSlot(key, deadline)
        mine[slot] = None
        self._all[slot] = None
        return slot

    def release(self, slot: ReadSlot) -> None:
        self._all.pop(slot, None)
        mine = self._by_key.get(slot.key)
        if mine is not None:
            mine.pop(slot, None)
            if not mine:
                del self._by_key[slot.key]

    def _evict(self, slot: ReadSlot) -> None:
        self.release(slot)
        self.evicted += 1
        slot.evict()


def body_deadline_s(content_length: int | None, timeout_s: float) -> float:
    """How long a body may take: `timeout_s`, shortened for a declared length to a grace
    second plus the time it takes at the minimum rate (a trickling sender is cut off early)."""
    if content_length is None:
        return timeout_s
    return min(timeout_s, BODY_GRACE_S + content_length / MIN_BODY_BYTES_PER_S)


async def read_body(receive: Receive, *, content_length: int | None,
                    max_bytes: int = MAX_BODY_BYTES, timeout_s: float = BODY_TIMEOUT_S,
                    budget: ReadBudget | None = None, key: str | None = None) -> bytes:
    """Read a request body under a size cap and a time limit (`body_deadline_s`), holding a
    slot of `budget` while it reads.

    Raises BodyTooLarge (413), BodyTimeout (408; also when the slot is lost to a newer
    request), or BodyIncomplete when the client went away or sent fewer bytes than its
    Content-Length said.
    """
    if content_length is not None and content_length > max_bytes:
        raise BodyTooLarge
    try:
        async with asyncio.timeout(body_deadline_s(content_length, timeout_s)) as deadline:
            slot = budget.admit(key, deadline) if budget is not None else None
            try:
                return await _read(receive, content_length, max_bytes)
            finally:
                if slot is not None and budget is not None:
                    budget.release(slot)
    except TimeoutError:
        raise BodyTimeout from None


def _chunk(message: Message, size: int, max_bytes: int) -> bytes:
    """The bytes of one body message, after `size` bytes; refuses a disconnect (the body is
    incomplete) and a body that goes over the cap."""
    if message["type"] == "http.disconnect":
        raise BodyIncomplete
    chunk: bytes = message.get("body", b"")
    if size + len(chunk) > max_bytes:
        raise BodyTooLarge
    return chunk


async def _read(receive: Receive, content_length: int | None, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = _chunk(message, size, max_bytes)
        size += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if content_length is not None and size != content_length:
        raise BodyIncomplete
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
