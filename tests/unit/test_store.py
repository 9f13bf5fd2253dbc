"""The SQLite store: group-committed writes, history lookups, replay keys across reopen,
retention, and the calls.jsonl import/export format."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from voicecall.calls.model import CallRecord, CallState, EndReason, TranscriptEntry
from voicecall.store import SQLiteCallStore
from voicecall.store import sqlite as sqlite_store


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


async def test_log_seq_is_never_handed_out_twice_even_when_retention_keeps_one_row(
        tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path, max_log_rows=1) as store:
        await store.save(rec("a"))
        await store.save(rec("b"))
        await store.prune()
        [kept] = await store.last_log(10)
        await store.save(rec("c"))
    async with SQLiteCallStore(tmp_path, max_log_rows=1) as store:
        await store.prune()
        await store.save(rec("d"))
        newer = await store.log_since(kept.seq)
    assert [e.call_id for e in newer] == ["c", "d"] and newer[0].seq > kept.seq
    with pytest.raises(ValueError, match="max_log_rows"):
        SQLiteCallStore(tmp_path, max_log_rows=0)


async def test_a_store_whose_log_has_autoincrement_keeps_appending_and_tailing(
        tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / sqlite_store.DB_NAME)
    conn.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,"
                 " call_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL)")
    conn.execute("INSERT INTO log(at, call_id, kind, data) VALUES (1, 'old', 'event', '{}')")
    conn.commit()
    conn.close()
    async with SQLiteCallStore(tmp_path) as store:
        await store.save(rec("new"))
        entries = await store.log_since(0)
    assert [(e.seq, e.call_id) for e in entries] == [(1, "old"), (2, "new")]


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


_ITEMS = "(SELECT id, key, entry FROM call_items UNION ALL SELECT id, key, entry FROM recent_items)"
"""Every call_items row, folded or still in recent_items."""


def _committed(store: SQLiteCallStore, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Rows as another connection sees them (only what is committed)."""
    return store.run_sync(lambda conn: conn.execute(sql, args).fetchall())


async def test_a_remembered_reply_is_committed_before_remember_reply_returns(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        await store.remember_reply("k1", {"status": 200, "headers": {}, "body": "OK"})
        assert _committed(store, "SELECT reply FROM request_keys WHERE key=?", "k1") == [
            ('{"status":200,"headers":{},"body":"OK"}',)]
        assert await store.lookup_replay("k1") == {"status": 200, "headers": {}, "body": "OK"}
        assert await store.lookup_replay("k2") is None


async def test_saves_write_only_what_changed_and_the_record_loads_whole(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1", providerCallId="P1")
        for i in range(1200):
            call.transcript.append(TranscriptEntry(timestamp=i, speaker="user", text=f"t{i}"))
            call.processed_event_ids.append(f"k{i}")
            await store.save(call, events=[{"type": "call.speech", "i": i}])
        assert _committed(store, "SELECT COUNT(*) FROM log WHERE kind='snapshot'") == [(1,)]
        assert _committed(store, "SELECT COUNT(*) FROM log WHERE kind='event'") == [(1200,)]
        assert _committed(store, f"SELECT COUNT(*) FROM {_ITEMS}") == [(1200,)]  # key + entry per row
    async with SQLiteCallStore(tmp_path) as store:
        got = await store.get("P1")
        assert got is not None and [t.text for t in got.transcript] == [f"t{i}" for i in range(1200)]
        assert got.processed_event_ids == [f"k{i}" for i in range(700, 1200)]
        got.transcript.append(TranscriptEntry(timestamp=0, speaker="bot", text="after reopen"))
        got.processed_event_ids.append("k-new")
        got.state = CallState.LISTENING
        await store.save(got)
        again = await store.get("c1")
        assert again is not None and again.state == CallState.LISTENING
        assert again.transcript[-1].text == "after reopen" and again.processed_event_ids[-1] == "k-new"
        assert len(again.processed_event_ids) == 500


async def test_a_failed_op_in_a_shared_transaction_leaves_the_other_saves_whole(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        calls = [rec(f"c{i}") for i in range(3)]
        await asyncio.gather(*(store.save(c) for c in calls))

        def broken(conn: object) -> None:
            raise RuntimeError("boom")

        for round_ in range(3):
            for c in calls:
                c.transcript.append(TranscriptEntry(timestamp=round_, speaker="user", text=f"r{round_}"))
                c.processed_event_ids.append(f"{c.call_id}-{round_}")
            results = await asyncio.gather(store.save(calls[0]), store._submit(broken),
                                           *(store.save(c) for c in calls[1:]), return_exceptions=True)
            assert isinstance(results[1], RuntimeError)
            assert [r for i, r in enumerate(results) if i != 1] == [None, None, None]
        for c in calls:
            got = await store.get(c.call_id)
            assert got is not None and [t.text for t in got.transcript] == ["r0", "r1", "r2"]
            assert got.processed_event_ids == [f"{c.call_id}-{r}" for r in range(3)]


async def test_retention_drops_the_rows_of_pruned_calls_and_expired_replay_keys(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path, max_ended_calls=2, replay_ttl_ms=-1) as store:
        for i in range(5):
            call = rec(f"e{i}", CallState.COMPLETED, endReason="completed", endedAt=2000,
                       processedEventIds=[f"k{i}"])
            call.transcript.append(TranscriptEntry(timestamp=1, speaker="bot", text="bye"))
            await store.save(call)
            await store.put_provider_state(f"e{i}", {"x": i})
        await store.remember_reply("old", {"status": 200, "headers": {}, "body": "OK"})
        assert await store.lookup_replay("old") is None  # already expired
        await store.prune()
        for table in ("calls", "provider_state"):
            assert len(_committed(store, f"SELECT DISTINCT call_id FROM {table}")) == 2, table
        assert len(_committed(store, f"SELECT DISTINCT id >> 32 FROM {_ITEMS}")) == 2
        assert _committed(store, "SELECT COUNT(*) FROM request_keys") == [(0,)]


async def test_stored_replies_are_found_after_reopening_and_unknown_keys_are_not(tmp_path: Path) -> None:
    reply = {"status": 200, "headers": {"content-type": "text/xml"}, "body": "<Response/>"}
    async with SQLiteCallStore(tmp_path) as store:
        for i in range(50):
            await store.remember_reply(f"k{i}", reply)
    async with SQLiteCallStore(tmp_path) as store:
        assert all([await store.lookup_replay(f"k{i}") == reply for i in range(50)])
        assert [await store.lookup_replay(f"new{i}") for i in range(50)] == [None] * 50
        store._replay_filter.count = store._replay_filter.capacity + 1  # too full to say no
        assert await store.lookup_replay("k3") == reply and await store.lookup_replay("new") is None
        await store.prune()  # rebuilt from the table
        assert store._replay_filter.count == 50
        assert await store.lookup_replay("k7") == reply


async def test_keys_without_transcript_entries_are_trimmed_to_the_newest_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "FOLD_ROWS", 100)
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1")
        for i in range(1600):
            call.processed_event_ids.append(f"k{i}")
            if i % 100 == 0:
                call.transcript.append(TranscriptEntry(timestamp=i, speaker="user", text=f"t{i}"))
            await store.save(call)
        key_only = _committed(store, f"SELECT COUNT(*) FROM {_ITEMS} WHERE entry IS NULL")[0][0]
        # Bounded: folded rows are trimmed every 500 rows, and at most FOLD_ROWS wait unfolded.
        assert isinstance(key_only, int) and 500 - 5 <= key_only <= 1000 + 100
        assert _committed(store, "SELECT COUNT(*) < 100 FROM recent_items") == [(1,)]
        with_entry = _committed(store, f"SELECT key FROM {_ITEMS} WHERE entry IS NOT NULL ORDER BY id")
        assert with_entry == [(f"k{i}",) for i in range(0, 1600, 100)]  # transcript rows stay whole
    async with SQLiteCallStore(tmp_path) as store:
        got = await store.get("c1")
        assert got is not None and got.processed_event_ids == [f"k{i}" for i in range(1100, 1600)]
        assert [t.text for t in got.transcript] == [f"t{i}" for i in range(0, 1600, 100)]


async def test_a_transcript_shortened_in_memory_is_shortened_in_the_store(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1")
        for i in range(4):
            call.transcript.append(TranscriptEntry(timestamp=i, speaker="user", text=f"t{i}"))
            call.processed_event_ids.append(f"k{i}")
            await store.save(call)
        del call.transcript[2:]  # as `CallRecord.roll_back` does
        await store.save(call)
        got = await store.get("c1")
        assert got is not None and [t.text for t in got.transcript] == ["t0", "t1"]
        call.transcript.append(TranscriptEntry(timestamp=9, speaker="bot", text="again"))
        await store.save(call)
    async with SQLiteCallStore(tmp_path) as store:
        got = await store.get("c1")
        assert got is not None and [t.text for t in got.transcript] == ["t0", "t1", "again"]
        assert got.processed_event_ids == ["k0", "k1", "k2", "k3"]


_KILLED_WRITER = """
import asyncio, os, signal, sys
from voicecall.calls.model import CallRecord, TranscriptEntry
from voicecall.store import SQLiteCallStore

async def main() -> None:
    store = SQLiteCallStore(sys.argv[1])
    store.open()
    calls = [CallRecord.model_validate({"callId": f"c{i}", "provider": "mock", "direction": "inbound",
             "state": "listening", "from": "+15550000000", "to": "+15555550123", "startedAt": 1000,
             "providerCallId": f"P{i}"}) for i in range(3)]
    for round_ in range(40):
        for c in calls:
            c.processed_event_ids.append(f"{c.call_id}-k{round_}")
            if round_ % 2:
                c.transcript.append(TranscriptEntry(timestamp=round_, speaker="user", text=f"r{round_}"))
        await asyncio.gather(*(store.save(c, events=[{"type": "call.speech"}]) for c in calls))
    os.kill(os.getpid(), signal.SIGKILL)  # right after the last commit, as kill -9 after a 200

asyncio.run(main())
"""


def test_a_kill_9_after_a_commit_keeps_every_key_and_entry_for_restore(tmp_path: Path) -> None:
    """The store's process dies right after its last commit (no close, no final checkpoint): a
    reopened store rebuilds each live call's transcript and dedupe keys from what was committed."""
    import signal
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], timeout=60)
    assert done.returncode == -signal.SIGKILL

    async def reopen() -> None:
        async with SQLiteCallStore(tmp_path) as store:
            live = {c.call_id: c for c in await store.live_calls()}
            assert sorted(live) == ["c0", "c1", "c2"]
            for cid, got in live.items():
                assert got.processed_event_ids == [f"{cid}-k{r}" for r in range(40)]
                assert [t.text for t in got.transcript] == [f"r{r}" for r in range(1, 40, 2)]
                assert got.has_processed(f"{cid}-k39") and not got.has_processed("other")

    asyncio.run(reopen())


_OLD_SCHEMA = """
CREATE TABLE calls (call_id TEXT PRIMARY KEY, provider_call_id TEXT, state TEXT NOT NULL,
    terminal INTEGER NOT NULL, started_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    record TEXT NOT NULL);
CREATE TABLE transcript (call_id TEXT NOT NULL, idx INTEGER NOT NULL, entry TEXT NOT NULL,
    PRIMARY KEY (call_id, idx)) WITHOUT ROWID;
CREATE TABLE processed_keys (call_id TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (call_id, seq)) WITHOUT ROWID;
"""


async def test_a_store_written_with_separate_transcript_and_key_tables_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "calls.sqlite3")
    conn.executescript(_OLD_SCHEMA)
    for cid, state in (("live", "listening"), ("done", "completed")):
        head = rec(cid, CallState(state)).model_dump_json(
            by_alias=True, exclude_none=True, exclude={"transcript", "processed_event_ids"})
        conn.execute("INSERT INTO calls VALUES (?,?,?,?,?,?,?)",
                     (cid, f"P-{cid}", state, int(state == "completed"), 1000, 1000, head))
        conn.executemany("INSERT INTO transcript VALUES (?,?,?)", [
            (cid, i, TranscriptEntry(timestamp=i, speaker="user", text=f"{cid}{i}").to_json())
            for i in range(3)])
        conn.executemany("INSERT INTO processed_keys VALUES (?,?,?)",
                         [(cid, i + 1, f"{cid}-k{i}") for i in range(5)])
    conn.execute("INSERT INTO transcript VALUES ('orphan', 0, '{}')")
    conn.commit()
    conn.close()
    async with SQLiteCallStore(tmp_path) as store:
        tables = _committed(store, "SELECT name FROM sqlite_master WHERE type='table'"
                                   " AND name IN ('transcript', 'processed_keys')")
        assert tables == []
        for cid in ("live", "done"):
            got = await store.get(cid)
            assert got is not None and [t.text for t in got.transcript] == [f"{cid}{i}" for i in range(3)]
            assert got.processed_event_ids == [f"{cid}-k{i}" for i in range(5)]
        live = (await store.live_calls())[0]
        live.transcript.append(TranscriptEntry(timestamp=9, speaker="bot", text="new"))
        live.processed_event_ids.append("live-k5")
        await store.save(live)
    async with SQLiteCallStore(tmp_path) as store:
        got = await store.get("live")
        assert got is not None and [t.text for t in got.transcript][-2:] == ["live2", "new"]
        assert got.processed_event_ids[-2:] == ["live-k4", "live-k5"]


async def test_importing_over_a_stored_call_replaces_its_items(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path / "a") as store:
        call = rec("c1", CallState.COMPLETED, endReason="completed", endedAt=9)
        call.transcript.append(TranscriptEntry(timestamp=5, speaker="bot", text="imported"))
        await store.save(call)
        await store.export_jsonl(tmp_path / "calls.jsonl")
    async with SQLiteCallStore(tmp_path / "b") as store:
        other = rec("c1")
        other.transcript.append(TranscriptEntry(timestamp=1, speaker="user", text="local"))
        other.processed_event_ids.append("k-local")
        await store.save(other)
        assert await store.import_jsonl(tmp_path / "calls.jsonl") == 1
        got = await store.get("c1")
        assert got is not None and [t.text for t in got.transcript] == ["imported"]
        assert _committed(store, f"SELECT COUNT(*) FROM {_ITEMS}") == [(0,)]


def _count_transactions(store: SQLiteCallStore) -> list[int]:
    """Wrap the store's transaction runner; the list gets each transaction's op count."""
    sizes: list[int] = []
    run = store._transaction

    def counted(conn, batch, *, isolate):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        return run(conn, batch, isolate=isolate)

    store._transaction = counted  # type: ignore[method-assign]
    return sizes


async def test_a_lone_write_commits_on_the_next_loop_iteration(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        sizes = _count_transactions(store)
        task = asyncio.ensure_future(store.save(rec("alone")))
        for _ in range(3):  # the task submits, the commit runs, the task resumes
            await asyncio.sleep(0)
        assert task.done() and sizes == [1]


async def test_writes_that_keep_arriving_share_one_commit(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        sizes = _count_transactions(store)

        async def late(i: int) -> None:
            for _ in range(i // 3):  # three writes per loop iteration, as busy webhooks arrive
                await asyncio.sleep(0)
            await store.save(rec(f"w{i}"))

        await asyncio.gather(*(late(i) for i in range(18)))
        assert sizes == [18]  # without the wait: six transactions of three writes each
        assert len(await store.live_calls()) == 18


@pytest.mark.parametrize("cap", ["delay", "size"])
async def test_a_batch_that_never_stops_growing_is_committed_at_a_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: str) -> None:
    if cap == "delay":
        monkeypatch.setattr(sqlite_store, "GROUP_COMMIT_MAX_OPS", 10**9)
    else:
        monkeypatch.setattr(sqlite_store, "GROUP_COMMIT_MAX_DELAY_S", 60.0)
    async with SQLiteCallStore(tmp_path) as store:
        sizes = _count_transactions(store)
        stop = asyncio.Event()
        saves: list[asyncio.Future[None]] = []

        async def flood() -> None:
            i = 0
            while not stop.is_set():  # more writes every loop iteration
                for _ in range(2):
                    i += 1
                    saves.append(asyncio.ensure_future(store.save(rec(f"f{i}"))))
                await asyncio.sleep(0)

        loop = asyncio.get_running_loop()
        started = loop.time()
        flooding = asyncio.ensure_future(flood())
        await asyncio.sleep(0)  # the flood's first write opens the batch
        await asyncio.sleep(0)
        first = store.save(rec("first"))  # joins the growing batch
        await asyncio.wait_for(first, 5)  # without the caps: committed only once the flood stops
        waited = loop.time() - started
        stop.set()
        await flooding
        await asyncio.gather(*saves)
        assert waited < 0.5 and sizes
        if cap == "delay":
            assert waited >= sqlite_store.GROUP_COMMIT_MAX_DELAY_S and sizes[0] > 1
        else:
            assert sqlite_store.GROUP_COMMIT_MAX_OPS <= sizes[0] <= sqlite_store.GROUP_COMMIT_MAX_OPS + 3


async def test_every_head_change_is_written_even_when_serializing_it_is_skipped(
        tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("h1")
        await store.save(call)
        writes: list[str] = []
        dump = CallRecord.model_dump_json

        def counted(self: CallRecord, **kw: object) -> str:
            writes.append(self.call_id)
            return dump(self, **kw)  # type: ignore[arg-type]

        CallRecord.model_dump_json = counted  # type: ignore[method-assign]
        try:
            call.transcript.append(TranscriptEntry(timestamp=1, speaker="user", text="hi"))
            await store.save(call)  # only the transcript grew: the head is not serialized
            assert writes == []
            call.metadata["greeting"] = "done"
            await store.save(call)
            call.answered_at = 1234
            await store.save(call)
            call.provider_call_id = "P-h1"
            await store.save(call)
        finally:
            CallRecord.model_dump_json = dump  # type: ignore[method-assign]
        assert len(writes) == 3
        got = await store.get("P-h1")
        assert got is not None and got.metadata == {"greeting": "done"} and got.answered_at == 1234
        assert [e.text for e in got.transcript] == ["hi"]


def _write_text_keyed_replay_table(path: Path, reply: dict[str, object]) -> None:
    import sqlite3

    old = sqlite3.connect(path / sqlite_store.DB_NAME)
    old.execute("CREATE TABLE replay_keys (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL,"
                " reply TEXT)")
    old.executemany("INSERT INTO replay_keys VALUES (?,?,?)",
                    [("k1", 10**13, json.dumps(reply)), ("k2", 10**13, None), ("gone", 1, None)])
    old.commit()
    old.close()


async def test_a_store_with_the_text_keyed_replay_table_is_migrated(tmp_path: Path) -> None:
    reply = {"status": 200, "headers": {"content-type": "text/xml"}, "body": "<Response/>"}
    _write_text_keyed_replay_table(tmp_path, reply)
    async with SQLiteCallStore(tmp_path) as store:
        assert await store.lookup_replay("k1") == reply
        assert await store.lookup_replay("k2") == {}
        assert await store.lookup_replay("gone") is None  # expired
        assert await store.lookup_replay("k3") is None
        assert _committed(store, "SELECT name FROM sqlite_master WHERE name='replay_keys'") == []


async def test_a_request_key_is_stored_once_and_keeps_its_first_reply(tmp_path: Path) -> None:
    first = {"status": 200, "headers": {}, "body": "first"}
    async with SQLiteCallStore(tmp_path) as store:
        await store.remember_reply("k", first)
        await store.remember_reply("k", {"status": 200, "headers": {}, "body": "second"})
        assert _committed(store, "SELECT COUNT(*) FROM request_keys") == [(1,)]
        assert await store.lookup_replay("k") == first


async def test_keys_whose_digests_collide_are_told_apart_by_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "_digest", lambda key: 42)
    async with SQLiteCallStore(tmp_path) as store:
        await store.remember_reply("a", {"status": 200, "headers": {}, "body": "A"})
        await store.remember_reply("b", {"status": 201, "headers": {}, "body": "B"})
        assert (await store.lookup_replay("a") or {}).get("body") == "A"
        assert (await store.lookup_replay("b") or {}).get("body") == "B"
        assert await store.lookup_replay("c") is None
        assert await store.mark_replay("c") is False and await store.mark_replay("c") is True
        await store.forget_replay("a")
        assert await store.lookup_replay("a") is None and await store.lookup_replay("b") is not None


async def test_a_request_seen_again_after_its_key_expired_is_stored_again_and_then_caught(
        tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path, replay_ttl_ms=1) as store:
        await store.remember_reply("k", {"status": 200, "headers": {}, "body": "old"})
        await asyncio.sleep(0.01)
        assert await store.lookup_replay("k") is None  # expired: applied again
        store.replay_ttl_ms = 60_000
        await store.remember_reply("k", {"status": 200, "headers": {}, "body": "new"})
        assert (await store.lookup_replay("k") or {}).get("body") == "new"
    async with SQLiteCallStore(tmp_path) as store:  # the filter is rebuilt from live keys only
        assert (await store.lookup_replay("k") or {}).get("body") == "new"


async def test_readers_leave_the_text_keyed_replay_table_to_the_gateway(tmp_path: Path) -> None:
    _write_text_keyed_replay_table(tmp_path, {"status": 200, "headers": {}, "body": "x"})
    reader = SQLiteCallStore(tmp_path)  # as the CLI reads a store: no open()
    assert reader.run_sync(lambda conn: conn.execute(
        "SELECT COUNT(*) FROM replay_keys").fetchone()) == (3,)
    async with SQLiteCallStore(tmp_path) as store, SQLiteCallStore(tmp_path) as second:
        assert await store.lookup_replay("k2") == {} and await second.lookup_replay("k2") == {}


async def test_keys_spread_over_many_runs_are_all_found_and_replays_caught_after_reopening(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "KEY_RUN_MIN_KEYS", 3)
    reply = {"status": 200, "headers": {}, "body": "OK"}
    async with SQLiteCallStore(tmp_path) as store:
        for i in range(10):
            await store.remember_reply(f"k{i}", reply)
        assert _committed(store, "SELECT COUNT(DISTINCT run) FROM request_keys") == [(4,)]
        assert all([await store.lookup_replay(f"k{i}") == reply for i in range(10)])
    async with SQLiteCallStore(tmp_path) as store:
        assert (store.run_sync(store._key_runs.oldest), store._key_runs.current) == (1, 4)
        await store.remember_reply("after", reply)  # a reopened store starts a run of its own
        assert _committed(store, "SELECT run FROM request_keys WHERE key='after'") == [(5,)]
        assert all([await store.mark_replay(f"k{i}") for i in range(10)])
        assert await store.mark_replay("new") is False
        await store.forget_replay("k0")
        assert await store.lookup_replay("k0") is None and await store.lookup_replay("k1") == reply


def test_a_run_takes_a_share_of_the_live_keys_once_there_are_many() -> None:
    runs = sqlite_store._KeyRuns()
    first = [runs.take(live_keys=10) for _ in range(sqlite_store.KEY_RUN_MIN_KEYS + 1)]
    assert set(first[:-1]) == {1} and first[-1] == 2
    many = 100 * sqlite_store.KEY_RUN_MIN_KEYS * sqlite_store.KEY_RUNS_PER_STORE
    runs = sqlite_store._KeyRuns()
    taken = [runs.take(live_keys=many) for _ in range(100 * sqlite_store.KEY_RUN_MIN_KEYS + 1)]
    assert taken[-2] == 1 and taken[-1] == 2


async def test_a_key_lookup_seeks_each_run_in_the_index_instead_of_reading_keys(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        plan = store.run_sync(lambda conn: conn.execute(
            f"EXPLAIN QUERY PLAN {sqlite_store._FIND_KEY}", (0, 5, 1, "k")).fetchall())
    details = [row[-1] for row in plan]
    assert "SEARCH request_keys USING INDEX request_keys_run (run=? AND digest=?)" in details


async def test_pruning_expired_keys_moves_lookups_past_their_runs_and_keeps_later_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "KEY_RUN_MIN_KEYS", 2)
    reply = {"status": 200, "headers": {}, "body": "OK"}
    async with SQLiteCallStore(tmp_path, replay_ttl_ms=-1) as store:
        for i in range(4):
            await store.remember_reply(f"old{i}", reply)  # runs 1 and 2, already expired
        store.replay_ttl_ms = 60_000
        for i in range(3):
            await store.remember_reply(f"live{i}", reply)  # runs 3 and 4
        await store.prune()
        assert (store.run_sync(store._key_runs.oldest), store._key_runs.current) == (3, 4)
        assert all([await store.lookup_replay(f"live{i}") == reply for i in range(3)])
        store._clear_caches()  # as after a failed transaction: where lookups start is read, not kept
        assert await store.lookup_replay("live0") == reply
        await store.prune()  # nothing expired since
        assert store.run_sync(store._key_runs.oldest) == 3


async def test_a_store_whose_request_keys_were_indexed_by_digest_alone_is_given_runs(
        tmp_path: Path) -> None:
    import sqlite3

    reply = {"status": 200, "headers": {}, "body": "kept"}
    old = sqlite3.connect(tmp_path / sqlite_store.DB_NAME)
    old.execute("CREATE TABLE request_keys (digest INTEGER NOT NULL, key TEXT NOT NULL,"
                " expires_at INTEGER NOT NULL, reply TEXT)")
    old.execute("CREATE INDEX request_keys_digest ON request_keys(digest)")
    old.execute("INSERT INTO request_keys VALUES (?,?,?,?)",
                (sqlite_store._digest("k1"), "k1", 10**13, json.dumps(reply)))
    old.commit()
    old.close()
    async with SQLiteCallStore(tmp_path) as store:
        assert await store.lookup_replay("k1") == reply
        assert await store.mark_replay("k1") is True and await store.mark_replay("k2") is False
        indexes = _committed(store, "SELECT name FROM sqlite_master WHERE type='index'"
                                    " AND tbl_name='request_keys'")
        assert indexes == [("request_keys_run",)]
        assert _committed(store, "SELECT key, run FROM request_keys ORDER BY rowid") == [
            ("k1", 0), ("k2", 1)]


def test_the_key_filter_at_capacity_sends_under_one_percent_of_new_keys_to_a_lookup() -> None:
    import random

    rnd = random.Random(7)
    kept = sqlite_store._KeyFilter(bits=1 << 16)
    for _ in range(kept.capacity):
        kept.add(rnd.getrandbits(63) - (1 << 62))
    maybes = sum(kept.might_contain(rnd.getrandbits(63) - (1 << 62)) for _ in range(50_000))
    assert maybes / 50_000 < 0.01
    rebuilt = sqlite_store._KeyFilter.of(range(kept.capacity))
    assert rebuilt.count <= rebuilt.capacity // 2  # room to grow before it is rebuilt again


def test_adding_a_digest_tells_what_asking_first_would_have() -> None:
    import random

    rnd = random.Random(3)
    asked, added = sqlite_store._KeyFilter(bits=1 << 12), sqlite_store._KeyFilter(bits=1 << 12)
    digests = [rnd.getrandbits(63) for _ in range(400)]
    digests += digests[:50]  # some seen again
    answers = []
    for digest in digests:
        answers.append(asked.might_contain(digest))
        asked.add(digest)
    assert [added.add(digest) for digest in digests] == answers
    assert all(answers[400:]) and not all(answers[:400])


@pytest.mark.parametrize("value", [
    {"type": "call.speech", "timestamp": 1764150000000, "key": "ev-1", "transcript": "hi",
     "isFinal": True},
    {"nested": [1, 2.5, None, False, {"deep": "x"}], "big": 2**70, "tiny": 1.5e-7},
    {"text": "é — ünïcode \u2028 \x00 \"quoted\" \\ back"},
    {"nan": float("nan"), "inf": float("-inf")},
])
def test_row_json_reads_back_as_the_same_value(value: dict[str, object]) -> None:
    text = sqlite_store._json(value)
    assert text.isascii()  # as the standard library writes it: non-ASCII escaped
    assert json.dumps(json.loads(text), sort_keys=True) == json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("value", [
    {"type": "call.speech", "timestamp": 1795671903231, "key": "ev-1",
     "transcript": 'say "hi"\n\tüber 😀', "isFinal": True},
    [1, 2.5, None, float("inf"), -0.0, 1e300, "x"], "text", 3, {"a": {"b": [1, {"c": "é"}]}}, {}, [],
])
def test_row_json_is_the_text_json_dumps_writes_compact(value: object) -> None:
    assert sqlite_store._json(value) == json.dumps(value, separators=(",", ":"))


def test_row_json_escapes_a_lone_surrogate_and_refuses_what_json_cannot_hold() -> None:
    assert json.loads(sqlite_store._json({"t": "a\ud800b"})) == {"t": "a\ud800b"}
    with pytest.raises(TypeError):
        sqlite_store._json({"t": object()})


async def _saving(store: SQLiteCallStore, record: CallRecord, **kw: Any) -> None:
    """`store.save` from a task of its own, queued in the order `gather` starts its tasks."""
    await store.save(record, **kw)


async def test_appended_rows_are_written_before_a_later_op_of_the_transaction_reads_them(
        tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        sizes = _count_transactions(store)
        write = store.reply_write("req-1", {"status": 200, "headers": {}, "body": "OK"})
        _, replayed = await asyncio.gather(_saving(store, rec("a"), reply=write),
                                           store.mark_replay("req-1"))
        assert sizes == [2] and write.written
        assert replayed is True  # the save's key row was there for the lookup


async def test_rows_appended_and_rows_written_directly_keep_their_order_in_the_log(
        tmp_path: Path) -> None:
    jsonl = tmp_path / "calls.jsonl"
    jsonl.write_text(rec("b").to_json() + "\n")
    async with SQLiteCallStore(tmp_path / "store") as store:
        sizes = _count_transactions(store)
        await asyncio.gather(_saving(store, rec("a")), store.import_jsonl(jsonl),
                             _saving(store, rec("c")))
        assert sizes == [3]
        assert [e.call_id for e in await store.last_log(10)] == ["a", "b", "c"]


async def test_a_save_whose_rows_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        sizes = _count_transactions(store)
        bad = store.reply_write("req-bad", {"status": 200, "headers": {}, "body": "OK"})
        bad._row = (bad._row[0], None, bad._row[2], bad._row[3])  # type: ignore[assignment]
        results = await asyncio.gather(store.save(rec("a")), store.save(rec("b"), reply=bad),
                                       store.save(rec("c")), return_exceptions=True)
        assert sizes == [3, 3]  # all together, then each op alone in its savepoint
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], sqlite3.IntegrityError)
        assert [e.call_id for e in await store.last_log(10)] == ["a", "c"]
        assert await store.get("b") is None and await store.lookup_replay("req-bad") is None


@pytest.mark.parametrize(("keys", "known", "new"), [
    (["a", "b"], {"a"}, ["b"]),
    (["a"], set(), ["a"]),
    (["a", "b", "c"], {"a"}, ["b", "c"]),
    (["a", "b"], set(), ["a", "b"]),
    (["a", "b"], {"a", "b"}, []),
    ([], set(), []),
])
def test_new_keys_are_the_unstored_ones_at_the_end(keys: list[str], known: set[str],
                                                   new: list[str]) -> None:
    assert sqlite_store._new_keys(keys, known) == new
