#!/usr/bin/env python
"""Media-stream capacity benchmark: concurrent Twilio Media Streams with continuous playback.

What it measures (issue 4): with the gateway alone on one core and its TTS audio arriving at
24 kHz (OpenAI's PCM rate), the largest number of concurrent streams, each with 50 inbound frames
a second and continuous outbound playback, for which the outbound inter-frame jitter p99 stays at
or under 5 ms with no stalls (no connection errors, every stream delivered >= 95 % of real time);
the gateway's CPU and memory per stream there; the time from the first TTS byte to the first
audio frame sent (the gateway's own `voicecall.media.stats`); and that past its capacity
(`streaming.maxConnections`) new streams are refused with 503 while the admitted ones still pass.

Processes and cores (2-core machine):

- the gateway, `voicecall --config FILE serve` with `OPENCLAW_STATE_DIR` in a temporary
  directory, pinned to core 0 with `taskset -c 0`; a fresh gateway (fresh state directory and
  ports) for every trial, so trials do not inherit each other's calls, memory or sockets;
- the load generator, pinned to core 1, one `--ramp N` run per trial with `--calls-file`: the
  project's own `bench/streamgen.py` (the default; the same measurements at well under half the
  reference's CPU per stream, validated against it in bench/media_streams.md) or, with
  `--generator reference`, the reference `../shared/bench/loadgen.py` (run, not copied);
- this process, pinned to core 1: the Twilio simulator (REST API, signed webhooks, TwiML) and
  the fake OpenAI speech server (`FakeSpeech(audio_seconds=...)`: 24 kHz PCM, longer than a trial,
  in 4800-byte chunks: the first second at once, then 1.25 x real time), plus the orchestration.
  The gateway reads TTS audio as fast as it comes and resamples it on arrival, so its CPU follows
  the TTS rate, not the playback rate: `--tts-speed 2` costs it more CPU per stream. With
  `--realtime`, the fake realtime model runs here too. With `--fifo PRIO` this process runs under
  SCHED_FIFO at PRIO - 1: other work on the machine cannot starve the fakes the gateway depends
  on, and they cannot delay the load generator (PRIO).

A trial at N: start a gateway (`streaming.enabled`, `streaming.provider: "none"` so inbound
audio is parsed and dropped, TTS = the fake, the simulator as `twilio.apiBaseUrl`); place N
calls through the control RPC (`voicecall.initiate`, mode `conversation`); the simulator answers
each and fetches the gateway's `<Connect><Stream>` TwiML but leaves the stream to the load
generator (`Callee(open_streams=False)`); the calls file holds each call's CallSid and its
`<Parameter name="token">`. The load generator opens the N streams, sends 50 frames/s on each
and times every outbound frame; when a stream opens, the gateway synthesizes the call's first
message and plays it for the rest of the trial. Then the gateway's media stats are read and it
is stopped.

Search: the `--ramp` list in order until a trial fails, then bisection between the last pass
and the first failure, then `--confirm` reruns of the best N (if a rerun fails, the next lower
passing N is tried). The loadgen's own `--search` cannot be used: it reuses the calls file
across trials, and the gateway ends a call 2 s after its stream closes.

Over capacity: a gateway with `maxConnections` = C (default: 90 % of the largest passing N),
C + 20 % calls and streams: the excess must get HTTP 503 at the upgrade and the C admitted streams must
pass the same criteria.

Realtime (`--realtime`, issue 19): every call is bridged to the fake OpenAI Realtime model
(`FakeOpenAIRealtime`, in this process), whose answer streams at real time after a 0.5 s lead
for the whole trial, G.711 both ways. The same run then searches the classic path over
`--classic-ramp` (unless `--no-classic`), so both figures come from one set of conditions: the
JSON's `streamsPerCore` holds the two side by side, `result` the realtime search and `classic`
the classic one.

Prints one JSON object (and writes it to `--out`). Exit 0 whether or not targets are met; 1 if
the harness fails, 130 on Ctrl-C / SIGTERM.

    .venv/bin/python bench/media_streams.py --fifo 10 --gc-log    # the full search (5-10 minutes)
    .venv/bin/python bench/media_streams.py --quick               # a smoke run (about a minute)
    .venv/bin/python bench/media_streams.py --realtime --fifo 10 --ramp 240,280,320,360 \
        --classic-ramp 400,500,600,700 --no-bisect --confirm 0 --duration 8 --warmup 2 \
        --no-overload --quiet-wait 5                               # both figures (about 4 minutes)

(Add `--gateway-loop asyncio` while `voicecall serve` on uvloop refuses media sockets; see
bench/media_streams.md.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchlib import git_revision
from voicecall.gateway.client import ControlClient, RpcError
from voicecall.testing.fakes.realtime import FakeOpenAIRealtime
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.twilio import Callee, SimCall, TwilioSimulator, sign

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOADGEN = ROOT.parent / "shared" / "bench" / "loadgen.py"
STREAMGEN = ROOT / "bench" / "streamgen.py"
SERVER_CORE = 0
HELPER_CORE = 1
TARGET_STREAMS = 400
TARGET_P99_MS = 5.0
TARGET_TTS_P95_MS = 10.0
MIN_DELIVERY = 0.95
OVERLOAD_FACTOR = 1.2
OVERLOAD_HEADROOM = 0.9  # default maxConnections: 90 % of the measured capacity
FROM_NUMBER = "+15550000000"
OPENAI_KEY = "sk-bench-media-streams-000000"
MESSAGE = "This is a load test of continuous playback over a Twilio media stream."
READY_TIMEOUT_S = 60.0
PLACE_CONCURRENCY = 16
WEBHOOK_SOURCES = [f"127.0.{i // 250 + 1}.{i % 250 + 1}" for i in range(500)]  # as Twilio, from many IPs
OTHER_CPU_WARN_PCT = 10.0
OTHER_CPU_WARN_CORES = 0.1
LOG_TAIL_LINES = 30


GC_LOG = """
import gc, sys, time
_gc_t0 = [0.0]
def _gc_cb(phase, info):
    if phase == "start":
        _gc_t0[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _gc_t0[0]) * 1000
    if ms >= 2 or info["generation"] == 2:
        sys.stderr.write(f"BENCH-GC gen={info['generation']} ms={ms:.2f} collected={info['collected']}\\n")
gc.callbacks.append(_gc_cb)
"""
SERVE = "import sys\nimport voicecall.cli.app as app\n{patch}sys.argv[0] = 'voicecall'\napp.main()\n"
ASYNCIO_PATCH = "import voicecall.cli.common as common\ncommon.loop_factory = lambda: None\n"
GC_LINE = re.compile(r"BENCH-GC gen=(\d) ms=([\d.]+)")


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


class HarnessError(Exception):
    """The benchmark itself failed (a gateway did not start, the load generator crashed...)."""


@dataclass
class Options:
    ramp: list[int]
    bisect: bool
    resolution: float
    min_step: int
    confirm: int
    duration: float
    warmup: float
    connect_rate: float
    overload: bool
    overload_capacity: int | None
    tts_seconds: float
    tts_speed: float
    tts_lead: float
    tts_chunk_bytes: int
    loadgen: Path
    generator: str
    loadgen_cpu_limit: float
    max_connections: int
    out: Path | None
    py_spy: Path | None
    keep: bool
    quick: bool
    quiet_wait: float
    retries: int
    nice: int
    fifo: int
    gateway_loop: str
    gc_log: bool
    realtime: bool = False
    classic_ramp: list[int] = field(default_factory=list)
    """With `realtime`: the classic path's ramp, searched in the same run (empty: not at all)."""


def parse_args(argv: Sequence[str] | None = None) -> Options:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realtime", action="store_true",
                    help="bridge every call to the fake OpenAI Realtime model (issue 19) instead of TTS: "
                    "its answer streams at real time for the whole trial")
    ap.add_argument("--classic-ramp", default="300,400,500,600",
                    help="with --realtime: the classic path's N, searched after the realtime ones in the "
                         "same run so both figures come from one set of conditions (default %(default)s)")
    ap.add_argument("--no-classic", action="store_true",
                    help="with --realtime: do not search the classic path as well")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: N = 10 and 20 for 5 s each, over-capacity C = 10 (about a minute)")
    ap.add_argument("--ramp", default="50,100,200,300,400,500,600",
                    help="N tried in order until one fails (default %(default)s)")
    ap.add_argument("--no-bisect", action="store_true", help="stop after the ramp")
    ap.add_argument("--resolution", type=float, default=0.05,
                    help="bisect until HI - LO <= max(--min-step, LO * this) (default %(default)s)")
    ap.add_argument("--min-step", type=int, default=10, help="default %(default)s")
    ap.add_argument("--confirm", type=int, default=1, help="reruns of the best N (default %(default)s)")
    ap.add_argument("--duration", type=float, default=15.0,
                    help="seconds every trial keeps all N streams up, warm-up included (default %(default)s)")
    ap.add_argument("--warmup", type=float, default=3.0, help="default %(default)s")
    ap.add_argument("--connect-rate", type=float, default=100.0,
                    help="new streams per second while a trial ramps in (default %(default)s)")
    ap.add_argument("--no-overload", action="store_true", help="skip the over-capacity trial")
    ap.add_argument("--overload-capacity", type=int, default=None,
                    help="streaming.maxConnections of the over-capacity trial (default: 90 %% of the "
                         "largest passing N, the headroom an operator would leave)")
    ap.add_argument("--tts-seconds", type=float, default=90.0,
                    help="audio per TTS answer, longer than a trial (default %(default)s)")
    ap.add_argument("--tts-speed", type=float, default=1.25,
                    help="after the lead, the fake TTS streams at this multiple of real time "
                         "(default %(default)s)")
    ap.add_argument("--tts-lead", type=float, default=1.0,
                    help="seconds of audio the fake TTS sends at once first (default %(default)s)")
    ap.add_argument("--tts-chunk-bytes", type=int, default=4800, help="default %(default)s (100 ms)")
    ap.add_argument("--generator", choices=["reference", "streamgen"], default="streamgen",
                    help="the load generator: the reference (--loadgen) or bench/streamgen.py, the project's "
                         "own, which measures the same at a fraction of the CPU per stream "
                         "(bench/media_streams.md; default %(default)s)")
    ap.add_argument("--loadgen", type=Path, default=DEFAULT_LOADGEN,
                    help="the reference load generator (default %(default)s)")
    ap.add_argument("--loadgen-cpu-limit", type=float, default=85.0,
                    help="the loadgen flags itself saturated above this CPU %% (default %(default)s)")
    ap.add_argument("--max-connections", type=int, default=10_000,
                    help="streaming.maxConnections during the search (default %(default)s)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--py-spy", type=Path, default=None, metavar="DIR",
                    help="record a py-spy profile (raw collapsed stacks) of the gateway in every trial")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (gateway logs)")
    ap.add_argument("--quiet-wait", type=float, default=120.0,
                    help="before each trial, wait up to this many seconds for other processes to use "
                         "under 0.1 cores (default %(default)s)")
    ap.add_argument("--nice", type=int, default=-20,
                    help="niceness of this process and its children (gateway, load generator), to "
                         "shield them from other work on a shared machine; needs root below 0 "
                         "(default %(default)s)")
    ap.add_argument("--fifo", type=int, default=0, metavar="PRIO",
                    help="run the gateway and the load generator under SCHED_FIFO at this priority "
                         "(root): on a shared machine, other work (this process included) then cannot "
                         "delay their wakeups; this process (the simulator and the fake TTS and realtime "
                         "model the gateway depends on) runs at PRIO - 1, so other work cannot starve "
                         "it either but it never delays the load generator; 0 = off (default)")
    ap.add_argument("--gateway-loop", choices=["default", "asyncio"], default="default",
                    help="the gateway's event loop: as `voicecall serve` picks it (uvloop when "
                         "installed), or plain asyncio (a what-if; default %(default)s)")
    ap.add_argument("--gc-log", action="store_true",
                    help="log the gateway's garbage-collection pauses (gc.callbacks) into its log and "
                         "report them per trial")
    ap.add_argument("--retries", type=int, default=2,
                    help="re-run a failed trial this often if other processes were busy during it "
                         "(default %(default)s)")
    a = ap.parse_args(argv)
    ramp = sorted({int(x) for x in str(a.ramp).split(",") if x.strip()})
    classic_ramp = ([] if not a.realtime or a.no_classic
                    else sorted({int(x) for x in str(a.classic_ramp).split(",") if x.strip()}))
    opts = Options(
        ramp=ramp, bisect=not a.no_bisect, resolution=a.resolution, min_step=max(1, a.min_step),
        confirm=max(0, a.confirm), duration=a.duration, warmup=a.warmup, connect_rate=a.connect_rate,
        overload=not a.no_overload, overload_capacity=a.overload_capacity, tts_seconds=a.tts_seconds,
        tts_speed=a.tts_speed, tts_lead=a.tts_lead, tts_chunk_bytes=a.tts_chunk_bytes,
        loadgen=STREAMGEN if a.generator == "streamgen" else a.loadgen, generator=a.generator,
        loadgen_cpu_limit=a.loadgen_cpu_limit, max_connections=a.max_connections, out=a.out,
        py_spy=a.py_spy, keep=a.keep, quick=a.quick, quiet_wait=a.quiet_wait, retries=max(0, a.retries),
        nice=a.nice, fifo=max(0, a.fifo), gateway_loop=a.gateway_loop, gc_log=a.gc_log,
        realtime=a.realtime, classic_ramp=classic_ramp)
    if a.quick:
        opts = dataclasses.replace(opts, ramp=[10, 20], classic_ramp=[10, 20] if classic_ramp else [],
                                   bisect=False, confirm=0, duration=5.0, warmup=1.5,
                                   connect_rate=50.0, overload_capacity=a.overload_capacity or 10,
                                   tts_seconds=min(a.tts_seconds, 30.0), quiet_wait=min(a.quiet_wait, 10.0))
    if not opts.ramp or min(opts.ramp) < 1 or min(opts.classic_ramp, default=1) < 1:
        ap.error("--ramp and --classic-ramp need positive stream counts")
    if opts.warmup >= opts.duration:
        ap.error("--warmup must be shorter than --duration")
    if not opts.loadgen.is_file():
        ap.error(f"no load generator at {opts.loadgen}")
    return opts


def progress(message: str) -> None:
    print(f"[media_streams] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def gateway_log_errors(path: Path) -> dict[str, Any]:
    """How many ERROR records and tracebacks the gateway logged, with the first few error lines."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"errors": 0}
    errors = [i for i, line in enumerate(lines) if " ERROR " in line or " CRITICAL " in line]
    first = []
    for i in errors[:3]:
        last = next((lines[j] for j in range(i + 1, min(len(lines), i + 80))
                     if EXCEPTION_LINE.match(lines[j])), "")
        first.append(f"{lines[i]} | {last}")
    return {"errors": len(errors), "tracebacks": sum(1 for line in lines if line.startswith("Traceback")),
            "first": first}


def gc_pauses(path: Path) -> dict[str, Any]:
    """The gateway's garbage-collection pauses (`--gc-log`): per generation, count and max ms of
    the collections that took >= 2 ms (and of every generation-2 one)."""
    out: dict[str, Any] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for gen, ms in GC_LINE.findall(text):
        entry = out.setdefault(f"gen{gen}", {"count": 0, "maxMs": 0.0, "totalMs": 0.0})
        entry["count"] += 1
        entry["maxMs"] = max(entry["maxMs"], float(ms))
        entry["totalMs"] = round(entry["totalMs"] + float(ms), 2)
    return out


def append_fd(path: Path) -> int:
    """A file descriptor appending to `path`, for a child's stdout/stderr."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def foreign_cpu_seconds() -> dict[int, float]:
    """CPU seconds so far of every user-space process that is neither this benchmark nor one of
    its descendants (gateway, load generator, py-spy); kernel threads are left out."""
    me = os.getpid()
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid, ppid = int(name), int(fields[1])
        if pid == 2 or ppid == 2:
            continue
        parents[pid] = ppid
        cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks
    out: dict[int, float] = {}
    for pid, seconds in cpu.items():
        p, ours = pid, False
        for _ in range(64):
            if p == me:
                ours = True
                break
            if p not in parents:
                break
            p = parents[p]
        if not ours:
            out[pid] = seconds
    return out


class ForeignCpu:
    """CPU (in cores) that other processes used from construction to `cores()`."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = foreign_cpu_seconds()

    def cores(self) -> float:
        wall = max(time.monotonic() - self._t0, 1e-6)
        now = foreign_cpu_seconds()
        used = sum(max(0.0, c - self._cpu0.get(pid, 0.0)) for pid, c in now.items())
        return round(used / wall, 3)


async def wait_for_quiet(limit: float, max_wait_s: float) -> float:
    """Wait (up to `max_wait_s`) until other processes use less than `limit` cores over 1 s;
    returns the last reading."""
    deadline = time.monotonic() + max_wait_s
    while True:
        window = ForeignCpu()
        await asyncio.sleep(1.0)
        used = window.cores()
        if used < limit or time.monotonic() >= deadline:
            return used


def pin(cores: set[int]) -> bool:
    try:
        os.sched_setaffinity(0, cores)
    except (OSError, ValueError):
        return False
    return True


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# =============================================================================================
# The gateway under test
# =============================================================================================


class Gateway:
    """One `voicecall serve` child on core 0 with its own state directory and ports."""

    def __init__(self, work_dir: Path, config: dict[str, Any], *, pinned: bool,
                 loop: str = "default", gc_log: bool = False, fifo: int = 0) -> None:
        self.dir = work_dir
        self.fifo = fifo
        self.loop = loop
        self.gc_log = gc_log
        self.config = config
        self.pinned = pinned
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = work_dir / "gateway.log"
        self.idle_rss_mb: float | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def webhook_port(self) -> int:
        port: int = self.config["serve"]["port"]
        return port

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.config['control']['port']}"

    @property
    def token(self) -> str:
        token: str = self.config["control"]["token"]
        return token

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        state = self.dir / "state"
        state.mkdir(exist_ok=True)
        cfg = self.dir / "voicecall.json"
        cfg.write_text(json.dumps(self.config, indent=1))
        exe = Path(sys.executable).with_name("voicecall")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "voicecall"]
        if self.loop == "asyncio" or self.gc_log:  # `voicecall serve` in a wrapper
            patch = (ASYNCIO_PATCH if self.loop == "asyncio" else "") + (GC_LOG if self.gc_log else "")
            cmd = [sys.executable, "-c", SERVE.format(patch=patch)]
        cmd += ["--config", str(cfg), "serve"]
        taskset = shutil.which("taskset")
        if self.pinned and taskset:
            cmd = [taskset, "-c", str(SERVER_CORE), *cmd]
        env = {**os.environ, "OPENCLAW_STATE_DIR": str(state), "HOME": str(self.dir),
               "PYTHONUNBUFFERED": "1"}
        for key in ("VOICECALL_CONFIG", "OPENCLAW_CONFIG_PATH", "OPENAI_API_KEY", "TWILIO_ACCOUNT_SID",
                    "TWILIO_AUTH_TOKEN"):
            env.pop(key, None)
        pinned, cores, fifo = self.pinned, {SERVER_CORE}, self.fifo

        def pre() -> None:  # also when taskset is missing; never inherit this process's core 1
            os.setsid()
            if pinned:
                os.sched_setaffinity(0, cores)
            else:
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            if fifo:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo))

        log = append_fd(self.log_path)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=str(self.dir),
                preexec_fn=pre)
        finally:
            os.close(log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with ControlClient(self.control_url, self.token, timeout_s=5) as client:
            while True:
                if self.proc.returncode is not None:
                    raise HarnessError(f"gateway exited with {self.proc.returncode}:\n{tail(self.log_path)}")
                if await client.ping() and await self._listening(self.webhook_port):
                    break
                if time.monotonic() > deadline:
                    raise HarnessError(f"gateway not ready in {READY_TIMEOUT_S:.0f} s:\n"
                                       f"{tail(self.log_path)}")
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        self.idle_rss_mb = rss_mb(self.pid)

    @staticmethod
    async def _listening(port: int) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def stop(self) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        return proc.returncode


# =============================================================================================
# One trial
# =============================================================================================


@dataclass
class Trial:
    n: int
    kind: str  # "search", "confirm", "overload"
    max_connections: int
    realtime: bool = False
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.result.get("pass"))

    @property
    def saturated(self) -> bool:
        return bool(self.result.get("generatorSaturated"))


class Bench:
    def __init__(self, opts: Options, work: Path, pinned: bool) -> None:
        self.opts = opts
        self.work = work
        self.pinned = pinned
        self.sim = TwilioSimulator(default_callee=Callee(answer_after_s=0.2, open_streams=False),
                                   webhook_source_addresses=WEBHOOK_SOURCES, webhook_timeout_s=30.0)
        self.tts = FakeSpeech(openai_api_key=OPENAI_KEY, audio_seconds=opts.tts_seconds,
                              chunk_bytes=opts.tts_chunk_bytes, speed=opts.tts_speed, lead_s=opts.tts_lead)
        self.model = FakeOpenAIRealtime(api_key=OPENAI_KEY, say_seconds=opts.tts_seconds, realtime=True,
                                        keep_audio=False)
        self.trials: list[Trial] = []
        self.realtime = opts.realtime
        """The path the next trials take: bridged to the fake realtime model, or classic (TTS)."""
        self.warnings: list[str] = []
        self._numbers = 0
        self._gateways = 0
        self.other_cpu = 0.0

    # -- setup -----------------------------------------------------------------------------------
    def gateway_config(self, max_connections: int) -> dict[str, Any]:
        port, control = free_port(), free_port()
        while control == port:
            control = free_port()
        pending = 256  # the loadgen connects from one address; Twilio's streams come from many
        return {
            "provider": "twilio", "fromNumber": FROM_NUMBER,
            "twilio": {"accountSid": self.sim.account_sid, "authToken": self.sim.auth_token,
                       "apiBaseUrl": self.sim.base_url},
            "serve": {"port": port, "bind": "127.0.0.1"},
            "control": {"port": control, "bind": "127.0.0.1", "token": secrets.token_hex(16)},
            "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
            "inboundPolicy": "disabled", "maxConcurrentCalls": 100_000, "maxDurationSeconds": 3600,
            "staleCallReaperSeconds": 0,
            "outbound": {"notifyHangupDelaySec": 0, "defaultMode": "conversation"},
            "streaming": {"enabled": not self.realtime, "provider": "none",
                          "maxConnections": max_connections,
                          "maxPendingConnections": pending, "maxPendingConnectionsPerIp": pending,
                          "preStartTimeoutMs": 10_000},
            "tts": {"provider": "openai", "timeoutMs": 120_000,
                    "providers": {"openai": {"apiKey": OPENAI_KEY, "baseUrl": self.tts.openai_base_url}}},
            **(self.realtime_settings() if self.realtime else {}),
        }

    def realtime_settings(self) -> dict[str, Any]:
        """Realtime calls: the stream limits stay under `streaming` (off), the model is the fake."""
        return {"inboundPolicy": "allowlist",
                "realtime": {"enabled": True, "providers": {"openai": {
                    "apiKey": OPENAI_KEY, "baseUrl": self.model.base_url}}}}

    def next_number(self) -> str:
        self._numbers += 1
        return f"+1555{1_000_000 + self._numbers:07d}"

    async def place_calls(self, gateway: Gateway, n: int) -> tuple[list[SimCall], list[str], float]:
        """N calls through the control RPC; returns the simulator's calls holding their stream."""
        known = set(self.sim.calls)
        started = time.monotonic()
        errors: list[str] = []
        sem = asyncio.Semaphore(PLACE_CONCURRENCY)
        async with ControlClient(gateway.control_url, gateway.token, timeout_s=30) as client:
            async def place() -> None:
                async with sem:
                    try:
                        await client.call("voicecall.initiate", {"to": self.next_number(), "message": MESSAGE,
                                                                 "mode": "conversation"})
                    except RpcError as exc:
                        errors.append(str(exc))
            await asyncio.gather(*(place() for _ in range(n)))
        deadline = time.monotonic() + 20.0 + n / 20.0
        while True:
            new = [c for c in self.sim.calls.values() if c.sid not in known]
            held = [c for c in new if not c.is_ended and c.streams and c.streams[-1].started_at is None]
            settled = sum(1 for c in new if c.is_ended or c.streams)
            if (len(new) + len(errors) >= n and settled >= len(new)) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        for c in new:
            if c not in held:
                errors.append(f"call {c.sid}: status {c.status}, errors {c.errors[:2]}")
        return held, errors[:10], time.monotonic() - started

    async def end_calls(self, calls: list[SimCall]) -> None:
        live = [c for c in calls if not c.is_ended]
        for i in range(0, len(live), 64):
            await asyncio.gather(*(self.sim.hangup(c.sid, timeout=5.0) for c in live[i:i + 64]),
                                 return_exceptions=True)

    # -- the load generator ------------------------------------------------------------------------
    async def run_loadgen(self, trial_dir: Path, url: str, entries: list[dict[str, Any]], n: int,
                          gateway_pid: int, per_stream: bool) -> tuple[dict[str, Any], float]:
        calls_file = trial_dir / "calls.json"
        calls_file.write_text(json.dumps(entries))
        out = trial_dir / "loadgen.json"
        signature = sign(self.sim.auth_token, url, None)
        opts = self.opts
        cmd = [sys.executable, str(opts.loadgen), "--url", url, "--ramp", str(n),
               "--calls-file", str(calls_file), "--server-pid", str(gateway_pid),
               "--duration", str(opts.duration), "--warmup", str(opts.warmup),
               "--connect-rate", str(opts.connect_rate), "--loadgen-cpu-limit", str(opts.loadgen_cpu_limit),
               "--trial-timeout", str(n / opts.connect_rate + opts.duration + 40),
               "--header", f"X-Twilio-Signature: {signature}", "--label", "voicecall bench/media_streams.py",
               "--out", str(out)]
        if self.pinned:
            cmd += ["--cpu", str(HELPER_CORE)]
        if per_stream:
            cmd.append("--per-stream")
        spy = None
        if opts.py_spy is not None:
            spy = asyncio.create_task(self._py_spy(gateway_pid, n, trial_dir.name))
        cpu0 = time.process_time()
        t0 = time.monotonic()
        foreign = ForeignCpu()
        log = append_fd(trial_dir / "loadgen.log")
        try:
            fifo = opts.fifo

            def pre() -> None:
                if fifo:
                    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo))

            proc = await asyncio.create_subprocess_exec(*cmd, stdin=subprocess.DEVNULL, stdout=log,
                                                        stderr=log, preexec_fn=pre)
        finally:
            os.close(log)
        try:
            rc = await proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        helper_cpu = round(100.0 * (time.process_time() - cpu0) / max(1e-6, time.monotonic() - t0), 1)
        self.other_cpu = foreign.cores()
        if spy is not None:
            spy.cancel()
            await asyncio.gather(spy, return_exceptions=True)
        if rc != 0 or not out.exists():
            raise HarnessError(f"load generator exited with {rc}:\n{tail(trial_dir / 'loadgen.log')}")
        data = json.loads(out.read_text())
        trials = data.get("trials") or []
        if not trials:
            raise HarnessError("load generator wrote no trial")
        result: dict[str, Any] = trials[0]
        return result, helper_cpu

    async def _py_spy(self, pid: int, n: int, name: str) -> None:
        assert self.opts.py_spy is not None
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.opts.py_spy.mkdir(parents=True, exist_ok=True)
        # start once the ramp and warm-up are over (the loadgen calibrates its CPUs for ~1 s first)
        await asyncio.sleep(1.5 + n / self.opts.connect_rate + self.opts.warmup)
        seconds = max(1, int(self.opts.duration - self.opts.warmup - 1))
        proc = await asyncio.create_subprocess_exec(
            exe, "record", "--pid", str(pid), "--nonblocking", "--rate", "100", "--format", "raw",
            "--duration", str(seconds), "-o", str(self.opts.py_spy / f"{name}.txt"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise

    # -- a whole trial -----------------------------------------------------------------------------
    async def trial(self, n: int, kind: str, *, max_connections: int | None = None) -> Trial:
        cap = max_connections if max_connections is not None else self.opts.max_connections
        trial = Trial(n=n, kind=kind, max_connections=cap, realtime=self.realtime)
        self._gateways += 1
        trial_dir = self.work / f"trial{self._gateways:02d}-n{n}-{kind}-{mode_name(self.realtime)}"
        gateway = Gateway(trial_dir, self.gateway_config(cap), pinned=self.pinned,
                          loop=self.opts.gateway_loop, gc_log=self.opts.gc_log, fifo=self.opts.fifo)
        self.tts.reset()
        calls: list[SimCall] = []
        quiet = await wait_for_quiet(OTHER_CPU_WARN_CORES, self.opts.quiet_wait)
        if quiet >= OTHER_CPU_WARN_CORES:
            progress(f"  other processes use {quiet} cores; going ahead after {self.opts.quiet_wait} s")
        progress(f"trial {kind} {mode_name(self.realtime)} N={n} (maxConnections {cap}): starting a gateway")
        try:
            await gateway.start()
            calls, setup_errors, place_s = await self.place_calls(gateway, n)
            setup: dict[str, Any] = {"placeS": round(place_s, 2), "callsHoldingStream": len(calls),
                     "gatewayIdleRssMb": gateway.idle_rss_mb, "gatewayRssAfterPlacingMb": rss_mb(gateway.pid)}
            if setup_errors:
                setup["errors"] = setup_errors
            if len(calls) < n:
                trial.result = {"n": n, "kind": kind, "mode": mode_name(self.realtime), "pass": False,
                                "setup": setup,
                                "failReasons": [f"setup: only {len(calls)} of {n} calls reached "
                                                "<Connect><Stream>"]}
                progress(f"  N={n}: FAIL in setup ({len(calls)}/{n} calls): {setup_errors[:3]}")
                self.trials.append(trial)
                return trial
            url = calls[0].streams[-1].url
            entries = self.sim.stream_entries(calls)
            progress(f"  placed {n} calls in {place_s:.1f} s; load generator on {url}")
            raw, helper_cpu = await self.run_loadgen(trial_dir, url, entries, n, gateway.pid,
                                                     per_stream=kind == "overload")
            stats = await self.media_stats(gateway)
            trial.result = self.summarize(raw, n, kind, cap, gateway, setup, helper_cpu, stats)
            trial.result["mode"] = mode_name(self.realtime)
            log_errors = gateway_log_errors(gateway.log_path)
            if log_errors["errors"]:
                trial.result["gatewayLogErrors"] = log_errors
            if self.opts.gc_log:
                trial.result["gcPausesMs"] = gc_pauses(gateway.log_path)
            if gateway.proc is not None and gateway.proc.returncode is not None:
                trial.result["pass"] = False
                trial.result.setdefault("failReasons", []).append(
                    f"gateway exited with {gateway.proc.returncode}")
        finally:
            await self.end_calls(calls)  # the callee hangs up; the gateway hears it, then stops
            rc = await gateway.stop()
            if rc not in (None, 0, -signal.SIGTERM):
                self.warnings.append(f"trial N={n} {kind}: gateway exited with {rc}")
            if not self.opts.keep:
                with contextlib.suppress(OSError):
                    shutil.rmtree(trial_dir / "state")
        self.trials.append(trial)
        progress("  " + self.summary_line(trial))
        return trial

    async def measured(self, n: int, kind: str, *, max_connections: int | None = None) -> Trial:
        """A trial, run again (up to `--retries`) when it failed while other processes were busy."""
        for attempt in range(self.opts.retries + 1):
            t = await self.trial(n, kind, max_connections=max_connections)
            other = t.result.get("otherProcessesCpu") or 0.0
            if t.passed or other <= OTHER_CPU_WARN_CORES or attempt == self.opts.retries:
                return t
            t.result["superseded"] = f"failed while other processes used {other} cores: run again"
            progress(f"  N={n} {kind}: failed while other processes used {other} cores; again")
        return t

    async def media_stats(self, gateway: Gateway) -> dict[str, Any] | None:
        try:
            async with ControlClient(gateway.control_url, gateway.token, timeout_s=10) as client:
                return await client.call("voicecall.media.stats")
        except Exception as exc:  # an older gateway has no such method
            self.warnings.append(f"voicecall.media.stats: {type(exc).__name__}: {exc}")
            return None

    def summarize(self, raw: dict[str, Any], n: int, kind: str, cap: int, gateway: Gateway,
                  setup: dict[str, Any], helper_cpu: float, stats: dict[str, Any] | None) -> dict[str, Any]:
        pooled = raw.get("pooled") or {}
        server = raw.get("server") or {}
        lg = raw.get("loadgen") or {}
        cpu = server.get("cpu_pct")
        rss_end = server.get("rss_mb_steady_end")
        out: dict[str, Any] = {
            "n": n, "kind": kind, "maxConnections": cap,
            "pass": bool(raw.get("pass")), "failReasons": list(raw.get("fail_reasons") or []),
            "generatorSaturated": bool(lg.get("saturated")),
            "jitterMs": pooled.get("jitter_ms"), "stalls": pooled.get("stalls"),
            "deliveryMin": pooled.get("delivery_min"), "deliveryMean": pooled.get("delivery_mean"),
            "pdvMs": pooled.get("pdv_ms"), "gapMs": pooled.get("gap_ms"),
            "framesPerS": pooled.get("frames_per_s"), "mediaPayloadBytes": pooled.get("media_payload_bytes"),
            "firstFrameFromStartMs": pooled.get("first_frame_ms"),
            "streamsWithNoFrames": pooled.get("streams_with_no_frames"),
            "marks": {"received": pooled.get("marks_received"), "echoed": pooled.get("marks_echoed")},
            "worstStream": raw.get("worst_stream"),
            "errors": raw.get("errors") or {}, "connectErrors": raw.get("connect_errors") or {},
            "server": {
                "cpuPct": cpu, "cpuPctPerStream": round(cpu / n, 3) if cpu is not None and n else None,
                "cpuPctWholeTrial": server.get("cpu_pct_whole_trial"),
                "rssMbSteadyEnd": rss_end, "rssMbPeak": server.get("rss_mb_peak"),
                "rssMbAtTrialStart": server.get("rss_mb_before"),
                "rssMbPerStream": server.get("rss_mb_per_call"),
                "rssMbIdleGateway": gateway.idle_rss_mb,
                "rssMbPerCallAndStream": (round((rss_end - gateway.idle_rss_mb) / n, 3)
                                          if rss_end is not None and gateway.idle_rss_mb is not None and n
                                          else None),
            },
            "hostCpu": raw.get("host_cpu"),
            "loadgen": {"cpuPct": lg.get("cpu_pct"), "sendLatenessMs": lg.get("send_lateness_ms"),
                        "sendSkipped": lg.get("send_skipped_backpressure"), "mediaSent": lg.get("media_sent"),
                        "cpuSpeedMloops": raw.get("cpu_speed_mloops")},
            "helperCpuPct": helper_cpu,
            "otherProcessesCpu": self.other_cpu,
            "tts": {"requests": len(self.tts.recorded),
                    "mbSent": round(sum(r.bytes_sent for r in self.tts.recorded) / 2**20, 1)},
            "timing": raw.get("timing"), "setup": setup,
        }
        if stats is not None:
            out["ttsFirstByteToFirstFrameMs"] = stats.get("ttsFirstByteToFirstFrameMs")
            out["mediaStats"] = stats
            # Keep-alive silence inside an utterance is a gap the caller hears; it paces as
            # smoothly as speech, so the generator's jitter cannot see it.
            underruns = stats.get("underrunFrames") or 0
            if underruns:
                out["pass"] = False
                out["failReasons"].append(f"{underruns} underrun frames (silence inside speech)")
        busy0 = ((raw.get("host_cpu") or {}).get(f"cpu{SERVER_CORE}") or {}).get("busy_pct")
        if (busy0 is not None and cpu is not None and self.pinned
                and busy0 - min(cpu, 100.0) > OTHER_CPU_WARN_PCT):
            out["otherCpuOnServerCorePct"] = round(busy0 - cpu, 1)
            self.warnings.append(f"trial N={n} {kind}: core {SERVER_CORE} was {busy0} % busy but the gateway "
                                 f"used {cpu} %: something else ran on the server's core")
        if self.other_cpu > OTHER_CPU_WARN_CORES:
            self.warnings.append(f"trial N={n} {kind}: other processes used {self.other_cpu} cores "
                                 "meanwhile: the figures are disturbed; re-run on a quiet machine")
        if kind == "overload":
            out.update(self.overload_verdict(raw, n, cap))
        return out

    @staticmethod
    def overload_verdict(raw: dict[str, Any], n: int, cap: int) -> dict[str, Any]:
        """Past capacity: exactly N - C streams refused with 503, the C admitted ones pass."""
        streams: list[dict[str, Any]] = raw.get("streams") or []
        refused = [s for s in streams if s.get("error") and "503" in str(s["error"])]
        other_errors = [s for s in streams if s.get("error") and "503" not in str(s["error"])]
        admitted = [s for s in streams if not s.get("error")]
        pooled = raw.get("pooled") or {}
        jitter_p99 = (pooled.get("jitter_ms") or {}).get("p99")
        stalls = pooled.get("stalls")
        delivery = [float(s.get("delivery") or 0.0) for s in admitted]
        reasons = []
        if len(refused) != n - cap:
            reasons.append(f"{len(refused)} streams refused with 503, expected {n - cap}")
        if other_errors:
            reasons.append(f"{len(other_errors)} streams failed otherwise: {other_errors[0].get('error')}")
        if len(admitted) != cap:
            reasons.append(f"{len(admitted)} streams admitted, expected {cap}")
        if jitter_p99 is None or jitter_p99 > TARGET_P99_MS:
            reasons.append(f"admitted streams' jitter p99 {jitter_p99} ms > {TARGET_P99_MS}")
        if stalls:
            reasons.append(f"{stalls} stalls on admitted streams")
        if not delivery or min(delivery) < MIN_DELIVERY:
            worst = min(delivery) if delivery else None
            reasons.append(f"admitted streams' min delivery {worst} < {MIN_DELIVERY}")
        no_media = sum(1 for s in admitted if not s.get("frames"))
        if no_media:
            reasons.append(f"{no_media} admitted streams got no media")
        return {"pass": not reasons, "failReasons": reasons, "refused503": len(refused),
                "admitted": len(admitted),
                "admittedDeliveryMin": round(min(delivery), 4) if delivery else None,
                "otherErrors": len(other_errors), "loadgenVerdict": {"pass": raw.get("pass"),
                                                                      "failReasons": raw.get("fail_reasons")}}

    @staticmethod
    def summary_line(trial: Trial) -> str:
        r = trial.result
        j = r.get("jitterMs") or {}
        s = r.get("server") or {}
        tts = r.get("ttsFirstByteToFirstFrameMs") or {}
        line = (f"N={trial.n} {trial.kind} {mode_name(trial.realtime)} {'PASS' if trial.passed else 'FAIL'} "
                f"jitter p50/p99/max={j.get('p50')}/{j.get('p99')}/{j.get('max')} ms "
                f"stalls={r.get('stalls')} delivery min={r.get('deliveryMin')} "
                f"srv cpu={s.get('cpuPct')}% rss={s.get('rssMbSteadyEnd')} MB "
                f"tts->frame p50/p95={tts.get('p50Ms')}/{tts.get('p95Ms')} ms "
                f"loadgen cpu={(r.get('loadgen') or {}).get('cpuPct')}% helper cpu={r.get('helperCpuPct')}% "
                f"others={r.get('otherProcessesCpu')} cores")
        if trial.kind == "overload":
            line += f" refused503={r.get('refused503')} admitted={r.get('admitted')}"
        if trial.saturated:
            line += " LOADGEN SATURATED"
        if r.get("failReasons"):
            line += f" [{'; '.join(r['failReasons'])}]"
        return line

    # -- the search --------------------------------------------------------------------------------
    async def search(self, ramp: list[int]) -> dict[str, Any]:
        """The largest passing N of the current path (`self.realtime`), from `ramp` on."""
        opts = self.opts
        passed: dict[int, bool] = {}
        lo, hi = 0, None
        for n in ramp:
            t = await self.measured(n, "search")
            passed[n] = t.passed
            if t.passed:
                lo = n
            else:
                hi = n
                break
        if opts.bisect and hi is not None:
            while hi - lo > max(opts.min_step, int(lo * opts.resolution)):
                mid = (lo + hi) // 2
                t = await self.measured(mid, "search")
                passed[mid] = t.passed
                if t.passed:
                    lo = mid
                else:
                    hi = mid
        best = lo
        confirmed: bool | None = None
        if opts.confirm and best:
            # Every passing N, highest first, until one confirms: near the edge a run can fail
            # where the search passed, and the answer is then the next lower N, not "none".
            candidates = sorted((n for n, ok in passed.items() if ok), reverse=True)
            confirmed = False
            for cand in candidates:
                ok = True
                for _ in range(opts.confirm):
                    t = await self.measured(cand, "confirm")
                    ok = ok and t.passed
                    if not ok:
                        break
                if ok:
                    best, confirmed = cand, True
                    break
                hi = cand if hi is None else min(hi, cand)
            if not confirmed:
                best = 0
        failing = [t for t in self.trials if t.realtime == self.realtime
                   and t.kind in ("search", "confirm") and not t.passed and "superseded" not in t.result]
        min_failing = min((t.n for t in failing), default=None)
        saturated_fail = [t.n for t in failing if t.saturated]
        disturbed = [t.n for t in failing
                     if (t.result.get("otherProcessesCpu") or 0.0) > OTHER_CPU_WARN_CORES]
        dead = [t.n for t in failing if t.result.get("streamsWithNoFrames") == t.n
                and (t.result.get("connectErrors") or t.result.get("gatewayLogErrors"))]
        if min_failing is None:
            limited_by = f"search range: every N up to {max(ramp)} passed"
        elif min_failing in dead:
            limited_by = (f"gateway: no stream got any audio at N={min_failing} (connection errors; see "
                          "the trial's connectErrors and gatewayLogErrors)")
        elif min_failing in saturated_fail:
            limited_by = f"load generator saturated (at N={min_failing}); the gateway's limit may be higher"
        elif min_failing in disturbed and not opts.fifo:
            limited_by = f"other processes on the machine (at N={min_failing}); re-run on a quiet machine"
        else:
            limited_by = "gateway"
        return {"maxPassingStreams": best, "minFailingStreams": min_failing, "confirmed": confirmed,
                "limitedBy": limited_by}

    async def overload(self, capacity: int) -> dict[str, Any]:
        n = math.ceil(capacity * OVERLOAD_FACTOR)
        if n == capacity:
            n += 1
        t = await self.measured(n, "overload", max_connections=capacity)
        return {"maxConnections": capacity, "streamsOpened": n, **t.result}


# =============================================================================================
# Report
# =============================================================================================


def best_trial(trials: list[Trial], n: int, realtime: bool) -> Trial | None:
    at = [t for t in trials
          if t.n == n and t.passed and t.kind in ("search", "confirm") and t.realtime == realtime]
    return at[-1] if at else None


def mode_name(realtime: bool) -> str:
    return "realtime" if realtime else "classic"


def mode_result(bench: Bench, search: dict[str, Any], realtime: bool) -> dict[str, Any]:
    """One path's figure: the search's answer and the trial it rests on."""
    at = best_trial(bench.trials, search["maxPassingStreams"], realtime)
    at_max: dict[str, Any] | None = None
    tts_ms: dict[str, Any] | None = None
    if at is not None:
        r = at.result
        at_max = {k: r.get(k) for k in ("n", "jitterMs", "stalls", "deliveryMin", "pdvMs",
                                        "firstFrameFromStartMs", "server", "loadgen", "helperCpuPct",
                                        "generatorSaturated", "mediaStats")}
        tts_ms = r.get("ttsFirstByteToFirstFrameMs")
    return {
        "mode": "realtime (fake OpenAI Realtime model)" if realtime else "classic (TTS)",
        **search,
        "atMax": at_max,
        "ttsFirstByteToFirstFrameMs": tts_ms,
        "generatorSaturated": any(t.saturated for t in bench.trials if t.realtime == realtime),
    }


def report(bench: Bench, search: dict[str, Any], overload: dict[str, Any] | None, opts: Options,
           pinned: bool, started: float, classic: dict[str, Any] | None = None) -> dict[str, Any]:
    """`search` is the path `opts.realtime` names; `classic`, with `--realtime`, the classic
    path's search in the same run."""
    best = search["maxPassingStreams"]
    result = mode_result(bench, search, opts.realtime)
    tts_ms = result["ttsFirstByteToFirstFrameMs"]
    tts_p95 = (tts_ms or {}).get("p95Ms")
    generator_saturated = any(t.saturated for t in bench.trials)
    warnings = list(bench.warnings)
    if generator_saturated:
        sat = sorted({t.n for t in bench.trials if t.saturated})
        warnings.append(f"load generator saturated in trials at N={sat}: their jitter may include the "
                        "generator's own lateness")
    if not pinned:
        warnings.append("not pinned (fewer than 2 usable cores): figures are not comparable")
    out: dict[str, Any] = {"result": result}
    if classic is not None:
        classic_best = classic["maxPassingStreams"]
        out["classic"] = mode_result(bench, classic, False)
        out["streamsPerCore"] = {
            "criterion": (f"jitter p99 <= {TARGET_P99_MS} ms, no stalls, delivery >= {MIN_DELIVERY}, "
                          "no underrun frames"),
            "realtime": best, "classic": classic_best,
            "realtimeOverClassic": round(best / classic_best, 3) if classic_best else None,
        }
    return {
        **out,
        "overCapacity": overload,
        "targets": {
            "streams": TARGET_STREAMS, "jitterP99Ms": TARGET_P99_MS,
            "ttsFirstByteToFirstFrameP95Ms": TARGET_TTS_P95_MS,
            "streamsMet": best >= TARGET_STREAMS,
            "ttsMet": (tts_p95 <= TARGET_TTS_P95_MS) if isinstance(tts_p95, int | float) else None,
            "overCapacityMet": overload.get("pass") if overload else None,
        },
        "criteria": {"jitterP99MsAtMost": TARGET_P99_MS, "stalls": "none (gap > frame + 20 ms)",
                     "connectionErrors": "none", "deliveryMinAtLeast": MIN_DELIVERY},
        "trials": [t.result for t in bench.trials],
        "warnings": warnings,
        "env": {
            "python": platform.python_version(), "kernel": platform.release(), "cpuCount": os.cpu_count(),
            "pinned": pinned, "serverCore": SERVER_CORE if pinned else None,
            "loadgenAndHelperCore": HELPER_CORE if pinned else None,
            "gitRevision": git_revision(),
            "generator": opts.generator,
            "loadgen": str(opts.loadgen),
            "versions": {k: _version(k) for k in ("websockets", "uvicorn", "uvloop", "numpy", "soxr")},
            "helperEventLoop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "durationS": opts.duration, "warmupS": opts.warmup, "connectRate": opts.connect_rate,
            "ramp": opts.ramp, "classicRamp": opts.classic_ramp or None, "bisect": opts.bisect,
            "confirm": opts.confirm, "quick": opts.quick,
            "tts": {"audioSecondsPerAnswer": opts.tts_seconds, "sampleRate": 24_000,
                    "leadS": opts.tts_lead, "speedVsRealTimeAfterLead": opts.tts_speed,
                    "chunkBytes": opts.tts_chunk_bytes},
            "gatewayLoop": opts.gateway_loop,
            "gateway": "voicecall serve, fresh process and state dir per trial; twilio carrier = the "
                       "simulator; streaming.provider none (no STT); maxPendingConnections(PerIp) 256",
            "wallS": round(time.monotonic() - started, 1),
        },
    }


async def run(opts: Options) -> dict[str, Any]:
    started = time.monotonic()
    pinned = (os.cpu_count() or 1) >= 2 and pin({HELPER_CORE})
    try:  # inherited by the gateway, the load generator and py-spy
        os.setpriority(os.PRIO_PROCESS, 0, opts.nice)
    except OSError as exc:
        progress(f"cannot set niceness {opts.nice}: {exc}")
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    policy = "other"
    if opts.fifo:
        try:  # checked here; the children switch themselves in their pre-exec hook
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(opts.fifo))
            if opts.fifo > 1:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(opts.fifo - 1))
                policy = f"fifo:{opts.fifo} (gateway, load generator), fifo:{opts.fifo - 1} (this process)"
            else:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                os.setpriority(os.PRIO_PROCESS, 0, opts.nice)
                policy = f"fifo:{opts.fifo} (gateway, load generator)"
        except OSError as exc:
            progress(f"cannot use SCHED_FIFO: {exc}")
            opts.fifo = 0
    work = Path(tempfile.mkdtemp(prefix="voicecall-media-bench-"))
    bench = Bench(opts, work, pinned)
    try:
        async with bench.sim, bench.tts, bench.model:
            search = await bench.search(opts.ramp)
            overload = None
            if opts.overload:
                best = search["maxPassingStreams"]
                cap = opts.overload_capacity or (max(1, int(best * OVERLOAD_HEADROOM)) if best else 10)
                overload = await bench.overload(cap)
            classic = None
            if opts.classic_ramp:
                bench.realtime = False
                classic = await bench.search(opts.classic_ramp)
            result = report(bench, search, overload, opts, pinned, started, classic)
            result["env"]["niceness"] = niceness
            result["env"]["schedPolicy"] = policy
            return result
    finally:
        if opts.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await run(opts)

    try:
        result = runner(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        progress("interrupted")
        return 130
    except HarnessError as exc:
        progress(f"harness failed: {exc}")
        return 1
    text = json.dumps(result, indent=1)
    print(text)
    if opts.out is not None:
        opts.out.write_text(text + "\n")
    r = result["result"]
    progress(f"{r['mode']}: max passing streams = {r['maxPassingStreams']} (min failing "
             f"{r['minFailingStreams']}, limited by {r['limitedBy']}); tts first byte -> first frame "
             f"{(r.get('ttsFirstByteToFirstFrameMs') or {}).get('p95Ms')} ms p95")
    c = result.get("classic")
    if c is not None:
        progress(f"{c['mode']}: max passing streams = {c['maxPassingStreams']} (min failing "
                 f"{c['minFailingStreams']}, limited by {c['limitedBy']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
