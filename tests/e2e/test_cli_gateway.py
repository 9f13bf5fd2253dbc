"""The README's promises, end to end: a real `voicecall serve` process driven by the real CLI,
including a `kill -9` in the middle of a conversation."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from voicecall.store import SQLiteCallStore

pytestmark = pytest.mark.slow
VOICECALL = [sys.executable, "-m", "voicecall"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """A `voicecall serve` subprocess with its own state dir and config."""

    def __init__(self, root: Path, config: dict[str, Any]) -> None:
        self.root = root
        self.webhook_port, self.control_port = free_port(), free_port()
        doc = {"provider": "mock", "serve": {"port": self.webhook_port},
               "control": {"port": self.control_port}, **config}
        (root / "voicecall.json").write_text(json.dumps(doc))
        self.env = {**os.environ, "OPENCLAW_STATE_DIR": str(root / "state"), "HOME": str(root),
                    "VOICECALL_CONFIG": str(root / "voicecall.json")}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = self.launch()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.control_port}/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
            assert self.proc.poll() is None, self.output()
        raise AssertionError("gateway did not start")

    def launch(self) -> subprocess.Popen[bytes]:
        """Start `voicecall serve`."""
        return subprocess.Popen([*VOICECALL, "serve"], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

    def output(self) -> str:
        """What the gateway printed (read once it has exited)."""
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.read().decode()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=15)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*VOICECALL, *args], env=self.env, capture_output=True, text=True,
                                timeout=60)
        if check:
            assert result.returncode == 0, result.stderr + result.stdout
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def status(self, call_id: str) -> dict[str, Any]:
        result = self.cli("status", "--call-id", call_id, "--json", check=False)
        return dict(json.loads(result.stdout))

    def wait_for(self, call_id: str, predicate: Any, within: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status = self.status(call_id)
            if status.get("found") and predicate(status["call"]):
                return status
            time.sleep(0.2)
        raise AssertionError(f"condition not reached; last status {status}")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    # No model here: conversations are driven by `continue`, and `setup`/`smoke` pass without a key.
    gw = Gateway(tmp_path, {"maxConcurrentCalls": 3, "maxDurationSeconds": 14,
                            "responder": {"enabled": False}, "outbound": {"notifyHangupDelaySec": 1},
                            "mock": {"callerReplies": ["I'm doing great, thanks", "Tuesday works",
                                                       "Bye"]}})
    gw.start()
    yield gw
    if gw.proc and gw.proc.poll() is None:
        gw.kill(signal.SIGTERM)


def test_notify_call_from_the_cli_rings_answers_speaks_and_ends_with_a_reason(gateway: Gateway) -> None:
    call_id = gateway.json("call", "--to", "+15555550123", "-m", "Hello", "--mode", "notify")["callId"]
    status = gateway.wait_for(call_id, lambda c: "endReason" in c)
    states = [h["state"] for h in status["history"]]
    assert states.index("ringing") < states.index("answered") < len(states) - 1
    call = status["call"]
    assert [(t["speaker"], t["text"]) for t in call["transcript"]] == [("bot", "Hello")]
    assert call["state"] == call["endReason"] == "completed"


def test_conversation_continue_returns_the_reply_and_latency_reports_it(gateway: Gateway) -> None:
    call_id = gateway.json("call", "--to", "+15555550123", "-m", "Hi, this is the clinic",
                           "--mode", "conversation")["callId"]
    gateway.wait_for(call_id, lambda c: "initialMessageSpokenAt" in c["metadata"])
    reply = gateway.json("continue", "--call-id", call_id, "-m", "How are you?")
    assert reply == {"success": True, "transcript": "I'm doing great, thanks"}
    latency = gateway.json("latency")
    assert latency["recordsScanned"] == 1
    assert latency["turnLatency"]["count"] == 1 and latency["listenWait"]["count"] == 1
    assert set(latency["turnLatency"]) == {"count", "minMs", "maxMs", "avgMs", "p50Ms", "p95Ms"}
    assert gateway.json("end", "--call-id", call_id) == {"success": True}


@pytest.fixture
def long_gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, {"maxDurationSeconds": 25,
                            "mock": {"callerReplies": ["I'm doing great, thanks"]}})
    gw.start()
    yield gw
    if gw.proc and gw.proc.poll() is None:
        gw.kill(signal.SIGTERM)


def test_kill_9_mid_conversation_loses_nothing_and_timers_resume(long_gateway: Gateway) -> None:
    gateway = long_gateway
    call_id = gateway.json("call", "--to", "+15555550123", "-m", "Hi", "--mode",
                           "conversation")["callId"]
    gateway.wait_for(call_id, lambda c: "initialMessageSpokenAt" in c["metadata"])
    gateway.json("continue", "--call-id", call_id, "-m", "How are you?")
    before = gateway.status(call_id)["call"]
    store_dir = gateway.root / "state" / "voice-calls"

    def processed() -> list[str]:
        """The call's dedupe keys as the store holds them (read through its public API)."""
        async def read() -> list[str]:
            async with SQLiteCallStore(store_dir) as store:
                record = await store.get(call_id)
            assert record is not None
            return list(record.processed_event_ids)
        return asyncio.run(read())

    keys_before = processed()
    assert keys_before
    gateway.kill(signal.SIGKILL)
    killed_at = time.time() * 1000
    gateway.start()
    after = gateway.status(call_id)["call"]
    assert after["transcript"] == before["transcript"]
    assert after["state"] == before["state"] and "endReason" not in after
    assert processed() == keys_before
    # The conversation goes on after the restart (the simulated callee's script died with the
    # process, so we answer as the callee ourselves).
    waiting = subprocess.Popen([*VOICECALL, "continue", "--call-id", call_id, "-m", "When?", "--json"],
                               env=gateway.env, stdout=subprocess.PIPE, text=True)
    gateway.wait_for(call_id, lambda c: c["transcript"][-1]["text"] == "When?" and c["state"] == "listening")
    gateway.cli("mock", "inject", "--call-id", call_id, "--speech", "Tuesday works")
    out, _ = waiting.communicate(timeout=30)
    assert json.loads(out)["transcript"] == "Tuesday works"
    # The max-duration timer resumed with the remaining time (25 s from answer, not from restart).
    final = gateway.wait_for(call_id, lambda c: "endReason" in c, within=40)["call"]
    assert final["endReason"] == "timeout"
    assert final["endedAt"] - final["answeredAt"] < 25000 + 1500
    assert final["endedAt"] > killed_at


def test_second_gateway_on_a_busy_port_says_who_holds_it(gateway: Gateway) -> None:
    result = subprocess.run([*VOICECALL, "serve"], env=gateway.env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 3
    assert f"port 127.0.0.1:{gateway.webhook_port} is already in use" in result.stderr
    assert "held by pid" in result.stderr


def test_cli_without_a_gateway_reads_the_store_and_hosts_calls_itself(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, {"outbound": {"notifyHangupDelaySec": 0}})
    assert gw.json("status") == {"calls": []}
    placed = gw.json("call", "--to", "+15555550123", "-m", "Standalone hello", "--mode", "notify")
    assert placed["initiated"] is True and placed["endReason"] == "completed"
    status = gw.status(placed["callId"])
    assert status["call"]["transcript"][0]["text"] == "Standalone hello"
    bad = gw.cli("status", "--call-id", "nope", check=False)
    assert bad.returncode == 1


def test_cli_errors_are_one_line_with_a_non_zero_exit(gateway: Gateway) -> None:
    result = gateway.cli("call", "--to", "12345", "-m", "hi", check=False)
    assert result.returncode == 2  # a usage error: the message, the usage line and a hint
    assert "E.164" in result.stderr.splitlines()[0] and "Traceback" not in result.stderr
    result = gateway.cli("continue", "--call-id", "does-not-exist", "-m", "hi", check=False)
    assert result.returncode == 1 and "Call not found" in result.stderr


def test_invalid_config_names_every_bad_key_and_the_gateway_does_not_start(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, {"maxConcurrentCalls": 0, "outbound": {"defaultMode": "shout"},
                            "serve": {"prot": 1}})
    result = subprocess.run([*VOICECALL, "serve"], env=gw.env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    for key in ("maxConcurrentCalls", "outbound.defaultMode", "serve.prot"):
        assert key in result.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{gw.control_port}/health")


def test_config_show_redacts_secrets_and_schema_and_tool_schema_print_json(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, {"control": {"token": "super-secret-control-token-123"}})
    shown = gw.cli("config", "show")
    assert "super-secret-control-token-123" not in shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["provider"] == "mock"
    assert "properties" in json.loads(gw.cli("config", "schema").stdout)
    assert json.loads(gw.cli("tool-schema").stdout)["function"]["name"] == "voice_call"


def test_tail_follows_call_updates_live(gateway: Gateway) -> None:
    tail = subprocess.Popen([*VOICECALL, "tail", "--since", "0", "--json"], env=gateway.env,
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # let tail subscribe before the call exists
        call_id = gateway.json("call", "--to", "+15555550123", "-m", "Hi", "--mode", "notify")["callId"]
        seen: list[str] = []
        deadline = time.monotonic() + 20
        assert tail.stdout is not None
        while time.monotonic() < deadline and "completed" not in seen:
            entry = json.loads(tail.stdout.readline())
            if entry["callId"] == call_id and entry["kind"] == "snapshot":
                seen.append(entry["data"]["state"])
        assert seen[0] == "initiated" and "answered" in seen and seen[-1] == "completed"
    finally:
        tail.terminate()
        tail.wait(timeout=10)


def test_setup_reports_each_check_and_fails_when_twilio_lacks_credentials_and_a_public_url(
        tmp_path: Path) -> None:
    (tmp_path / "ok").mkdir()
    ok = Gateway(tmp_path / "ok", {"responder": {"enabled": False}})
    report = ok.cli("setup", "--json")
    assert json.loads(report.stdout)["ok"] is True
    bad = Gateway(tmp_path, {"provider": "twilio"})
    result = bad.cli("setup", "--json", check=False)
    assert result.returncode == 1
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    assert not checks["provider-config"]["ok"] and "twilio.accountSid" in checks["provider-config"]["message"]
    assert not checks["webhook-exposure"]["ok"] and "publicUrl" in checks["webhook-exposure"]["message"]
    assert checks["plugin-enabled"]["ok"] and checks["mode"]["ok"]
    assert not checks["responder"]["ok"] and "OPENAI_API_KEY" in checks["responder"]["message"]


async def test_voicecall_mcp_over_stdio_places_a_call_on_the_running_gateway(gateway: Gateway) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "voicecall", "mcp"], env=gateway.env)
    async with Client(params, read_timeout_seconds=30) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["voice_call"]
        result = await client.call_tool("voice_call", {"action": "initiate_call", "message": "Hello",
                                                       "to": "+15555550123", "mode": "notify"})
        assert not result.is_error, result
        assert result.structured_content is not None
        call_id = result.structured_content["callId"]
    # The call lives in the gateway process, not in the MCP server's.
    status = gateway.wait_for(call_id, lambda c: "endReason" in c)
    assert status["call"]["endReason"] == "completed"


def test_smoke_is_a_dry_run_until_yes_then_places_one_test_call(gateway: Gateway) -> None:
    bare = json.loads(gateway.cli("smoke", "--json").stdout)
    assert bare["ok"] is True and bare["liveCall"] is False and "wouldCall" not in bare
    assert bare["setup"] == json.loads(gateway.cli("setup", "--json").stdout)  # {ok, checks}
    dry = json.loads(gateway.cli("smoke", "--to", "+15555550123", "--json").stdout)
    assert dry["liveCall"] is False
    assert dry["wouldCall"] == {"to": "+15555550123", "message": "OpenClaw voice call smoke test.",
                                "mode": "notify"}
    live = json.loads(gateway.cli("smoke", "--to", "+15555550123", "--yes", "--json").stdout)
    assert live["liveCall"] is True
    status = gateway.wait_for(live["callId"], lambda c: "endReason" in c)
    assert [t["text"] for t in status["call"]["transcript"]] == ["OpenClaw voice call smoke test."]


def test_smoke_fails_with_exit_1_when_setup_fails(tmp_path: Path) -> None:
    bad = Gateway(tmp_path, {"provider": "twilio"})
    result = bad.cli("smoke", "--to", "+15555550123", "--yes", "--json", check=False)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["liveCall"] is False and "callId" not in report
    assert report["setup"]["ok"] is False
    failed = {check["id"] for check in report["setup"]["checks"] if not check["ok"]}
    assert {"provider-config", "webhook-exposure"} <= failed


def test_doctor_lists_legacy_keys_and_fix_rewrites_the_file_keeping_a_backup(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, {})
    path = tmp_path / "voicecall.json"
    legacy = ('// my config\n{ provider: "log", fromNumber: "+15550000000",\n'
              '  streaming: { openaiApiKey: "${MY_KEY}" } }\n')
    path.write_text(legacy)
    found = gw.cli("doctor", "--json", check=False)
    assert found.returncode == 1  # legacy keys found and left in place
    report = json.loads(found.stdout)
    assert report["fixed"] is False and len(report["changes"]) == 2
    assert path.read_text() == legacy  # a report changes nothing
    fixed = gw.json("doctor", "--fix")
    assert fixed["fixed"] is True and Path(fixed["backup"]).read_text() == legacy
    rewritten = json.loads(path.read_text())
    assert rewritten["provider"] == "mock"
    assert rewritten["streaming"]["providers"]["openai"]["apiKey"] == "${MY_KEY}"
    assert "openaiApiKey" not in rewritten["streaming"]
    assert gw.json("doctor")["changes"] == []
    gw.env["MY_KEY"] = "sk-test"
    shown = gw.cli("config", "show")
    assert "deprecated" not in shown.stderr


def test_console_prints_a_login_url_that_signs_in_once(gateway: Gateway) -> None:
    url = gateway.json("console")["url"]
    assert "/login?code=" in url
    with httpx.Client(trust_env=False, timeout=5, follow_redirects=False) as http:
        first = http.get(url)
        assert first.status_code == 303 and "voicecall_console=" in first.headers["set-cookie"]
        assert http.get(url).status_code == 401
