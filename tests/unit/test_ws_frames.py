"""`ws_frames.FrameStream` behaves as the `websockets` library's server protocol on any input.

Hypothesis builds client byte streams (masked and unmasked frames, fragmented messages, pings,
pongs, close frames with good and bad codes, invalid UTF-8, reserved bits and opcodes, frames
over the size cap, every length encoding), cuts them at arbitrary positions and feeds the pieces
to `FrameStream`; the same stream goes one byte at a time to `websockets.server.ServerProtocol`
with the reassembly and UTF-8 check its connections add. Both must produce the same messages, the
same bytes to send (pongs, close frames, the end of the TCP stream), and the same final state.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from voicecall.server.ws_frames import (
    NATIVE_MASK,
    FrameStream,
    StreamState,
    Unmask,
    apply_mask_py,
    text_frame,
)

MASKS: list[Unmask] = [apply_mask_py] + ([NATIVE_MASK] if NATIVE_MASK is not None else [])


@dataclass(frozen=True)
class Outcome:
    messages: list[str | bytes]
    sent: bytes
    eof_sent: bool
    state: int


def reference(stream: bytes, max_size: int, eof: bool) -> Outcome:
    """What a `websockets` server connection does with `stream`."""
    protocol = ServerProtocol(state=State.OPEN, max_size=max_size)
    messages: list[str | bytes] = []
    fragments: list[bytes] = []
    text = False
    sent = bytearray()
    eof_sent = False

    def drain() -> None:
        nonlocal eof_sent
        for chunk in protocol.data_to_send():
            if chunk:
                sent.extend(chunk)
            else:
                eof_sent = True

    for index in range(len(stream)):
        protocol.receive_data(stream[index:index + 1])
        for frame in protocol.events_received():
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                fragments, text = [frame.data], frame.opcode is Opcode.TEXT
            elif frame.opcode is Opcode.CONT:
                fragments.append(frame.data)
            else:
                continue
            if frame.fin:
                data = b"".join(fragments)
                if not text:
                    messages.append(data)
                    continue
                try:
                    messages.append(data.decode())
                except UnicodeDecodeError as exc:
                    protocol.fail(1007, f"{exc.reason} at position {exc.start}")
        drain()
    if eof:
        protocol.receive_eof()
        drain()
    return Outcome(messages, bytes(sent), eof_sent, int(protocol.state))


def ours(stream: bytes, cuts: list[int], max_size: int, eof: bool, unmask: Unmask) -> Outcome:
    """What `FrameStream` does with `stream` delivered in the pieces `cuts` makes."""
    frames = FrameStream(max_size, unmask=unmask)
    messages: list[str | bytes] = []
    sent = bytearray()
    eof_sent = False
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(stream)), len(stream)]
    for start, end in itertools.pairwise(bounds):
        if start == end:
            continue
        messages.extend(frames.receive_data(stream[start:end]))
        for chunk in frames.data_to_send():
            if chunk:
                sent.extend(chunk)
            else:
                eof_sent = True
    if eof:
        frames.receive_eof()
        for chunk in frames.data_to_send():
            if chunk:
                sent.extend(chunk)
            else:
                eof_sent = True
    return Outcome(messages, bytes(sent), eof_sent, int(frames.state))


# -- generated client streams --------------------------------------------------------------------

DATA_OPCODES = [0x0, 0x1, 0x2]
CONTROL_OPCODES = [0x8, 0x9, 0xA]
RESERVED_OPCODES = [0x3, 0x7, 0xB, 0xF]


def close_payloads() -> st.SearchStrategy[bytes]:
    codes = st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1011, 3000, 4999,
                             0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535])
    reasons = st.one_of(st.text(max_size=20).map(str.encode), st.binary(max_size=8))
    coded = st.builds(lambda code, reason: code.to_bytes(2, "big") + reason, codes, reasons)
    return st.one_of(st.just(b""), st.binary(min_size=1, max_size=1), coded)


def payloads() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.text(max_size=40).map(str.encode),
        st.binary(max_size=40),
        st.binary(min_size=100, max_size=300),
        st.text(min_size=1, max_size=3).map(lambda t: t.encode()[:-1]),  # a cut code point
    )


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["data"] * 6 + ["control"] * 3 + ["reserved"]))
    if kind == "data":
        opcode = draw(st.sampled_from(DATA_OPCODES))
        payload = draw(payloads())
        fin = draw(st.booleans())
    elif kind == "control":
        opcode = draw(st.sampled_from(CONTROL_OPCODES))
        payload = draw(close_payloads()) if opcode == 0x8 else draw(st.binary(max_size=130))
        fin = draw(st.sampled_from([True] * 9 + [False]))
    else:
        opcode = draw(st.sampled_from(RESERVED_OPCODES))
        payload = draw(st.binary(max_size=10))
        fin = True
    rsv = draw(st.sampled_from([0] * 12 + [0x10, 0x20, 0x40]))
    masked = draw(st.sampled_from([True] * 15 + [False]))
    mask = draw(st.binary(min_size=4, max_size=4)) if masked else b""
    length = len(payload)
    encoding = draw(st.sampled_from(["minimal"] * 6 + ["16", "64"]))
    if encoding == "64" or length >= 65536:
        size_bytes = bytes((127,)) + length.to_bytes(8, "big")
    elif encoding == "16" or length >= 126:
        size_bytes = bytes((126,)) + length.to_bytes(2, "big")
    else:
        size_bytes = bytes((length,))
    if masked:
        size_bytes = bytes((size_bytes[0] | 0x80,)) + size_bytes[1:]
        body = apply_mask_py(payload, mask) if payload else b""
    else:
        body = payload
    first = (0x80 if fin else 0) | rsv | opcode
    return bytes((first,)) + size_bytes + mask + body


@st.composite
def client_streams(draw: st.DrawFn) -> tuple[bytes, list[int], int, bool]:
    stream = b"".join(draw(st.lists(frames(), max_size=8)))
    cuts = draw(st.lists(st.integers(min_value=0, max_value=max(len(stream), 1)), max_size=6))
    max_size = draw(st.sampled_from([64, 200, 1 << 16]))
    return stream, cuts, max_size, draw(st.booleans())


@pytest.mark.parametrize("unmask", MASKS, ids=lambda m: "python" if m is apply_mask_py else "native")
@settings(max_examples=int(os.environ.get("WS_FRAMES_EXAMPLES", "400")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=client_streams())
def test_frame_stream_matches_the_websockets_server_protocol(
        unmask: Unmask, case: tuple[bytes, list[int], int, bool]) -> None:
    stream, cuts, max_size, eof = case
    assert ours(stream, cuts, max_size, eof, unmask) == reference(stream, max_size, eof)


@given(data=st.binary(max_size=2000), mask=st.binary(min_size=4, max_size=4))
def test_python_unmask_equals_the_native_one(data: bytes, mask: bytes) -> None:
    if NATIVE_MASK is None:
        pytest.fail("websockets.speedups is missing: the comparison needs the C implementation")
    assert apply_mask_py(data, mask) == NATIVE_MASK(data, mask)


def test_a_stream_cut_at_every_position_yields_the_same_messages() -> None:
    """Each two-piece split of a realistic media stream (text frames of several sizes, a ping, a
    fragmented message, a close) gives the messages and the close echo the whole stream gives."""
    stream = b"".join([
        _masked(0x81, b'{"event":"media"}'),
        _masked(0x89, b"ping"),
        _masked(0x01, b'{"event":'),
        _masked(0x80, b'"mark"}'),
        _masked(0x81, b"x" * 300),
        _masked(0x88, (1000).to_bytes(2, "big") + b"bye"),
    ])
    whole = ours(stream, [], 1 << 16, False, apply_mask_py)
    assert whole.messages == ['{"event":"media"}', '{"event":"mark"}', "x" * 300]
    assert whole.eof_sent and whole.state == StreamState.CLOSING
    for cut in range(1, len(stream)):
        assert ours(stream, [cut], 1 << 16, False, apply_mask_py) == whole, cut


def test_text_frame_is_what_websockets_sends() -> None:
    for size in (0, 125, 126, 65535, 65536):
        protocol = ServerProtocol(state=State.OPEN, max_size=None)
        protocol.send_text(b"a" * size)
        assert text_frame(b"a" * size) == b"".join(protocol.data_to_send())


def _masked(first: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    length = len(payload)
    size = bytes((0x80 | length,)) if length < 126 else bytes((0x80 | 126,)) + length.to_bytes(2, "big")
    return bytes((first,)) + size + mask + apply_mask_py(payload, mask)
