"""Slow headers on the public port (slowloris): a header deadline and connection caps keep the
webhook and the control API answering."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_cli_gateway import Gateway
from voicecall.server.connection_guard import ConnectionGuard
from voicecall.server.serving import serve_on

SLOW_HEAD = b"POST /voice/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def guarded_server(guard: ConnectionGuard) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = int(sock.getsockname()[1])
    server, task = await serve_on(ok_app, sock, guard=guard, fast_exit=True, graceful_shutdown_s=1)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def opened(port: int, data: bytes = SLOW_HEAD) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


async def test_a_request_whose_headers_do_not_arrive_in_time_is_closed() -> None:
    guard = ConnectionGuard(header_timeout_s=0.5)
    async with guarded_server(guard) as port:
        reader, writer = await opened(port)
        started = time.monotonic()
        assert await closed_within(reader, 3)
        assert 0.4 <= time.monotonic() - started < 2
        writer.close()
        # on a kept-alive connection, the next request's headers have the same deadline
        reader, writer = await opened(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.write(b"GET / HTTP/1.1\r\n")
        assert await closed_within(reader, 3)
        writer.close()
        assert guard.timed_out == 2 and len(guard) == 0


async def test_over_the_per_client_cap_the_oldest_connection_without_headers_makes_room() -> None:
    guard = ConnectionGuard(per_client=4, total=100, header_timeout_s=30)
    async with guarded_server(guard) as port:
        slow = [await opened(port) for _ in range(4)]
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            for _ in range(3):
                assert (await http.get(f"http://127.0.0.1:{port}/")).status_code == 200
        assert await closed_within(slow[0][0], 2)
        assert guard.evicted >= 1
        for _, writer in slow:
            writer.close()


@pytest.fixture
def small_fd_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A `voicecall serve` process allowed 256 file descriptors."""

    class SmallGateway(Gateway):
        def launch(self) -> Any:
            import subprocess

            from tests.e2e.test_cli_gateway import VOICECALL

            def limit() -> None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

            return subprocess.Popen([*VOICECALL, "serve"], env=self.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, preexec_fn=limit)

    gw = SmallGateway(tmp_path, {"inboundPolicy": "open"})
    gw.start()
    yield gw
    gw.kill()


async def test_control_api_and_webhooks_answer_while_slowloris_holds_more_sockets_than_the_fd_limit(
        small_fd_gateway: Gateway) -> None:
    gw = small_fd_gateway
    held: list[asyncio.StreamWriter] = []
    try:
        for _ in range(400):  # more than the gateway's 256 descriptors
            with contextlib.suppress(OSError):
                _, writer = await opened(gw.webhook_port)
                held.append(writer)
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            health = await http.get(f"http://127.0.0.1:{gw.control_port}/health")
            assert health.status_code == 200
            event = {"type": "call.initiated", "callId": "pc-x", "providerCallId": "pc-x",
                     "direction": "inbound", "from": "+15557770001", "to": "+15550000000"}
            webhook = await http.post(f"http://127.0.0.1:{gw.webhook_port}/voice/webhook",
                                      content=json.dumps({"events": [event]}))
            assert webhook.status_code == 200
    finally:
        for writer in held:
            writer.close()


class FakeConn:
    def __init__(self, waiting: bool) -> None:
        self.waiting_for_headers = waiting
        self.dropped = False

    def drop(self) -> None:
        self.dropped = True


def test_the_guard_refuses_a_newcomer_only_when_no_connection_is_waiting_for_headers() -> None:
    guard = ConnectionGuard(per_client=2, total=3, header_timeout_s=1)
    busy = [FakeConn(False), FakeConn(False)]
    assert all(guard.admit(c, "a") for c in busy)
    assert not guard.admit(FakeConn(True), "a")  # its client is full of working connections
    idle = FakeConn(True)
    assert guard.admit(idle, "b")
    assert guard.admit(FakeConn(False), "c")  # over the total: the idle one of "b" made room
    assert idle.dropped and guard.evicted == 1 and guard.refused == 1 and len(guard) == 3
    assert not guard.admit(FakeConn(False), "d")
    for conn in busy:
        guard.release(conn)
    assert len(guard) == 1
