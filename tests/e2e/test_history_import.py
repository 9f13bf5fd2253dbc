"""The original plugin's `voice-calls/calls.jsonl` comes into the store on the first start of
`voicecall serve`, once, and the log says how many calls came in."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_gateway import Gateway

pytestmark = pytest.mark.slow


def snapshot(call_id: str, state: str, **extra: Any) -> str:
    record = {"callId": call_id, "providerCallId": f"CA-{call_id}", "provider": "twilio",
              "direction": "outbound", "state": state, "from": "+15550000000", "to": "+15555550123",
              "startedAt": 1700000000000, "transcript": [], "processedEventIds": [], **extra}
    return json.dumps(record) + "\n"


def run_once(gw: Gateway) -> str:
    """Start the gateway, stop it, and return what it logged."""
    gw.start()
    gw.kill(signal.SIGTERM)
    return gw.output()


def test_first_start_imports_calls_jsonl_once_and_logs_the_count(tmp_path: Path) -> None:
    history = tmp_path / "state" / "voice-calls" / "calls.jsonl"
    history.parent.mkdir(parents=True)
    history.write_text(
        snapshot("a1", "initiated") + snapshot("a1", "answered", answeredAt=1700000001000)
        + "not json\n"
        + snapshot("a1", "completed", answeredAt=1700000001000, endedAt=1700000009000,
                   endReason="completed",
                   transcript=[{"timestamp": 1700000002000, "speaker": "bot", "text": "Hi",
                                "isFinal": True}])
        + snapshot("b2", "no-answer", endedAt=1700000030000, endReason="no-answer"))
    gw = Gateway(tmp_path, {})

    first = run_once(gw)
    assert "imported 2 call records from" in first and str(history) in first

    status = gw.json("status", "--call-id", "a1")
    assert status["found"] is True
    call = status["call"]
    assert (call["state"], call["endReason"]) == ("completed", "completed")
    assert [t["text"] for t in call["transcript"]] == ["Hi"]
    assert gw.json("status", "--call-id", "CA-b2")["call"]["endReason"] == "no-answer"

    second = run_once(gw)  # the same file again: nothing imported, nothing logged
    assert "imported" not in second

    with history.open("a") as handle:  # the original wrote more since: only then again
        handle.write(snapshot("c3", "failed", endedAt=1700000050000, endReason="failed"))
    third = run_once(gw)
    assert "imported 3 call records from" in third
    assert gw.json("status", "--call-id", "c3")["call"]["state"] == "failed"


def test_no_history_file_means_no_import_message(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, {})
    assert "imported" not in run_once(gw)
    assert not (tmp_path / "state" / "voice-calls" / "calls.jsonl.imported").exists()
