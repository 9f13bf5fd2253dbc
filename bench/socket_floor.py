#!/usr/bin/env python
"""What the sockets alone cost per media stream on this machine: the floor under any gateway.

A media stream is, at the socket level, one ~300-byte WebSocket message read every 20 ms (the
carrier's inbound frame) and one ~300-byte message written every 20 ms (the outbound frame).
This bench does exactly that and nothing else: a server on core 0 (uvloop, raw asyncio
protocols: no parsing, no audio, one shared 20 ms clock that writes one prebuilt frame to every
connection) and a client on core 1 that connects N sockets and writes one prebuilt frame on each
every 20 ms, spread over 20 send slots like `../shared/bench/loadgen.py`. It prints the server's
CPU (user and system) per stream, which bounds how many streams any single-core gateway can
carry here: `bench/media_streams.py` measures the gateway against the same traffic.

    .venv/bin/python bench/socket_floor.py                    # N = 100, 200, 400; ~1 minute
    .venv/bin/python bench/socket_floor.py --streams 150,400 --seconds 10 --out /tmp/floor.json

Prints one JSON object; exits 1 if a child fails. Both children run under SCHED_FIFO with
`--fifo PRIO` (as `media_streams.py --fifo` runs the gateway and the load generator).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import git_revision

FRAME_S = 0.02
SLOTS = 20
# A Twilio outbound media message (~250 bytes of JSON) and an inbound one (~390), as frames: the
# server's is unmasked, the client's masked (the bytes are what matter to the kernel, not the
# content).
OUT_FRAME = bytes((0x81, 126, 0x01, 0x00)) + b"x" * 256
IN_FRAME = bytes((0x81, 0xFE, 0x01, 0x84)) + b"\x00\x00\x00\x00" + b"y" * 388


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


class _Sink(asyncio.Protocol):
    def __init__(self, registry: list[asyncio.Transport]) -> None:
        self.registry = registry

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.registry.append(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        pass


async def _serve(port_file: Path, n: int, warmup: float, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    conns: list[asyncio.Transport] = []
    server = await loop.create_server(lambda: _Sink(conns), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    port_file.write_text(str(port))  # noqa: ASYNC240 - once, before any timing
    deadline = loop.time() + 60
    while len(conns) < n:
        if loop.time() > deadline:
            raise SystemExit(f"only {len(conns)} of {n} clients connected")
        await asyncio.sleep(0.05)
    t0 = loop.time()
    ticks = 0
    worst = 0.0
    measured: dict[str, float] = {}
    end = t0 + warmup + seconds

    def tick() -> None:
        nonlocal ticks, worst
        now = loop.time()
        due = t0 + ticks * FRAME_S
        worst = max(worst, now - due) if ticks * FRAME_S > warmup else worst
        for transport in conns:
            transport.write(OUT_FRAME)
        ticks += 1
        if now < end:
            loop.call_at(t0 + ticks * FRAME_S, tick)

    tick()
    await asyncio.sleep(warmup)
    user0, sys0 = _cpu()
    wall0 = loop.time()
    await asyncio.sleep(seconds)
    user1, sys1 = _cpu()
    wall = loop.time() - wall0
    measured = {"userPct": 100 * (user1 - user0) / wall, "sysPct": 100 * (sys1 - sys0) / wall,
                "worstTickLatenessMs": worst * 1000}
    print(json.dumps(measured), flush=True)
    server.close()


async def _client(port: int, n: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    transports = []
    for _ in range(n):
        transport, _protocol = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        transports.append(transport)
    slots = [transports[i::SLOTS] for i in range(SLOTS)]
    t0 = loop.time()
    k = 0
    while loop.time() - t0 < seconds:
        for j, slot in enumerate(slots):
            delay = t0 + k * FRAME_S + j * FRAME_S / SLOTS - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for transport in slot:
                if not transport.is_closing():
                    transport.write(IN_FRAME)
        k += 1
    for transport in transports:
        transport.close()


def _child_main(argv: list[str]) -> None:
    import uvloop

    role = argv[0]
    if role == "server":
        coro: Any = _serve(Path(argv[1]), int(argv[2]), float(argv[3]), float(argv[4]))
    else:
        coro = _client(int(argv[1]), int(argv[2]), float(argv[3]))
    uvloop.run(coro)


def _pre(core: int, fifo: int) -> Any:
    def pre() -> None:
        if core in os.sched_getaffinity(0):
            os.sched_setaffinity(0, {core})
        if fifo:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo))
    return pre


def _trial(n: int, seconds: float, warmup: float, fifo: int, tmp: Path) -> dict[str, Any]:
    port_file = tmp / f"port-{n}"
    port_file.unlink(missing_ok=True)
    me = [sys.executable, __file__, "--child"]
    server = subprocess.Popen([*me, "server", str(port_file), str(n), str(warmup), str(seconds)],
                              stdout=subprocess.PIPE, text=True, preexec_fn=_pre(0, fifo))
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.05)
        client = subprocess.Popen([*me, "client", port_file.read_text(), str(n),
                                   str(warmup + seconds + 2)], preexec_fn=_pre(1, fifo))
        out, _ = server.communicate(timeout=warmup + seconds + 90)
        client.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    if server.returncode != 0:
        raise SystemExit(f"server exited with {server.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    total = result["userPct"] + result["sysPct"]
    return {"streams": n, "serverCpuPct": round(total, 1), "userPct": round(result["userPct"], 1),
            "sysPct": round(result["sysPct"], 1), "cpuPctPerStream": round(total / n, 4),
            "worstTickLatenessMs": round(result["worstTickLatenessMs"], 2)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="100,200,400", help="comma-separated N (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per N")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--fifo", type=int, default=10, help="SCHED_FIFO priority of both children (0: off)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    trials = [_trial(int(n), a.seconds, a.warmup, a.fifo, tmp) for n in a.streams.split(",")]
    report = {"trials": trials,
              "what": "server CPU for one 20 ms read and one 20 ms write per stream, nothing else",
              "env": {"gitRevision": git_revision(), "python": sys.version.split()[0],
                      "cpuCount": os.cpu_count(), "kernel": os.uname().release, "fifo": a.fifo,
                      "seconds": a.seconds}}
    text = json.dumps(report, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
