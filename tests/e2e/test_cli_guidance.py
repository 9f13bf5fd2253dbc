"""The CLI names what went wrong and what would fix it: a gateway running another config, a full
concurrency cap, a call whose standalone host process died."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_gateway import VOICECALL, Gateway
from tests.helpers import run_on_terminal

pytestmark = pytest.mark.slow


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, {"maxConcurrentCalls": 1, "mock": {"callerReplies": ["Fine"]}})
    gw.start()
    yield gw
    if gw.proc and gw.proc.poll() is None:
        gw.kill(signal.SIGTERM)


def test_a_command_with_another_config_warns_that_the_running_gateway_differs(
        gateway: Gateway) -> None:
    same = gateway.cli("status")
    assert "different configuration" not in same.stderr

    doc = json.loads((gateway.root / "voicecall.json").read_text())
    other = gateway.root / "other.json"
    other.write_text(json.dumps({**doc, "mock": {"callerReplies": ["Something else"]}}))
    differs = gateway.cli("--config", str(other), "status", "--json")
    warnings = [line for line in differs.stderr.splitlines() if "different configuration" in line]
    assert len(warnings) == 1, differs.stderr
    assert str(gateway.root / "voicecall.json") in warnings[0]
    assert str(other) in warnings[0]
    assert "--config" in warnings[0]
    assert json.loads(differs.stdout)["calls"] == []  # the command still ran


def test_a_full_concurrency_cap_names_the_live_calls_the_key_and_the_end_command(
        gateway: Gateway) -> None:
    held = gateway.json("call", "--to", "+15555550123", "-m", "Hi", "--mode",
                        "conversation")["callId"]
    refused = gateway.cli("call", "--to", "+15555550123", "-m", "Hi", "--mode", "conversation",
                          check=False)
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())  # the console wraps long lines
    assert "Maximum concurrent calls (1) reached" in message
    assert held in message
    assert "maxConcurrentCalls" in message
    assert f"voicecall end --call-id {held}" in message
    assert "Traceback" not in refused.stderr


@pytest.fixture
def silent_callee(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, {"transcriptTimeoutMs": 2500})  # no callerReplies: nobody answers
    gw.start()
    yield gw
    if gw.proc and gw.proc.poll() is None:
        gw.kill(signal.SIGTERM)


def _answered_call(gateway: Gateway) -> str:
    call_id: str = gateway.json("call", "--to", "+15555550123", "-m", "Hi", "--mode",
                                "conversation")["callId"]
    gateway.wait_for(call_id, lambda c: "initialMessageSpokenAt" in c["metadata"])
    return call_id


def _run_with_terminal_stderr(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; its exit code and what the terminal got."""
    return run_on_terminal(args, env, stream="stderr")


def test_continue_on_a_terminal_shows_what_it_waits_for_and_the_seconds_elapsed(
        silent_callee: Gateway) -> None:
    call_id = _answered_call(silent_callee)
    code, terminal = _run_with_terminal_stderr(
        [*VOICECALL, "continue", "--call-id", call_id, "-m", "Are you there?"], silent_callee.env)
    assert code == 1
    assert f"waiting for the callee's reply on call {call_id}" in terminal
    assert "transcriptTimeoutMs = 2.5 s" in terminal
    assert "(0 s)" in terminal and "(1 s)" in terminal  # the elapsed seconds count up


def test_a_continue_timeout_names_the_key_that_waits_longer(silent_callee: Gateway) -> None:
    call_id = _answered_call(silent_callee)
    result = silent_callee.cli("continue", "--call-id", call_id, "-m", "Hello?", check=False)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "Timed out waiting for transcript after 2500ms" in message
    assert "raise transcriptTimeoutMs" in message
    assert "(0 s)" not in result.stderr  # no spinner: stderr is no terminal here


def test_a_call_whose_standalone_cli_host_is_killed_is_ended_on_the_next_start(
        tmp_path: Path) -> None:
    gw = Gateway(tmp_path, {"maxDurationSeconds": 120})  # never started: the CLI hosts the call
    host = subprocess.Popen([*VOICECALL, "call", "--to", "+15555550123", "-m", "Hi there",
                             "--mode", "conversation", "--json"], env=gw.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        live: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not live:
            live = [c for c in gw.json("status")["calls"] if "answeredAt" in c]
            time.sleep(0.2)
        assert live, "the hosting command never got its call answered"
        call_id = live[0]["callId"]
        assert live[0]["metadata"]["hostPid"] == host.pid
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=15)
    assert "endReason" not in gw.status(call_id)["call"]  # nobody ended it: the host died

    gw.start()  # any runtime against the store
    try:
        call = gw.wait_for(call_id, lambda c: "endReason" in c, within=10)["call"]
    finally:
        gw.kill(signal.SIGTERM)
    assert call["endReason"] == call["state"] == "hangup-bot"
    assert f"pid {host.pid}" in call["metadata"]["endDetail"]
    assert "exited without ending it" in call["metadata"]["endDetail"]
