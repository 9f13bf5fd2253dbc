"""Floods of media-stream upgrades that never start nor answer a close: they cannot keep a real
call's stream out."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

from websockets.protocol import State

from tests.helpers import eventually
from tests.integration.test_media_guards import (
    TIMEOUT,
    GatewayFactory,
    endpoint_of,
    hub_of,
    live_call,
    open_stream,
    port_of,
    raw_open,
    start_message,
    upgrade_request,
)
from voicecall.testing.twilio import TwilioSimulator


async def _silent_upgrades(port: int, stop: asyncio.Event, per_s: float) -> int:
    """Upgrades that send nothing after the request and never answer a close frame (the
    sockets stay open on our side until the server drops them)."""
    sockets = []
    sent = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(OSError, TimeoutError):
                sockets.append(await raw_open(port, upgrade_request(port, "/voice/stream")))
                sent += 1
            await asyncio.sleep(1 / per_s)
    finally:
        for sock in sockets:
            await sock.close()
    return sent


async def test_a_real_calls_stream_is_admitted_during_a_flood_of_silent_upgrades(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    runtime = await make_gateway(maxConnections=16, maxPendingConnections=8,
                                 maxPendingConnectionsPerIp=4)
    stop = asyncio.Event()
    flood = asyncio.create_task(_silent_upgrades(port_of(runtime), stop, per_s=60))
    try:
        await asyncio.sleep(1.0)  # the flood is well under way
        endpoint = endpoint_of(runtime)
        assert len(endpoint.sockets) <= 8  # only pending sockets count, never closing ones
        admitted = 0
        for _ in range(3):
            call = await live_call(runtime, sim)
            call_id = call.record.call_id
            async with open_stream(runtime) as ws:
                await ws.send(start_message(call.call_sid, call.token))
                await eventually(lambda: hub_of(runtime).session_for(call_id), TIMEOUT)  # noqa: B023
                assert ws.state is State.OPEN
                admitted += 1
            await runtime.api.call("voicecall.end", {"callId": call.record.call_id})
        assert admitted == 3
        assert endpoint.refused_503 == 0
    finally:
        stop.set()
        sent = await asyncio.wait_for(flood, TIMEOUT)
    assert sent >= 40


async def test_a_socket_closed_by_the_server_stops_counting_at_once_and_is_dropped_soon(
        make_gateway: GatewayFactory) -> None:
    runtime = await make_gateway(maxConnections=4, maxPendingConnections=1,
                                 maxPendingConnectionsPerIp=1)
    port = port_of(runtime)
    endpoint = endpoint_of(runtime)
    first = await raw_open(port, upgrade_request(port, "/voice/stream"))
    await eventually(lambda: len(endpoint.pending) == 1, TIMEOUT)
    second = await raw_open(port, upgrade_request(port, "/voice/stream"))  # takes the slot
    try:
        await eventually(lambda: endpoint.closed_by_code[1013] == 1, TIMEOUT)
        assert len(endpoint.sockets) == 1  # the closed one no longer counts
        started = time.monotonic()
        assert await asyncio.wait_for(first.reader.read(), TIMEOUT) is not None  # dropped
        assert time.monotonic() - started < 1.5
    finally:
        await first.close()
        await second.close()


def _masked_frame(opcode_byte: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    size = len(payload)
    head = bytes((opcode_byte, 0x80 | size)) if size < 126 else \
        bytes((opcode_byte, 0x80 | 126)) + size.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_random_and_pathological_frames_end_only_their_own_socket(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    runtime = await make_gateway(preStartTimeoutMs=500, maxPendingConnections=64,
                                 maxPendingConnectionsPerIp=64)
    port = port_of(runtime)
    rng = random.Random(20)
    blobs = [rng.randbytes(rng.choice((1, 2, 14, 200, 3000))) for _ in range(24)]
    blobs += [
        _masked_frame(0x81, b"\xff\xfe not utf-8"),          # 1007
        _masked_frame(0x8F, b""),                            # reserved opcode: 1002
        bytes((0x81, 0xFF)) + (2**62).to_bytes(8, "big"),    # absurd length: 1009
        _masked_frame(0x01, b"{") + _masked_frame(0x81, b"}"),  # data frame inside a fragment
        _masked_frame(0x89, b"x" * 126),                     # control frame too long
        _masked_frame(0x88, b"\x03\xe7"),                    # close with an invalid code (999)
        _masked_frame(0x81, b"[" * 5000),                    # deep JSON: ignored
    ]

    async def send(blob: bytes) -> int | None:
        sock = await raw_open(port, upgrade_request(port, "/voice/stream"))
        try:
            head = await asyncio.wait_for(sock.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            assert head.startswith(b"HTTP/1.1 101")
            sock.writer.write(blob)
            rest = await asyncio.wait_for(sock.reader.read(), TIMEOUT)  # the server ends it
            return int.from_bytes(rest[2:4], "big") if len(rest) >= 4 and rest[0] == 0x88 else None
        finally:
            await sock.close()

    codes = await asyncio.gather(*(send(blob) for blob in blobs))
    assert set(codes) <= {1002, 1007, 1008, 1009, None}, codes
    assert {1002, 1007, 1009} <= set(codes)
    call = await live_call(runtime, sim)  # and a real stream still works
    async with open_stream(runtime) as ws:
        await ws.send(start_message(call.call_sid, call.token))
        await eventually(lambda: hub_of(runtime).session_for(call.record.call_id), TIMEOUT)
        assert ws.state is State.OPEN
