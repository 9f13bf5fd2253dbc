"""Small helpers shared by the socket-level tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import select
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicecall.calls.events import CallEvent
    from voicecall.calls.model import CallRecord
    from voicecall.gateway.runtime import Runtime
    from voicecall.providers.base import EventOutcome


OUR_NUMBER = "+15550000000"
CALLEE = "+15555550123"
FRIEND = "+15557770001"
"""An allow-listed caller of the carrier end-to-end tests."""
STRANGER = "+15558880002"
"""A caller those tests' policy refuses."""


def carrier_config(provider: str, settings: dict[str, Any], port: int, **extra: Any) -> dict[str, Any]:
    """A gateway config for the carrier end-to-end tests: `provider` with its `settings` block,
    webhook on `port`, notify calls hung up right after their message, only FRIEND let in."""
    return {"provider": provider, "fromNumber": OUR_NUMBER, provider: settings,
            "serve": {"port": port}, "outbound": {"notifyHangupDelaySec": 0},
            "inboundPolicy": "allowlist", "allowFrom": [FRIEND], "maxConcurrentCalls": 5, **extra}


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def place_call(runtime: Runtime, to: str, message: str, mode: str, **extra: Any) -> CallRecord:
    """Place a call through the gateway's RPC; its record, once the carrier has its id."""
    result = await runtime.api.call("voicecall.initiate", {"to": to, "message": message, "mode": mode,
                                                           **extra})
    record = await runtime.service.get_call(result["callId"])
    assert record is not None and record.provider_call_id
    return record


def run_on_terminal(args: list[str], env: dict[str, str], *, stream: str) -> tuple[int, str]:
    """Run a command with its `stream` ("stdout" or "stderr") on a pseudo-terminal (the other
    one discarded); its exit code and what the terminal got."""
    master, slave = pty.openpty()
    streams: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    streams[stream] = slave
    proc = subprocess.Popen(args, env={**env, "TERM": "xterm", "COLUMNS": "200"}, **streams)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunks.append(os.read(master, 65536))
            except OSError:  # the child closed the terminal
                break
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=15), b"".join(chunks).decode(errors="replace")


class FakeProviderContext:
    """A `ProviderContext` for adapter unit tests: live calls and carrier state in dicts, and
    no events applied."""

    stream_url: str | None = None

    def __init__(self, webhook_url: str = "https://gw.example/voice/webhook") -> None:
        self.webhook_url = webhook_url
        self.state: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, CallRecord] = {}

    async def emit(self, events: list[CallEvent]) -> list[EventOutcome]:
        return []

    async def get_provider_state(self, call_id: str) -> dict[str, Any] | None:
        return self.state.get(call_id)

    async def put_provider_state(self, call_id: str, data: dict[str, Any]) -> None:
        self.state[call_id] = data

    def live(self, call_id: str) -> CallRecord | None:
        return self.calls.get(call_id)

    async def get_call(self, call_id: str) -> CallRecord | None:
        return self.calls.get(call_id)

    async def was_rejected(self, provider_call_id: str) -> bool:
        return False


async def call_ended(runtime: Runtime, call_id: str, within: float = 10.0) -> CallRecord:
    """The gateway's record of `call_id` once it has ended (live or from history); fails after
    `within` s."""
    async def check() -> CallRecord | None:
        record = await runtime.service.get_call(call_id)
        return record if record is not None and record.is_terminal else None

    result: CallRecord = await eventually(check, within)
    return result


@contextlib.asynccontextmanager
async def standalone_simulator(carrier: str, *args: str) -> AsyncIterator[
        tuple[str, asyncio.subprocess.Process]]:
    """Run `python -m voicecall.testing.<carrier> ARGS`; yields its config block, as printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"voicecall.testing.{carrier}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        block: list[str] = []
        async with asyncio.timeout(20):
            while not block or block[-1] != "}":
                line = (await proc.stdout.readline()).decode()
                assert line, "the simulator exited before printing its config block"
                if block or line.rstrip("\n") == "{":
                    block.append(line.rstrip("\n"))
        yield "\n".join(block) + "\n", proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


def openai_speech_settings(speech: Any, stt: Any) -> dict[str, Any]:
    """Config for streamed calls whose TTS and transcription are the local OpenAI fakes."""
    return {
        "streaming": {"enabled": True, "provider": "openai",
                      "providers": {"openai": {"apiKey": "sk-test", "baseUrl": stt.base_url}}},
        "tts": {"provider": "openai",
                "providers": {"openai": {"apiKey": "sk-test", "baseUrl": speech.openai_base_url}}},
    }
