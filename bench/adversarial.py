#!/usr/bin/env python
"""Adversarial probes against a gateway on each carrier: longer, bounded runs of what
`tests/adversarial/` pins quickly.

Every probe runs against every carrier in `tests/adversarial/carriers.py` (a new carrier adds
itself there) on loopback only, and every loop is bounded in count and in time. Probes:

- `slow-bodies`: `--attackers` connections trickle a 1000-byte body a byte at a time with a
  bogus signature header, reconnecting after each answer, while genuine webhooks are sent;
- `slowloris`: `--slowloris` connections send half a request head and stall, while genuine
  webhooks are sent and the control API's `/health` is asked;
- `fuzz`: the malformed-body corpus (with `--fuzz` random bodies), unsigned and genuinely
  signed, and the malformed-framing corpus on raw sockets;
- `forgeries`: every forgery of genuine webhooks (each signature bit, parameter, query, host),
  plus random multi-bit flips of the signature (signed carriers only);
- `media-flood`: silent WebSocket upgrades at `--flood-rate`/s that never send `start`, while
  probe upgrades check the endpoint still admits new sockets (carriers with media streams);
- `control`: control-API abuse (over-size bodies, deep JSON, NaN, bad parameters);
- `kill-9`: a `voicecall serve` process under webhook load (at most `--kill-calls` calls, each
  with two caller utterances, per round) is killed `--kills` times; after the last restart,
  every call and transcript entry whose webhook was acknowledged must be there.

Prints one JSON object per probe and carrier, one per line: `requests` sent, `outcomes` (HTTP
status or close code counts), `signedServed` (every genuine webhook answered 2xx) with
`signedP95Ms`, and `fiveXX`, `crashes`, `acceptedForgeries` and `lostAcknowledged`, which must
all be 0.

    .venv/bin/python bench/adversarial.py --duration 3
    .venv/bin/python bench/adversarial.py --probe forgeries --carrier twilio
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchlib import ROOT, git_revision

sys.path.insert(0, str(ROOT))  # the carrier entries and corpora are the test suite's

from tests.adversarial.carriers import CARRIERS, Carrier, Webhook, gateway_config
from tests.adversarial.corpus import malformed_bodies, malformed_framing

from voicecall.gateway.runtime import Runtime
from voicecall.testing.gateway import running_gateway

STEP_TIMEOUT_S = 10.0
CONTROL_TOKEN = "adversarial-bench-control-token"
PROBES = ("slow-bodies", "slowloris", "fuzz", "forgeries", "media-flood", "control", "kill-9")


class Signed:
    """Genuine webhooks sent one at a time while a probe runs: their outcomes and latencies."""

    def __init__(self, carrier: Carrier, webhook_url: str) -> None:
        self.carrier = carrier
        self.webhook_url = webhook_url
        self.outcomes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.sent = 0

    async def run(self, stop: asyncio.Event, rate: float, first_call: int = 10_000) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=STEP_TIMEOUT_S) as http:
            n = first_call
            while not stop.is_set():
                hook = self.carrier.inbound_call(self.webhook_url, n)
                n += 1
                started = time.perf_counter()
                try:
                    response = await http.post(hook.url, content=hook.body, headers=hook.headers)
                    self.outcomes[str(response.status_code)] += 1
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1
                self.latencies.append(time.perf_counter() - started)
                self.sent += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1 / rate)

    def report(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000 if ordered else None
        served = self.sent > 0 and all(k.startswith("2") for k in self.outcomes)
        return {"signedSent": self.sent, "signedOutcomes": dict(self.outcomes),
                "signedServed": served, "signedP95Ms": round(p95, 2) if p95 is not None else None}


def _five_xx(outcomes: Counter[str]) -> int:
    return sum(v for k, v in outcomes.items() if k.isdigit() and int(k) >= 500)


async def _with_signed(gateway: Runtime, carrier: Carrier, rate: float, duration: float,
                       attack: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> Signed:
    """Run `attack` and genuine traffic together for `duration` seconds (attack first)."""
    stop = asyncio.Event()
    signed = Signed(carrier, gateway.webhook_url)
    attack_task = asyncio.create_task(attack(stop))
    await asyncio.sleep(min(1.0, duration / 3))
    signed_task = asyncio.create_task(signed.run(stop, rate))
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.wait_for(asyncio.gather(attack_task, signed_task), STEP_TIMEOUT_S + duration)
    return signed


# -- probes --------------------------------------------------------------------------------------
async def probe_slow_bodies(gateway: Runtime, carrier: Carrier, args: argparse.Namespace) -> dict[str, Any]:
    parts = urlsplit(gateway.webhook_url)
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nX-Twilio-Signature: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n").encode()
    outcomes: Counter[str] = Counter()
    sent = 0

    async def attacker(stop: asyncio.Event) -> None:
        nonlocal sent
        while not stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(parts.hostname, parts.port), STEP_TIMEOUT_S)
            except (OSError, TimeoutError):
                outcomes["connect failed"] += 1
                await asyncio.sleep(0.05)
                continue
            sent += 1
            try:
                writer.write(head)
                reply = asyncio.ensure_future(reader.readline())
                for _ in range(1000):  # at most the whole body, a byte at a time
                    if stop.is_set() or reply.done():
                        break
                    writer.write(b"a")
                    await asyncio.wait({reply}, timeout=0.5)
                line = reply.result() if reply.done() and not reply.exception() else b""
                reply.cancel()
                outcomes[line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"] += 1
            except OSError:
                outcomes["reset"] += 1
            finally:
                writer.close()

    async def attack(stop: asyncio.Event) -> None:
        await asyncio.gather(*(attacker(stop) for _ in range(args.attackers)))

    signed = await _with_signed(gateway, carrier, args.rate, args.duration, attack)
    return {"requests": sent, "outcomes": dict(outcomes), **signed.report(),
            "fiveXX": _five_xx(outcomes) + _five_xx(signed.outcomes)}


async def probe_slowloris(gateway: Runtime, carrier: Carrier, args: argparse.Namespace) -> dict[str, Any]:
    parts = urlsplit(gateway.webhook_url)
    outcomes: Counter[str] = Counter()
    control: Counter[str] = Counter()
    opened = 0

    async def attack(stop: asyncio.Event) -> None:
        nonlocal opened
        held: list[asyncio.StreamWriter] = []
        try:
            for _ in range(args.slowloris):
                if stop.is_set():
                    break
                try:
                    _, writer = await asyncio.wait_for(
                        asyncio.open_connection(parts.hostname, parts.port), STEP_TIMEOUT_S)
                except (OSError, TimeoutError):
                    outcomes["connect failed"] += 1
                    continue
                writer.write(f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode())
                held.append(writer)
                opened += 1
            async with httpx.AsyncClient(trust_env=False, timeout=STEP_TIMEOUT_S) as http:
                while not stop.is_set():
                    try:
                        health = await http.get(f"{gateway.control_url}/health")
                        control[str(health.status_code)] += 1
                    except httpx.HTTPError as exc:
                        control[type(exc).__name__] += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.2)
        finally:
            for writer in held:
                writer.close()

    signed = await _with_signed(gateway, carrier, args.rate, args.duration, attack)
    guard = gateway.connection_guard
    return {"requests": opened, "outcomes": dict(outcomes), "controlHealth": dict(control),
            "controlServed": bool(control) and set(control) == {"200"},
            "guard": {"refused": guard.refused, "evicted": guard.evicted,
                      "timedOut": guard.timed_out} if guard else None,
            **signed.report(), "fiveXX": _five_xx(signed.outcomes) + _five_xx(control)}


async def probe_fuzz(gateway: Runtime, carrier: Carrier, args: argparse.Namespace) -> dict[str, Any]:
    query = urlsplit(carrier.inbound_call(gateway.webhook_url, 0).url).query
    target = gateway.webhook_url + (f"?{query}" if query else "")
    outcomes: Counter[str] = Counter()
    sent = 0
    deadline = time.monotonic() + args.duration * 4
    async with httpx.AsyncClient(trust_env=False, timeout=STEP_TIMEOUT_S) as http:
        for case in malformed_bodies(seed=args.seed, random_count=args.fuzz):
            if time.monotonic() > deadline:
                break
            base = {"content-type": case.content_type} if case.content_type else {}
            for headers in ({**base, "x-twilio-signature": "x"},
                            {**base, **carrier.sign(gateway.webhook_url, query, case.body)}):
                response = await http.post(target, content=case.body, headers=headers)
                outcomes[str(response.status_code)] += 1
                sent += 1
    parts = urlsplit(gateway.webhook_url)
    for _name, raw in malformed_framing(parts.path, parts.netloc):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(raw)
            line = await asyncio.wait_for(reader.readline(), STEP_TIMEOUT_S)
            outcomes[line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"] += 1
        except (OSError, TimeoutError):
            outcomes["closed"] += 1
        finally:
            writer.close()
        sent += 1
    created = len(gateway.service.active_calls())
    signed = Signed(carrier, gateway.webhook_url)
    stop = asyncio.Event()
    stop_soon = asyncio.get_running_loop().call_later(1.0, stop.set)
    await signed.run(stop, args.rate)
    stop_soon.cancel()
    return {"requests": sent, "outcomes": dict(outcomes), "callsCreatedByJunk": created,
            **signed.report(), "fiveXX": _five_xx(outcomes)}


async def probe_forgeries(gateway: Runtime, carrier: Carrier, args: argparse.Namespace) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    accepted: list[str] = []
    sent = 0
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.duration * 4
    async with httpx.AsyncClient(trust_env=False, timeout=STEP_TIMEOUT_S) as http:
        for n in range(args.genuine):
            genuine = carrier.inbound_call(gateway.webhook_url, 20_000 + n)
            forged = list(carrier.forgeries(genuine))
            signature = base64.b64decode(genuine.headers.get("x-twilio-signature", "") or b"")
            for i in range(args.flips if signature else 0):  # random multi-bit flips
                flipped = bytearray(signature)
                for bit in rng.sample(range(len(flipped) * 8), rng.randint(2, 8)):
                    flipped[bit // 8] ^= 1 << (bit % 8)
                forged.append((f"flips {i}", genuine._replace(headers={
                    **genuine.headers, "x-twilio-signature": base64.b64encode(bytes(flipped)).decode()})))
            for name, hook in forged:
                if time.monotonic() > deadline:
                    break
                response = await http.post(hook.url, content=hook.body, headers=hook.headers)
                outcomes[str(response.status_code)] += 1
                sent += 1
                if response.status_code < 400:
                    accepted.append(name)
            response = await http.post(genuine.url, content=genuine.body, headers=genuine.headers)
            outcomes[f"genuine {response.status_code}"] += 1
    return {"requests": sent, "outcomes": dict(outcomes), "acceptedForgeries": len(accepted),
            "accepted": accepted[:10], "signedServed": outcomes.get("genuine 200") == args.genuine,
            "fiveXX": _five_xx(outcomes)}


def _upgrade(port: int) -> bytes:
    return (f"GET /voice/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


async def probe_media_flood(gateway: Runtime, carrier: Carrier, args: argparse.Namespace) -> dict[str, Any]:
    port = int(urlsplit(gateway.webhook_url).port or 0)
    flood: Counter[str] = Counter()
    probes: Counter[str] = Counter()
    sent = 0

    async def upgrade() -> tuple[str, asyncio.StreamWriter | None]:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                    STEP_TIMEOUT_S)
        except (OSError, TimeoutError):
            return "connect failed", None
        writer.write(_upgrade(port))
        try:
            line = await asyncio.wait_for(reader.readline(), STEP_TIMEOUT_S)
        except (OSError, TimeoutError):
            return "no answer", writer
        return (line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"), writer

    held: list[asyncio.StreamWriter] = []
    deadline = time.monotonic() + args.duration
    next_probe = time.monotonic() + 0.5
    try:
        while time.monotonic() < deadline and sent < args.flood_rate * args.duration:
            code, writer = await upgrade()  # never sends start, never answers a close
            flood[code] += 1
            sent += 1
            if writer is not None:
                held.append(writer)
            if time.monotonic() >= next_probe:
                code, writer = await upgrade()
                probes[code] += 1
                if writer is not None:
                    writer.close()
                next_probe += 0.25
            await asyncio.sleep(1 / args.flood_rate)
    finally:
        for writer in held:
            writer.close()
    endpoint = gateway.media_endpoint
    return {"requests": sent, "outcomes": dict(flood), "probeUpgrades": dict(probes),
            "probesAdmitted": bool(probes) and set(probes) == {"101"},
            "closedByCode": {str(k): v for k, v in endpoint.closed_by_code.items()} if endpoint else {},
            "refused503": endpoint.refused_503 if endpoint else None,
            "fiveXX": _five_xx(probes)}


async def probe_control(gateway: Runtime, carrier: Carrier, args: argparse.Namespace) -> dict[str, Any]:
    url = f"{gateway.control_url}/rpc"
    auth = {"authorization": f"Bearer {gateway.token}", "content-type": "application/json"}
    bodies: list[bytes] = [
        b"[" * 50_000 + b"]" * 50_000,
        b'{"jsonrpc": "2.0", "id": NaN, "method": "voicecall.status"}',
        b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "voicecall.status"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "voicecall.tail", "params": {"afterSeq": 1e999}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "voicecall.initiate", "params": {"to": "+15555550123",'
        b' "message": "x", "mode": "party"}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "mock.inject", "params": {"callId": "c", "speech": 1}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "voicecall.list", "params": {"limit": -1}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "voicecall.status", "params": [1, 2]}',
        b'\xff\xfe',
        b'{"jsonrpc": "2.0", "id": 1, "method": "voicecall.status", "pad": "' + b"x" * (2 << 20) + b'"}',
    ]
    rng = random.Random(args.seed)
    bodies += [rng.randbytes(rng.choice((3, 300, 3000))) for _ in range(args.fuzz)]
    outcomes: Counter[str] = Counter()
    async with httpx.AsyncClient(trust_env=False, timeout=STEP_TIMEOUT_S) as http:
        for body in bodies:
            response = await http.post(url, content=body, headers=auth)
            code = str(response.status_code)
            if response.status_code == 200:
                error = response.json().get("error")
                code = f"200 {error['code']}" if error else "200 result"
            outcomes[code] += 1
    internal = outcomes.get("200 -32603", 0)
    return {"requests": len(bodies), "outcomes": dict(outcomes),
            "fiveXX": _five_xx(Counter({k.split()[0]: v for k, v in outcomes.items()})) + internal}


# -- kill -9 -------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`voicecall serve` on this carrier's config in its own state directory."""

    def __init__(self, root: Path, carrier_config: dict[str, Any]) -> None:
        self.webhook_port, self.control_port = _free_port(), _free_port()
        doc = {**carrier_config, "serve": {"port": self.webhook_port},
               "control": {"port": self.control_port, "token": CONTROL_TOKEN},
               "maxConcurrentCalls": 100_000}
        (root / "voicecall.json").write_text(json.dumps(doc))
        self.env = {**os.environ, "OPENCLAW_STATE_DIR": str(root / "state"), "HOME": str(root),
                    "VOICECALL_CONFIG": str(root / "voicecall.json")}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/voice/webhook"

    async def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (started once; waited for below, bounded)
            [sys.executable, "-m", "voicecall", "serve"], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{self.control_port}/health")).status_code == 200:
                        return
                if self.proc.poll() is not None:
                    raise RuntimeError("voicecall serve exited during start")
                await asyncio.sleep(0.05)
        raise RuntimeError("voicecall serve did not start in 30 s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=STEP_TIMEOUT_S) as http:
            response = await http.post(
                f"http://127.0.0.1:{self.control_port}/rpc",
                headers={"authorization": f"Bearer {CONTROL_TOKEN}"},
                json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        result: dict[str, Any] = response.json()
        return result


async def probe_kill_9(carrier: Carrier, config: dict[str, Any], args: argparse.Namespace,
                       root: Path) -> dict[str, Any]:
    server = ServeProcess(root, config)
    acknowledged_calls: set[int] = set()
    acknowledged_speech: dict[int, list[str]] = {}
    outcomes: Counter[str] = Counter()
    sent = 0
    lost: list[str] = []
    crashes = 0
    n = 0
    try:
        for round_ in range(args.kills):
            await server.start()
            stop = time.monotonic() + args.duration * 2
            limit = n + args.kill_calls
            # Killed at a random point of the round's load.
            kill_at = n + random.Random(round_).randint(args.kill_calls // 4, args.kill_calls * 3 // 4)
            reached = asyncio.Event()

            async def load(stop: float = stop, limit: int = limit, kill_at: int = kill_at,
                           reached: asyncio.Event = reached) -> None:
                nonlocal sent, n
                async with httpx.AsyncClient(trust_env=False, timeout=STEP_TIMEOUT_S) as http:
                    while time.monotonic() < stop and n < limit:
                        n += 1
                        if n >= kill_at:
                            reached.set()
                        call = n
                        url = server.webhook_url
                        hooks: list[tuple[str, Webhook]] = [
                            ("call", carrier.inbound_call(url, call)),
                            *((f"speech {i}", carrier.caller_speech(url, call, f"words {call} {i}"))
                              for i in range(2))]
                        for kind, hook in hooks:
                            sent += 1
                            try:
                                response = await http.post(hook.url, content=hook.body, headers=hook.headers)
                            except httpx.HTTPError as exc:
                                outcomes[type(exc).__name__] += 1
                                return
                            outcomes[str(response.status_code)] += 1
                            if response.status_code != 200:
                                break
                            if kind == "call":
                                acknowledged_calls.add(call)
                            else:
                                acknowledged_speech.setdefault(call, []).append(f"words {call} {kind[-1]}")

            workers = [asyncio.create_task(load()) for _ in range(4)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reached.wait(), args.duration * 2)
            server.kill()  # at a random point of the round's load, with requests in flight
            await asyncio.gather(*workers, return_exceptions=True)
        await server.start()
        for call in sorted(acknowledged_calls):
            answer = await server.rpc("voicecall.status", {"callId": carrier.call_id(call)})
            record = (answer.get("result") or {})
            if not record.get("found"):
                lost.append(f"call {call}")
                continue
            heard = [t["text"] for t in record["call"].get("transcript", [])
                     if t.get("speaker") == "user"]
            lost += [f"call {call}: {text!r}" for text in acknowledged_speech.get(call, [])
                     if text not in heard]
    finally:
        if server.proc is not None and server.proc.poll() not in (None, -signal.SIGKILL):
            crashes += 1
        server.kill(signal.SIGTERM)
    return {"requests": sent, "outcomes": dict(outcomes), "kills": args.kills,
            "acknowledgedCalls": len(acknowledged_calls),
            "acknowledgedSpeech": sum(len(v) for v in acknowledged_speech.values()),
            "lostAcknowledged": len(lost), "lost": lost[:10], "crashes": crashes,
            "fiveXX": _five_xx(outcomes)}


# -- driver --------------------------------------------------------------------------------------
class ErrorCount(logging.Handler):
    """Counts ERROR records (unhandled exceptions in the gateway, fatal transport errors)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.first = self.first or record.getMessage()[:200]


@contextlib.asynccontextmanager
async def gateway_for(carrier: Carrier, probe: str, root: Path) -> AsyncIterator[Runtime]:
    # Every genuine webhook starts a call: room for all of them (a refused caller would get a
    # REST hang-up, and the carrier's API is pointed at nothing or at one that accepts anything).
    async with gateway_config(carrier) as carrier_config:
        config = {**carrier_config, "maxConcurrentCalls": 100_000}
        async with _gateway_on(config, probe, root) as gateway:
            yield gateway


@contextlib.asynccontextmanager
async def _gateway_on(config: dict[str, Any], probe: str, root: Path) -> AsyncIterator[Runtime]:
    if probe == "media-flood":
        from voicecall.testing.fakes.tts import FakeSpeech

        async with FakeSpeech() as speech:
            config |= {"streaming": {"enabled": True, "provider": "none", "maxConnections": 32,
                                     "maxPendingConnections": 8, "maxPendingConnectionsPerIp": 4},
                       "tts": {"provider": "openai", "providers": {"openai": {
                           "apiKey": "sk-test", "baseUrl": speech.openai_base_url}}}}
            async with running_gateway(root, config) as gateway:
                yield gateway
        return
    async with running_gateway(root, config) as gateway:
        yield gateway


async def run_probe(probe: str, carrier: Carrier, args: argparse.Namespace) -> dict[str, Any] | None:
    if probe == "forgeries" and not carrier.signed:
        return None
    if probe == "media-flood" and not carrier.streams:
        return None
    errors = ErrorCount()
    logging.getLogger().addHandler(errors)
    started = time.monotonic()
    crashed = 0
    try:
        with tempfile.TemporaryDirectory(prefix="voicecall-adversarial-") as tmp:
            if probe == "kill-9":
                async with gateway_config(carrier) as config:
                    result = await probe_kill_9(carrier, config, args, Path(tmp))
            else:
                async with gateway_for(carrier, probe, Path(tmp)) as gateway:
                    function = {"slow-bodies": probe_slow_bodies, "slowloris": probe_slowloris,
                                "fuzz": probe_fuzz, "forgeries": probe_forgeries,
                                "media-flood": probe_media_flood, "control": probe_control}[probe]
                    result = await function(gateway, carrier, args)
                    crashed = sum(1 for _server, task in gateway._servers if task.done())
    finally:
        logging.getLogger().removeHandler(errors)
    out = {"probe": probe, "carrier": carrier.name, **result,
           "crashes": result.get("crashes", 0) + crashed, "errorsLogged": errors.count,
           "firstError": errors.first, "seconds": round(time.monotonic() - started, 2)}
    out.setdefault("acceptedForgeries", 0)
    out.setdefault("lostAcknowledged", 0)
    return out


async def main_async(args: argparse.Namespace) -> int:
    failures = 0
    for carrier_name in args.carrier or sorted(CARRIERS):
        for probe in args.probe or PROBES:
            result = await run_probe(probe, CARRIERS[carrier_name], args)
            if result is None:
                continue
            result["revision"] = git_revision()
            print(json.dumps(result), flush=True)
            bad = (result["fiveXX"] or result["crashes"] or result["acceptedForgeries"]
                   or result["lostAcknowledged"] or result.get("signedServed") is False
                   or result.get("controlServed") is False or result.get("probesAdmitted") is False)
            failures += bool(bad)
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", action="append", choices=PROBES, help="run only these (repeatable)")
    parser.add_argument("--carrier", action="append", choices=sorted(CARRIERS), help="only these carriers")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of attack per probe")
    parser.add_argument("--rate", type=float, default=20.0, help="genuine webhooks per second")
    parser.add_argument("--attackers", type=int, default=50, help="slow-body connections")
    parser.add_argument("--slowloris", type=int, default=600, help="stalled request heads")
    parser.add_argument("--fuzz", type=int, default=200, help="random bodies in the fuzz corpus")
    parser.add_argument("--genuine", type=int, default=3, help="genuine webhooks to forge from")
    parser.add_argument("--flips", type=int, default=200, help="random multi-bit signature flips each")
    parser.add_argument("--flood-rate", type=float, default=60.0, help="silent upgrades per second")
    parser.add_argument("--kills", type=int, default=3, help="kill -9 restarts under load")
    parser.add_argument("--kill-calls", type=int, default=60, help="calls started per kill round at most")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args()
    root = logging.getLogger()  # the probes count errors themselves and print nothing else
    root.setLevel(logging.ERROR)
    root.addHandler(logging.NullHandler())
    try:
        failures = asyncio.run(main_async(args))
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
