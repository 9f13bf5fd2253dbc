"""Pre-auth request limits: bounded bodies, bounded read time, bounded in-flight per client."""

from __future__ import annotations

import asyncio
import types
import weakref
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any, cast

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

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

    A webhook's body is small, and the server has nearly always read all of it before the app
    runs, so the first `receive()` completes without waiting. It is stepped once by hand: if
    it completes, there is nothing to time; only a read that has to wait is put under the
    deadline (arming and disarming one cost more than the read itself).
    """
    if content_length is not None and content_length > max_bytes:
        raise BodyTooLarge
    step = receive().__await__()
    try:
        pending = step.send(None)
    except StopIteration as done:
        message: Message = done.value
        if not message.get("more_body", False):
            return _whole_body(message, content_length, max_bytes)
        first: Message | Awaitable[Message] = message
    else:
        first = _finish(step, pending)
    task = asyncio.current_task()
    if task is None:  # not in a task (nothing to cancel): a plain timeout scope
        try:
            async with asyncio.timeout(timeout_s):
                return await _read(receive, first, content_length, max_bytes)
        except TimeoutError:
            raise BodyTimeout from None
    watchdog = _watchdog(asyncio.get_running_loop())
    entry = watchdog.watch(task, timeout_s)
    try:
        return await _read(receive, first, content_length, max_bytes)
    except asyncio.CancelledError:
        if entry.fired and task.uncancel() == 0:  # our cancellation, and no one else's
            raise BodyTimeout from None
        raise
    finally:
        watchdog.unwatch(task)


@types.coroutine
def _finish(step: Generator[Any, Any, Message], pending: Any) -> Generator[Any, Any, Message]:
    """Await the rest of `step` (an awaitable's iterator, stepped by hand until it yielded
    `pending`): what `yield from` does, but for an iterator that has already started."""
    while True:
        try:
            sent = yield pending
        except GeneratorExit:
            step.close()
            raise
        except BaseException as exc:  # thrown in (a cancellation): passed on
            try:
                pending = step.throw(exc)
            except StopIteration as done:
                return cast(Message, done.value)
        else:
            try:
                pending = step.send(sent)
            except StopIteration as done:
                return cast(Message, done.value)


def _chunk(message: Message, size: int, max_bytes: int) -> bytes:
    """The bytes of one body message, after `size` bytes; refuses a disconnect (the body is
    incomplete) and a body that goes over the cap."""
    if message["type"] == "http.disconnect":
        raise BodyIncomplete
    chunk: bytes = message.get("body", b"")
    if size + len(chunk) > max_bytes:
        raise BodyTooLarge
    return chunk


def _whole_body(message: Message, content_length: int | None, max_bytes: int) -> bytes:
    """The body of a request that came in one message."""
    body = _chunk(message, 0, max_bytes)
    if content_length is not None and len(body) != content_length:
        raise BodyIncomplete
    return body


async def _read(receive: Receive, first: Message | Awaitable[Message],
                content_length: int | None, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    message = first if isinstance(first, MutableMapping) else await first
    while True:
        chunk = _chunk(message, size, max_bytes)
        size += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    if content_length is not None and size != content_length:
        raise BodyIncomplete
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Deadline:
    __slots__ = ("at", "fired")

    def __init__(self, at: float) -> None:
        self.at = at
        self.fired = False


class _Watchdog:
    """Body-read deadlines of one event loop's requests, checked by a single timer.

    `asyncio.timeout` schedules and cancels a timer per request (about 10 µs); here a request
    only adds and removes a dict entry, and the one timer runs at the earliest deadline
    (with the usual constant timeout, rarely: a request due earlier has long finished).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._deadlines: dict[asyncio.Task[Any], _Deadline] = {}
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any], timeout_s: float) -> _Deadline:
        entry = _Deadline(self._loop.time() + timeout_s)
        self._deadlines[task] = entry
        if self._timer is None or entry.at < self._timer.when():
            self._schedule(entry.at)
        return entry

    def unwatch(self, task: asyncio.Task[Any]) -> None:
        self._deadlines.pop(task, None)

    def _schedule(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(at, self._check)

    def _check(self) -> None:
        self._timer = None
        now = self._loop.time()
        earliest: float | None = None
        for task, entry in self._deadlines.items():
            if entry.fired:
                continue
            if entry.at <= now:
                entry.fired = True
                task.cancel()
            elif earliest is None or entry.at < earliest:
                earliest = entry.at
        if earliest is not None:
            self._schedule(earliest)


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = weakref.WeakKeyDictionary()


_last_watchdog: _Watchdog | None = None  # the usual case, one loop: no weak-dictionary lookup
# (it keeps that one loop alive after it closed, until another loop reads a body)


def _watchdog(loop: asyncio.AbstractEventLoop) -> _Watchdog:
    global _last_watchdog
    last = _last_watchdog
    if last is not None and last._loop is loop:
        return last
    watchdog = _watchdogs.get(loop)
    if watchdog is None:
        watchdog = _watchdogs[loop] = _Watchdog(loop)
    _last_watchdog = watchdog
    return watchdog
