"""The README walk: every fenced block of README.md, in order, as a new user meets it, on a fresh
state directory, through the real `voicecall` entry point (issue 14).

The README is the source of truth. The walk reads its blocks and runs each `sh` command line as
written: `voicecall` / `.venv/bin/voicecall` become `python -m voicecall`, `python -m
voicecall.testing.twilio` runs the simulator, `export` sets the walk's environment, `<id>` is the
call id the last `call` printed, and comments are promises: `# → text` is checked against the
command's output, and a `status` comment `# a → b → c` against the states the call went through.
After each block, every call it placed is followed to its end and checked: answered, its message
spoken, what the callee said (scripted or injected) in the transcript, the end the README implies
(`completed` for a notify call, `hangup-bot` after `end`), and no rejected webhooks.
Long-running commands (`serve`, `tail`, the simulator) run in the background and are stopped with
Ctrl-C (SIGINT). A `json5` block the prose says to save (``Save this as `mock.json5` ``) is saved,
and so is the config block the simulator prints when the command's comment says to. Every
config the walk writes gets free ports instead of the defaults 3334/3335 (nothing else changes);
the quick start, which has no config, gets a config with only those two ports.

Blocks and commands that cannot run here by nature are listed below with the reason; any other
block the walk does not know how to run fails the test, so a new README block needs a walk.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import json5
import pytest

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
VOICECALL = [sys.executable, "-m", "voicecall"]
SIMULATOR_MODULE = "voicecall.testing.twilio"
DEFAULT_WEBHOOK_PORT, DEFAULT_CONTROL_PORT = 3334, 3335
CALL_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")

# Whole blocks the walk does not run, by a string each contains, with the reason.
NOT_RUN_BLOCKS = {
    "from voicecall.gateway.client import ControlClient":
        "a fragment of the reader's own asyncio program (their token, their event loop); the "
        "control API is driven end to end by tests/e2e/test_cli_gateway.py",
    '"mcpServers"':
        "settings for an MCP host application, not a command; `voicecall mcp` is covered by "
        "tests/integration/test_mcp.py",
}
# Config fragments that need a real carrier or API keys to place calls: the walk only loads each
# with `voicecall --config <block> config show` (placeholder values for its ${VAR}s).
LOAD_ONLY_BLOCKS = {
    'provider: "twilio"': "a real Twilio account (credentials, a public webhook URL)",
    'provider: "plivo"': "a real Plivo account (credentials, a public webhook URL)",
    'provider: "telnyx"': "a real Telnyx account (API key, connection, webhook key, a public URL)",
    "streaming: {": "OpenAI streaming STT/TTS (an API key and the network)",
    "realtime: {": "a realtime voice model and a carrier account (API keys and the network)",
    'responseModel: "anthropic/claude-sonnet-4"': "a model for automatic replies (an API key and the "
                                                  "network)",
}
# Commands (one `&&` part each) not run, by how they start, with the reason.
NOT_RUN_COMMANDS = {
    "python3 -m venv .venv": "creates the venv this test already runs in",
    ".venv/bin/pip install": "installs the package this test already runs (needs the network)",
    ".venv/bin/pytest": "the test suite this test is part of",
}
LONG_RUNNING = {"serve", "tail"}
# Environment a developer may have set that would change what a new user sees.
FOREIGN_ENV = re.compile(r"^(VOICECALL_|OPENCLAW_|TWILIO_|TELNYX_|PLIVO_|NGROK_|OPENAI_|"
                         r"ELEVENLABS_|XI_API_KEY|DEEPGRAM_|GROQ_|ANTHROPIC_)")


@dataclass
class Block:
    lang: str
    text: str
    line: int
    prose: str  # the README text between the previous block and this one


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks, last = [], 0
    for match in re.finditer(r"^```(\w*)\n(.*?)^```[ \t]*$", text, flags=re.M | re.S):
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(match.group(1), match.group(2), line, text[last:match.start()]))
        last = match.end()
    return blocks


def saved_as(block: Block) -> str | None:
    """The file name the paragraph just before a block tells the reader to save it as."""
    saved = re.search(r"Save this as `([^`]+)`", block.prose.strip().split("\n\n")[-1])
    return saved.group(1) if saved else None


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def split_comment(line: str) -> tuple[str, str]:
    """`code  # comment` → (code, comment); a `#` inside a word (`--digits 1234#`) or quotes
    is not a comment, as in the shell."""
    quote: str | None = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def shell_words(code: str) -> list[str]:
    lexer = shlex.shlex(code, posix=True, punctuation_chars="&;|")
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


class Job:
    """A long-running command in the background, its output collected as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, what: str) -> None:
        self.what = what
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self) -> int:
        """Ctrl-C, as the README says to stop it; the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
            raise AssertionError(f"{self.what} did not stop on Ctrl-C:\n{self.output}") from None
        self.reader.join(timeout=5)
        return code


@dataclass
class PlacedCall:
    call_id: str
    mode: str
    message: str
    config_args: list[str]
    where: str
    expected_path: list[str] = field(default_factory=list)
    caller_said: list[str] = field(default_factory=list)
    ended_by_user: bool = False
    status: dict[str, Any] = field(default_factory=dict)


class Walk:
    def __init__(self, root: Path) -> None:
        self.cwd = root / "work"
        self.cwd.mkdir()
        self.webhook_port, self.control_port = free_ports(2)
        quick_start = root / "ports-only.json"
        quick_start.write_text(json.dumps({"serve": {"port": self.webhook_port},
                                           "control": {"port": self.control_port}}))
        self.env = {k: v for k, v in os.environ.items() if not FOREIGN_ENV.match(k)}
        self.env.update({"HOME": str(root / "home"), "OPENCLAW_STATE_DIR": str(root / "state"),
                         "PWD": str(self.cwd), "VOICECALL_CONFIG": str(quick_start)})
        self.jobs: list[Job] = []
        self.gateways: list[tuple[Job, int]] = []  # with the index of the block that started it
        self.call_id: str | None = None
        self.calls: list[PlacedCall] = []
        self.ran: list[str] = []
        self.skipped_commands: set[str] = set()
        self.simulators = 0
        self.tails = 0

    # --- blocks ---------------------------------------------------------------------------

    def walk(self, blocks: list[Block]) -> None:
        for index, block in enumerate(blocks):
            where = f"README.md:{block.line} (```{block.lang})"
            if block.lang == "sh":
                placed_before = len(self.calls)
                for offset, line in enumerate(block.text.splitlines(), start=1):
                    self.run_line(index, blocks, line, f"README.md:{block.line + offset}")
                for call in self.calls[placed_before:]:
                    self.verify(call)
            elif block.lang == "json5" and (name := saved_as(block)):
                self.save_config(name, json5.loads(block.text))
                self.ran.append(f"{where}: saved as {name}")
            elif block.lang == "json5" and self.matching(LOAD_ONLY_BLOCKS, block):
                self.load_check(block, where)
            elif not self.matching(NOT_RUN_BLOCKS, block):
                pytest.fail(f"{where} is a block the README walk does not know how to run; give "
                            "it a walk in tests/e2e/test_readme_walk.py or list it in "
                            f"NOT_RUN_BLOCKS with the reason:\n{block.text}")

    @staticmethod
    def matching(allow: dict[str, str], block: Block) -> bool:
        return any(key in block.text for key in allow)

    def save_config(self, name: str, document: Any) -> Path:
        """Save a config the README has the reader write, moved onto the walk's free ports."""
        config = document
        if "plugins" in document:
            config = document["plugins"]["entries"]["voice-call"]["config"]
        serve, control = config.setdefault("serve", {}), config.setdefault("control", {})
        assert serve.get("port", DEFAULT_WEBHOOK_PORT) == DEFAULT_WEBHOOK_PORT, config
        assert control.get("port", DEFAULT_CONTROL_PORT) == DEFAULT_CONTROL_PORT, config
        serve["port"], control["port"] = self.webhook_port, self.control_port
        if "publicUrl" in config:
            config["publicUrl"] = config["publicUrl"].replace(
                f"127.0.0.1:{DEFAULT_WEBHOOK_PORT}/", f"127.0.0.1:{self.webhook_port}/")
        path = self.cwd / name
        path.write_text(json.dumps(document, indent=2))
        return path

    def load_check(self, block: Block, where: str) -> None:
        path = self.cwd / f"readme-line-{block.line}.json5"
        path.write_text(block.text)
        env = dict(self.env)
        for name in re.findall(r"\$\{(\w+)\}", block.text):
            env[name] = f"placeholder-{name.lower()}"
        shown = subprocess.run([*VOICECALL, "--config", str(path), "config", "show", "--json"],
                               env=env, cwd=self.cwd, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, f"{where} does not load:\n{shown.stderr}{shown.stdout}"
        json.loads(shown.stdout)
        self.ran.append(f"{where}: config show")

    # --- commands -------------------------------------------------------------------------

    def run_line(self, index: int, blocks: list[Block], line: str, where: str) -> None:
        code, comment = split_comment(line)
        if not code:
            return
        for placeholder in set(re.findall(r"<[^<>\s]+>", code)):
            assert placeholder == "<id>", f"{where}: unknown placeholder {placeholder}"
            assert self.call_id, f"{where}: <id> before any call printed one"
            code = code.replace(placeholder, self.call_id)
        words = shell_words(code)
        background = words[-1] == "&"
        if background:
            words = words[:-1]
        parts: list[list[str]] = [[]]
        for word in words:
            if word == "&&":
                parts.append([])
            elif word in {"&", ";", "|", "||", ";;", "|&"}:
                pytest.fail(f"{where}: the README walk does not understand {word!r} in: {line}")
            else:
                parts[-1].append(word)
        for part in parts:
            self.run_command(index, blocks, part, comment, where, background)

    def run_command(self, index: int, blocks: list[Block], words: list[str], comment: str,
                    where: str, background: bool) -> None:
        text = shlex.join(words)
        for prefix in NOT_RUN_COMMANDS:
            if text.startswith(prefix) or " ".join(words).startswith(prefix):
                self.skipped_commands.add(prefix)
                return
        if words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                self.env[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: self.env[m.group(1)], value)
            self.ran.append(f"{where}: {text}")
            return
        if words[0] in {"voicecall", ".venv/bin/voicecall"}:
            self.run_voicecall(index, blocks, words[1:], comment, where)
        elif words[:3] in (["python", "-m", SIMULATOR_MODULE], ["python3", "-m", SIMULATOR_MODULE]):
            self.run_simulator(words[3:], comment, where)
        else:
            pytest.fail(f"{where}: the README walk does not know how to run: {text}")
        self.ran.append(f"{where}: {text}{' &' * background}")

    def run_simulator(self, args: list[str], comment: str, where: str) -> None:
        job = Job([sys.executable, "-m", SIMULATOR_MODULE, *args], self.env, self.cwd,
                  f"the simulator ({where})")
        self.jobs.append(job)
        self.simulators += 1
        deadline = time.monotonic() + 20
        while not re.search(r"^\{\n.*?^\}\n", job.output, flags=re.M | re.S):
            assert job.alive(), f"{where}: the simulator exited:\n{job.output}"
            assert time.monotonic() < deadline, f"{where}: no config block printed:\n{job.output}"
            time.sleep(0.05)
        block = re.search(r"^\{\n.*?^\}\n", job.output, flags=re.M | re.S)
        assert block
        saved = re.search(r"save the config block it prints as (\S+)", comment)
        if saved:
            self.save_config(saved.group(1), json5.loads(block.group(0)))
            self.ran.append(f"{where}: saved the printed config as {saved.group(1)}")

    def run_voicecall(self, index: int, blocks: list[Block], args: list[str], comment: str,
                      where: str) -> None:
        config_args = args[:2] if args[:1] == ["--config"] else []
        command = args[len(config_args):]
        if command[0] in LONG_RUNNING:
            if command[0] == "serve":
                self.start_gateway(index, blocks, args, where)
            else:
                self.run_tail(args, where)
            return
        result = subprocess.run([*VOICECALL, *args], env=self.env, cwd=self.cwd,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (f"{where}: voicecall {shlex.join(args)} exited "
                                        f"{result.returncode}:\n{result.stderr}{result.stdout}")
        assert "Traceback" not in result.stderr, result.stderr
        promise = comment[1:].strip() if comment.startswith("→") else None
        if command[0] == "call":
            printed = CALL_ID.findall(result.stdout)
            assert printed, f"{where}: `call` printed no call id:\n{result.stdout}"
            self.call_id = printed[0]
            self.calls.append(PlacedCall(self.call_id, option(command, "--mode") or "notify",
                                         option(command, "-m", "--message") or "",
                                         config_args, where))
        elif promise and promise != "<id>":
            assert promise in result.stdout, (f"{where}: the README promises {promise!r}; "
                                              f"the output was:\n{result.stdout}")
        call = self.current_call(where) if "--call-id" in command else None
        if call and command[0] == "status" and "→" in comment:
            call.expected_path = [state.strip() for state in comment.split("→")]
        if call and command[0] == "continue" and promise and promise.startswith("callee: "):
            call.caller_said.append(promise.removeprefix("callee: "))
        if call and command[:2] == ["mock", "inject"] and (speech := option(command, "--speech")):
            call.caller_said.append(speech)
        if call and command[0] == "end":
            call.ended_by_user = True
        if command[0] == "calls" and self.calls:
            assert self.calls[-1].call_id in result.stdout, result.stdout
        if command[0] == "dtmf":
            assert f"sent {option(command, '--digits')}" in result.stdout, result.stdout
        if command[0] == "latency":
            assert "turn latency" in result.stdout, result.stdout

    def current_call(self, where: str) -> PlacedCall:
        for call in self.calls:
            if call.call_id == self.call_id:
                return call
        raise AssertionError(f"{where}: no call placed before it")

    def start_gateway(self, index: int, blocks: list[Block], args: list[str], where: str) -> None:
        for gateway, started_in in list(self.gateways):
            if not gateway.alive():
                continue
            between = " ".join(block.prose for block in blocks[started_in + 1:index + 1])
            assert re.search(r"\bstop\b[^.]{0,80}\bgateway", between, flags=re.I | re.S), (
                f"{where} starts a gateway on the ports of the one still running from "
                f"README.md:{blocks[started_in].line}, and the README never says to stop it")
            code = gateway.interrupt()
            assert code == 0, f"{gateway.what} exited {code} on Ctrl-C:\n{gateway.output}"
        job = Job([*VOICECALL, *args], self.env, self.cwd, f"the gateway ({where})")
        self.jobs.append(job)
        self.gateways.append((job, index))
        deadline = time.monotonic() + 20
        while True:
            assert job.alive(), f"{where}: the gateway exited:\n{job.output}"
            try:
                health = httpx.get(f"http://127.0.0.1:{self.control_port}/health", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{where}: the gateway did not start:\n{job.output}"
            time.sleep(0.05)
        while f"webhooks: http://127.0.0.1:{self.webhook_port}/" not in job.output:
            assert time.monotonic() < deadline, f"{where}: no startup banner:\n{job.output}"
            time.sleep(0.05)

    def run_tail(self, args: list[str], where: str) -> None:
        job = Job([*VOICECALL, *args], self.env, self.cwd, f"tail ({where})")
        self.jobs.append(job)
        self.tails += 1
        assert self.call_id, f"{where}: tail before any call"
        deadline = time.monotonic() + 10
        while self.call_id[:8] not in job.output:
            assert job.alive(), f"{where}: tail exited:\n{job.output}"
            assert time.monotonic() < deadline, f"{where}: tail shows no call:\n{job.output}"
            time.sleep(0.05)
        code = job.interrupt()
        assert code == 0, f"{where}: tail exited {code} on Ctrl-C:\n{job.output}"
        assert "Traceback" not in job.output, job.output

    # --- outcomes -------------------------------------------------------------------------

    def verify(self, call: PlacedCall) -> None:
        """Once the call has ended: what the README says happened, happened."""
        deadline = time.monotonic() + 20
        while True:
            shown = subprocess.run([*VOICECALL, *call.config_args, "status", "--call-id",
                                    call.call_id, "--json"], env=self.env, cwd=self.cwd,
                                   capture_output=True, text=True, timeout=60)
            assert shown.returncode == 0, shown.stderr + shown.stdout
            call.status = json.loads(shown.stdout)
            if call.status["call"].get("endedAt"):
                break
            assert time.monotonic() < deadline, f"{call.where}: the call never ended: {shown.stdout}"
            time.sleep(0.2)
        record = call.status["call"]
        said = [(turn["speaker"], turn["text"]) for turn in record["transcript"]]
        assert record.get("answeredAt"), f"{call.where}: never answered: {record}"
        assert ("bot", call.message) in said, f"{call.where}: {said}"
        for text in call.caller_said:
            assert ("user", text) in said, f"{call.where}: {text!r} not in {said}"
        if call.ended_by_user:
            assert record["endReason"] == "hangup-bot", record
        elif call.mode == "notify":
            assert (record["state"], record["endReason"]) == ("completed", "completed"), record
        else:
            pytest.fail(f"{call.where}: a conversation call the README never ends")
        assert not record.get("webhookRejections"), record["webhookRejections"]
        path = [entry["state"] for entry in call.status["history"]]
        remaining = iter(path)
        assert all(state in remaining for state in call.expected_path), (
            f"{call.where}: README says {' → '.join(call.expected_path)}, the call went "
            f"{' → '.join(path)}")

    def stop_all(self) -> list[str]:
        """Ctrl-C for everything still running; what did not exit 0."""
        failed = []
        for job in reversed(self.jobs):
            if job.alive():
                code = job.interrupt()
                if code != 0:
                    failed.append(f"{job.what} exited {code}:\n{job.output}")
        return failed

    def kill_all(self) -> None:
        for job in self.jobs:
            if job.alive():
                job.proc.kill()
                job.proc.wait(timeout=15)


def option(words: list[str], *names: str) -> str | None:
    for i, word in enumerate(words[:-1]):
        if word in names:
            return words[i + 1]
    return None


def test_every_readme_block_runs_as_written_on_a_fresh_state_dir(tmp_path: Path) -> None:
    blocks = readme_blocks()
    walk = Walk(tmp_path)
    try:
        walk.walk(blocks)
        failed = walk.stop_all()
        assert not failed, "\n".join(failed)
    finally:
        walk.kill_all()

    # Every allow-list entry still names something in the README (no stale exemptions).
    for allow in (NOT_RUN_BLOCKS, LOAD_ONLY_BLOCKS):
        for key in allow:
            assert sum(key in block.text for block in blocks) == 1, f"allow-list entry {key!r}"
    assert walk.skipped_commands == set(NOT_RUN_COMMANDS), walk.skipped_commands

    # What the README promises a new user, each of which must be in it and have run.
    notify = [c for c in walk.calls if c.mode == "notify" and not c.config_args]
    assert notify and notify[0].expected_path, "README has no quick-start notify call + status"
    mock_talk = [c for c in walk.calls if c.mode == "conversation" and not c.config_args]
    assert mock_talk and mock_talk[0].caller_said, "README has no mock conversation with continue"
    simulated = [c for c in walk.calls if c.config_args and c.status["call"]["provider"] ==
                 "twilio"]
    assert walk.simulators == 1 and simulated, "README has no simulator recipe"
    assert simulated[0].caller_said, "the simulator recipe has no `continue`"
    assert walk.tails == 1
    print("README walk ran:", *walk.ran, sep="\n  ")  # shown with `pytest -s`
