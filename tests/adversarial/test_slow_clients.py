"""Slow senders on the webhook port: bodies that trickle in must not starve signed webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.adversarial.conftest import RawConnection, post_signed, signed_url, status_params
from tests.helpers import eventually
from tests.integration.test_webhook_server import webhook_app
from voicecall.gateway.runtime import Runtime
from voicecall.security.limits import ReadBudget
from voicecall.testing.gateway import running_gateway


async def _slow_body_attacker(url: str, stop: asyncio.Event, answers: list[int | None]) -> None:
    """POSTs with a bogus signature header and a 1000-byte body sent a byte at a time,
    reconnecting whenever the server answers or drops the connection."""
    parts = urlsplit(url)
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nX-Twilio-Signature: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n")
    while not stop.is_set():
        try:
            conn = await RawConnection.open(url)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        try:
            await conn.send(head.encode())
            reply = asyncio.ensure_future(conn.status(30))
            while not stop.is_set() and not reply.done():
                await conn.send(b"a")
                await asyncio.wait({reply}, timeout=0.2)
            if reply.done() and not reply.cancelled() and reply.exception() is None:
                answers.append(reply.result())
            reply.cancel()
        except (ConnectionError, OSError):
            pass
        finally:
            await conn.close()


async def test_slow_unverifiable_bodies_do_not_starve_signed_webhooks(twilio_gateway: Runtime) -> None:
    stop = asyncio.Event()
    answers: list[int | None] = []
    attackers = [asyncio.create_task(_slow_body_attacker(twilio_gateway.webhook_url, stop, answers))
                 for _ in range(24)]
    try:
        await asyncio.sleep(0.5)  # every attacker has its request open
        url = signed_url(twilio_gateway, {"callId": "not-a-call", "type": "status"})
        latencies = []
        for i in range(10):
            started = time.monotonic()
            response = await post_signed(twilio_gateway, url, status_params("CA" + f"{i:032x}"))
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
            await asyncio.sleep(0.1)
        assert max(latencies) < 1.0
    finally:
        stop.set()
        for task in attackers:
            task.cancel()
        for task in attackers:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _slow_reader(url: str, forwarded_for: str) -> RawConnection:
    parts = urlsplit(url)
    conn = await RawConnection.open(url)
    await conn.send((f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     f"X-Forwarded-For: {forwarded_for}\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100\r\n\r\n{").encode())
    return conn


@pytest.mark.parametrize("trusted", [True, False])
async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_read_budget(
        tmp_path: Path, trusted: bool) -> None:
    security = {"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"] if trusted else []}
    async with running_gateway(tmp_path, {"webhookSecurity": security}) as gateway:
        app = webhook_app(gateway)
        app.reads = ReadBudget(per_key=2)
        held = [await _slow_reader(gateway.webhook_url, "203.0.113.7") for _ in range(2)]
        try:
            await eventually(lambda: len(app.reads) == 2)
            held.append(await _slow_reader(gateway.webhook_url, "198.51.100.1"))
            await eventually(lambda: len(app.reads) == 3 or app.reads.evicted == 1)
            # trusted: another client behind the tunnel, its own budget; untrusted: all one client
            assert app.reads.evicted == (0 if trusted else 1)
        finally:
            for conn in held:
                await conn.close()
