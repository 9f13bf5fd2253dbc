"""`voicecall tail --file`: the original's JSONL follower, through the real entry point."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from voicecall.cli.jsonl_tail import follow_jsonl

VOICECALL = [sys.executable, "-m", "voicecall"]


def record(call_id: str, state: str) -> str:
    return json.dumps({"callId": call_id, "provider": "mock", "direction": "outbound", "state": state,
                       "from": "+15550000000", "to": "+15555550123", "startedAt": 1700000000000,
                       "transcript": [], "processedEventIds": []})


def env_for(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path), "OPENCLAW_STATE_DIR": str(tmp_path / "state"),
            "VOICECALL_CONFIG": ""}


class Lines:
    """Lines a subprocess prints, read on a thread so each wait has a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [self.queue.put(line.rstrip("\n")) for line in stdout],
                         daemon=True).start()

    def next(self, timeout: float = 10) -> str:
        return self.queue.get(timeout=timeout)


def test_tail_file_prints_the_last_lines_then_follows_and_restarts_after_truncation(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    log.write_text("".join(record(f"c{i}", "initiated") + "\n" for i in range(4)))
    proc = subprocess.Popen([*VOICECALL, "tail", "--file", str(log), "--since", "2", "--poll", "50"],
                            env=env_for(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = Lines(proc)
        assert [json.loads(lines.next())["callId"] for _ in range(2)] == ["c2", "c3"]
        with log.open("a") as handle:
            handle.write(record("c3", "answered") + "\n")
        assert json.loads(lines.next()) == json.loads(record("c3", "answered"))
        log.write_text(record("c9", "completed") + "\n")  # truncated: read again from the start
        assert json.loads(lines.next())["callId"] == "c9"
        assert proc.poll() is None  # it keeps following
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_tail_file_that_does_not_exist_exits_1_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    result = subprocess.run([*VOICECALL, "tail", "--file", str(missing)], env=env_for(tmp_path),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"No log file at {missing}" in result.stderr


def test_follow_waits_for_a_line_to_be_complete(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    log.write_text('{"callId": "a"}\n{"callId": "b"')  # the writer is mid-line
    shown: list[str] = []
    polls = iter(range(3))

    def stop() -> bool:
        step = next(polls, None)
        if step == 1:
            with log.open("a") as handle:
                handle.write('}\n')
        return step is None

    follow_jsonl(log, 10, 0.01, shown.append, stop=stop)
    assert shown == ['{"callId": "a"}', '{"callId": "b"}']


@pytest.mark.parametrize("since", [0, 1])
def test_since_counts_lines_from_the_end(tmp_path: Path, since: int) -> None:
    log = tmp_path / "calls.jsonl"
    log.write_text('{"n": 1}\n{"n": 2}\n')
    shown: list[str] = []
    follow_jsonl(log, since, 0.01, shown.append, stop=lambda: True)
    assert shown == ['{"n": 2}'][:since]
