#!/usr/bin/env python
"""Webhook benchmark: the whole gateway pipeline against a bare Starlette handler, same run.

Two servers run in their own processes, both pinned to core 0:

- the gateway (`voicecall.testing.gateway.running_gateway`: uvicorn, mock carrier, SQLite store
  in WAL and whatever threads it runs), fed mock `call.speech` webhooks spread over
  `--calls` live inbound calls; every request goes through the whole webhook pipeline (limits →
  verify → parse → replay check → event application with its SQLite writes → reply);
- a bare Starlette app (one POST route that reads the body and answers "OK") served by uvicorn
  exactly the way the gateway serves its webhook app: the gateway's own `bind_listener` and
  `serve_on` helpers when the tree has them (same `uvicorn.Config`, same socket options), in
  the same kind of event loop.

The load generator runs in this process, pinned to core 1, on raw asyncio HTTP/1.1 keep-alive
connections (it reports its own CPU use; `generatorSaturated` says if it was the limit). Phases:

1. max throughput: `--concurrency` closed-loop connections for `--duration` seconds;
2. fixed rate (`--rate`, default 200 req/s) for `--duration` seconds, open loop: requests are
   sent at planned times whatever the server does, and latency is measured from the planned
   send time, so a slow server cannot hide its queueing delay (no coordinated omission).

Each phase has `--warmup` unmeasured seconds first. `--rounds` rounds run all four phases with
bare and gateway alternating (a VM's speed drifts): requests/s and the ratio are per-round
medians, latency percentiles pool every round. Each gateway phase gets `--calls` fresh calls.

Each connection comes from its own loopback source address (127.0.x.y: all of 127.0.0.0/8 is
the loopback interface), as a carrier sending from many addresses would; from one address the
webhook's per-client in-flight limit (8) would answer most of 32 concurrent requests with 429
(`--clients 1` shows it). All traffic stays on the loopback interface, to 127.0.0.1.

Before measuring, a probe times sequential keep-alive requests to each server; about 40 ms means
replies stall on Nagle + delayed ACK (see `warnings`; `--tcp-nodelay` is the what-if).

Prints one JSON object (and writes it to `--out`). Exit code 0 even when targets are missed;
non-zero only when the harness itself fails (1) or is interrupted (130).

    .venv/bin/python bench/webhooks.py --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import itertools
import json
import logging
import math
import os
import platform
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchlib import git_revision

WEBHOOK_PATH = "/voice/webhook"
SERVER_CORE = 0
GENERATOR_CORE = 1
TARGET_RATIO = 0.4
TARGET_P99_MS = 10.0
TARGET_RATE = 200.0
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 30.0
SATURATED_CPU = 0.9
OPEN_LOOP_INITIAL_CONNECTIONS = 8
OPEN_LOOP_MAX_CONNECTIONS = 512
SETUP_WORKERS = 8
SPIN_S = 0.002
FOREIGN_LEAD_S = 0.2
OTHER_CPU_WARN = 0.1
KEEPALIVE_REUSE_S = 4.0  # uvicorn closes idle keep-alive connections after 5 s
PROBE_PATH = "/bench-keepalive-probe"
PROBE_REQUESTS = 20
NAGLE_STALL_MS = 20.0
GREETING_SETTLE_S = 0.5

class HarnessError(Exception):
    """The benchmark itself failed (a server did not start, setup requests were refused...)."""


# =============================================================================================
# Server side (runs in a child process started with `--serve gateway|bare`)
# =============================================================================================


def _uvicorn_config_kwargs() -> dict[str, Any]:
    """The uvicorn settings the gateway used for its listeners before `serve_on` existed."""
    return {"log_level": "warning", "access_log": False, "lifespan": "off",
            "timeout_graceful_shutdown": 5, "ws": "none"}


def _http_implementation() -> str:
    """Which HTTP/1.1 parser uvicorn's default (`http="auto"`) picks in this environment."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    name = AutoHTTPProtocol.__name__
    return "httptools" if "HttpTools" in name else "h11" if "H11" in name else name


async def _wait_for_stop() -> None:
    """Return on stdin EOF (the parent closed it or died) or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        while await reader.readline():
            pass
        stop.set()

    watcher = asyncio.create_task(watch_stdin())
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


@contextlib.asynccontextmanager
async def _server_gc(mode: str) -> AsyncIterator[str]:
    """The garbage collector set up as `voicecall serve` sets it up once it has started
    (`settle_garbage_collector`: start-up objects frozen out of the collector, no automatic
    full collections, one scheduled every few minutes), or Python's defaults. Yields what was
    done, for the report."""
    if mode == "default":
        yield "python defaults"
        return
    try:
        from voicecall.gateway.garbage import collect_garbage_periodically, settle_garbage_collector
    except ImportError:
        try:  # trees from 044e9b4 to before the policy moved to gateway/garbage.py
            from voicecall.cli.app import (  # type: ignore[attr-defined,no-redef,unused-ignore]
                collect_garbage_periodically,
                settle_garbage_collector,
            )
        except ImportError:  # a tree from before 044e9b4
            yield "python defaults (this tree's voicecall serve does not tune it)"
            return
    settle_garbage_collector()
    collector = asyncio.create_task(collect_garbage_periodically())
    try:
        yield "as voicecall serve (settle_garbage_collector)"
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector


def _announce(url: str, **extra: Any) -> None:
    loop = asyncio.get_running_loop()
    info = {"url": url, "pid": os.getpid(), "eventLoop": type(loop).__module__.split(".")[0],
            "http": _http_implementation(), "affinity": sorted(os.sched_getaffinity(0)), **extra}
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


def _listener_info(sock: socket.socket) -> dict[str, Any]:
    """Whether connections accepted on `sock` will have TCP_NODELAY.

    Accepted sockets inherit the listener's TCP_NODELAY; asyncio's selector loop also sets it
    itself, but only on sockets whose `proto` is IPPROTO_TCP (not on `socket(AF_INET,
    SOCK_STREAM)`, whose proto is 0).
    """
    nodelay = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return {"listenerProto": sock.proto, "listenerNodelay": nodelay}


async def _serve_gateway(state_dir: Path, tcp_nodelay: bool, gc_mode: str) -> None:
    """A real gateway on a free loopback port, open to inbound calls, reaper off.

    The webhook listener is observed (and, with `tcp_nodelay`, given TCP_NODELAY) by wrapping
    the `bind_listener` the runtime calls; nothing else about the gateway is changed.
    """
    import voicecall.gateway.runtime as runtime_module
    from voicecall.testing.gateway import running_gateway

    namespace = vars(runtime_module)  # the name Runtime.start looks up
    original: Callable[[str, int, str], socket.socket] = namespace["bind_listener"]
    listeners: dict[str, socket.socket] = {}

    def observed_bind_listener(host: str, port: int, what: str) -> socket.socket:
        sock = original(host, port, what)
        if tcp_nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listeners[what] = sock
        return sock

    namespace["bind_listener"] = observed_bind_listener
    config = {"provider": "mock", "maxConcurrentCalls": 1_000_000, "inboundPolicy": "open",
              "staleCallReaperSeconds": 0}
    async with running_gateway(state_dir, config) as runtime, _server_gc(gc_mode) as gc_setup:
        info = _listener_info(listeners["webhook"]) if "webhook" in listeners else {}
        _announce(runtime.webhook_url, stateDir=str(state_dir), gc=gc_setup, **info)
        await _wait_for_stop()


async def _serve_like_gateway(app: Any, sock: socket.socket) -> tuple[Any, asyncio.Task[None]]:
    """Serve `app` with the gateway's own embedded-uvicorn helper (`serve_on`), or, in trees
    that predate it, with the settings the runtime used to pass to uvicorn."""
    try:
        from voicecall.server.serving import serve_on
    except ImportError:
        pass
    else:
        return await serve_on(app, sock, graceful_shutdown_s=5)

    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = QuietServer(uvicorn.Config(app, **_uvicorn_config_kwargs()))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("bare server stopped during startup")
        await asyncio.sleep(0.01)
    return server, task


async def _serve_bare(tcp_nodelay: bool, gc_mode: str) -> None:
    """One Starlette POST route that reads the body and answers "OK", served like the gateway."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from voicecall.gateway.ports import bind_listener

    async def webhook(request: Request) -> PlainTextResponse:
        await request.body()
        return PlainTextResponse("OK")

    app = Starlette(routes=[Route(WEBHOOK_PATH, webhook, methods=["POST"])])
    sock = bind_listener("127.0.0.1", 0, "webhook")  # the gateway's own listener setup
    if tcp_nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server, task = await _serve_like_gateway(app, sock)
    host, port = sock.getsockname()[:2]
    served_with = "serve_on" if importlib.util.find_spec("voicecall.server.serving") else "uvicorn"
    try:
        async with _server_gc(gc_mode) as gc_setup:
            _announce(f"http://{host}:{port}{WEBHOOK_PATH}", servedWith=served_with, gc=gc_setup,
                      **_listener_info(sock))
            await _wait_for_stop()
    finally:
        server.should_exit = True
        await task


def serve_main(kind: str, core: int | None, loop_name: str, state_dir: str | None,
               tcp_nodelay: bool, gc_mode: str = "serve") -> int:
    """Entry point of a server child process."""
    if core is not None:
        os.sched_setaffinity(0, {core})  # before any thread exists, so the store thread inherits it
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if kind == "gateway":
        if not state_dir:
            raise SystemExit("--state-dir is required for the gateway")
        coro: Coroutine[Any, Any, None] = _serve_gateway(Path(state_dir), tcp_nodelay, gc_mode)
    else:
        coro = _serve_bare(tcp_nodelay, gc_mode)
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop_name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)
    return 0


# =============================================================================================
# Child process management (bench side)
# =============================================================================================


class ServerProcess:
    """A server child process; `url` is known once `start` returns."""

    def __init__(self, kind: str, *, core: int | None, loop_name: str, work_dir: Path,
                 tcp_nodelay: bool = False, gc_mode: str = "serve") -> None:
        self.kind = kind
        self.gc_mode = gc_mode
        self.tcp_nodelay = tcp_nodelay
        self.core = core
        self.loop_name = loop_name
        self.work_dir = work_dir
        self.state_dir = work_dir / f"{kind}-state"
        self.stderr_path = work_dir / f"{kind}.stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve", self.kind,
                "--loop", self.loop_name, "--state-dir", str(self.state_dir), "--gc", self.gc_mode]
        if self.core is not None:
            argv += ["--core", str(self.core)]
        if self.tcp_nodelay:
            argv.append("--tcp-nodelay")
        self._stderr = self.stderr_path.open("wb")
        # A session of its own: Ctrl-C in the terminal reaches only us; we stop the children.
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, start_new_session=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise HarnessError(f"{self.kind} server did not start:\n{self.stderr_tail()}")
        self.info = json.loads(line)

    def stderr_tail(self, lines: int = 30) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Close stdin (graceful stop), then SIGTERM, then SIGKILL; idempotent."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            for sig, wait_s in ((None, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(sig)
                try:
                    proc.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a whole process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu_seconds() -> float:
    return time.process_time()


# =============================================================================================
# Load generator: raw HTTP/1.1 keep-alive connections
# =============================================================================================


@dataclass
class Target:
    """Where to send requests, and the process whose CPU time we watch."""

    name: str
    host: str
    port: int
    path: str
    pid: int
    core: int | None = None


class Connection:
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self, target: Target, client_address: str, path: str | None = None) -> None:
        self.target = target
        self.client_address = client_address
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0
        self._head = (f"POST {path or target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: ").encode()

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(
            self.target.host, self.target.port, local_addr=(self.client_address, 0))
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.last_used = time.perf_counter()
        return self

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, body: bytes) -> tuple[int, bytes]:
        """POST `body`; returns (status, response body). Raises on a broken connection.

        A connection idle for longer than the server's keep-alive timeout is replaced first
        (as HTTP clients do), so the server closing it is not counted as an error.
        """
        if self.writer is not None and time.perf_counter() - self.last_used > KEEPALIVE_REUSE_S:
            self.close()
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.writer is not None and self.reader is not None
        self.writer.write(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        start = lower.find(b"\r\ncontent-length:")
        if start < 0:
            self.close()
            raise ConnectionError("response without Content-Length")
        end = lower.index(b"\r\n", start + 2)
        length = int(lower[start + 17:end])
        payload = await self.reader.readexactly(length) if length else b""
        if b"\r\nconnection: close" in lower:
            self.close()
        self.last_used = time.perf_counter()
        return status, payload


def client_address(index: int, clients: int | None) -> str:
    """The loopback source address of connection `index` (shared round-robin if `clients`)."""
    if clients:
        index %= clients
    return f"127.0.{index // 250}.{index % 250 + 1}"


class Workload:
    """Request bodies. Every body is unique (its event `id`), so none is taken for a replay."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self._seq = itertools.count()
        self.call_ids: list[str] = [f"bare-{self.run_id}-{i}" for i in range(64)]

    def speech(self) -> bytes:
        seq = next(self._seq)
        pcid = self.call_ids[seq % len(self.call_ids)]
        return (
            f'{{"events":[{{"type":"call.speech","callId":"{pcid}","providerCallId":"{pcid}",'
            f'"id":"ev-{self.run_id}-{seq}","transcript":"caller utterance number {seq}, about the '
            f'appointment","isFinal":true}}]}}'
        ).encode()


def _event_body(event: dict[str, Any]) -> bytes:
    return json.dumps({"events": [event]}, separators=(",", ":")).encode()


async def _post_all(target: Target, bodies: Sequence[bytes], what: str) -> None:
    """Send setup requests over a few connections; every one must be accepted with one event."""
    queue = list(reversed(bodies))

    async def worker(index: int) -> None:
        conn = await Connection(target, client_address(10_000 + index, None)).open()
        try:
            while queue:
                body = queue.pop()
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    status, payload = await conn.request(body)
                if status != 200 or (b'"events": 1' not in payload and b'"events":1' not in payload):
                    raise HarnessError(f"{what}: HTTP {status} {payload[:200]!r} for {body[:200]!r}")
        finally:
            conn.close()

    await asyncio.gather(*(worker(i) for i in range(min(SETUP_WORKERS, len(bodies)))))


async def create_calls(target: Target, workload: Workload, calls: int, label: str) -> list[str]:
    """Create `calls` live inbound calls (initiated, then answered); returns their carrier ids."""
    pcids = [f"bench-{workload.run_id}-{label}-{i}" for i in range(calls)]
    initiated = [_event_body({
        "type": "call.initiated", "callId": pcid, "providerCallId": pcid, "direction": "inbound",
        "from": f"+1555{2000000 + i:07d}", "to": "+15550000000", "id": f"{pcid}-initiated",
    }) for i, pcid in enumerate(pcids)]
    answered = [_event_body({"type": "call.answered", "callId": pcid, "providerCallId": pcid,
                             "id": f"{pcid}-answered"}) for pcid in pcids]
    await _post_all(target, initiated, "call.initiated")
    await _post_all(target, answered, "call.answered")
    # Answering starts the greeting in the background (the mock cannot play it on an inbound
    # call it did not place, so it fails fast); let that settle before measuring.
    await asyncio.sleep(GREETING_SETTLE_S)
    return pcids


async def end_calls(target: Target, pcids: Sequence[str]) -> None:
    bodies = [_event_body({"type": "call.ended", "callId": pcid, "providerCallId": pcid,
                           "reason": "hangup-user", "id": f"{pcid}-ended"}) for pcid in pcids]
    await _post_all(target, bodies, "call.ended")


# =============================================================================================
# Measurement
# =============================================================================================


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


@dataclass
class CpuWindow:
    """CPU use over a time window: the server process, this (generator) process, and how busy
    the server's core was in total (the process plus kernel work such as softirqs). The core
    figure comes from tick-sampled /proc/stat, so it is only reliable near saturation."""

    pid: int
    core: int | None
    wall0: float = 0.0
    server0: float = 0.0
    self0: float = 0.0
    core0: tuple[int, int] = (0, 0)
    server_fraction: float = 0.0
    generator_fraction: float = 0.0
    core_busy: float | None = None
    foreign0: dict[int, float] = field(default_factory=dict)
    foreign_wall0: float = 0.0
    other_cpu: float = 0.0

    def begin_foreign(self) -> None:
        """Snapshot every other process's CPU time (taken just before the measured window, as
        reading /proc takes a few ms)."""
        self.foreign_wall0 = time.perf_counter()
        self.foreign0 = _foreign_cpu_seconds()

    def end_foreign(self) -> None:
        """CPU (in cores) that processes other than this benchmark used since `begin_foreign`:
        parallel test runs, builds... Call it once the phase is over."""
        wall = max(time.perf_counter() - self.foreign_wall0, 1e-9)
        now = _foreign_cpu_seconds()
        used = sum(max(0.0, cpu - self.foreign0.get(pid, 0.0)) for pid, cpu in now.items())
        self.other_cpu = used / wall

    def begin(self) -> None:
        self.wall0 = time.perf_counter()
        self.server0 = _proc_cpu_seconds(self.pid)
        self.self0 = _self_cpu_seconds()
        self.core0 = _core_ticks(self.core)

    def end(self) -> None:
        wall = max(time.perf_counter() - self.wall0, 1e-9)
        self.server_fraction = (_proc_cpu_seconds(self.pid) - self.server0) / wall
        self.generator_fraction = (_self_cpu_seconds() - self.self0) / wall
        busy, total = _core_ticks(self.core)
        if self.core is not None and total > self.core0[1]:
            self.core_busy = (busy - self.core0[0]) / (total - self.core0[1])


def _foreign_cpu_seconds() -> dict[int, float]:
    """CPU seconds so far of every user-space process that is not this benchmark or its children
    (the servers, py-spy); kernel threads are left out."""
    me = os.getpid()
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        ppid = int(fields[1])
        if ppid in (me, 2) or int(name) == 2:
            continue
        out[int(name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def _core_ticks(core: int | None) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU from /proc/stat; (0, 0) when unknown."""
    if core is None:
        return 0, 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{core} "):
                ticks = [int(v) for v in line.split()[1:]]
                idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
                total = sum(ticks[:8])  # guest time is already counted in user
                return total - idle, total
    return 0, 0


async def _cpu_window(target: Target, start: float, stop: float) -> CpuWindow:
    window = CpuWindow(target.pid, target.core)
    await asyncio.sleep(max(0.0, start - FOREIGN_LEAD_S - time.perf_counter()))
    window.begin_foreign()
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    window.begin()
    await asyncio.sleep(max(0.0, stop - time.perf_counter()))
    window.end()
    return window


@dataclass
class PhaseRun:
    """Raw outcome of one phase against one target (one round)."""

    duration_s: float
    latencies: list[float] = field(default_factory=list)
    from_send: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    achieved_rps: float = 0.0
    cpu: CpuWindow | None = None

    def failure(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.duration_s


@contextlib.contextmanager
def _generator_gc_paused() -> Iterator[None]:
    """No garbage-collector pauses in the generator while it measures (they would show up as
    send lag or latency that is not the server's)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _timed_request(conn: Connection, body: bytes) -> str | None:
    """Send one request; None on 200, else a short description of the failure."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            status, _ = await conn.request(body)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
            TimeoutError) as exc:
        conn.close()
        return type(exc).__name__
    return None if status == 200 else str(status)


async def keepalive_probe(target: Target) -> float:
    """Median ms of sequential requests on one keep-alive connection to a path that answers 404
    (no side effects). About 40 ms means replies stall on Nagle + delayed ACK."""
    conn = await Connection(target, client_address(20_000, None), path=PROBE_PATH).open()
    times: list[float] = []
    try:
        for _ in range(PROBE_REQUESTS + 1):
            t0 = time.perf_counter()
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await conn.request(b"{}")
            times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return _ms(sorted(times[1:])[len(times[1:]) // 2])


async def max_throughput(target: Target, make_body: Callable[[], bytes], *, concurrency: int,
                         warmup_s: float, duration_s: float, clients: int | None) -> PhaseRun:
    """Closed loop: `concurrency` connections, each sending its next request on the last reply.
    Only requests sent and answered inside the measured window count."""
    conns = [await Connection(target, client_address(i, clients)).open()
             for i in range(concurrency)]
    run = PhaseRun(duration_s, connections=concurrency)
    begin = time.perf_counter()
    start, stop = begin + warmup_s, begin + warmup_s + duration_s

    async def worker(conn: Connection) -> None:
        perf = time.perf_counter
        while True:
            t0 = perf()
            if t0 >= stop:
                return
            failure = await _timed_request(conn, make_body())
            t1 = perf()
            if start <= t0 and t1 <= stop:
                if failure is None:
                    run.latencies.append(t1 - t0)
                else:
                    run.failure(failure)

    cpu_task = asyncio.create_task(_cpu_window(target, start, stop))
    try:
        with _generator_gc_paused():
            await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for conn in conns:
            conn.close()
    run.cpu = await cpu_task
    run.cpu.end_foreign()
    run.achieved_rps = run.rps
    return run


async def _schedule(one: Callable[[float, bytes], Coroutine[Any, Any, None]], make_body: Callable[[], bytes],
                    *, begin: float, rate: float, total: int, run: PhaseRun) -> None:
    """Start request i at `begin + i / rate` whatever the server does; wait for the stragglers."""
    tasks: list[asyncio.Task[None]] = []
    perf = time.perf_counter
    for i in range(total):
        planned = begin + i / rate
        delay = planned - perf()
        if delay > SPIN_S:  # timers are ~1 ms coarse: sleep most of the way...
            await asyncio.sleep(delay - SPIN_S)
        # ...then yield to the loop (replies keep flowing) until due: a deliberate spin.
        while perf() < planned:  # noqa: ASYNC110
            await asyncio.sleep(0)
        tasks.append(asyncio.create_task(one(planned, make_body())))
    _done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
        run.failure("drain-timeout")


async def fixed_rate(target: Target, make_body: Callable[[], bytes], *, rate: float,
                     warmup_s: float, duration_s: float, clients: int | None) -> PhaseRun:
    """Open loop at `rate` req/s over a growing pool of keep-alive connections (never waiting
    for a reply before sending); latency runs from each request's planned send time."""
    idle: list[Connection] = [await Connection(target, client_address(i, clients)).open()
                              for i in range(OPEN_LOOP_INITIAL_CONNECTIONS)]
    opened = len(idle)
    available = asyncio.Condition()
    run = PhaseRun(duration_s)
    completions: list[float] = []
    begin = time.perf_counter() + 0.05
    start, stop = begin + warmup_s, begin + warmup_s + duration_s
    total = round((warmup_s + duration_s) * rate)

    async def take() -> Connection:
        nonlocal opened
        async with available:
            while not idle:
                if opened < OPEN_LOOP_MAX_CONNECTIONS:
                    opened += 1
                    return Connection(target, client_address(opened - 1, clients))
                await available.wait()
            return idle.pop()

    async def give(conn: Connection) -> None:
        async with available:
            idle.append(conn)
            available.notify()

    async def one(planned: float, body: bytes) -> None:
        conn = await take()
        sent = time.perf_counter()
        failure = await _timed_request(conn, body)
        done = time.perf_counter()
        await give(conn)
        if planned < start:
            return
        completions.append(done)
        if failure is None:
            run.latencies.append(done - min(planned, sent))
            run.from_send.append(done - sent)
            run.lags.append(max(0.0, sent - planned))
        else:
            run.failure(failure)

    cpu_task = asyncio.create_task(_cpu_window(target, start, stop))
    with _generator_gc_paused():
        await _schedule(one, make_body, begin=begin, rate=rate, total=total, run=run)
    for conn in idle:
        conn.close()
    run.cpu = await cpu_task
    run.cpu.end_foreign()
    run.connections = opened
    span = (max(completions) - start) if completions else duration_s
    run.achieved_rps = len(run.latencies) / max(span, duration_s)
    return run


def _pooled(runs: Sequence[PhaseRun], attr: str) -> list[float]:
    return sorted(v for run in runs for v in getattr(run, attr))


def _errors(runs: Sequence[PhaseRun]) -> tuple[int, dict[str, int]]:
    kinds: dict[str, int] = {}
    for run in runs:
        for kind, count in run.errors.items():
            kinds[kind] = kinds.get(kind, 0) + count
    return sum(kinds.values()), kinds


def _cpu_summary(runs: Sequence[PhaseRun]) -> dict[str, Any]:
    cpus = [run.cpu for run in runs if run.cpu is not None]
    return {"serverCpu": round(statistics.median(c.server_fraction for c in cpus), 3),
            "generatorCpu": round(max(c.generator_fraction for c in cpus), 3),
            "otherProcessesCpu": round(max(c.other_cpu for c in cpus), 3)}


def summarize_max(runs: Sequence[PhaseRun]) -> dict[str, Any]:
    """Median requests/s over the rounds; latency percentiles over all rounds' requests."""
    lat = _pooled(runs, "latencies")
    errors, kinds = _errors(runs)
    busy = [run.cpu.core_busy for run in runs if run.cpu is not None and run.cpu.core_busy is not None]
    return {
        "rps": round(statistics.median(run.rps for run in runs), 1),
        "p50Ms": _ms(percentile(lat, 0.50)),
        "p99Ms": _ms(percentile(lat, 0.99)),
        "maxMs": _ms(lat[-1] if lat else 0.0),
        "errors": errors,
        "errorKinds": kinds,
        "rpsRounds": [round(run.rps, 1) for run in runs],
        "requests": len(lat) + errors,
        "connections": runs[0].connections,
        **_cpu_summary(runs),
        "serverCoreBusy": round(statistics.median(busy), 3) if busy else None,
    }


def summarize_rate(runs: Sequence[PhaseRun]) -> dict[str, Any]:
    """Latency percentiles over all rounds' requests (from planned send time)."""
    lat = _pooled(runs, "latencies")
    errors, kinds = _errors(runs)
    return {
        "p50Ms": _ms(percentile(lat, 0.50)),
        "p99Ms": _ms(percentile(lat, 0.99)),
        "maxMs": _ms(lat[-1] if lat else 0.0),
        "errors": errors,
        "errorKinds": kinds,
        "achievedRps": round(statistics.median(run.achieved_rps for run in runs), 1),
        "p99Rounds": [_ms(percentile(sorted(run.latencies), 0.99)) for run in runs],
        "p99FromSendMs": _ms(percentile(_pooled(runs, "from_send"), 0.99)),
        "sendLagP99Ms": _ms(percentile(_pooled(runs, "lags"), 0.99)),
        "requests": len(lat) + errors,
        "connectionsUsed": max(run.connections for run in runs),
        **_cpu_summary(runs),
    }


# =============================================================================================
# The run
# =============================================================================================


@dataclass
class Options:
    duration: float
    warmup: float
    concurrency: int
    calls: int
    rate: float
    rounds: int
    clients: int | None
    loop: str
    generator_loop: str
    out: Path | None
    py_spy: Path | None
    tcp_nodelay: bool = False
    py_spy_exe: str | None = None
    gc: str = "serve"


def _target(server: ServerProcess) -> Target:
    from urllib.parse import urlsplit

    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    return Target(server.kind, parts.hostname, parts.port, parts.path, server.pid, server.core)


@contextlib.asynccontextmanager
async def _maybe_py_spy(opts: Options, pid: int, name: str, seconds: float,
                        enabled: bool) -> AsyncIterator[None]:
    """Record a py-spy profile of `pid` (all threads; collapsed stacks for flamegraph.pl or
    speedscope) while the block runs."""
    exe = opts.py_spy_exe
    if not enabled or opts.py_spy is None or exe is None:
        yield
        return
    opts.py_spy.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        exe, "record", "--pid", str(pid), "--duration", str(max(1, math.ceil(seconds))),
        "--rate", "250", "--threads", "--nonblocking", "--format", "raw",
        "--output", str(opts.py_spy / f"{name}.txt"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        yield
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _gateway_phase(opts: Options, gw: Target, workload: Workload, label: str,
                         phase: Callable[[], Awaitable[PhaseRun]], profile: bool) -> PhaseRun:
    """Fresh live calls, the phase (optionally profiled), then hang the calls up."""
    workload.call_ids = await create_calls(gw, workload, opts.calls, label)
    async with _maybe_py_spy(opts, gw.pid, f"gateway-{label}", opts.warmup + opts.duration,
                             profile):
        run = await phase()
    await end_calls(gw, workload.call_ids)
    return run


async def run_bench(opts: Options, gateway: ServerProcess, bare: ServerProcess) -> dict[str, Any]:
    """All phases, bare and gateway alternating round by round; the report without `env`."""
    gw, br = _target(gateway), _target(bare)
    workload = Workload()
    rate_key = f"at{opts.rate:g}rps"
    probes = {"gateway": await keepalive_probe(gw), "bare": await keepalive_probe(br)}
    runs: dict[str, list[PhaseRun]] = {"bareMax": [], "gatewayMax": [], "bareRate": [],
                                       "gatewayRate": []}

    def closed(target: Target) -> Callable[[], Awaitable[PhaseRun]]:
        return lambda: max_throughput(target, workload.speech, concurrency=opts.concurrency,
                                      warmup_s=opts.warmup, duration_s=opts.duration,
                                      clients=opts.clients)

    def open_loop(target: Target) -> Callable[[], Awaitable[PhaseRun]]:
        return lambda: fixed_rate(target, workload.speech, rate=opts.rate, warmup_s=opts.warmup,
                                  duration_s=opts.duration, clients=opts.clients)

    # Interleaved so that both targets see the same machine: a VM's speed drifts by ~10 %.
    for n in range(opts.rounds):
        runs["bareMax"].append(await closed(br)())
        runs["gatewayMax"].append(await _gateway_phase(
            opts, gw, workload, f"max-throughput-r{n}", closed(gw), profile=n == 0))
        runs["bareRate"].append(await open_loop(br)())
        runs["gatewayRate"].append(await _gateway_phase(
            opts, gw, workload, f"{rate_key}-r{n}", open_loop(gw), profile=n == 0))

    gateway_max = summarize_max(runs["gatewayMax"])
    gateway_max["utterancesPerCallAtEnd"] = round(statistics.median(
        run.rps for run in runs["gatewayMax"]) * (opts.warmup + opts.duration) / opts.calls)
    gateway_rate = summarize_rate(runs["gatewayRate"])
    gateway_rate["utterancesPerCallAtEnd"] = round(opts.rate * (opts.warmup + opts.duration)
                                                   / opts.calls)
    bare_max = summarize_max(runs["bareMax"])
    bare_rate = summarize_rate(runs["bareRate"])
    ratios = [g.rps / b.rps if b.rps else 0.0
              for g, b in zip(runs["gatewayMax"], runs["bareMax"], strict=True)]
    ratio = statistics.median(ratios)
    saturated = max(gateway_max["generatorCpu"], bare_max["generatorCpu"]) >= SATURATED_CPU
    stalled = [name for name, ms in probes.items() if ms >= NAGLE_STALL_MS]
    warnings: list[str] = []
    if stalled:
        cause = ""
        if gateway.info.get("listenerProto") == 0 and not gateway.info.get("listenerNodelay"):
            cause = ("the listening socket from voicecall.gateway.ports.bind_listener has proto 0 "
                     "and no TCP_NODELAY, so asyncio leaves Nagle on for accepted connections and "
                     "a reply written as head + body waits for the client's delayed ACK. ")
        warnings.append(
            f"keep-alive replies from {' and '.join(stalled)} stall ~40 ms (Nagle + delayed "
            f"ACK): {cause}Latencies and closed-loop throughput (and so the ratio) measure that "
            "stall, not the pipeline; re-run with --tcp-nodelay for the pipeline's own cost.")
    if saturated:
        warnings.append("the load generator used ~all of its core: max-throughput figures are a "
                        "lower bound")
    other = max(t["otherProcessesCpu"] for t in (gateway_max, gateway_rate, bare_max, bare_rate))
    if other >= OTHER_CPU_WARN:
        warnings.append(f"other processes on this machine used up to {other:.2f} cores during a phase "
                        "(see otherProcessesCpu): the figures are disturbed; re-run on a quiet machine")
    if opts.py_spy is not None:
        warnings.append("py-spy sampled the gateway (from the generator's core) in round 1")
    return {
        "gateway": {"maxThroughput": gateway_max, rate_key: gateway_rate},
        "bare": {"maxThroughput": bare_max, rate_key: bare_rate},
        "ratio": round(ratio, 3),
        "ratioRounds": [round(r, 3) for r in ratios],
        "targets": {
            "ratioAtLeast": TARGET_RATIO,
            "p99At200rpsUnderMs": TARGET_P99_MS,
            # None (unknown) when the throughput figures are not valid (`ratioValid`).
            "ratioMet": ratio >= TARGET_RATIO if not (stalled or saturated) else None,
            "p99Met": (opts.rate >= TARGET_RATE and gateway_rate["errors"] == 0
                       and gateway_rate["p99Ms"] < TARGET_P99_MS),
            # False when max throughput measured a stall or the generator, not the servers'
            # CPU cost (see warnings); the fixed-rate p99 stays what a keep-alive client sees.
            "ratioValid": not (stalled or saturated),
        },
        "generatorSaturated": saturated,
        "keepAliveProbeMedianMs": probes,
        "warnings": warnings,
        "env": {},
    }


def _fs_type(path: Path) -> str:
    best, fstype = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, fstype = parts[1], parts[2]
    return fstype


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def environment(opts: Options, gateway: ServerProcess, bare: ServerProcess,
                pinned: bool) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpuCount": os.cpu_count(),
        "pinned": pinned,
        "serverCore": SERVER_CORE if pinned else None,
        "generatorCore": GENERATOR_CORE if pinned else None,
        "gatewayAffinity": gateway.info.get("affinity"),
        "bareAffinity": bare.info.get("affinity"),
        "uvloopInstalled": importlib.util.find_spec("uvloop") is not None,
        "httptoolsInstalled": importlib.util.find_spec("httptools") is not None,
        "serverEventLoop": {"gateway": gateway.info.get("eventLoop"),
                            "bare": bare.info.get("eventLoop")},
        "serverHttp": {"gateway": gateway.info.get("http"), "bare": bare.info.get("http")},
        "bareServedWith": bare.info.get("servedWith"),
        "serverGc": {"gateway": gateway.info.get("gc"), "bare": bare.info.get("gc")},
        "listener": {kind: {"proto": server.info.get("listenerProto"),
                            "tcpNodelay": server.info.get("listenerNodelay")}
                     for kind, server in (("gateway", gateway), ("bare", bare))},
        "tcpNodelayForced": opts.tcp_nodelay,
        "generator": f"raw asyncio HTTP/1.1 keep-alive on {opts.generator_loop}",
        "gitRevision": git_revision(),
        "versions": {"uvicorn": _version("uvicorn"), "starlette": _version("starlette"),
                     "sqlite": sqlite3.sqlite_version, "voicecall": _version("voicecall")},
        "stateDirFs": _fs_type(gateway.state_dir),
        "durationS": opts.duration,
        "rounds": opts.rounds,
        "warmupS": opts.warmup,
        "concurrency": opts.concurrency,
        "rateRps": opts.rate,
        "calls": opts.calls,
        "clientAddresses": opts.clients or "one loopback source address per connection",
        "workload": "mock call.speech webhooks (final transcript, unique event id) round-robin over "
                    "live inbound calls; fresh calls per gateway phase",
        "profiled": opts.py_spy is not None,
    }


def _pin_cores() -> bool:
    """Pin this process to the generator core if both cores are available."""
    available = os.sched_getaffinity(0)
    if {SERVER_CORE, GENERATOR_CORE} <= available:
        os.sched_setaffinity(0, {GENERATOR_CORE})
        return True
    print(f"warning: cores {SERVER_CORE} and {GENERATOR_CORE} are not both available "
          f"({sorted(available)}); running unpinned", file=sys.stderr)
    return False


def bench_main(opts: Options) -> int:
    pinned = _pin_cores()
    core = SERVER_CORE if pinned else None
    work_dir = Path(tempfile.mkdtemp(prefix="voicecall-bench-"))
    servers = [ServerProcess(kind, core=core, loop_name=opts.loop, work_dir=work_dir,
                             tcp_nodelay=opts.tcp_nodelay, gc_mode=opts.gc)
               for kind in ("gateway", "bare")]
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for server in servers:
            server.start()
        gateway, bare = servers
        factory: Callable[[], asyncio.AbstractEventLoop] | None = None
        if opts.generator_loop == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            report = runner.run(run_bench(opts, gateway, bare))
        report["env"] = environment(opts, gateway, bare, pinned)
        for server in servers:
            if server.proc is not None and server.proc.poll() is not None:
                raise HarnessError(f"{server.kind} server died during the run:\n"
                                   f"{server.stderr_tail()}")
    except HarnessError as exc:
        print(f"harness failure: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for server in servers:
            server.stop()
        signal.signal(signal.SIGTERM, previous_term)
        shutil.rmtree(work_dir, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if opts.out is not None:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(text + "\n")
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Webhook throughput and latency: gateway pipeline vs a bare Starlette handler.")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of unmeasured load before each phase")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="connections in the max-throughput phase")
    parser.add_argument("--calls", type=int, default=50, help="live calls the speech is spread over")
    parser.add_argument("--rate", type=float, default=TARGET_RATE,
                        help="requests/s in the fixed-rate phase")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of all four phases, bare and gateway alternating; rps is the "
                             "median round, latency percentiles pool every round")
    parser.add_argument("--clients", type=int, default=None,
                        help="distinct client addresses (default: one per connection); with fewer "
                             "than concurrency/8 the per-client in-flight limit answers 429")
    loops = ["asyncio", "uvloop"]
    parser.add_argument("--loop", choices=loops,
                        default="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
                        help="event loop of both servers (uvloop when installed, as `voicecall "
                             "serve` runs)")
    default_gen = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser.add_argument("--generator-loop", choices=loops, default=default_gen,
                        help="event loop of the load generator")
    parser.add_argument("--tcp-nodelay", action="store_true",
                        help="set TCP_NODELAY on both listening sockets (what-if; the gateway as "
                             "shipped leaves Nagle on for accepted connections)")
    parser.add_argument("--gc", choices=["serve", "default"], default="serve",
                        help="garbage collector of both servers: as `voicecall serve` sets it up "
                             "after start-up (default), or Python's defaults")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR",
                        help="record py-spy profiles of the gateway phases into DIR")
    parser.add_argument("--serve", choices=["gateway", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.concurrency < 1 or args.calls < 1 \
            or args.rate <= 0 or args.rounds < 1 or (args.clients is not None and args.clients < 1):
        parser.error("durations, concurrency, calls, rate, rounds and clients must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve_main(args.serve, args.core, args.loop, args.state_dir, args.tcp_nodelay,
                          args.gc)
    return bench_main(Options(
        duration=args.duration, warmup=args.warmup, concurrency=args.concurrency, calls=args.calls,
        rate=args.rate, rounds=args.rounds, clients=args.clients, loop=args.loop,
        generator_loop=args.generator_loop, out=args.out, py_spy=args.py_spy, tcp_nodelay=args.tcp_nodelay,
        py_spy_exe=_find_py_spy() if args.py_spy else None, gc=args.gc))


def _find_py_spy() -> str | None:
    """py-spy from PATH or next to this interpreter (a venv's bin)."""
    beside = Path(sys.executable).with_name("py-spy")
    found = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if found is None:
        print("warning: --py-spy given but py-spy is not installed; not profiling", file=sys.stderr)
    return found


if __name__ == "__main__":
    sys.exit(main())
