"""The server side of an open WebSocket connection (RFC 6455), without I/O.

`FrameStream` takes what a client sends after the opening handshake and turns it into messages:
it unmasks frames, reassembles fragmented messages, answers pings, runs the closing handshake,
and fails the connection on a protocol error with the close code the `websockets` library would
send (its sans-I/O `ServerProtocol`, with the UTF-8 check its connections make on text
messages):

- 1002: a reserved opcode or RSV bit, an unmasked frame, a control frame that is fragmented or
  over 125 bytes, a continuation frame outside a fragmented message or a data frame inside one,
  a close frame that interrupts a fragmented message or carries a bad code;
- 1007: a text message or close reason that is not UTF-8;
- 1009: a frame over the size cap (for a fragment, over what is left of the message's cap);
- 1006 (no close frame): the stream ended before a closing handshake.

It is driven the way `websockets` drives its protocols: `receive_data()` and `receive_eof()` with
what the network delivered, then `data_to_send()` for what must go out (pongs and close frames;
`b""` means "close the TCP connection"), and `state` for how far the closing handshake has
gone. The stream works from any offset in the byte stream: a frame cut anywhere is kept until
the rest arrives, and bytes are only ever appended, so a client sending one byte at a time costs
linear time. Outgoing data frames are built by the caller with `text_frame()`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "DEFAULT_MASK",
    "NATIVE_MASK",
    "Close",
    "FrameStream",
    "StreamState",
    "Unmask",
    "apply_mask_py",
    "close_frame",
    "text_frame",
]

Unmask = Callable[[bytes, bytes], bytes]
"""XORs a payload with a 4-byte masking key repeated over it."""

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset({CONT, TEXT, BINARY, CLOSE, PING, PONG})
_FIN = 0x80
_TEXT_FIN = _FIN | TEXT
_MASKED = 0x80
_RSV = 0x70
_MAX_CONTROL = 125
NO_STATUS = 1005
ABNORMAL = 1006
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def apply_mask_py(data: bytes, mask: bytes) -> bytes:
    """`data` XOR the 4-byte `mask` repeated: one big-integer XOR over the whole payload."""
    size = len(data)
    key = (mask * ((size + 3) >> 2))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def _native_mask() -> Unmask | None:
    try:
        from websockets.speedups import apply_mask
    except ImportError:  # websockets built without its C extension
        return None
    return apply_mask


NATIVE_MASK: Unmask | None = _native_mask()
"""The C implementation from `websockets.speedups`, when it is importable."""
DEFAULT_MASK: Unmask = NATIVE_MASK or apply_mask_py


class StreamState(enum.IntEnum):
    """As `websockets.protocol.State` after the handshake: OPEN until a close frame is sent
    or received or the connection fails, CLOSING until the TCP stream has ended, then CLOSED."""

    OPEN = 1
    CLOSING = 2
    CLOSED = 3


OPEN, CLOSING, CLOSED = StreamState.OPEN, StreamState.CLOSING, StreamState.CLOSED


class Close(NamedTuple):
    """The code and reason of a close frame (1005 for an empty one)."""

    code: int
    reason: str


class _Failure(Exception):
    """The client broke the protocol: fail the connection with this close code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _frame(first: int, payload: bytes) -> bytes:
    """An unmasked (server) frame: the first header byte (FIN, opcode), the length, the payload."""
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return bytes((first, 126, length >> 8, length & 0xFF)) + payload
    return bytes((first, 127)) + length.to_bytes(8, "big") + payload


def text_frame(payload: bytes) -> bytes:
    """A whole text message from the server; `payload` is its UTF-8."""
    return _frame(_TEXT_FIN, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame from the server."""
    return _frame(_FIN | CLOSE, code.to_bytes(2, "big") + reason.encode())


def parse_close(payload: bytes) -> Close:
    """The code and reason of a received close frame; a bad code or a short payload is a
    protocol error, a reason that is not UTF-8 raises UnicodeDecodeError."""
    if len(payload) >= 2:
        code = int.from_bytes(payload[:2], "big")
        reason = payload[2:].decode()
        if not (code in _SENDABLE_CODES or 3000 <= code < 5000):
            raise _Failure(PROTOCOL_ERROR, "invalid status code")
        return Close(code, reason)
    if not payload:
        return Close(NO_STATUS, "")
    raise _Failure(PROTOCOL_ERROR, "close frame too short")


class FrameStream:
    """One connection's frames from the 101 on (see the module docstring).

    `max_size` caps a message (the sum of its fragments) as `websockets`' `max_size` does;
    `unmask` is the masking function (the C one when importable).
    """

    __slots__ = ("_buffer", "_current_size", "_discarding", "_eof", "_fragment_text", "_fragments",
                 "_max_size", "_need", "_unmask", "close_rcvd", "close_sent", "eof_sent", "failure",
                 "state", "writes")

    def __init__(self, max_size: int, *, unmask: Unmask = DEFAULT_MASK) -> None:
        self._max_size = max_size
        self._unmask = unmask
        self.state = OPEN
        self.writes: list[bytes] = []
        """What must go out, in order; `b""` ends the TCP stream. Taken by `data_to_send()`."""
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.failure: Close | None = None
        """Why the connection failed (the close code sent, or 1006 when the stream ended)."""
        self.eof_sent = False
        self._buffer = bytearray()  # an incomplete frame
        self._need = 0  # bytes `_buffer` must hold before parsing can go on
        self._current_size: int | None = None  # bytes of the fragmented message so far
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._discarding = False  # after a close frame or a failure: input is dropped
        self._eof = False

    # -- input ---------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[str | bytes]:
        """The messages completed by `data`, in order: `str` for text, `bytes` for binary.
        Control frames are answered in `writes`; after a failure, the messages before it."""
        if self._eof:
            raise EOFError("stream ended")
        if self._discarding:
            return []
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return []
            data = bytes(buffer)
            buffer.clear()
        messages: list[str | bytes] = []
        try:
            pos = self._frames(data, messages)
        except _Failure as exc:
            self._fail(exc.code, exc.reason)
        except UnicodeDecodeError as exc:
            self._fail(INVALID_DATA, f"{exc.reason} at position {exc.start}")
        else:
            if pos < len(data):
                buffer += data[pos:]
        return messages

    def receive_eof(self) -> None:
        """The client ended the TCP stream."""
        if self._eof:
            return
        self._eof = True
        if self._discarding:
            self.state = CLOSED
        else:
            self._fail(ABNORMAL, "unexpected end of stream")

    # -- output --------------------------------------------------------------------------------
    def send_close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; nothing happens unless the state is OPEN."""
        if code not in _SENDABLE_CODES and not 3000 <= code < 5000:
            raise ValueError(f"invalid close code {code}")
        if self.state is OPEN:
            self.writes.append(close_frame(code, reason))
            self.close_sent = Close(code, reason)
            self.state = CLOSING

    def data_to_send(self) -> list[bytes]:
        writes, self.writes = self.writes, []
        return writes

    # -- parsing -------------------------------------------------------------------------------
    def _frames(self, data: bytes, messages: list[str | bytes]) -> int:
        """Parse the frames in `data` into `messages`; return where the first incomplete frame
        starts (`len(data)` if none is, or if the rest is to be discarded)."""
        size = len(data)
        pos = 0
        while pos < size:
            end = self._whole_text(data, pos, size, messages)
            if end < 0:
                end = self._frame(data, pos, size, messages)
                if end < 0:
                    break
            pos = end
        return pos

    def _whole_text(self, data: bytes, pos: int, size: int, messages: list[str | bytes]) -> int:
        """The usual frame, parsed at once: a complete, unfragmented, masked text frame with a
        7- or 16-bit length within the cap, outside a fragmented message. Returns its end, or
        -1 for anything else (left to `_frame`, with every check)."""
        if data[pos] != _TEXT_FIN or self._current_size is not None or size - pos < 6:
            return -1
        length = data[pos + 1] ^ _MASKED  # over 127 when the mask bit is not set
        head = pos + 2
        if length == 126:
            if size - pos < 8:
                return -1
            length = (data[head] << 8) | data[head + 1]
            head += 2
        elif length > 126:
            return -1
        end = head + 4 + length
        if end > size or length > self._max_size:
            return -1
        messages.append(self._unmask(data[head + 4:end], data[head:head + 4]).decode())
        return end

    def _frame(self, data: bytes, pos: int, size: int, messages: list[str | bytes]) -> int:
        """Parse the frame at `pos` (checks in the order `websockets` makes them) and return its
        end; -1 if it is incomplete (`_need` then says how much of it must be buffered)."""
        header = self._header(data, pos, size)
        if header is None:
            return -1
        first, head, length = header
        end = head + 4 + length
        if end > size:
            self._need = end - pos
            return -1
        payload = self._unmask(data[head + 4:end], data[head:head + 4])
        opcode = first & 0x0F
        fin = bool(first & _FIN)
        if first & _RSV:
            raise _Failure(PROTOCOL_ERROR, "reserved bits must be 0")
        if opcode >= CLOSE and (length > _MAX_CONTROL or not fin):
            raise _Failure(PROTOCOL_ERROR, "control frame too long" if length > _MAX_CONTROL
                           else "fragmented control frame")
        self._receive_frame(opcode, fin, payload, messages)
        return size if self._discarding else end

    def _header(self, data: bytes, pos: int, size: int) -> tuple[int, int, int] | None:
        """The first byte, where the masking key starts and the payload length of the frame at
        `pos`; None if its header is incomplete."""
        if size - pos < 2:
            self._need = 2
            return None
        first, second = data[pos], data[pos + 1]
        if first & 0x0F not in _OPCODES:
            raise _Failure(PROTOCOL_ERROR, "invalid opcode")
        if not second & _MASKED:
            raise _Failure(PROTOCOL_ERROR, "incorrect masking")
        length = second & 0x7F
        head = pos + 2
        if length >= 126:
            extra = 2 if length == 126 else 8
            if size - head < extra:
                self._need = 2 + extra
                return None
            length = int.from_bytes(data[head:head + extra], "big")
            head += extra
        self._check_size(length)
        return first, head, length

    def _check_size(self, length: int) -> None:
        current = self._current_size
        limit = self._max_size if current is None else self._max_size - current
        if length > limit:
            after = "" if current is None else f"after reading {current} bytes "
            raise _Failure(MESSAGE_TOO_BIG,
                           f"frame with {length} bytes {after}exceeds limit of {self._max_size} bytes")

    def _receive_frame(self, opcode: int, fin: bool, payload: bytes, messages: list[str | bytes]) -> None:
        if opcode in (TEXT, BINARY):
            if self._current_size is not None:
                raise _Failure(PROTOCOL_ERROR, "expected a continuation frame")
            if fin:
                messages.append(payload.decode() if opcode == TEXT else payload)
                return
            self._current_size = len(payload)
            self._fragments = [payload]
            self._fragment_text = opcode == TEXT
        elif opcode == CONT:
            self._continuation(fin, payload, messages)
        elif opcode == PING:
            self.writes.append(_frame(_FIN | PONG, payload))
        elif opcode == CLOSE:
            self._close_received(payload)

    def _continuation(self, fin: bool, payload: bytes, messages: list[str | bytes]) -> None:
        if self._current_size is None:
            raise _Failure(PROTOCOL_ERROR, "unexpected continuation frame")
        self._fragments.append(payload)
        if not fin:
            self._current_size += len(payload)
            return
        whole = b"".join(self._fragments)
        self._fragments = []
        self._current_size = None
        messages.append(whole.decode() if self._fragment_text else whole)

    def _close_received(self, payload: bytes) -> None:
        self.close_rcvd = close = parse_close(payload)
        if self._current_size is not None:
            raise _Failure(PROTOCOL_ERROR, "incomplete fragmented message")
        if self.state is OPEN:
            self.writes.append(_frame(_FIN | CLOSE, payload))  # echoed as received
            self.close_sent = close
            self.state = CLOSING
        self._end()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: a close frame with `code` if none was sent yet (none for 1006),
        then the end of the TCP stream; later input is dropped."""
        self.failure = Close(code, reason)
        if self.state is OPEN and code != ABNORMAL:
            self.writes.append(close_frame(code, reason))
            self.close_sent = Close(code, reason)
            self.state = CLOSING
        self._end()

    def _end(self) -> None:
        """A server closes the TCP connection once it has sent and received a close frame, or
        failed the connection; from then on, input is dropped until the stream ends."""
        if not self.eof_sent:
            self.eof_sent = True
            self.writes.append(b"")
        self._discarding = True
        self._buffer.clear()
        self._fragments = []
        if self._eof:
            self.state = CLOSED
