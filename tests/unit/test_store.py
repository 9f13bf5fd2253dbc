"""The SQLite store: group-committed writes, history lookups, replay keys across reopen,
retention, and the calls.jsonl import/export format."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from voicecall.calls.model import CallRecord, CallState, EndReason, TranscriptEntry
from voicecall.store import SQLiteCallStore


def rec(call_id: str, state: CallState = CallState.ANSWERED, **kw: object) -> CallRecord:
    return CallRecord.model_validate({"callId": call_id, "provider": "mock", "direction": "outbound",
                                      "state": state, "from": "+15550000000", "to": "+15555550123",
                                      "startedAt": 1000, **kw})


async def test_concurrent_saves_all_land_and_lookup_works_by_either_id(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        await asyncio.gather(*(store.save(rec(f"c{i}", providerCallId=f"P{i}")) for i in range(200)))
        assert len(await store.live_calls()) == 200
        found = await store.get("P7")
        assert found is not None and found.call_id == "c7"
        assert len(await store.last_log(1000, kinds=("snapshot",))) == 200


async def test_replay_keys_survive_reopening_the_store(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        assert await store.mark_replay("k1") is False
        assert await store.mark_replay("k1") is True
    async with SQLiteCallStore(tmp_path) as store:
        assert await store.mark_replay("k1") is True
        await store.forget_replay("k1")
        assert await store.mark_replay("k1") is False


async def test_a_failing_operation_rolls_back_alone_and_others_commit(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        def broken(conn: object) -> None:
            raise RuntimeError("boom")

        results = await asyncio.gather(store.save(rec("a")), store._submit(broken), store.save(rec("b")),
                                       return_exceptions=True)
        assert results[0] is None and isinstance(results[1], RuntimeError) and results[2] is None
        assert {r.call_id for r in await store.live_calls()} == {"a", "b"}


async def test_retention_caps_the_log_and_the_ended_history(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path, max_log_rows=50, max_ended_calls=10) as store:
        for i in range(600):
            await store.save(rec(f"e{i}", CallState.COMPLETED, endReason="completed", endedAt=2000))
        await store.save(rec("live"))
        await store.prune()
        log = await store.last_log(10_000)
        assert len(log) == 50 and log[-1].call_id == "live"  # the newest rows are kept
        calls = await store.recent_calls(10_000)
        assert len(calls) == 11 and await store.get("live") is not None  # live calls are never pruned


async def test_jsonl_export_then_import_round_trips_the_last_snapshot(tmp_path: Path) -> None:
    src = tmp_path / "a"
    async with SQLiteCallStore(src) as store:
        call = rec("c1")
        await store.save(call)
        call.transcript.append(TranscriptEntry(timestamp=5, speaker="bot", text="Hello"))
        call.state, call.end_reason, call.ended_at = CallState.COMPLETED, EndReason.COMPLETED, 9
        await store.save(call)
        assert await store.export_jsonl(tmp_path / "calls.jsonl") == 2
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert [json.loads(line)["state"] for line in lines] == ["answered", "completed"]
    (tmp_path / "calls.jsonl").write_text("\n".join([*lines, "not json", '{"callId": 1}']) + "\n")
    async with SQLiteCallStore(tmp_path / "b") as store:
        assert await store.import_jsonl(tmp_path / "calls.jsonl") == 1
        got = await store.get("c1")
        assert got is not None and got.state == CallState.COMPLETED
        assert [t.text for t in got.transcript] == ["Hello"]
