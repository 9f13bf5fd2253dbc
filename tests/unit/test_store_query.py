"""`CallStore.list_calls` and the state-change flag of `save`, through the store's public API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from voicecall.calls.model import CallRecord, CallState
from voicecall.store import CallQuery, SQLiteCallStore


def rec(call_id: str, state: CallState = CallState.ANSWERED, *, started_at: int = 1000,
        direction: str = "outbound") -> CallRecord:
    return CallRecord.model_validate({"callId": call_id, "provider": "mock", "direction": direction,
                                      "state": state, "from": "+15550000000", "to": "+15555550123",
                                      "startedAt": started_at})


def ids(records: list[CallRecord]) -> list[str]:
    return [r.call_id for r in records]


async def test_list_calls_returns_live_and_ended_calls_newest_start_first(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        await store.save(rec("old", CallState.COMPLETED, started_at=1000))
        await store.save(rec("mid", CallState.LISTENING, started_at=2000))
        await store.save(rec("new", CallState.BUSY, started_at=3000))
        assert ids(await store.list_calls(CallQuery())) == ["new", "mid", "old"]


async def test_list_calls_filters_by_any_of_the_given_states(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        await store.save(rec("a", CallState.COMPLETED, started_at=1))
        await store.save(rec("b", CallState.LISTENING, started_at=2))
        await store.save(rec("c", CallState.BUSY, started_at=3))
        got = await store.list_calls(CallQuery(states=("completed", "busy")))
        assert ids(got) == ["c", "a"]
        assert ids(await store.list_calls(CallQuery(states=("ringing",)))) == []


async def test_list_calls_filters_by_direction(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        await store.save(rec("in", direction="inbound", started_at=1))
        await store.save(rec("out", direction="outbound", started_at=2))
        assert ids(await store.list_calls(CallQuery(direction="inbound"))) == ["in"]
        assert ids(await store.list_calls(CallQuery(direction="outbound"))) == ["out"]


async def test_list_calls_since_keeps_only_calls_changed_at_or_after_it(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        await store.save(rec("quiet", started_at=1))
        await asyncio.sleep(0.02)
        cutoff = int(time.time() * 1000)
        await asyncio.sleep(0.02)
        await store.save(rec("busy", started_at=2))
        # An old call that changes again is recent too.
        await store.save(rec("quiet", CallState.COMPLETED, started_at=1))
        await store.save(rec("older-untouched", started_at=0))
        got = await store.list_calls(CallQuery(since_ms=cutoff))
        assert ids(got) == ["busy", "quiet", "older-untouched"]
        assert ids(await store.list_calls(CallQuery(since_ms=int(time.time() * 1000) + 60_000))) == []


async def test_list_calls_pages_with_limit_and_offset_without_gaps_or_repeats(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        for i in range(7):  # two calls share each start time: the id breaks the tie
            await store.save(rec(f"c{i}", started_at=i // 2))
        pages = [ids(await store.list_calls(CallQuery(limit=3, offset=o))) for o in (0, 3, 6, 9)]
        assert [len(p) for p in pages] == [3, 3, 1, 0]
        flat = [i for page in pages for i in page]
        assert flat == ids(await store.list_calls(CallQuery(limit=100)))
        assert sorted(flat) == [f"c{i}" for i in range(7)]


async def test_list_calls_combines_filters(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        await store.save(rec("a", CallState.COMPLETED, direction="inbound", started_at=1))
        await store.save(rec("b", CallState.COMPLETED, direction="outbound", started_at=2))
        await store.save(rec("c", CallState.LISTENING, direction="inbound", started_at=3))
        got = await store.list_calls(CallQuery(states=("completed",), direction="inbound"))
        assert ids(got) == ["a"]


async def test_save_reports_whether_the_state_changed(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c", CallState.RINGING)
        assert await store.save(call) is True  # new call
        call.metadata["x"] = 1
        assert await store.save(call) is False  # same state, other change
        call.state = CallState.ANSWERED
        assert await store.save(call) is True
        call.state = CallState.COMPLETED
        assert await store.save(call) is True
        assert await store.save(call) is False  # terminal again: not a new state
