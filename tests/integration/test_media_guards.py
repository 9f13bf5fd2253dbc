"""The media-stream WebSocket endpoint's guards (docs/decisions.md D23), over real sockets on
127.0.0.1: path, connection cap (HTTP 503), pending caps (1013), start timeout and `start`
authorization (1008), frame size (1009), malformed messages, and the disconnect grace.

A gateway runs the Twilio carrier against the simulator and speaks with the fake TTS; the
simulated callee answers and fetches the `<Connect><Stream>` TwiML but does not open the stream
(`Callee(open_streams=False)`), so each test opens the stream itself with the token the TwiML
carried. Raw asyncio sockets read the HTTP statuses a WebSocket client would hide; the
`websockets` client reads close codes and reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from tests.helpers import eventually, free_port
from voicecall.calls.model import CallRecord
from voicecall.gateway.runtime import Runtime
from voicecall.media.hub import MediaHub
from voicecall.server.media_ws import MediaEndpoint
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator

OUR_NUMBER = "+15550000000"
CALLEE = "+15555550123"
OTHER_CALLEE = "+15555550124"
STREAM_PATH = "/voice/stream"
TIMEOUT = 5.0  # the bound on every single wait
NO_START_TIMEOUT = {"preStartTimeoutMs": 120_000}  # pending sockets leave only by closing or starting

GatewayFactory = Callable[..., Awaitable[Runtime]]


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    callee = Callee(answer_after_s=0.05, open_streams=False)
    async with TwilioSimulator(default_callee=callee) as simulator:
        yield simulator


@pytest.fixture
async def make_gateway(tmp_path: Path, sim: TwilioSimulator,
                       speech: FakeSpeech) -> AsyncIterator[GatewayFactory]:
    """`await make_gateway(maxConnections=2, ...)`: a started gateway with those `streaming.*`
    settings (speech-to-text off) and `extra` top-level config, stopped at the end of the test."""
    async with contextlib.AsyncExitStack() as stack:
        async def make(*, extra: dict[str, Any] | None = None, **streaming: Any) -> Runtime:
            port = free_port()
            config = {
                "provider": "twilio", "fromNumber": OUR_NUMBER,
                "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                           "apiBaseUrl": sim.base_url},
                "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
                "outbound": {"notifyHangupDelaySec": 0}, "maxConcurrentCalls": 5,
                "streaming": {"enabled": True, "provider": "none", "streamPath": STREAM_PATH, **streaming},
                "tts": {"provider": "openai",
                        "providers": {"openai": {"apiKey": "sk-test", "baseUrl": speech.openai_base_url}}},
                **(extra or {}),
            }
            return await stack.enter_async_context(running_gateway(tmp_path, config))
        yield make


# -- helpers -------------------------------------------------------------------------------------
def port_of(runtime: Runtime) -> int:
    return runtime.config.serve.port


def endpoint_of(runtime: Runtime) -> MediaEndpoint:
    assert runtime.media_endpoint is not None
    return runtime.media_endpoint


def hub_of(runtime: Runtime) -> MediaHub:
    assert runtime.media is not None
    return runtime.media


def upgrade_request(port: int, target: str) -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


@dataclass
class RawReply:
    status: int
    head: str
    body: bytes


async def raw_upgrade(port: int, target: str = STREAM_PATH) -> RawReply:
    """Send an upgrade request on a plain socket; the HTTP answer up to the server's EOF."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    try:
        writer.write(upgrade_request(port, target))
        data = await asyncio.wait_for(reader.read(), TIMEOUT)  # refusals close the socket
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode()
    return RawReply(int(status_line.split()[1]), head.decode(), body)


@dataclass
class RawSocket:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)


async def raw_open(port: int, data: bytes) -> RawSocket:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    writer.write(data)
    await asyncio.wait_for(writer.drain(), TIMEOUT)
    return RawSocket(reader, writer)


def stream_url(runtime: Runtime, target: str = STREAM_PATH) -> str:
    return f"ws://127.0.0.1:{port_of(runtime)}{target}"


@contextlib.asynccontextmanager
async def open_stream(runtime: Runtime, *, source: str = "127.0.0.1", target: str = STREAM_PATH,
                      forwarded_for: str | None = None) -> AsyncIterator[ClientConnection]:
    """A WebSocket to the endpoint from `source` (any 127.x.y.z address works on loopback)."""
    extra = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    async with connect(stream_url(runtime, target), open_timeout=TIMEOUT, close_timeout=1,
                       local_addr=(source, 0), max_size=None, additional_headers=extra) as ws:
        yield ws


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """The close code and reason the server sent (1006: it dropped the socket without one)."""
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    return ws.close_code, ws.close_reason


def start_message(call_sid: str | None, token: str | None = None, *,
                  stream_sid: str | None = None) -> str:
    sid = stream_sid or "MZ" + secrets.token_hex(16)
    start: dict[str, Any] = {"streamSid": sid, "accountSid": "AC" + "0" * 32, "tracks": ["inbound"],
                             "customParameters": {} if token is None else {"token": token},
                             "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                             "channels": 1}}
    if call_sid is not None:
        start["callSid"] = call_sid
    return json.dumps({"event": "start", "sequenceNumber": "1", "start": start, "streamSid": sid})


@dataclass
class LiveCall:
    record: CallRecord
    call_sid: str
    token: str


async def live_call(runtime: Runtime, sim: TwilioSimulator, to: str = CALLEE) -> LiveCall:
    """An answered call whose `<Connect><Stream>` is waiting for its stream, with its token."""
    result = await runtime.api.call("voicecall.initiate",
                                    {"to": to, "message": "Hi.", "mode": "conversation"})
    record = await runtime.service.get_call(result["callId"])
    assert record is not None and record.provider_call_id
    call = sim.call(record.provider_call_id)
    entries = await eventually(lambda: sim.stream_entries([call]), TIMEOUT)
    token = entries[0]["customParameters"]["token"]
    assert token == await runtime.provider.stream_token(record.call_id)  # type: ignore[attr-defined]
    return LiveCall(record, record.provider_call_id, token)


async def still_open(ws: ClientConnection, seconds: float) -> bool:
    """True if nothing closed `ws` within `seconds` (messages it receives meanwhile are fine)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ws.wait_closed(), seconds)
    return ws.state is State.OPEN


# -- 1. path -------------------------------------------------------------------------------------
LOOKALIKE_PATHS = ["/voice/webhook", "/voice/stream/", "/voice/streams", "/voice/stream/extra", "/voice",
                   "/VOICE/STREAM", "/other/voice/stream", "//voice/stream", "/voice/stream%2F"]


async def test_upgrade_on_any_other_path_is_refused_with_404(make_gateway: GatewayFactory) -> None:
    runtime = await make_gateway()
    for target in LOOKALIKE_PATHS:
        reply = await raw_upgrade(port_of(runtime), target)
        assert reply.status == 404, target
        assert "upgrade: websocket" not in reply.head.lower()
    await eventually(lambda: not endpoint_of(runtime).sockets, TIMEOUT)
    # the stream path itself (with a query string) upgrades
    async with open_stream(runtime, target=STREAM_PATH + "?token=x") as ws:
        assert ws.state is State.OPEN


# -- 2. maxConnections ---------------------------------------------------------------------------
async def test_connection_beyond_max_connections_gets_http_503(make_gateway: GatewayFactory) -> None:
    runtime = await make_gateway(maxConnections=2, **NO_START_TIMEOUT)
    port = port_of(runtime)
    async with open_stream(runtime), open_stream(runtime):
        reply = await raw_upgrade(port)
        assert reply.head.startswith("HTTP/1.1 503 Service Unavailable\r\n")
        assert reply.body == b"Too many media stream connections"
        assert endpoint_of(runtime).refused_503 == 1
    # both closed: room again
    await eventually(lambda: not endpoint_of(runtime).sockets, TIMEOUT)
    async with open_stream(runtime) as ws:
        assert ws.state is State.OPEN


async def test_upgrades_in_flight_count_toward_max_connections(make_gateway: GatewayFactory) -> None:
    """An upgrade holds its slot from the moment its request is in, before the client has even
    read the 101 ("in-flight upgrades count"). A request whose headers are still
    incomplete is plain HTTP to uvicorn and reaches the endpoint only once they are complete, as
    with Node's `upgrade` event, so such sockets are not counted and not tested here."""
    runtime = await make_gateway(maxConnections=2, **NO_START_TIMEOUT)
    port = port_of(runtime)
    holders = [await raw_open(port, upgrade_request(port, STREAM_PATH)) for _ in range(2)]
    try:
        await eventually(lambda: len(endpoint_of(runtime).sockets) == 2, TIMEOUT)
        reply = await raw_upgrade(port)
        assert (reply.status, reply.body) == (503, b"Too many media stream connections")
        await holders.pop().close()
        await eventually(lambda: len(endpoint_of(runtime).sockets) == 1, TIMEOUT)
        async with open_stream(runtime) as ws:
            assert ws.state is State.OPEN
    finally:
        for holder in holders:
            await holder.close()


# -- 3. pending limits ---------------------------------------------------------------------------
async def test_a_pending_socket_beyond_the_per_ip_limit_takes_the_slot_of_that_ips_oldest(
        make_gateway: GatewayFactory) -> None:
    runtime = await make_gateway(maxPendingConnections=10, maxPendingConnectionsPerIp=2, **NO_START_TIMEOUT)
    endpoint = endpoint_of(runtime)
    async with contextlib.AsyncExitStack() as stack:
        first = [await stack.enter_async_context(open_stream(runtime, source="127.0.0.2"))
                 for _ in range(2)]
        assert endpoint.pending_per_ip["127.0.0.2"] == 2
        others = [await stack.enter_async_context(open_stream(runtime, source="127.0.0.3"))
                  for _ in range(2)]
        third = await stack.enter_async_context(open_stream(runtime, source="127.0.0.2"))
        # the oldest of 127.0.0.2 lost its slot (D64); another IP's sockets are untouched
        assert await closed_with(first[0]) == (1013, "Too many pending media stream connections")
        assert await still_open(third, 0.1)
        assert all(ws.state is State.OPEN for ws in [first[1], *others])
        assert endpoint.pending_per_ip["127.0.0.2"] == 2 and len(endpoint.pending) == 4


async def test_a_pending_socket_beyond_the_global_limit_takes_the_slot_of_the_oldest_of_all(
        make_gateway: GatewayFactory) -> None:
    runtime = await make_gateway(maxPendingConnections=3, maxPendingConnectionsPerIp=2, **NO_START_TIMEOUT)
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(open_stream(runtime, source=source))
                for source in ("127.0.0.2", "127.0.0.2", "127.0.0.3")]
        assert len(endpoint_of(runtime).pending) == 3
        newer = [await stack.enter_async_context(open_stream(runtime, source=source))
                 for source in ("127.0.0.3", "127.0.0.4")]  # under their per-IP limit, over the global one
        for ws in held[:2]:
            assert await closed_with(ws) == (1013, "Too many pending media stream connections")
        assert [await still_open(ws, 0.05) for ws in [held[2], *newer]] == [True] * 3
        assert endpoint_of(runtime).closed_by_code[1013] == 2
        assert len(endpoint_of(runtime).pending) == 3


async def test_a_pending_socket_that_sent_start_keeps_its_slot(make_gateway: GatewayFactory,
                                                               sim: TwilioSimulator,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = await make_gateway(maxPendingConnections=1, maxPendingConnectionsPerIp=1, **NO_START_TIMEOUT)
    call = await live_call(runtime, sim)
    hub = hub_of(runtime)
    release = asyncio.Event()
    opened = hub.open

    async def slow_open(*args: Any) -> Any:  # authorization takes a while
        await release.wait()
        return await opened(*args)

    monkeypatch.setattr(hub, "open", slow_open)
    async with open_stream(runtime) as ws:
        await ws.send(start_message(call.call_sid, call.token))
        await eventually(lambda: next(iter(endpoint_of(runtime).pending)).started, TIMEOUT)
        async with open_stream(runtime) as second:  # nobody to evict: the newcomer is refused
            assert await closed_with(second) == (1013, "Too many pending media stream connections")
        release.set()
        await eventually(lambda: hub.session_for(call.record.call_id), TIMEOUT)
        assert ws.state is State.OPEN


async def test_a_started_stream_no_longer_counts_as_pending(make_gateway: GatewayFactory,
                                                            sim: TwilioSimulator) -> None:
    runtime = await make_gateway(maxPendingConnections=1, maxPendingConnectionsPerIp=1, **NO_START_TIMEOUT)
    call = await live_call(runtime, sim)
    async with open_stream(runtime) as ws:
        await ws.send(start_message(call.call_sid, call.token))
        await eventually(lambda: hub_of(runtime).session_for(call.record.call_id), TIMEOUT)
        assert not endpoint_of(runtime).pending
        async with open_stream(runtime) as second:  # the only pending slot is free again
            assert await still_open(second, 0.1)
        assert ws.state is State.OPEN


@pytest.mark.parametrize("trusted", [True, False])
async def test_per_ip_pending_limit_counts_the_forwarded_client_only_behind_a_trusted_proxy(
        make_gateway: GatewayFactory, trusted: bool) -> None:
    security = {"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"] if trusted else []}
    runtime = await make_gateway(extra={"webhookSecurity": security}, maxPendingConnectionsPerIp=1,
                                 **NO_START_TIMEOUT)
    async with open_stream(runtime, forwarded_for="203.0.113.1") as first, \
            open_stream(runtime, forwarded_for="203.0.113.2") as second:
        if trusted:  # two clients behind the proxy: one pending socket each
            assert await still_open(first, 0.1) and await still_open(second, 0.01)
            assert dict(endpoint_of(runtime).pending_per_ip) == {"203.0.113.1": 1, "203.0.113.2": 1}
            async with open_stream(runtime, forwarded_for="198.51.100.9, 203.0.113.1") as again:
                assert await closed_with(first) == (1013, "Too many pending media stream connections")
                assert await still_open(again, 0.05) and second.state is State.OPEN
        else:  # the header is not believed: both are 127.0.0.1, and the newer takes the slot
            assert await closed_with(first) == (1013, "Too many pending media stream connections")
            assert dict(endpoint_of(runtime).pending_per_ip) == {"127.0.0.1": 1}
            assert second.state is State.OPEN


# -- 4. start timeout ----------------------------------------------------------------------------
async def test_socket_without_start_is_closed_with_1008_start_timeout(make_gateway: GatewayFactory) -> None:
    runtime = await make_gateway(preStartTimeoutMs=300)
    opened = time.monotonic()
    async with open_stream(runtime) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        assert await closed_with(ws) == (1008, "Start timeout")
        assert 0.3 <= time.monotonic() - opened < 3.0
    await eventually(lambda: not endpoint_of(runtime).pending and not endpoint_of(runtime).sockets, TIMEOUT)


async def test_socket_that_starts_in_time_outlives_the_start_timeout(make_gateway: GatewayFactory,
                                                                     sim: TwilioSimulator) -> None:
    runtime = await make_gateway(preStartTimeoutMs=300)
    call = await live_call(runtime, sim)
    async with open_stream(runtime) as ws:
        await ws.send(start_message(call.call_sid, call.token))
        assert await still_open(ws, 0.6)
        assert hub_of(runtime).session_for(call.record.call_id) is not None
    assert endpoint_of(runtime).closed_by_code[1008] == 0


# -- 5. start authorization ----------------------------------------------------------------------
async def test_start_without_call_sid_is_closed_with_1008_missing_call_sid(
        make_gateway: GatewayFactory) -> None:
    runtime = await make_gateway()
    for call_sid in (None, "", "   "):
        async with open_stream(runtime) as ws:
            await ws.send(start_message(call_sid, "some-token"))
            assert await closed_with(ws) == (1008, "Missing callSid")


async def test_start_for_an_unknown_call_is_closed_with_1008_unknown_call(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    runtime = await make_gateway()
    call = await live_call(runtime, sim)  # a live call exists, but not this one
    async with open_stream(runtime) as ws:
        await ws.send(start_message("CA" + secrets.token_hex(16), call.token))
        assert await closed_with(ws) == (1008, "Unknown call")
    assert hub_of(runtime).streams_refused == 1


async def test_start_for_a_live_call_with_a_wrong_or_missing_token_is_closed_with_1008_unknown_call(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    runtime = await make_gateway()
    call = await live_call(runtime, sim)
    other = await live_call(runtime, sim, OTHER_CALLEE)
    wrong = call.token[:-1] + ("A" if call.token[-1] != "A" else "B")
    for token in (wrong, None, "", other.token):  # the last is a real token, but another call's
        async with open_stream(runtime) as ws:
            await ws.send(start_message(call.call_sid, token))
            assert await closed_with(ws) == (1008, "Unknown call"), token
    assert hub_of(runtime).session_for(call.record.call_id) is None
    assert hub_of(runtime).streams_refused == 4
    assert not call.record.is_terminal  # a refused stream does not end the call


async def test_token_in_the_query_string_is_accepted_when_the_start_has_none(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    runtime = await make_gateway()
    call = await live_call(runtime, sim)
    async with open_stream(runtime, target=f"{STREAM_PATH}?token={call.token}") as ws:
        await ws.send(start_message(call.call_sid, None))
        session = await eventually(lambda: hub_of(runtime).session_for(call.record.call_id), TIMEOUT)
        assert session.connection.client_ip == "127.0.0.1"
        # the gateway speaks the call's first message over it
        first = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert first["event"] == "media"
        assert ws.state is State.OPEN


async def test_token_in_the_start_wins_over_the_query_string(make_gateway: GatewayFactory,
                                                             sim: TwilioSimulator) -> None:
    runtime = await make_gateway()
    call = await live_call(runtime, sim)
    async with open_stream(runtime, target=f"{STREAM_PATH}?token={call.token}") as ws:
        await ws.send(start_message(call.call_sid, "not-the-token"))
        assert await closed_with(ws) == (1008, "Unknown call")


# -- 6. message size -----------------------------------------------------------------------------
async def test_message_over_64_kib_is_closed_with_1009(make_gateway: GatewayFactory) -> None:
    runtime = await make_gateway()
    async with open_stream(runtime) as ws:
        await ws.send("x" * (64 * 1024))  # exactly the limit: allowed (and ignored: not JSON)
        assert await still_open(ws, 0.1)
        await ws.send("x" * (64 * 1024 + 1))
        code, _reason = await closed_with(ws)
        assert code == 1009
    await eventually(lambda: not endpoint_of(runtime).sockets, TIMEOUT)


async def test_fragmented_message_over_64_kib_in_total_is_closed_with_1009(
        make_gateway: GatewayFactory) -> None:
    runtime = await make_gateway()
    async with open_stream(runtime) as ws:
        await ws.send(iter(["x" * 40_000, "x" * 40_000]))  # each frame is small, the message is not
        code, _reason = await closed_with(ws)
        assert code == 1009


# -- 7. malformed messages -----------------------------------------------------------------------
MALFORMED: list[str | bytes] = [
    "not json",
    "[1, 2, 3]",
    '"a string"',
    "{}",
    '{"event":"media","media":{"payload":"!!!not base64!!!"}}',
    '{"event":"media","streamSid":"MZ1","media":{"payload":"abc"}}',  # fast path, bad padding
    '{"event":"media","media":{"payload":"abcd',  # fast path, unterminated
    '{"event":"media","media":{}}',
    '{"event":"mark","mark":{"name":"never-sent"}}',
    '{"event":"mark"}',
    '{"event":"dtmf"}',
    '{"event":"something-new","data":1}',
    '{"event":"connected","protocol":"Call","version":"1.0.0"}',
    b"\xff\xfe\x00 binary garbage",
]


async def test_malformed_messages_before_start_are_ignored_and_a_later_start_works(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    runtime = await make_gateway()
    call = await live_call(runtime, sim)
    async with open_stream(runtime) as ws:
        for message in MALFORMED:
            await ws.send(message)
        await ws.send(start_message(call.call_sid, call.token))
        await eventually(lambda: hub_of(runtime).session_for(call.record.call_id), TIMEOUT)
        assert ws.state is State.OPEN


async def test_malformed_messages_after_start_are_ignored_and_a_mark_echo_still_lands(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    runtime = await make_gateway()
    call = await live_call(runtime, sim)
    async with open_stream(runtime) as ws:
        await ws.send(start_message(call.call_sid, call.token, stream_sid="MZguards"))
        mark: dict[str, Any] | None = None
        while mark is None:  # the first message's audio, then its mark
            message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            if message["event"] == "mark":
                mark = message
        for bad in MALFORMED:
            await ws.send(bad)
        assert "initialMessageSpokenAt" not in call.record.metadata
        await ws.send(json.dumps({"event": "mark", "streamSid": "MZguards", "mark": mark["mark"]}))
        await eventually(lambda: "initialMessageSpokenAt" in call.record.metadata, TIMEOUT)
        assert ws.state is State.OPEN


# -- 10. disconnect grace ------------------------------------------------------------------------
async def test_call_ends_as_hangup_bot_when_its_stream_stays_closed_past_the_grace(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    runtime = await make_gateway()
    hub_of(runtime).grace_s = 0.3
    call = await live_call(runtime, sim)
    async with open_stream(runtime) as ws:
        await ws.send(start_message(call.call_sid, call.token))
        await eventually(lambda: hub_of(runtime).session_for(call.record.call_id), TIMEOUT)
        closing = time.monotonic()
    await eventually(lambda: call.record.is_terminal, TIMEOUT)
    assert time.monotonic() - closing >= 0.3
    assert call.record.end_reason == "hangup-bot"
    assert await sim.call(call.call_sid).wait_ended(TIMEOUT) == "completed"


async def test_call_survives_a_stream_that_reconnects_within_the_grace(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    runtime = await make_gateway()
    hub = hub_of(runtime)
    hub.grace_s = 0.3
    call = await live_call(runtime, sim)
    async with open_stream(runtime) as ws:
        await ws.send(start_message(call.call_sid, call.token))
        await eventually(lambda: hub.session_for(call.record.call_id), TIMEOUT)
    await eventually(lambda: hub.session_for(call.record.call_id) is None, TIMEOUT)
    async with open_stream(runtime) as ws:
        await ws.send(start_message(call.call_sid, call.token))
        await eventually(lambda: hub.session_for(call.record.call_id), TIMEOUT)
        assert await still_open(ws, 0.6)  # twice the grace
        assert not call.record.is_terminal
    assert not call.record.is_terminal


async def test_closing_stream_with_a_socket_reset_is_a_disconnect_too(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    """No close handshake (the carrier's socket just drops): same grace, same end."""
    runtime = await make_gateway()
    hub_of(runtime).grace_s = 0.3
    call = await live_call(runtime, sim)
    async with open_stream(runtime) as ws:
        await ws.send(start_message(call.call_sid, call.token))
        await eventually(lambda: hub_of(runtime).session_for(call.record.call_id), TIMEOUT)
        ws.transport.abort()
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    await eventually(lambda: call.record.is_terminal, TIMEOUT)
    assert call.record.end_reason == "hangup-bot"
