"""The SQLite call store, through its public API: records persisted by value, group-committed
writes, replay keys across reopen, retention, the calls.jsonl format, and the migration of the
layouts written before the store was versioned (built here with raw SQL)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from voicecall.calls.model import CallRecord, CallState, EndReason, TranscriptEntry
from voicecall.store import CallStore, LogEntry, SQLiteCallStore
from voicecall.store.sqlite import DB_NAME, SCHEMA_VERSION, SchemaTooNew, StoreClosed
from voicecall.store.sqlite import SQLiteCallStore as SQLiteCallStoreAgain
from voicecall.store.sqlite.writer import GroupCommitWriter

REPLY = {"status": 200, "headers": {"content-type": "text/xml"}, "body": "<Response/>"}


def rec(call_id: str, state: CallState = CallState.ANSWERED, **kw: object) -> CallRecord:
    return CallRecord.model_validate({"callId": call_id, "provider": "mock", "direction": "outbound",
                                      "state": state, "from": "+15550000000", "to": "+15555550123",
                                      "startedAt": 1000, **kw})


def entry(text: str, at: int = 1, speaker: str = "user") -> TranscriptEntry:
    return TranscriptEntry.model_validate({"timestamp": at, "speaker": speaker, "text": text})


def sql(directory: Path, query: str, *args: object) -> list[tuple[Any, ...]]:
    """Rows of the store's file as another connection sees them (committed data only)."""
    conn = sqlite3.connect(directory / DB_NAME)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


async def reopened(directory: Path, call_id: str) -> CallRecord:
    async with SQLiteCallStore(directory) as store:
        got = await store.get(call_id)
    assert got is not None
    return got


# -- the package's import paths -----------------------------------------------------------------
def test_the_store_is_importable_from_both_paths_and_is_a_call_store(tmp_path: Path) -> None:
    assert SQLiteCallStore is SQLiteCallStoreAgain
    store: CallStore = SQLiteCallStore(tmp_path)
    assert store.path == tmp_path / DB_NAME and store.directory == tmp_path
    assert LogEntry(1, 2, "c", "event", {}).to_json_dict() == {
        "seq": 1, "at": 2, "callId": "c", "kind": "event", "data": {}}


# -- records, persisted by value ------------------------------------------------------------------
async def test_concurrent_saves_all_land_and_lookup_works_by_either_id(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        await asyncio.gather(*(store.save(rec(f"c{i}", providerCallId=f"P{i}")) for i in range(200)))
        assert len(await store.live_calls()) == 200
        found = await store.get("P7")
        assert found is not None and found.call_id == "c7"
        assert await store.get("nobody") is None
        assert len(await store.last_log(1000, kinds=("snapshot",))) == 200


async def test_a_nested_metadata_change_made_in_place_is_saved(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1", metadata={"latency": {"turns": 1, "p50": 300}})
        await store.save(call)
        call.metadata["latency"]["turns"] = 5
        await store.save(call)
    assert (await reopened(tmp_path, "c1")).metadata == {"latency": {"turns": 5, "p50": 300}}


async def test_a_transcript_entry_edited_in_place_is_saved(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1", transcript=[{"timestamp": 1, "speaker": "user", "text": "helo"}])
        await store.save(call)
        call.transcript[0].text = "hello"
        call.transcript[0].is_final = False
        await store.save(call)
    got = (await reopened(tmp_path, "c1")).transcript
    assert [(e.text, e.is_final) for e in got] == [("hello", False)]


async def test_a_lone_surrogate_from_carrier_json_is_saved_as_a_replacement_character(
        tmp_path: Path) -> None:
    """JSON may escape half a surrogate pair ("\\ud800"); UTF-8 cannot hold it, and it must
    not make the call unsavable."""
    speech = json.loads('"hi \\ud800 there"')
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1", transcript=[{"timestamp": 1, "speaker": "user", "text": speech}])
        call.metadata["carrier"] = {"note": json.loads('"a\\udc00b"')}
        await store.save(call)
    got = await reopened(tmp_path, "c1")
    assert got.transcript[0].text == "hi \ufffd there"
    assert got.metadata["carrier"] == {"note": "a\ufffdb"}


async def test_dedupe_keys_appended_or_changed_in_place_are_saved(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1", processedEventIds=["k0"])
        await store.save(call)
        call.processed_event_ids.append("k1")
        await store.save(call)
        assert (await store.get("c1") or rec("x")).processed_event_ids == ["k0", "k1"]
        call.processed_event_ids[0] = "k0-changed"
        await store.save(call)
    got = await reopened(tmp_path, "c1")
    assert got.processed_event_ids == ["k0-changed", "k1"]
    assert got.has_processed("k1") and not got.has_processed("k0")


async def test_a_record_is_saved_as_it_was_when_save_was_called(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1")
        saving = asyncio.ensure_future(store.save(call))
        await asyncio.sleep(0)  # save has run up to its commit
        call.metadata["later"] = True  # not part of that save
        await saving
        assert (await store.get("c1") or call).metadata == {}


async def test_a_long_call_loads_whole_after_reopening(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1", providerCallId="P1")
        for i in range(300):
            call.transcript.append(entry(f"t{i}", at=i))
            call.remember_processed(f"k{i}", 500)
            await store.save(call, events=[{"type": "call.speech", "i": i}])
        assert len(await store.last_log(1000, kinds=("snapshot",))) == 1  # the state never changed
        assert len(await store.last_log(1000, kinds=("event",))) == 300
    got = await reopened(tmp_path, "P1")
    assert [t.text for t in got.transcript] == [f"t{i}" for i in range(300)]
    assert got.processed_event_ids == [f"k{i}" for i in range(300)]


async def test_a_transcript_shortened_in_memory_is_shortened_in_the_store(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1")
        for i in range(4):
            call.transcript.append(entry(f"t{i}", at=i))
            call.processed_event_ids.append(f"k{i}")
            await store.save(call)
        del call.transcript[2:]  # as `CallRecord.roll_back` does
        await store.save(call)
        got = await store.get("c1")
        assert got is not None and [t.text for t in got.transcript] == ["t0", "t1"]
        call.transcript.append(entry("again", at=9, speaker="bot"))
        await store.save(call)
    got = await reopened(tmp_path, "c1")
    assert [t.text for t in got.transcript] == ["t0", "t1", "again"]
    assert got.processed_event_ids == ["k0", "k1", "k2", "k3"]


async def test_snapshots_are_logged_on_state_changes_and_always_for_a_terminal_state(
        tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        call = rec("c1", CallState.RINGING)
        await store.save(call)
        call.metadata["x"] = 1
        await store.save(call)  # same state: the calls row changes, no snapshot
        call.state = CallState.ANSWERED
        await store.save(call, turn={"turn": 1, "ms": 420})
        call.state, call.end_reason, call.ended_at = CallState.COMPLETED, EndReason.COMPLETED, 9
        await store.save(call)
        await store.save(call)
        kinds = [(e.kind, e.data.get("state")) for e in await store.log_since(0)]
        assert kinds == [("snapshot", "ringing"), ("snapshot", "answered"), ("turn", None),
                         ("snapshot", "completed"), ("snapshot", "completed")]
        assert [h["state"] for h in await store.state_history("c1")] == [
            "ringing", "answered", "completed"]
        assert [e.data for e in await store.last_log(5, kinds=("turn",))] == [{"turn": 1, "ms": 420}]
        assert await store.live_calls() == [] and len(await store.recent_calls()) == 1


async def test_event_rows_read_back_as_the_same_values(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = [
        {"type": "call.speech", "key": "ev-1", "transcript": 'say "hi"\n\tüber 😀', "isFinal": True},
        {"nested": [1, 2.5, None, False, {"deep": "x"}], "big": 2**70, "tiny": 1.5e-7},
        {"text": "a\ud800b \u2028 \x00"},
    ]
    async with SQLiteCallStore(tmp_path) as store:
        await store.save(rec("c1"), events=events)
        assert [e.data for e in await store.log_since(0, kinds=("event",))] == events


async def test_a_save_whose_json_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        results = await asyncio.gather(
            store.save(rec("a")), store.save(rec("bad", metadata={"x": object()})),
            store.save(rec("b"), events=[{"x": object()}]), store.save(rec("c")),
            return_exceptions=True)
        assert results[0] is True and results[3] is True  # saved: new calls
        assert isinstance(results[1], ValueError) and isinstance(results[2], TypeError)
        assert [e.call_id for e in await store.last_log(10)] == ["a", "c"]
        assert await store.get("bad") is None and await store.get("b") is None


async def test_a_save_that_fails_in_the_database_fails_alone_while_the_others_commit(
        tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        calls = [rec(f"c{i}") for i in range(3)]
        await asyncio.gather(*(store.save(c) for c in calls))
        for round_ in range(3):
            for c in calls:
                c.transcript.append(entry(f"r{round_}", at=round_))
                c.processed_event_ids.append(f"{c.call_id}-{round_}")
            too_big = rec(f"bad{round_}", startedAt=2**64)  # SQLite stores 64-bit integers
            results = await asyncio.gather(
                store.save(calls[0], events=[{"round": round_}]), store.save(too_big),
                *(store.save(c) for c in calls[1:]), return_exceptions=True)
            assert isinstance(results[1], OverflowError)
            assert [r for i, r in enumerate(results) if i != 1] == [False, False, False]  # saved
        assert await store.get("bad0") is None
        assert [e.data for e in await store.log_since(0, kinds=("event",))] == [
            {"round": r} for r in range(3)]
    for c in calls:
        got = await reopened(tmp_path, c.call_id)
        assert [t.text for t in got.transcript] == ["r0", "r1", "r2"]
        assert got.processed_event_ids == [f"{c.call_id}-{r}" for r in range(3)]


# -- group commit ----------------------------------------------------------------------------------
async def test_a_lone_write_commits_on_the_next_loop_iteration(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        task = asyncio.ensure_future(store.save(rec("alone")))
        for _ in range(3):  # the task submits, the commit runs, the task resumes
            await asyncio.sleep(0)
        assert task.done() and sql(tmp_path, "SELECT call_id FROM calls") == [("alone",)]


async def test_closing_the_store_commits_what_is_pending(tmp_path: Path) -> None:
    store = SQLiteCallStore(tmp_path)
    store.open()
    task = asyncio.ensure_future(store.save(rec("pending")))
    await asyncio.sleep(0)  # queued, not committed yet
    store.close()
    await task
    assert (await reopened(tmp_path, "pending")).call_id == "pending"
    with pytest.raises(StoreClosed):
        await store.save(rec("late"))
    with pytest.raises(RuntimeError, match="not open"):
        await store.get("pending")


def _writer(conn: sqlite3.Connection, **kw: Any) -> tuple[GroupCommitWriter, list[int]]:
    """A writer on `conn` that records each commit's op count."""
    import threading

    sizes: list[int] = []
    conn.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
    return GroupCommitWriter(conn, threading.Lock(), on_commit=sizes.append, **kw), sizes


def _insert(value: int) -> Callable[[sqlite3.Connection], int]:
    def op(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        return value

    return op


@pytest.fixture
def conn() -> Any:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    yield connection
    connection.close()


async def test_writes_that_keep_arriving_share_one_commit(conn: sqlite3.Connection) -> None:
    writer, sizes = _writer(conn)

    async def late(i: int) -> int:
        for _ in range(i // 3):  # three writes per loop iteration, as busy webhooks arrive
            await asyncio.sleep(0)
        return await writer.submit(_insert(i))

    assert await asyncio.gather(*(late(i) for i in range(18))) == list(range(18))
    assert sizes == [18]  # without the wait: six transactions of three writes each


@pytest.mark.parametrize("cap", ["delay", "size"])
async def test_a_batch_that_never_stops_growing_is_committed_at_a_cap(
        conn: sqlite3.Connection, cap: str) -> None:
    writer, sizes = _writer(conn, **({"max_ops": 10**9} if cap == "delay" else {"max_delay_s": 60.0}))
    stop = asyncio.Event()
    writes: list[asyncio.Future[int]] = []

    async def flood() -> None:
        while not stop.is_set():  # more writes every loop iteration
            writes.extend(writer.submit(_insert(0)) for _ in range(2))
            await asyncio.sleep(0)

    loop = asyncio.get_running_loop()
    started = loop.time()
    flooding = asyncio.ensure_future(flood())
    await asyncio.sleep(0)  # the flood's first writes open the batch
    await asyncio.wait_for(writer.submit(_insert(1)), 5)  # without the caps: never committed
    waited = loop.time() - started
    stop.set()
    await flooding
    await asyncio.gather(*writes)
    assert waited < 0.5 and sizes
    if cap == "delay":
        assert waited >= writer.max_delay_s and sizes[0] > 1
    else:
        assert sizes[0] == writer.max_ops


async def test_a_failing_op_fails_alone_in_a_shared_commit(conn: sqlite3.Connection) -> None:
    writer, sizes = _writer(conn)

    def broken(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (99)")
        raise RuntimeError("boom")

    results = await asyncio.gather(writer.submit(_insert(1)), writer.submit(broken),
                                   writer.submit(_insert(2)), return_exceptions=True)
    assert results[0] == 1 and isinstance(results[1], RuntimeError) and results[2] == 2
    assert sizes == [3] and conn.execute("SELECT v FROM t").fetchall() == [(1,), (2,)]


async def test_a_transaction_that_fails_fails_every_op_in_it(conn: sqlite3.Connection) -> None:
    writer, sizes = _writer(conn)

    def ends_the_transaction(c: sqlite3.Connection) -> None:
        c.execute("ROLLBACK")  # the savepoint goes with it: the transaction cannot commit

    results = await asyncio.gather(writer.submit(_insert(1)), writer.submit(ends_the_transaction),
                                   return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert sizes == [] and conn.execute("SELECT v FROM t").fetchall() == []
    assert not conn.in_transaction
    assert await writer.submit(_insert(3)) == 3  # the next commit is not affected


# -- replay keys and rejected keys ----------------------------------------------------------------
async def test_a_remembered_reply_is_committed_before_remember_reply_returns(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store, SQLiteCallStore(tmp_path) as other:
        await store.remember_reply("k1", {"status": 200, "headers": {}, "body": "OK"})
        assert await other.lookup_replay("k1") == {"status": 200, "headers": {}, "body": "OK"}
        assert await store.lookup_replay("k2") is None


async def test_replies_survive_reopening_and_unknown_keys_stay_unknown(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        for i in range(50):
            await store.remember_reply(f"k{i}", REPLY)
        await store.remember_reply("empty", {})
    async with SQLiteCallStore(tmp_path) as store:
        assert all([await store.lookup_replay(f"k{i}") == REPLY for i in range(50)])
        assert [await store.lookup_replay(f"new{i}") for i in range(50)] == [None] * 50
        assert await store.lookup_replay("empty") == {}


async def test_a_request_key_is_stored_once_and_keeps_its_first_reply(tmp_path: Path) -> None:
    first = {"status": 200, "headers": {}, "body": "first"}
    async with SQLiteCallStore(tmp_path) as store:
        await asyncio.gather(store.remember_reply("k", first),
                             store.remember_reply("k", {"status": 200, "headers": {}, "body": "second"}))
        await store.remember_reply("k", {"status": 500, "headers": {}, "body": "third"})
        assert await store.lookup_replay("k") == first
    assert sql(tmp_path, "SELECT COUNT(*) FROM replay_keys") == [(1,)]


async def test_an_expired_key_is_unknown_and_can_be_stored_again(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path, replay_ttl_ms=1) as store:
        await store.remember_reply("k", {"status": 200, "headers": {}, "body": "old"})
        await asyncio.sleep(0.01)
        assert await store.lookup_replay("k") is None  # expired: the request is applied again
        store.replay_ttl_ms = 60_000
        await store.remember_reply("k", {"status": 200, "headers": {}, "body": "new"})
        assert (await store.lookup_replay("k") or {}).get("body") == "new"
    async with SQLiteCallStore(tmp_path) as store:
        assert (await store.lookup_replay("k") or {}).get("body") == "new"


async def test_rejected_keys_are_remembered_until_forgotten(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        assert await store.add_rejected_key("pc-1") is True
        assert await store.add_rejected_key("pc-1") is False
    async with SQLiteCallStore(tmp_path) as store:
        assert await store.is_rejected("pc-1") and not await store.is_rejected("pc-2")
        await store.forget_rejected_key("pc-1")
        assert not await store.is_rejected("pc-1")


async def test_provider_state_and_sessions_round_trip(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        await store.put_provider_state("c1", {"streamSid": "MZ1"})
        await store.put_provider_state("c1", {"streamSid": "MZ2"})
        await store.append_session("s", [{"role": "user", "content": str(i)} for i in range(3)])
        await store.append_session("s", [{"role": "assistant", "content": "3"}], keep=2)
    async with SQLiteCallStore(tmp_path) as store:
        assert await store.get_provider_state("c1") == {"streamSid": "MZ2"}
        assert await store.get_provider_state("c2") is None
        assert [m["content"] for m in await store.session_messages("s")] == ["2", "3"]
        assert await store.session_messages("other") == []


# -- retention ---------------------------------------------------------------------------------------
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


async def test_retention_drops_pruned_calls_with_their_state_and_expired_replay_keys(
        tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path, max_ended_calls=2, replay_ttl_ms=-1) as store:
        for i in range(5):
            call = rec(f"e{i}", CallState.COMPLETED, endReason="completed", endedAt=2000,
                       processedEventIds=[f"k{i}"])
            call.transcript.append(entry("bye", speaker="bot"))
            await store.save(call)
            await store.put_provider_state(f"e{i}", {"x": i})
            await asyncio.sleep(0.002)  # distinct update times: the newest two are kept
        await store.remember_reply("old", REPLY)
        assert await store.lookup_replay("old") is None  # already expired
        store.replay_ttl_ms = 60_000
        await store.remember_reply("live", REPLY)
        await store.prune()
        assert [c.call_id for c in await store.recent_calls(10)] == ["e4", "e3"]
        assert [await store.get_provider_state(f"e{i}") for i in range(5)] == [
            None, None, None, {"x": 3}, {"x": 4}]
        assert await store.lookup_replay("live") == REPLY
    assert sql(tmp_path, "SELECT key FROM replay_keys") == [("live",)]


# -- calls.jsonl --------------------------------------------------------------------------------------
async def test_jsonl_export_then_import_round_trips_the_last_snapshot(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path / "a") as store:
        call = rec("c1")
        await store.save(call)
        call.transcript.append(entry("Hello", at=5, speaker="bot"))
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


async def test_importing_over_a_stored_call_replaces_it(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path / "a") as store:
        call = rec("c1", CallState.COMPLETED, endReason="completed", endedAt=9)
        call.transcript.append(entry("imported", at=5, speaker="bot"))
        await store.save(call)
        await store.export_jsonl(tmp_path / "calls.jsonl")
    async with SQLiteCallStore(tmp_path / "b") as store:
        other = rec("c1")
        other.transcript.append(entry("local"))
        other.processed_event_ids.append("k-local")
        await store.save(other)
        assert await store.import_jsonl(tmp_path / "calls.jsonl") == 1
        got = await store.get("c1")
        assert got is not None and [t.text for t in got.transcript] == ["imported"]
        assert got.processed_event_ids == [] and await store.live_calls() == []


async def test_saves_and_an_import_in_one_commit_keep_their_order_in_the_log(tmp_path: Path) -> None:
    jsonl = tmp_path / "calls.jsonl"
    jsonl.write_text(rec("b").to_json() + "\n")
    async with SQLiteCallStore(tmp_path / "store") as store:
        await asyncio.gather(store.save(rec("a")), store.import_jsonl(jsonl), store.save(rec("c")))
        assert [e.call_id for e in await store.last_log(10)] == ["a", "b", "c"]


# -- durability -----------------------------------------------------------------------------------------
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
    await store.remember_reply("last", {"status": 200, "headers": {}, "body": "OK"})
    os.kill(os.getpid(), signal.SIGKILL)  # right after the last commit, as kill -9 after a 200

asyncio.run(main())
"""


def test_a_kill_9_after_a_commit_keeps_every_key_and_entry_for_restore(tmp_path: Path) -> None:
    """The store's process dies right after its last commit (no close, no final checkpoint): a
    reopened store has each live call's transcript and dedupe keys as committed."""
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
            assert await store.lookup_replay("last") == {"status": 200, "headers": {}, "body": "OK"}

    asyncio.run(reopen())


# -- migrations from the layouts before versioning -------------------------------------------------
_CALLS = """CREATE TABLE calls (call_id TEXT PRIMARY KEY, provider_call_id TEXT, state TEXT NOT NULL,
    terminal INTEGER NOT NULL, started_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    record TEXT NOT NULL);"""
_SIDE_TABLES = """
CREATE TABLE rejected_keys (key TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE provider_state (call_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE sessions (key TEXT PRIMARY KEY, messages TEXT NOT NULL, updated_at INTEGER NOT NULL);
INSERT INTO rejected_keys VALUES ('pc-rejected', 1);
INSERT INTO provider_state VALUES ('live', '{"streamSid": "MZ"}');
INSERT INTO sessions VALUES ('s', '[{"role": "user", "content": "hi"}]', 1);
"""
_LAYOUT_BEFORE_VERSIONS = _CALLS + """
CREATE TABLE log (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, call_id TEXT NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX log_turns ON log(seq) WHERE kind = 'turn';
CREATE TABLE request_keys (digest INTEGER NOT NULL, key TEXT NOT NULL, expires_at INTEGER NOT NULL,
    reply TEXT, run INTEGER NOT NULL DEFAULT 0);
CREATE INDEX request_keys_run ON request_keys(run, digest);
CREATE TABLE call_items (id INTEGER PRIMARY KEY, key TEXT, entry TEXT);
CREATE TABLE recent_items (seq INTEGER PRIMARY KEY, id INTEGER NOT NULL, key TEXT, entry TEXT);
""" + _SIDE_TABLES
_OLDEST_LAYOUT = _CALLS + """
CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
    call_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX log_kind ON log(kind, seq);
CREATE TABLE transcript (call_id TEXT NOT NULL, idx INTEGER NOT NULL, entry TEXT NOT NULL,
    PRIMARY KEY (call_id, idx)) WITHOUT ROWID;
CREATE TABLE processed_keys (call_id TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (call_id, seq)) WITHOUT ROWID;
""" + _SIDE_TABLES
_FAR = 10**13  # an expiry long after now


def _old_store(directory: Path, script: str) -> sqlite3.Connection:
    directory.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(directory / DB_NAME)
    conn.executescript(script)
    return conn


def _head(call_id: str, state: str) -> str:
    """A record as the old layouts stored it in `calls`: without transcript and dedupe keys."""
    return rec(call_id, CallState(state), providerCallId=f"P-{call_id}").model_dump_json(
        by_alias=True, exclude_none=True, exclude={"transcript", "processed_event_ids"})


def _add_call(conn: sqlite3.Connection, rowid: int, call_id: str, state: str,
              record: str | None = None) -> None:
    conn.execute("INSERT INTO calls(rowid, call_id, provider_call_id, state, terminal, started_at,"
                 " updated_at, record) VALUES (?,?,?,?,?,?,?,?)",
                 (rowid, call_id, f"P-{call_id}", state, int(CallState(state).is_terminal), 1000,
                  1000, record or _head(call_id, state)))


def _write_layout_before_versions(directory: Path) -> None:
    """A store as the code before versioning wrote it: call items split between `call_items`
    and `recent_items` (key-only, entry-only and shared rows), request keys with digests."""
    conn = _old_store(directory, _LAYOUT_BEFORE_VERSIONS)
    _add_call(conn, 1, "live", "listening")
    _add_call(conn, 2, "done", "completed")
    full = rec("imported", CallState.COMPLETED, transcript=[{"timestamp": 1, "speaker": "bot",
               "text": "kept"}], processedEventIds=["i-k"]).to_json()
    _add_call(conn, 3, "imported", "completed", full)
    for no, cid in ((1, "live"), (2, "done")):
        base = no << 32
        rows: list[tuple[int, str | None, str | None]] = [(base + i + 1, f"{cid}-k{i}",
                 entry(f"{cid}{i // 200}", at=i).to_json() if i % 200 == 0 else None)
                for i in range(600)]
        rows.append((base + 601, None, entry(f"{cid}-last").to_json()))  # an entry without a key
        conn.executemany("INSERT INTO call_items(id, key, entry) VALUES (?,?,?)", rows[:550])
        conn.executemany("INSERT INTO recent_items(id, key, entry) VALUES (?,?,?)", rows[550:])
    conn.executemany("INSERT INTO request_keys(digest, key, expires_at, reply, run) VALUES (?,?,?,?,?)", [
        (1, "k1", _FAR, json.dumps(REPLY), 1), (2, "k2", _FAR, None, 1), (3, "gone", 1, None, 1),
        (4, "again", 1, json.dumps({"body": "expired"}), 1),
        (4, "again", _FAR, json.dumps({"body": "live"}), 2)])
    conn.execute("INSERT INTO log(at, call_id, kind, data) VALUES (1, 'live', 'event', '{}')")
    conn.commit()
    conn.close()


async def test_a_store_written_before_versioning_is_migrated_with_nothing_lost(tmp_path: Path) -> None:
    _write_layout_before_versions(tmp_path)
    async with SQLiteCallStore(tmp_path) as store:
        for cid in ("live", "done"):
            got = await store.get(f"P-{cid}")
            assert got is not None and got.call_id == cid
            assert [t.text for t in got.transcript] == [f"{cid}{i}" for i in range(3)] + [f"{cid}-last"]
            assert got.processed_event_ids == [f"{cid}-k{i}" for i in range(100, 600)]
        imported = await store.get("imported")
        assert imported is not None and [t.text for t in imported.transcript] == ["kept"]
        assert imported.processed_event_ids == ["i-k"]
        assert [c.call_id for c in await store.live_calls()] == ["live"]
        assert await store.lookup_replay("k1") == REPLY and await store.lookup_replay("k2") == {}
        assert await store.lookup_replay("gone") is None and await store.lookup_replay("k3") is None
        assert await store.lookup_replay("again") == {"body": "live"}
        assert await store.is_rejected("pc-rejected")
        assert await store.get_provider_state("live") == {"streamSid": "MZ"}
        assert await store.session_messages("s") == [{"role": "user", "content": "hi"}]
        assert [(e.seq, e.call_id) for e in await store.log_since(0)] == [(1, "live")]
        live = (await store.live_calls())[0]
        live.transcript.append(entry("new", at=9, speaker="bot"))
        live.processed_event_ids.append("live-k600")
        await store.save(live)
    got = await reopened(tmp_path, "live")
    assert [t.text for t in got.transcript][-2:] == ["live-last", "new"]
    assert got.processed_event_ids[-2:] == ["live-k599", "live-k600"]
    assert sql(tmp_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert sql(tmp_path, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name") == [
        ("calls",), ("log",), ("provider_state",), ("rejected_keys",), ("replay_keys",),
        ("sessions",)]


async def test_a_store_with_separate_transcript_and_key_tables_is_migrated(tmp_path: Path) -> None:
    conn = _old_store(tmp_path, _OLDEST_LAYOUT)
    for no, (cid, state) in enumerate((("live", "listening"), ("done", "completed")), start=1):
        _add_call(conn, no, cid, state)
        conn.executemany("INSERT INTO transcript VALUES (?,?,?)",
                         [(cid, i, entry(f"{cid}{i}", at=i).to_json()) for i in range(3)])
        conn.executemany("INSERT INTO processed_keys VALUES (?,?,?)",
                         [(cid, i + 1, f"{cid}-k{i}") for i in range(5)])
    conn.execute("INSERT INTO transcript VALUES ('orphan', 0, '{}')")
    conn.execute("INSERT INTO log(at, call_id, kind, data) VALUES (1, 'old', 'event', '{}')")
    conn.commit()
    conn.close()
    async with SQLiteCallStore(tmp_path) as store:
        for cid in ("live", "done"):
            got = await store.get(cid)
            assert got is not None and [t.text for t in got.transcript] == [f"{cid}{i}" for i in range(3)]
            assert got.processed_event_ids == [f"{cid}-k{i}" for i in range(5)]
        await store.save(rec("new"))  # the AUTOINCREMENT log keeps appending
        assert [(e.seq, e.call_id) for e in await store.log_since(0)] == [(1, "old"), (2, "new")]
    assert sql(tmp_path, "SELECT name FROM sqlite_master WHERE name IN"
                         " ('transcript', 'processed_keys', 'log_kind')") == []


@pytest.mark.parametrize("with_reply", [True, False])
async def test_a_store_with_the_text_keyed_replay_table_is_migrated(
        tmp_path: Path, with_reply: bool) -> None:
    conn = _old_store(tmp_path, "")
    if with_reply:
        conn.execute("CREATE TABLE replay_keys (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL,"
                     " reply TEXT)")
        conn.executemany("INSERT INTO replay_keys VALUES (?,?,?)",
                         [("k1", _FAR, json.dumps(REPLY)), ("k2", _FAR, None), ("gone", 1, None)])
    else:  # the first layout, before replies were kept
        conn.execute("CREATE TABLE replay_keys (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)")
        conn.executemany("INSERT INTO replay_keys VALUES (?,?)",
                         [("k1", _FAR), ("k2", _FAR), ("gone", 1)])
    conn.commit()
    conn.close()
    async with SQLiteCallStore(tmp_path) as store, SQLiteCallStore(tmp_path) as second:
        assert await store.lookup_replay("k1") == (REPLY if with_reply else {})
        assert await store.lookup_replay("k2") == {} and await second.lookup_replay("k2") == {}
        assert await store.lookup_replay("gone") is None  # expired
        assert await store.lookup_replay("k3") is None
    assert sql(tmp_path, "SELECT key FROM replay_keys ORDER BY key") == [("k1",), ("k2",)]


async def test_a_store_whose_request_keys_were_indexed_by_digest_alone_is_migrated(
        tmp_path: Path) -> None:
    conn = _old_store(tmp_path, "CREATE TABLE request_keys (digest INTEGER NOT NULL, key TEXT NOT NULL,"
                                " expires_at INTEGER NOT NULL, reply TEXT);"
                                "CREATE INDEX request_keys_digest ON request_keys(digest);")
    conn.execute("INSERT INTO request_keys VALUES (?,?,?,?)", (7, "k1", _FAR, json.dumps(REPLY)))
    conn.commit()
    conn.close()
    async with SQLiteCallStore(tmp_path) as store:
        assert await store.lookup_replay("k1") == REPLY
        await store.remember_reply("k2", {})
        assert await store.lookup_replay("k2") == {}
    assert sql(tmp_path, "SELECT name FROM sqlite_master WHERE name LIKE 'request_keys%'") == []


async def test_a_migration_that_fails_changes_nothing(tmp_path: Path) -> None:
    _write_layout_before_versions(tmp_path)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("INSERT INTO call_items(id, key, entry) VALUES (?, NULL, 'not json')", ((1 << 32) + 700,))
    conn.commit()
    conn.close()
    store = SQLiteCallStore(tmp_path)
    with pytest.raises(ValueError):
        store.open()
    assert sql(tmp_path, "PRAGMA user_version") == [(0,)]
    assert sql(tmp_path, "SELECT COUNT(*) FROM request_keys") == [(5,)]
    assert sql(tmp_path, "SELECT record FROM calls WHERE call_id='live'") == [(_head("live", "listening"),)]
    assert sql(tmp_path, "SELECT name FROM sqlite_master WHERE name='replay_keys'") == []


async def test_a_store_written_by_a_newer_version_is_refused(tmp_path: Path) -> None:
    async with SQLiteCallStore(tmp_path) as store:
        await store.save(rec("c1"))
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew):
        SQLiteCallStore(tmp_path).open()
