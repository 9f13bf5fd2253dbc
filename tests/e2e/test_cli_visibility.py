"""What an operator sees: `serve` logs one line per call state change (as text or JSON lines),
and `voicecall calls` lists recent calls, filtered and paged, with plain output when piped."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli_gateway import VOICECALL, Gateway
from tests.helpers import run_on_terminal

pytestmark = pytest.mark.slow
CALLEE = "+15555550123"
CONFIG = {"outbound": {"notifyHangupDelaySec": 0}}


class LoggingGateway(Gateway):
    """A gateway started with extra `serve` options, its stderr (the log) kept in a file."""

    def __init__(self, root: Path, *serve_args: str) -> None:
        super().__init__(root, CONFIG)
        self.serve_args = serve_args
        self.log_path = root / "serve.log"

    def launch(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("wb") as log:
            return subprocess.Popen([*VOICECALL, "serve", *self.serve_args], env=self.env,
                                    stdout=subprocess.DEVNULL, stderr=log)

    def output(self) -> str:
        return self.log_path.read_text()

    def stopped_log(self) -> list[str]:
        """Stop the gateway; the lines it logged."""
        self.kill(signal.SIGTERM)
        return self.log_path.read_text().splitlines()

    def notify_call(self) -> str:
        call_id: str = self.json("call", "--to", CALLEE, "-m", "Hello", "--mode", "notify")["callId"]
        self.wait_for(call_id, lambda c: "endReason" in c)
        return call_id


ServeWith = Callable[..., LoggingGateway]


@pytest.fixture
def serve_with(tmp_path: Path) -> Iterator[ServeWith]:
    started: list[LoggingGateway] = []

    def start(*serve_args: str) -> LoggingGateway:
        gw = LoggingGateway(tmp_path, *serve_args)
        gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        if gw.proc and gw.proc.poll() is None:
            gw.kill(signal.SIGTERM)


def test_serve_logs_each_call_state_change_at_info_without_other_info_noise(serve_with: ServeWith) -> None:
    gateway = serve_with()
    call_id = gateway.notify_call()
    lines = gateway.stopped_log()
    state_lines = [line for line in lines if " voicecall.state: " in line]
    assert all(" INFO " in line and call_id in line for line in state_lines), state_lines
    assert [line.split(": ", 1)[1] for line in state_lines] == [
        f"call {call_id} mock outbound: {state}" for state in
        ("initiated", "ringing", "answered", "speaking", "completed (completed)")]
    # Only state changes at INFO (no library or startup INFO lines), and no phone numbers.
    assert [line for line in lines if " INFO " in line] == state_lines
    assert CALLEE not in "\n".join(lines)


def test_serve_log_format_json_writes_every_record_as_a_json_line_with_state_fields(
        serve_with: ServeWith) -> None:
    gateway = serve_with("--log-format", "json")
    webhook = f"http://127.0.0.1:{gateway.webhook_port}/voice/webhook"
    for _ in range(2):  # the second is a replay: logged at WARNING by the webhook
        assert httpx.post(webhook, json={"events": []}).status_code == 200
    call_id = gateway.notify_call()
    lines = [line for line in gateway.stopped_log() if line != "stopping…"]
    records = [json.loads(line) for line in lines]  # every log line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert dt.datetime.fromisoformat(records[0]["ts"]).tzinfo is not None
    assert any(r["level"] == "WARNING" and "replay" in r["message"] for r in records), records
    states = [r for r in records if r["logger"] == "voicecall.state"]
    assert [r["state"] for r in states] == ["initiated", "ringing", "answered", "speaking",
                                            "completed"]
    assert all(r["callId"] == call_id and r["carrier"] == "mock" and r["direction"] == "outbound"
               and r["level"] == "INFO" for r in states)
    assert states[-1]["reason"] == "completed" and "reason" not in states[0]


def test_serve_rejects_an_unknown_log_format(tmp_path: Path) -> None:
    result = Gateway(tmp_path, CONFIG).cli("serve", "--log-format", "xml", check=False)
    assert result.returncode == 2 and "--log-format must be text or json" in result.stderr


def test_calls_lists_ended_calls_newest_first_and_filters_them(serve_with: ServeWith) -> None:
    gateway = serve_with()
    first, second = gateway.notify_call(), gateway.notify_call()
    listed = gateway.json("calls")
    assert [c["callId"] for c in listed["calls"]] == [second, first]
    assert listed["nextOffset"] is None
    assert all(c["state"] == "completed" and c["endReason"] == "completed" for c in listed["calls"])

    def ids(*args: str) -> list[str]:
        return [c["callId"] for c in gateway.json("calls", *args)["calls"]]

    assert ids("--state", "ended") == [second, first]
    assert ids("--state", "completed", "--state", "busy") == [second, first]
    assert ids("--state", "live") == []
    assert ids("--direction", "outbound") == [second, first]
    assert ids("--direction", "inbound") == []
    assert ids("--since", "10m") == [second, first]
    future = (dt.datetime.now() + dt.timedelta(hours=1)).isoformat(timespec="seconds")
    assert ids("--since", future) == []


def test_calls_pages_with_limit_and_offset(serve_with: ServeWith) -> None:
    gateway = serve_with()
    first, second = gateway.notify_call(), gateway.notify_call()
    page = gateway.json("calls", "--limit", "1")
    assert [c["callId"] for c in page["calls"]] == [second] and page["nextOffset"] == 1
    page = gateway.json("calls", "--limit", "1", "--offset", "1")
    assert [c["callId"] for c in page["calls"]] == [first] and page["nextOffset"] is None
    human = gateway.cli("calls", "--limit", "1")
    assert "--offset 1" in human.stderr


def test_calls_without_a_gateway_reads_the_store(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, CONFIG)
    assert gw.json("calls")["calls"] == []
    placed = gw.json("call", "--to", CALLEE, "-m", "Hi", "--mode", "notify")
    listed = gw.json("calls", "--state", "ended")["calls"]
    assert [(c["callId"], c["state"]) for c in listed] == [(placed["callId"], "completed")]


def test_calls_piped_is_tab_separated_with_nothing_cut(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, CONFIG)
    assert gw.cli("calls").stdout.splitlines() == [
        "call id\tstarted\tdirection\tto/from\tstate\tend reason\tcarrier"]
    call_id = gw.json("call", "--to", CALLEE, "-m", "Hi", "--mode", "notify")["callId"]
    header, row = gw.cli("calls").stdout.splitlines()
    fields = row.split("\t")
    assert len(row) > 80 and len(fields) == len(header.split("\t")) == 7
    assert fields[0] == call_id and fields[2:] == ["outbound", CALLEE, "completed", "completed",
                                                   "mock"]


def test_latency_piped_is_tab_separated(tmp_path: Path) -> None:
    lines = Gateway(tmp_path, CONFIG).cli("latency").stdout.splitlines()
    assert lines[0] == "turns scanned: 0"
    assert lines[1].split("\t") == ["measure", "count", "p50 ms", "p95 ms", "min", "max", "avg"]
    assert lines[2].split("\t") == ["turn latency", "0", "-", "-", "-", "-", "-"]


def _stdout_on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run the CLI with stdout on a pseudo-terminal; what the terminal got."""
    code, shown = run_on_terminal(args, env, stream="stdout")
    assert code == 0
    return shown


def test_calls_on_a_terminal_draws_a_table(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, CONFIG)
    assert "no calls" in _stdout_on_a_terminal([*VOICECALL, "calls"], gw.env)
    call_id = gw.json("call", "--to", CALLEE, "-m", "Hi", "--mode", "notify")["callId"]
    shown = _stdout_on_a_terminal([*VOICECALL, "calls"], gw.env)
    assert "\t" not in shown and "━" in shown  # rich's box, not tab-separated text
    assert call_id in shown and "completed" in shown


@pytest.mark.parametrize(("args", "problem"), [
    (["--state", "nope"], "'nope' is not one of live, ended"),
    (["--since", "yesterday"], "neither a span like 10m"),
    (["--direction", "sideways"], "--direction must be inbound or outbound"),
])
def test_calls_refuses_a_bad_filter_with_exit_2(tmp_path: Path, args: list[str],
                                                problem: str) -> None:
    result = Gateway(tmp_path, CONFIG).cli("calls", *args, check=False)
    assert result.returncode == 2 and problem in result.stderr


READ_COMMANDS = [["status"], ["calls"], ["latency"], ["status", "--call-id", "nope"]]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a))
def test_read_commands_against_a_gateway_need_no_event_loop_nor_httpx(
        serve_with: ServeWith, args: list[str]) -> None:
    """The cold-start budget of `status` and friends: with a gateway running they ask it over
    the standard library's blocking HTTP client, and load neither asyncio nor httpx."""
    gateway = serve_with()
    gateway.notify_call()
    code = ("import sys\nfrom voicecall.cli.app import main\n"
            f"sys.argv = ['voicecall', *{args!r}, '--json']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    print('exit', exc.code, file=sys.stderr)\n"
            "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n")
    result = subprocess.run([VOICECALL[0], "-c", code], env=gateway.env, capture_output=True,
                            text=True, timeout=60)
    loaded = set(result.stderr.strip().splitlines()[-1].split())
    assert "voicecall.gateway.blocking_client" in loaded, result.stderr[-2000:]
    assert not loaded & {"asyncio", "httpx", "starlette", "uvicorn"}, sorted(
        loaded & {"asyncio", "httpx", "starlette", "uvicorn"})
    answer = json.loads(result.stdout)
    assert isinstance(answer, dict) and answer, result.stdout


def test_status_with_a_wrong_control_token_is_one_line_and_exit_1(serve_with: ServeWith) -> None:
    gateway = serve_with()
    token_file = Path(gateway.env["OPENCLAW_STATE_DIR"]) / "gateway.token"
    token_file.write_text("not-the-token-the-gateway-holds\n")  # read by the CLI, not the gateway
    result = subprocess.run([*VOICECALL, "status"], env=gateway.env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1, result
    assert "401" in result.stderr and "Traceback" not in result.stderr, result.stderr
