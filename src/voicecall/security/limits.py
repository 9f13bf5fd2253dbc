"""Pre-auth request limits: bounded bodies, bounded read time, bounded in-flight per client."""

from __future__ import annotations

import asyncio

from voicecall.shared.asgi import Message, Receive

MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 5.0
MAX_IN_FLIGHT_PER_CLIENT = 8
MAX_TRACKED_CLIENTS = 4096
_SHARED_KEY = "<unknown>"


class BodyTooLarge(Exception):
    """The body is over the cap (413)."""


class BodyTimeout(Exception):
    """The client did not send its body in time (408)."""


class BodyIncomplete(Exception):
    """The client went away before sending the whole body; nothing may be applied."""


class InFlightLimiter:
    """At most `per_key` concurrent requests per client address (429 beyond that)."""

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


async def read_body(receive: Receive, *, content_length: int | None,
                    max_bytes: int = MAX_BODY_BYTES, timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """Read a request body under a size cap and a total time limit.

    Raises BodyTooLarge (413), BodyTimeout (408), or BodyIncomplete when the client went away
    or sent fewer bytes than its Content-Length said.
    """
    if content_length is not None and content_length > max_bytes:
        raise BodyTooLarge
    try:
        async with asyncio.timeout(timeout_s):
            return await _read(receive, content_length, max_bytes)
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
