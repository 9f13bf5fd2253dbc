"""The media endpoint without sockets: backpressure on a fake transport (filling a real 1 MiB send
buffer at 8 kB/s of paced audio would take minutes) and the client IP behind proxies."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from voicecall.media.session import StreamSession
from voicecall.providers.streams import StreamStart
from voicecall.providers.twilio.stream import TwilioStreamSerializer
from voicecall.server.media_ws import MAX_SEND_BUFFER, MediaConnection, MediaEndpoint, MediaLimits, client_ip

BACKPRESSURE = "Backpressure: send buffer exceeded"
MEDIA = '{"event":"media","streamSid":"MZ1","media":{"payload":"/w=="}}'


class FakeTransport(asyncio.Transport):
    """Records writes; its write buffer is as full as the test says (`buffered`), and with
    `grow` every write adds its size to it, as when the peer stopped reading."""

    def __init__(self, *, buffered: int = 0, grow: bool = False) -> None:
        super().__init__()
        self.written = bytearray()
        self.buffered = buffered
        self.grow = grow
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        if self.grow:
            self.buffered += len(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class NoCalls:
    async def open(self, start: StreamStart, query_token: str | None,
                   connection: Any) -> StreamSession | None:
        return None


class FakeSession:
    ended = False

    def end(self) -> None:
        self.ended = True


class Peer:
    """The client side of one media socket, as a sans-I/O protocol reading what the server wrote."""

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.client = ClientProtocol(parse_uri("ws://127.0.0.1/voice/stream"))
        self.read = 0

    def handshake(self) -> bytes:
        self.client.send_request(self.client.connect())
        return b"".join(self.client.data_to_send())

    def frames(self) -> list[Frame]:
        """What the server wrote since the last call, as frames."""
        data = bytes(self.transport.written[self.read:])
        self.read = len(self.transport.written)
        self.client.receive_data(data)
        return [e for e in self.client.events_received() if isinstance(e, Frame)]


@pytest.fixture
async def socket_pair() -> AsyncIterator[tuple[MediaConnection, FakeTransport, Peer]]:
    """An accepted (still pending) media connection on a fake transport, and its peer."""
    endpoint = MediaEndpoint(MediaLimits(), TwilioStreamSerializer(), NoCalls())
    transport = FakeTransport()
    connection = MediaConnection(endpoint, None)
    connection.connection_made(transport)
    peer = Peer(transport)
    connection.data_received(peer.handshake())
    peer.client.receive_data(bytes(transport.written))
    responses = [e for e in peer.client.events_received() if isinstance(e, Response)]
    assert [r.status_code for r in responses] == [101]
    peer.read = len(transport.written)
    assert connection.accepted and peer.client.state is State.OPEN
    yield connection, transport, peer
    connection.connection_lost(None)  # cancels its timers


def close_of(frames: list[Frame]) -> Close:
    closes = [f for f in frames if f.opcode is Opcode.CLOSE]
    assert len(closes) == 1, frames
    return Close.parse(closes[0].data)


# -- backpressure --------------------------------------------------------------------------------
async def test_send_with_room_in_the_buffer_writes_the_message(
        socket_pair: tuple[MediaConnection, FakeTransport, Peer]) -> None:
    connection, transport, peer = socket_pair
    transport.buffered = MAX_SEND_BUFFER  # at the limit is still fine
    assert connection.send_text(MEDIA) is True
    frames = peer.frames()
    assert [(f.opcode, f.data) for f in frames] == [(Opcode.TEXT, MEDIA.encode())]
    assert not connection.closing


async def test_send_over_a_full_buffer_is_refused_and_closes_with_1013(
        socket_pair: tuple[MediaConnection, FakeTransport, Peer]) -> None:
    connection, transport, peer = socket_pair
    session = FakeSession()
    connection.session = session  # type: ignore[assignment]
    transport.buffered = MAX_SEND_BUFFER + 1
    assert connection.send_text(MEDIA) is False
    frames = peer.frames()
    assert not [f for f in frames if f.opcode is Opcode.TEXT]
    close = close_of(frames)
    assert (close.code, close.reason) == (1013, BACKPRESSURE)
    assert connection.closing and session.ended
    assert connection.endpoint.closed_by_code[1013] == 1
    # nothing more goes out on a closing socket
    assert connection.send_text(MEDIA) is False
    assert peer.frames() == []


async def test_send_that_overfills_the_buffer_is_written_then_closes_with_1013(
        socket_pair: tuple[MediaConnection, FakeTransport, Peer]) -> None:
    connection, transport, peer = socket_pair
    transport.buffered = MAX_SEND_BUFFER - 10
    transport.grow = True
    assert connection.send_text(MEDIA) is True  # this one was sent ...
    frames = peer.frames()
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.CLOSE]
    assert frames[0].data == MEDIA.encode()
    close = close_of(frames)  # ... and then the socket is closed
    assert (close.code, close.reason) == (1013, BACKPRESSURE)
    assert connection.send_text(MEDIA) is False


async def test_peer_that_never_answers_the_close_is_dropped(
        socket_pair: tuple[MediaConnection, FakeTransport, Peer], monkeypatch: pytest.MonkeyPatch) -> None:
    connection, transport, _peer = socket_pair
    monkeypatch.setattr("voicecall.server.media_ws.CLOSE_TIMEOUT_S", 0.05)
    transport.buffered = MAX_SEND_BUFFER + 1
    assert connection.send_text(MEDIA) is False
    assert not transport.closed
    await asyncio.sleep(0.2)
    assert transport.closed


# -- the frame fast paths ------------------------------------------------------------------------
class Recorder:
    """A session that records what the connection hands it."""

    ended = False

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def handle(self, message: Any) -> None:
        self.messages.append(message)

    def end(self) -> None:
        self.ended = True


def media(payload: bytes) -> str:
    import base64
    return ('{"event":"media","sequenceNumber":"7","media":{"track":"inbound","chunk":"6",'
            f'"timestamp":"120","payload":"{base64.b64encode(payload).decode()}"}},"streamSid":"MZ1"}}')


def client_frames(peer: Peer, *messages: str | Frame) -> bytes:
    """Masked client frames, as a real client writes them."""
    for message in messages:
        if isinstance(message, Frame):
            peer.client.send_frame(message)
        else:
            peer.client.send_text(message.encode())
    return b"".join(peer.client.data_to_send())


def payloads(recorder: Recorder) -> list[bytes]:
    return [m.payload for m in recorder.messages]


@pytest.fixture
def streaming(socket_pair: tuple[MediaConnection, FakeTransport, Peer]
              ) -> tuple[MediaConnection, FakeTransport, Peer, Recorder]:
    connection, transport, peer = socket_pair
    recorder = Recorder()
    connection.session = recorder  # type: ignore[assignment]
    return connection, transport, peer, recorder


@pytest.mark.parametrize("cuts", [[], [1], [3, 9], [200], [401], list(range(1, 900, 7))])
async def test_inbound_frames_cut_anywhere_or_run_together_arrive_whole_and_in_order(
        streaming: tuple[MediaConnection, FakeTransport, Peer, Recorder], cuts: list[int]) -> None:
    connection, _transport, peer, recorder = streaming
    sent = [bytes([i]) * 160 for i in range(3)] + [bytes([9]) * 4000]  # the last needs a 16-bit length
    wire = client_frames(peer, *(media(p) for p in sent))
    edges = [0, *[c for c in cuts if c < len(wire)], len(wire)]
    for a, b in itertools.pairwise(edges):
        connection.data_received(wire[a:b])
    assert payloads(recorder) == sent
    assert not connection.closing


async def test_a_ping_between_media_frames_is_answered_and_the_media_still_arrives(
        streaming: tuple[MediaConnection, FakeTransport, Peer, Recorder]) -> None:
    connection, _transport, peer, recorder = streaming
    wire = client_frames(peer, media(b"\x01" * 160), Frame(Opcode.PING, b"hi"), media(b"\x02" * 160))
    connection.data_received(wire)
    assert payloads(recorder) == [b"\x01" * 160, b"\x02" * 160]
    pongs = [f for f in peer.frames() if f.opcode is Opcode.PONG]
    assert [p.data for p in pongs] == [b"hi"]


async def test_a_fragmented_message_is_reassembled_by_the_full_parser(
        streaming: tuple[MediaConnection, FakeTransport, Peer, Recorder]) -> None:
    connection, _transport, peer, recorder = streaming
    text = media(b"\x05" * 160).encode()
    wire = client_frames(peer, Frame(Opcode.TEXT, text[:50], fin=False), Frame(Opcode.CONT, text[50:]),
                         media(b"\x06" * 160))
    connection.data_received(wire)
    assert payloads(recorder) == [b"\x05" * 160, b"\x06" * 160]


async def test_an_oversized_frame_after_media_still_closes_with_1009(
        streaming: tuple[MediaConnection, FakeTransport, Peer, Recorder]) -> None:
    connection, _transport, peer, recorder = streaming
    wire = client_frames(peer, media(b"\x01" * 160), "x" * (70 * 1024))
    connection.data_received(wire)
    assert payloads(recorder) == [b"\x01" * 160]
    assert close_of(peer.frames()).code == 1009
    assert connection.closing


async def test_an_unmasked_client_frame_is_a_protocol_error_not_media(
        streaming: tuple[MediaConnection, FakeTransport, Peer, Recorder]) -> None:
    connection, _transport, peer, recorder = streaming
    text = media(b"\x01" * 160).encode()
    connection.data_received(bytes((0x81, 126, len(text) >> 8, len(text) & 0xFF)) + text)
    assert recorder.messages == []
    assert close_of(peer.frames()).code == 1002


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
async def test_outbound_frames_of_every_length_class_parse_as_one_text_message(
        socket_pair: tuple[MediaConnection, FakeTransport, Peer], size: int) -> None:
    connection, _transport, peer = socket_pair
    text = "a" * size
    assert connection.send_text(text) is True
    frames = peer.frames()
    assert [(f.opcode, f.fin, f.data) for f in frames] == [(Opcode.TEXT, True, text.encode())]


# -- client_ip -----------------------------------------------------------------------------------
PROXY = "10.0.0.1"
TRUSTING = MediaLimits(trust_forwarding_headers=True, trusted_proxy_ips=frozenset({PROXY, "127.0.0.1"}))


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers(list(pairs))


def test_without_trust_the_socket_address_is_used_even_with_forwarding_headers() -> None:
    forwarded = headers(("X-Forwarded-For", "203.0.113.5"), ("X-Real-IP", "203.0.113.6"))
    assert client_ip("198.51.100.2", forwarded, MediaLimits()) == "198.51.100.2"
    # the remote is listed as a proxy, but forwarding headers are not trusted
    listed = MediaLimits(trusted_proxy_ips=frozenset({PROXY}))
    assert client_ip(PROXY, forwarded, listed) == PROXY


def test_trusted_headers_from_a_remote_that_is_not_a_trusted_proxy_are_ignored() -> None:
    forwarded = headers(("X-Forwarded-For", "203.0.113.5"), ("X-Real-IP", "203.0.113.6"))
    assert client_ip("198.51.100.2", forwarded, TRUSTING) == "198.51.100.2"


@pytest.mark.parametrize(("xff", "expected"), [
    (["203.0.113.5"], "203.0.113.5"),
    (["198.51.100.7, 203.0.113.5, 10.0.0.1"], "203.0.113.5"),  # right-most untrusted hop
    (["198.51.100.7", "203.0.113.5, 10.0.0.1"], "203.0.113.5"),  # over several header lines
    (["198.51.100.7,203.0.113.5"], "203.0.113.5"),
    (["10.0.0.1, 127.0.0.1"], "10.0.0.1"),  # all hops trusted: the first
    (["garbage, 203.0.113.5, unknown, , 10.0.0.1"], "203.0.113.5"),  # garbage hops skipped
    (["203.0.113.5:4444, 198.51.100.7"], "198.51.100.7"),  # ip:port is not an IP
    (["::ffff:203.0.113.5"], "203.0.113.5"),
    (["2001:DB8::1"], "2001:db8::1"),
    (["[2001:db8::2]"], "2001:db8::2"),
])
def test_trusted_proxy_forwarded_for_gives_the_right_most_untrusted_hop(xff: list[str],
                                                                        expected: str) -> None:
    forwarded = headers(*[("X-Forwarded-For", v) for v in xff], ("X-Real-IP", "192.0.2.99"))
    assert client_ip(PROXY, forwarded, TRUSTING) == expected


def test_without_forwarded_for_x_real_ip_is_used() -> None:
    assert client_ip(PROXY, headers(("X-Real-IP", " 203.0.113.9 ")), TRUSTING) == "203.0.113.9"
    # an X-Forwarded-For with no usable hop counts as none
    garbage = headers(("X-Forwarded-For", "unknown, nonsense"), ("X-Real-IP", "203.0.113.9"))
    assert client_ip(PROXY, garbage, TRUSTING) == "203.0.113.9"


@pytest.mark.parametrize("real_ip", ["", "not-an-ip", "203.0.113.9:80", "999.1.1.1"])
def test_garbage_forwarding_values_fall_back_to_the_socket_address(real_ip: str) -> None:
    forwarded = headers(("X-Forwarded-For", "garbage"), ("X-Real-IP", real_ip))
    assert client_ip(PROXY, forwarded, TRUSTING) == PROXY
    assert client_ip(PROXY, headers(), TRUSTING) == PROXY


def test_ipv4_mapped_remote_is_normalized_and_matched_against_trusted_proxies() -> None:
    assert client_ip("::ffff:127.0.0.1", headers(), MediaLimits()) == "127.0.0.1"
    forwarded = headers(("X-Forwarded-For", "203.0.113.5"))
    assert client_ip("::ffff:127.0.0.1", forwarded, TRUSTING) == "203.0.113.5"
    assert client_ip("::FFFF:10.0.0.1", forwarded, TRUSTING) == "203.0.113.5"
