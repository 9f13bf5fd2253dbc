"""Floods of media-stream upgrades that never start nor answer a close: they cannot keep a real
call's stream out."""

from __future__ import annotations

import asyncio
import contextlib
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
