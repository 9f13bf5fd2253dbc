"""Pre-auth limits: body size and read-time caps, per-client in-flight slots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

import pytest

from voicecall.security.limits import (
    BodyIncomplete,
    BodyTimeout,
    BodyTooLarge,
    InFlightLimiter,
    ReadBudget,
    read_body,
)


def messages(*parts: bytes) -> Any:
    queue = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
             for i, p in enumerate(parts)]

    async def receive() -> MutableMapping[str, Any]:
        return queue.pop(0)
    return receive


async def stalled() -> MutableMapping[str, Any]:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def test_a_body_in_one_or_many_messages_is_read_whole() -> None:
    assert await read_body(messages(b"abc"), content_length=3) == b"abc"
    assert await read_body(messages(b"ab", b"c", b""), content_length=None) == b"abc"


async def test_a_body_that_has_to_be_waited_for_is_read_whole_under_the_deadline() -> None:
    parts = [b"ab", b"c"]

    async def late() -> MutableMapping[str, Any]:  # waits twice before each message
        await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        part = parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    assert await read_body(late, content_length=3, timeout_s=5) == b"abc"

    async def gone() -> MutableMapping[str, Any]:
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    with pytest.raises(BodyIncomplete):
        await read_body(gone, content_length=3)
    with pytest.raises(BodyIncomplete):
        await read_body(_disconnected, content_length=None)  # at once: no wait


async def _disconnected() -> MutableMapping[str, Any]:
    return {"type": "http.disconnect"}


async def test_bodies_over_the_cap_or_short_of_their_length_are_refused() -> None:
    with pytest.raises(BodyTooLarge):
        await read_body(messages(b"abc"), content_length=3, max_bytes=2)
    with pytest.raises(BodyTooLarge):
        await read_body(messages(b"ab", b"c"), content_length=None, max_bytes=2)
    with pytest.raises(BodyIncomplete):
        await read_body(messages(b"ab"), content_length=3)


async def test_a_stalled_body_times_out_near_its_deadline_whatever_the_other_deadlines() -> None:
    slow = asyncio.ensure_future(read_body(stalled, content_length=3, timeout_s=30))
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(BodyTimeout):
        await read_body(stalled, content_length=3, timeout_s=0.2)
    assert 0.19 <= time.monotonic() - started < 1.0
    assert not slow.done()
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow  # cancelled by someone else: not a timeout


async def test_many_concurrent_reads_each_time_out_once() -> None:
    results = await asyncio.gather(*(read_body(stalled, content_length=1, timeout_s=0.05 * (i % 3 + 1))
                                     for i in range(30)), return_exceptions=True)
    assert all(isinstance(r, BodyTimeout) for r in results)
    assert await read_body(messages(b"x"), content_length=1, timeout_s=0.05) == b"x"


def test_in_flight_slots_are_per_client_and_released() -> None:
    limiter = InFlightLimiter(per_key=2)
    slots = [limiter.acquire("a"), limiter.acquire("a")]
    assert limiter.acquire("a") is None and limiter.acquire("b") == "b"
    limiter.release("a")
    assert limiter.acquire("a") == "a" and slots == ["a", "a"]


async def test_over_the_read_budget_the_oldest_read_of_the_client_then_of_all_loses_its_slot() -> None:
    budget = ReadBudget(per_key=2, total=3)
    results: dict[str, object] = {}

    async def reader(name: str, key: str) -> None:
        try:
            results[name] = await read_body(stalled, content_length=1, timeout_s=30,
                                            budget=budget, key=key)
        except BodyTimeout as exc:
            results[name] = exc

    tasks = []
    for name, key in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a"), ("c1", "c")):
        tasks.append(asyncio.ensure_future(reader(name, key)))
        await asyncio.sleep(0.01)
    # a3 took a1's slot (its client was full); c1 took the oldest of all (a2) at the total.
    assert isinstance(results.pop("a1"), BodyTimeout) and isinstance(results.pop("a2"), BodyTimeout)
    assert results == {} and len(budget) == 3 and budget.evicted == 2
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert len(budget) == 0
