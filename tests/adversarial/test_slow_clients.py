"""Slow senders on the webhook port: bodies that trickle in must not starve signed webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

from tests.adversarial.conftest import RawConnection, post_signed, signed_url, status_params
from voicecall.gateway.runtime import Runtime


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
