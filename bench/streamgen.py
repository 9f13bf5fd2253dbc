#!/usr/bin/env python3
"""streamgen: a cheap Twilio Media Streams load generator for bench/media_streams.py.

It plays Twilio against a loopback ws:// media-stream endpoint exactly as the reference load
generator (`../shared/bench/loadgen.py`) does, measures the same things with the same pass
criteria, and writes the same JSON shape, at a fraction of its CPU per stream: on a 2-core VM the
reference saturates its core from about 150 streams, which hides the gateway's own limit.

Per call: an HTTP/1.1 upgrade (a random Sec-WebSocket-Key; the 101 and Sec-WebSocket-Accept are
checked), `connected`, `start` (callSid and customParameters from --calls-file), one 160-byte
mu-law `media` frame every 20 ms (sequenceNumber, chunk and timestamp increasing), `mark` echoed
once a playout clock has played the audio queued before it, `clear` flushing that queue (pending
marks come back at once), `stop` and a close handshake at the end. Every outbound `media`
message from the server is timestamped when its bytes are read.

Reported per trial (the steady window: all N calls up, after --warmup, to the end of
--duration): pooled and per-stream gap jitter |gap - previous frame's length|, stalls (gap >
previous frame's length + --stall-ms), delivery (audio received / window), pdv (how far each
frame arrives behind the earliest schedule its audio could have had, judged from the window's
frames before it), time from `start` to the first media frame, the server's CPU and RSS (its
process tree), per-core host CPU, and this process's own CPU and send lateness, with a
saturation flag. Pass: pooled jitter p99 <= --max-p99-ms, stalls <= --max-stalls, no call
errors, every stream got media and delivered >= --min-delivery of real time.

Why it is cheaper: uvloop; one raw asyncio.Protocol per call (no WebSocket library); one shared
clock, a timer chain over --send-slots phases of each 20 ms, that writes the due frame of every
call in the phase; client frames built with bytes ops under a per-connection mask; a minimal
incremental parser of the server's frames that reads a `media` message's payload length without
json (other events go through json); GC off while measuring.

Every wait has a timeout and a trial is bounded by --trial-timeout. Only loopback ws:// URLs.

    .venv/bin/python bench/streamgen.py --url ws://127.0.0.1:PORT/voice/stream --ramp 100 \\
        --calls-file calls.json --server-pid PID --cpu 1 --out out.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import ipaddress
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from array import array
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is optional (then the root process only, via /proc)
    psutil = None

FRAME_MS = 20
FRAME_S = FRAME_MS / 1000.0
MULAW_BYTES_PER_S = 8000
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 1 << 20  # larger server messages are a protocol error here
MAX_HANDSHAKE = 1 << 16
EARLY_OK_S = 0.001  # uvloop's timers have 1 ms resolution: a slot woken this early is sent
STATS_SAMPLE_S = 0.5
MEDIA_PREFIX = b'{"event":"media",'
PAYLOAD_KEY = b'"payload":"'
MEDIA_HEAD = (b'{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
              b'"timestamp":"%d","payload":"')
MEDIA_TAIL = b'"},"streamSid":"%s"}'

now = time.monotonic


# =============================================================================================
# Inbound audio and WebSocket framing
# =============================================================================================


def mulaw_encode(samples: np.ndarray) -> bytes:
    """G.711 mu-law of 16-bit linear samples."""
    x = np.clip(samples.astype(np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.abs(x) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    out: np.ndarray = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return bytes(out.astype(np.uint8))


def inbound_payloads() -> list[bytes]:
    """One second of a quiet 300 Hz tone: 50 base64 payloads of 160 mu-law bytes (20 ms)."""
    t = np.arange(MULAW_BYTES_PER_S) / MULAW_BYTES_PER_S
    ulaw = mulaw_encode((3000 * np.sin(2 * np.pi * 300 * t)).astype(np.int32))
    step = MULAW_BYTES_PER_S * FRAME_MS // 1000
    return [base64.b64encode(ulaw[i:i + step]) for i in range(0, len(ulaw), step)]


def b64_decoded_len(length: int, tail: bytes) -> int:
    """Decoded size of `length` base64 characters ending in `tail` (its last two)."""
    if length == 0:
        return 0
    pad = 2 if tail.endswith(b"==") else (1 if tail.endswith(b"=") else 0)
    return length * 3 // 4 - pad


class Masker:
    """Client frames (RFC 6455 5.3) under one masking key: the payload XORed with the key as one
    big-integer XOR (C speed) against the key repeated to its length (cached per length and
    phase). A connection's media frames mask only their head (the digits that change); the
    payload and the tail after it are masked once per connection, in each of the 4 phases."""

    __slots__ = ("_heads", "_keys", "key")

    def __init__(self, key: bytes) -> None:
        assert len(key) == 4
        self.key = key
        self._keys: dict[int, int] = {}  # length * 4 + phase -> the key repeated, as an int
        self._heads: dict[int, bytes] = {}  # payload length -> text frame header + key

    def mask(self, data: bytes, phase: int = 0) -> bytes:
        """`data` XORed with the key, starting at key byte `phase` (its offset in the frame)."""
        n = len(data)
        key = self._keys.get(n * 4 + phase)
        if key is None:
            rotated = self.key[phase:] + self.key[:phase]
            key = self._keys[n * 4 + phase] = int.from_bytes((rotated * (n // 4 + 1))[:n], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")

    def header(self, opcode: int, length: int) -> bytes:
        """Frame header (FIN, opcode, MASK, length) and the key."""
        if length < 126:
            head = bytes((0x80 | opcode, 0x80 | length))
        elif length < 1 << 16:
            head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
        return head + self.key

    def text_header(self, length: int) -> bytes:
        head = self._heads.get(length)
        if head is None:
            head = self._heads[length] = self.header(1, length)
        return head

    def text(self, payload: bytes) -> bytes:
        return self.text_header(len(payload)) + self.mask(payload)

    def frame(self, opcode: int, payload: bytes) -> bytes:
        return self.header(opcode, len(payload)) + self.mask(payload)


class MediaFrames:
    """One connection's inbound `media` frames, as the reference formats them: the head with
    sequenceNumber, chunk and timestamp is built and masked per frame; the payload (one of 50,
    cycling) and the tail with the streamSid come pre-masked for the 4 phases the head's length
    can leave them at."""

    __slots__ = ("_by_len", "masker", "n", "tail_len", "tails")

    def __init__(self, masker: Masker, payloads: Sequence[bytes], stream_sid: bytes) -> None:
        self.masker = masker
        self.n = len(payloads)
        rests = [p + MEDIA_TAIL % stream_sid for p in payloads]
        self.tail_len = len(rests[0]) if rests else 0
        assert rests and all(len(r) == self.tail_len for r in rests)
        self.tails = [tuple(masker.mask(r, phase) for phase in range(4)) for r in rests]
        self._by_len: dict[int, tuple[bytes, int]] = {}  # head length -> (frame header + key, head key)

    def _prepare(self, h: int) -> tuple[bytes, int]:
        key = self.masker.key
        entry = (self.masker.header(1, h + self.tail_len), int.from_bytes((key * (h // 4 + 1))[:h], "little"))
        self._by_len[h] = entry
        return entry

    def frame(self, seq: int, chunk: int, _from: Any = int.from_bytes, _head: bytes = MEDIA_HEAD) -> bytes:
        """The frame of 0-based `chunk` (its chunk field is chunk + 1, its timestamp chunk * 20)."""
        head = _head % (seq, chunk + 1, chunk * FRAME_MS)
        h = len(head)
        entry = self._by_len.get(h) or self._prepare(h)
        masked: bytes = (_from(head, "little") ^ entry[1]).to_bytes(h, "little")
        return entry[0] + masked + self.tails[chunk % self.n][h & 3]


def accept_key(key: bytes) -> str:
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode("ascii")


class InvalidStatus(Exception):
    pass


class InvalidHandshake(Exception):
    pass


class InvalidMessage(Exception):
    pass


class ProtocolError(Exception):
    pass


# =============================================================================================
# One simulated Twilio call
# =============================================================================================


class Stream(asyncio.Protocol):
    """One call's WebSocket, as a raw protocol: upgrade, frame parser, Twilio playout clock."""

    __slots__ = ("account_sid", "active", "arr", "bad_json", "buf", "call_sid", "chunk", "clears",
                 "close_code", "close_sent", "closed", "custom", "error", "fast", "frag", "handshake", "hbuf",
                 "idx", "key", "marks_in", "marks_out", "masker", "media", "nbytes", "open", "other_events",
                 "pending_marks", "playout_end", "request", "send_skipped", "sent", "seq", "sid",
                 "stream_sid", "t_connect", "t_start", "transport")

    def __init__(self, idx: int, call_sid: str, account_sid: str, custom: dict[str, Any],
                 host: str, path: str, headers: Sequence[tuple[str, str]],
                 payloads: Sequence[bytes]) -> None:
        self.idx = idx
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.sid = self.stream_sid.encode("ascii")
        self.custom = custom
        self.key = base64.b64encode(os.urandom(16))
        self.masker = Masker(os.urandom(4))
        self.media = MediaFrames(self.masker, payloads, self.sid)
        self.request = self._request(host, path, headers)
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] | None = None
        self.open = False
        self.fast = False  # open, no partial frame, no fragmented message: data_received's hot path
        self.hbuf = b""
        self.buf = b""
        self.frag: list[bytes] | None = None
        self.seq = 0
        self.chunk = 0
        self.t_connect: float | None = None
        self.t_start: float | None = None
        self.arr = array("d")     # arrival times of the server's media messages (monotonic s)
        self.nbytes = array("I")  # decoded payload bytes of each
        self.marks_in = 0
        self.marks_out = 0
        self.clears = 0
        self.playout_end = 0.0
        self.pending_marks: list[tuple[float, Any]] = []
        self.send_skipped = 0
        self.sent = 0
        self.error: str | None = None
        self.close_code: int | None = None
        self.close_sent = False
        self.other_events = 0
        self.bad_json = 0
        self.active = False

    def _request(self, host: str, path: str, headers: Sequence[tuple[str, str]]) -> bytes:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {self.key.decode('ascii')}", "Sec-WebSocket-Version: 13",
                 "User-Agent: Twilio.TmeWs/1.0"]
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self.handshake = loop.create_future()
        self.closed = loop.create_future()
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes, _now: Any = time.monotonic, _prefix: bytes = MEDIA_PREFIX,
                      _key: bytes = PAYLOAD_KEY, _byte_s: float = 1.0 / MULAW_BYTES_PER_S) -> None:
        t = _now()
        # The hot path, inlined: the read is exactly one unfragmented text frame with 126..65535
        # bytes of payload that is a media message, and no partial frame is waiting.
        if (self.fast and len(data) > 4 and data[0] == 0x81 and data[1] == 126
                and (data[2] << 8 | data[3]) + 4 == len(data) and data.startswith(_prefix, 4)):
            i = data.find(_key, 21) + 11
            j = data.find(b'"', i) if i > 10 else -1
            if j > 0 and data.find(b"\\", i, j) < 0:
                nb = (j - i) * 3 // 4 - (2 if data[j - 2] == 61 else 1 if data[j - 1] == 61 else 0)
                self.arr.append(t)
                self.nbytes.append(nb)
                end = self.playout_end
                self.playout_end = (end if end > t else t) + nb * _byte_s
                return
        if self.open:
            self.feed(data, t)
        else:
            self._handshake_data(data, t)

    def eof_received(self) -> bool | None:
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.active = False
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(InvalidMessage("connection closed during the opening handshake"))
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    # -- opening handshake ---------------------------------------------------------------------
    def _handshake_data(self, data: bytes, t: float) -> None:
        self.hbuf += data
        end = self.hbuf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.hbuf) > MAX_HANDSHAKE:
                self._fail_handshake(InvalidMessage("response headers too long"))
            return
        head, rest = self.hbuf[:end].decode("latin-1"), self.hbuf[end + 4:]
        self.hbuf = b""
        lines = head.split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
            self._fail_handshake(InvalidMessage(f"bad status line {lines[0][:60]!r}"))
            return
        code = int(status[1])
        if code != 101:
            self._fail_handshake(InvalidStatus(f"server rejected WebSocket connection: HTTP {code}"))
            return
        hdrs: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._fail_handshake(InvalidMessage(f"bad header line {line[:60]!r}"))
                return
            key = name.strip().lower()
            hdrs[key] = f"{hdrs[key]}, {value.strip()}" if key in hdrs else value.strip()
        problem = None
        if hdrs.get("upgrade", "").lower() != "websocket":
            problem = f"Upgrade: {hdrs.get('upgrade')!r}"
        elif "upgrade" not in [v.strip().lower() for v in hdrs.get("connection", "").split(",")]:
            problem = f"Connection: {hdrs.get('connection')!r}"
        elif hdrs.get("sec-websocket-accept") != accept_key(self.key):
            problem = f"Sec-WebSocket-Accept: {hdrs.get('sec-websocket-accept')!r}"
        elif "sec-websocket-extensions" in hdrs:
            problem = "an extension was negotiated that was not offered"
        if problem:
            self._fail_handshake(InvalidHandshake(problem))
            return
        self.open = self.fast = True
        assert self.handshake is not None
        if not self.handshake.done():
            self.handshake.set_result(None)
        if rest:
            self.feed(rest, t)

    def _fail_handshake(self, exc: Exception) -> None:
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    # -- the server's frames -------------------------------------------------------------------
    def feed(self, data: bytes, t: float) -> None:
        """Parses whole frames out of `data` (after what an earlier read left); all stamped `t`."""
        if self.buf:
            data = self.buf + data
            self.buf = b""
        n = len(data)
        pos = 0
        while n - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            ln = b1 & 0x7F
            if ln < 126:
                hl = 2
            elif ln == 126:
                if n - pos < 4:
                    break
                ln = (data[pos + 2] << 8) | data[pos + 3]
                hl = 4
            else:
                if n - pos < 10:
                    break
                ln = int.from_bytes(data[pos + 2:pos + 10], "big")
                hl = 10
            if b1 & 0x80 or b0 & 0x70:
                self._protocol_error("masked frame from the server" if b1 & 0x80 else "RSV bits set")
                return
            if ln > MAX_MESSAGE:
                self._protocol_error(f"frame of {ln} bytes")
                return
            end = pos + hl + ln
            if end > n:
                break
            payload = data[pos + hl:end]
            pos = end
            op = b0 & 0x0F
            if op == 1 and b0 & 0x80 and self.frag is None:
                self._message(payload, t)
            else:
                self._frame(b0 & 0x80, op, payload, t)
                if not self.open:
                    return
        if pos < n:
            self.buf = data[pos:]
        self.fast = self.open and not self.buf and self.frag is None

    def _frame(self, fin: int, op: int, payload: bytes, t: float) -> None:
        if op in (1, 2):
            if self.frag is not None:
                self._protocol_error("new message inside a fragmented one")
            elif fin:
                self._message(payload, t)
            else:
                self.frag = [payload]
        elif op == 0:
            if self.frag is None:
                self._protocol_error("continuation without a message")
                return
            self.frag.append(payload)
            if sum(len(p) for p in self.frag) > MAX_MESSAGE:
                self._protocol_error("message too long")
            elif fin:
                whole = b"".join(self.frag)
                self.frag = None
                self._message(whole, t)
        elif op == 8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.active = self.open = self.fast = False
            if not self.close_sent:
                self.close_sent = True
                self._write(self.masker.frame(8, payload[:2]))
            if self.transport is not None:
                self.transport.close()
        elif op == 9:
            self._write(self.masker.frame(10, payload))
        elif op != 10:
            self._protocol_error(f"opcode {op}")

    def _protocol_error(self, what: str) -> None:
        self.error = self.error or f"recv: ProtocolError: {what}"[:200]
        self.active = self.open = self.fast = False
        if self.transport is not None:
            self.transport.abort()

    def _message(self, msg: bytes, t: float) -> None:
        if msg.startswith(MEDIA_PREFIX):  # the hot path: no json for the server's audio
            i = msg.find(PAYLOAD_KEY, 17)
            if i > 0:
                i += 11
                j = msg.find(b'"', i)
                if j >= 0 and msg.find(b"\\", i, j) < 0:
                    self._media(t, b64_decoded_len(j - i, msg[j - 2:j]))
                    return
        try:
            obj = json.loads(msg)
            event = obj.get("event")
        except (ValueError, AttributeError):
            self.bad_json += 1
            return
        if event == "media":
            payload = (obj.get("media") or {}).get("payload") or ""
            self._media(t, b64_decoded_len(len(payload), payload[-2:].encode("ascii", "replace")))
        elif event == "mark":
            self.marks_in += 1
            name = (obj.get("mark") or {}).get("name")
            self.pending_marks.append((self.playout_end if self.playout_end > t else t, name))
        elif event == "clear":
            self.clears += 1
            self.playout_end = t
            self.pending_marks = [(t, name) for _, name in self.pending_marks]
        else:
            self.other_events += 1

    def _media(self, t: float, nb: int) -> None:
        self.arr.append(t)
        self.nbytes.append(nb)
        end = self.playout_end
        self.playout_end = (end if end > t else t) + nb / MULAW_BYTES_PER_S

    # -- what Twilio sends -----------------------------------------------------------------------
    def _write(self, frame: bytes) -> None:
        tr = self.transport
        if tr is not None and not tr.is_closing():
            tr.write(frame)

    def send_json(self, obj: dict[str, Any]) -> None:
        self._write(self.masker.text(json.dumps(obj).encode("utf-8")))

    def next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    def send_start(self, tracks: list[str]) -> None:
        self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.send_json({
            "event": "start", "sequenceNumber": self.next_seq(),
            "start": {"accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
                      "tracks": tracks, "customParameters": self.custom,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
            "streamSid": self.stream_sid})

    def tick(self, t: float, buffer_limit: int) -> None:
        """This call's due 20 ms: one media frame, then the marks whose audio has played."""
        tr = self.transport
        try:
            if tr.get_write_buffer_size() > buffer_limit:  # type: ignore[union-attr]
                self.send_skipped += 1
            else:
                ch = self.chunk
                self.chunk = ch + 1
                seq = self.seq = self.seq + 1
                tr.write(self.media.frame(seq, ch))  # type: ignore[union-attr]
                self.sent += 1
            if self.pending_marks and self.pending_marks[0][0] <= t:
                due = [m for m in self.pending_marks if m[0] <= t]
                self.pending_marks = [m for m in self.pending_marks if m[0] > t]
                for _, name in due:
                    self.send_json({"event": "mark", "sequenceNumber": self.next_seq(),
                                    "streamSid": self.stream_sid, "mark": {"name": name}})
                    self.marks_out += 1
        except Exception as exc:  # a failed send is a data point
            self.active = False
            self.error = self.error or f"send: {exc.__class__.__name__}: {exc}"[:200]

    async def close(self, wait_s: float) -> None:
        """`stop` (if still streaming), then the closing handshake; bounded by `wait_s`."""
        if self.transport is None or self.closed is None:
            return
        if self.active:
            self.send_json({"event": "stop", "sequenceNumber": self.next_seq(), "streamSid": self.stream_sid,
                            "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
        self.active = False
        if not self.close_sent and not self.transport.is_closing():
            self.close_sent = True
            self._write(self.masker.frame(8, (1000).to_bytes(2, "big")))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), wait_s)
        except TimeoutError:
            self.transport.abort()


# =============================================================================================
# Measurements
# =============================================================================================


def percentiles(values: Any, qs: Sequence[int] = (50, 95, 99)) -> dict[str, Any]:
    """Linear-interpolation percentiles (numpy's default), max and count; values in ms."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        out: dict[str, Any] = {f"p{q}": None for q in qs}
        out.update(max=None, n=0)
        return out
    ps = np.percentile(arr, list(qs))
    out = {f"p{q}": round(float(v), 3) for q, v in zip(qs, ps, strict=True)}
    out.update(max=round(float(arr.max()), 3), n=int(arr.size))
    return out


def stream_window(arr: Sequence[float], nbytes: Sequence[int], w0: float, w1: float,
                  stall_ms: float) -> dict[str, Any]:
    """One stream's arrivals (s) and payload sizes, judged over the window [w0, w1]:
    gaps (ms) between consecutive frames both in the window, their jitter |gap - previous frame's
    length|, stalls (gap > previous length + stall_ms), pdv per in-window frame (arrival minus
    its media time, less the smallest such offset so far in the window), delivered audio (ms)."""
    t = np.asarray(arr, dtype=np.float64)
    d = np.asarray(nbytes, dtype=np.float64) / MULAW_BYTES_PER_S
    media_t = np.concatenate(([0.0], np.cumsum(d)[:-1])) if d.size else d
    inw = (t >= w0) & (t <= w1)
    idx = np.flatnonzero(inw)
    empty = np.zeros(0)
    if idx.size == 0:
        return {"frames": 0, "delivered_ms": 0.0, "gaps": empty, "jitter": empty, "pdv": empty, "stalls": 0}
    off = t[idx] - media_t[idx]
    pdv = (off - np.minimum.accumulate(off)) * 1000.0
    pair = idx[1:][inw[idx[1:] - 1]]  # frame k in the window whose previous frame is too
    gaps = (t[pair] - t[pair - 1]) * 1000.0
    expected = d[pair - 1] * 1000.0
    jitter = np.abs(gaps - expected)
    stalls = int(np.count_nonzero(gaps > expected + stall_ms))
    return {"frames": int(idx.size), "delivered_ms": float(d[idx].sum() * 1000.0), "gaps": gaps,
            "jitter": jitter, "pdv": pdv, "stalls": stalls}


def analyze(streams: Sequence[Stream], n: int, w0: float, w1: float, a: argparse.Namespace,
            connect_errors: dict[str, int]) -> dict[str, Any]:
    win_ms = (w1 - w0) * 1000.0
    jit_all: list[np.ndarray] = []
    pdv_all: list[np.ndarray] = []
    gap_all: list[np.ndarray] = []
    per_stream: list[dict[str, Any]] = []
    errors: dict[str, int] = {}
    first_frame: list[float] = []
    delivery: list[float] = []
    stalls_total = frames_total = 0
    sizes: dict[int, int] = {}
    for c in streams:
        if c.error:
            key = ":".join(c.error.split(":")[:2])
            errors[key] = errors.get(key, 0) + 1
        ff = None
        if c.t_start is not None and len(c.arr):
            ff = (c.arr[0] - c.t_start) * 1000.0
            first_frame.append(ff)
        w = stream_window(c.arr, c.nbytes, w0, w1, a.stall_ms)
        frames_total += w["frames"]
        stalls_total += w["stalls"]
        jit_all.append(w["jitter"])
        pdv_all.append(w["pdv"])
        gap_all.append(w["gaps"])
        ratio = w["delivered_ms"] / win_ms if win_ms > 0 else None
        delivery.append(ratio if ratio is not None else 0.0)
        js = percentiles(w["jitter"], (50, 95, 99))
        per_stream.append({
            "i": c.idx, "frames": w["frames"], "delivery": round(ratio, 4) if ratio is not None else None,
            "jitter_p50": js["p50"], "jitter_p95": js["p95"], "jitter_p99": js["p99"],
            "jitter_max": js["max"],
            "pdv_max": round(float(w["pdv"].max()), 3) if w["pdv"].size else None,
            "stalls": w["stalls"], "first_frame_ms": round(ff, 1) if ff is not None else None,
            "error": c.error, "close_code": c.close_code,
        })
        if len(c.nbytes):
            vals, counts = np.unique(np.asarray(c.nbytes), return_counts=True)
            for v, k in zip(vals.tolist(), counts.tolist(), strict=True):
                sizes[v] = sizes.get(v, 0) + k
    jit_p = percentiles(np.concatenate(jit_all) if jit_all else [], (50, 95, 99))
    res: dict[str, Any] = {
        "n": n,
        "pooled": {
            "jitter_ms": jit_p,
            "gap_ms": percentiles(np.concatenate(gap_all) if gap_all else [], (1, 50, 99)),
            "pdv_ms": percentiles(np.concatenate(pdv_all) if pdv_all else [], (50, 99)),
            "stalls": stalls_total,
            "frames": frames_total,
            "frames_per_s": round(frames_total / (win_ms / 1000.0), 1) if win_ms > 0 else None,
            "media_payload_bytes": {str(k): v for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:5]},
            "delivery_min": round(min(delivery), 4) if delivery else None,
            "delivery_mean": round(sum(delivery) / len(delivery), 4) if delivery else None,
            "first_frame_ms": percentiles(first_frame, (50, 95)),
            "streams_with_no_frames": sum(1 for c in streams if len(c.arr) == 0),
            "marks_received": sum(c.marks_in for c in streams),
            "marks_echoed": sum(c.marks_out for c in streams),
            "clears": sum(c.clears for c in streams),
        },
        "worst_stream": {
            "jitter_p99": max((s["jitter_p99"] or 0.0 for s in per_stream), default=None),
            "jitter_max": max((s["jitter_max"] or 0.0 for s in per_stream), default=None),
            "stalls": max((s["stalls"] for s in per_stream), default=None),
            "pdv_max": max((s["pdv_max"] or 0.0 for s in per_stream), default=None),
        },
        "errors": errors,
    }
    if connect_errors:
        res["connect_errors"] = dict(connect_errors)
    if a.per_stream:
        res["streams"] = per_stream
    res["fail_reasons"] = verdict(res, delivery, a)
    res["pass"] = not res["fail_reasons"]
    return res


def verdict(res: dict[str, Any], delivery: Sequence[float], a: argparse.Namespace) -> list[str]:
    reasons = []
    pooled = res["pooled"]
    if res["errors"]:
        reasons.append(f"{sum(res['errors'].values())} call errors")
    if pooled["streams_with_no_frames"]:
        reasons.append(f"{pooled['streams_with_no_frames']} streams got no media")
    p99 = pooled["jitter_ms"]["p99"]
    if p99 is None:
        reasons.append("no gaps measured")
    elif p99 > a.max_p99_ms:
        reasons.append(f"jitter p99 {p99} ms > {a.max_p99_ms}")
    if pooled["stalls"] > a.max_stalls:
        reasons.append(f"{pooled['stalls']} stalls")
    if delivery and min(delivery) < a.min_delivery:
        reasons.append(f"min delivery {min(delivery):.3f} < {a.min_delivery}")
    return reasons


# =============================================================================================
# The server's and the host's CPU
# =============================================================================================


class ProcSampler:
    """CPU seconds and RSS of the server's process tree (the tree is re-read on full samples)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._procs: list[Any] = []

    def sample(self, refresh: bool = True) -> dict[str, float] | None:
        if self.pid is None:
            return None
        t = now()
        if psutil is None:
            return self._proc_sample(t)
        if refresh or not self._procs:
            try:
                root = psutil.Process(self.pid)
                self._procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                self._procs = []
        cpu = 0.0
        rss = 0
        for p in self._procs:
            try:
                ct = p.cpu_times()
                cpu += ct.user + ct.system
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        return {"t": t, "cpu_s": cpu, "rss": rss}

    def _proc_sample(self, t: float) -> dict[str, float] | None:
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        clk = os.sysconf("SC_CLK_TCK")
        return {"t": t, "cpu_s": (int(fields[11]) + int(fields[12])) / clk,
                "rss": int(fields[21]) * os.sysconf("SC_PAGE_SIZE")}


def cpu_pct(a: dict[str, float] | None, b: dict[str, float] | None) -> float | None:
    if not a or not b or b["t"] <= a["t"]:
        return None
    return round(100.0 * (b["cpu_s"] - a["cpu_s"]) / (b["t"] - a["t"]), 1)


def read_proc_stat() -> dict[str, tuple[int, int, int, int]]:
    """Per-CPU jiffies: {cpuN: (busy, idle incl. iowait, steal, total)}."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if not line.startswith("cpu") or line.startswith("cpu "):
                    continue
                parts = line.split()
                v = [int(x) for x in parts[1:]] + [0] * 10
                user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
                out[parts[0]] = (user + nice + system + irq + softirq, idle + iowait, steal, sum(v[:8]))
    except OSError:
        pass
    return out


def host_cpu_delta(a: dict[str, tuple[int, int, int, int]],
                   b: dict[str, tuple[int, int, int, int]]) -> dict[str, dict[str, float]]:
    res = {}
    for k in sorted(b):
        if k not in a or b[k][3] - a[k][3] <= 0:
            continue
        total = b[k][3] - a[k][3]
        res[k] = {"busy_pct": round(100.0 * (b[k][0] - a[k][0]) / total, 1),
                  "steal_pct": round(100.0 * (b[k][2] - a[k][2]) / total, 1)}
    return res


def find_listener_pid(port: int) -> int | None:
    if psutil is None:
        return None
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return int(c.pid)
    except (psutil.Error, PermissionError):
        return None
    return None


CALIBRATE = ("import time\nt=time.perf_counter();x=0\nfor i in range(1000000): x+=i*i%7\n"
             "print(1.0/(time.perf_counter()-t))")


def cpu_speed(cpus: set[int] | None) -> float | None:
    """Million iterations/s of a fixed pure-Python loop on these CPUs (the same loop as the
    reference's, so the figures compare; a VM's speed drifts)."""
    def pre() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
    try:
        r = subprocess.run([sys.executable, "-c", CALIBRATE], capture_output=True, text=True, timeout=10,
                           preexec_fn=pre, check=False)
        return round(float(r.stdout.strip()), 2)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


# =============================================================================================
# One trial
# =============================================================================================


class Trial:
    def __init__(self, a: argparse.Namespace, n: int, sampler: ProcSampler) -> None:
        self.a = a
        self.n = n
        self.sampler = sampler
        u = urlparse(a.url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        host_header = f"{u.hostname}:{self.port}" if u.port else (u.hostname or "127.0.0.1")
        headers = [(k.strip(), v.strip()) for k, v in (h.split(":", 1) for h in a.header)]
        account_sid = "AC" + uuid.uuid4().hex
        base_custom = json.loads(a.custom_params) if a.custom_params else {}
        entries: list[dict[str, Any]] = []
        if a.calls_file:
            with open(a.calls_file) as f:
                entries = json.load(f)
            if len(entries) < n:
                raise SystemExit(f"--calls-file has {len(entries)} calls, the trial needs {n}")
        payloads = inbound_payloads()
        self.streams: list[Stream] = []
        for i in range(n):
            custom = dict(base_custom)
            call_sid = "CA" + uuid.uuid4().hex
            if entries:
                custom.update(entries[i].get("customParameters") or {})
                call_sid = entries[i].get("callSid", call_sid)
            custom = {k: v.replace("{i}", str(i)) if isinstance(v, str) else v for k, v in custom.items()}
            self.streams.append(Stream(i, call_sid, account_sid, custom, host_header, path, headers,
                                       payloads))
        self.tracks = a.tracks.split(",")
        self.nslots = max(1, a.send_slots)
        self.slots: list[list[Stream]] = [[] for _ in range(self.nslots)]
        self.slot_s = FRAME_S / self.nslots
        self.lateness = array("d")
        self.t_base = 0.0
        self.k = 0
        self.t_stop: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.sampler_timer: asyncio.TimerHandle | None = None
        self.samples: list[dict[str, float]] = []
        self.connect_errors: dict[str, int] = {}

    # -- the shared 20 ms clock ----------------------------------------------------------------
    def _tick(self) -> None:
        """Sends every due slot (one phase of 20 ms: a media frame to each of its calls), then
        waits for the next. After a delay the missed slots go out at once, as the reference's
        per-slot tasks would."""
        limit = self.a.send_buffer_limit
        slots, nslots, lat = self.slots, self.nslots, self.lateness
        t = now()
        while True:
            due = self.t_base + self.k * self.slot_s
            if due - t > EARLY_OK_S:
                for _ in range(nslots - 1):  # no wakeups for empty slots (fewer than --send-slots calls)
                    if slots[self.k % nslots]:
                        break
                    self.k += 1
                due = self.t_base + self.k * self.slot_s
                self.timer = asyncio.get_running_loop().call_at(due, self._tick)
                return
            if self.t_stop is not None and t >= self.t_stop:
                self.timer = None
                return
            slot = slots[self.k % nslots]
            self.k += 1
            if slot:
                lat.append(t - due)
                for c in slot:
                    if c.active:
                        c.tick(t, limit)
                t = now()

    def _sample(self) -> None:
        s = self.sampler.sample(refresh=False)
        if s:
            self.samples.append(s)
        self.sampler_timer = asyncio.get_running_loop().call_later(STATS_SAMPLE_S, self._sample)

    async def _open(self, c: Stream) -> None:
        loop = asyncio.get_running_loop()
        c.t_connect = now()
        try:
            async with asyncio.timeout(self.a.connect_timeout):
                await loop.create_connection(lambda: c, self.host, self.port)
                assert c.handshake is not None
                await c.handshake
            c.send_start(self.tracks)
            c.t_start = now()
            c.playout_end = c.t_start
            c.active = True
            self.slots[c.idx % self.nslots].append(c)
        except Exception as exc:  # any failure is a data point
            if c.transport is not None:
                c.transport.abort()
            c.error = f"connect: {exc.__class__.__name__}: {exc}"[:200]
            key = exc.__class__.__name__
            self.connect_errors[key] = self.connect_errors.get(key, 0) + 1

    async def run(self) -> dict[str, Any]:
        a = self.a
        loop = asyncio.get_running_loop()
        t0 = now()
        s_idle = self.sampler.sample()
        if s_idle:
            self.samples.append(s_idle)
        self.sampler_timer = loop.call_later(STATS_SAMPLE_S, self._sample)
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            self.t_base = now() + 0.05
            self.timer = loop.call_at(self.t_base, self._tick)
            opens = []
            interval = 1.0 / a.connect_rate
            for c in self.streams:
                opens.append(asyncio.create_task(self._open(c)))
                await asyncio.sleep(interval)
            await asyncio.gather(*opens)
            t_all = now()
            t_win0 = t_all + a.warmup
            self.t_stop = t_all + a.duration
            await asyncio.sleep(max(0.0, t_win0 - now()))
            s0, h0, p0, w0 = self.sampler.sample(), read_proc_stat(), time.process_time(), now()
            await asyncio.sleep(max(0.0, self.t_stop - now()))
            s1, h1, p1, w1 = self.sampler.sample(), read_proc_stat(), time.process_time(), now()
            yield_cpu()  # teardown and analysis must not hold up a process still measuring
        finally:
            gc.enable()
            gc.unfreeze()
            if self.timer is not None:
                self.timer.cancel()
            if self.sampler_timer is not None:
                self.sampler_timer.cancel()
            await asyncio.wait([asyncio.create_task(c.close(3.0)) for c in self.streams], timeout=5)
            for c in self.streams:
                if c.transport is not None and not c.transport.is_closing():
                    c.transport.abort()
        s_end = self.sampler.sample()
        res = analyze(self.streams, self.n, t_win0, self.t_stop, a, self.connect_errors)
        res["timing"] = {"connect_ramp_s": round(t_all - t0, 3), "window_s": round(self.t_stop - t_win0, 3),
                         "trial_wall_s": round(now() - t0, 3)}
        peak = max((s["rss"] for s in self.samples if s), default=None)
        res["server"] = {
            "pid": self.sampler.pid,
            "cpu_pct": cpu_pct(s0, s1),
            "cpu_pct_whole_trial": cpu_pct(s_idle, s_end),
            "rss_mb_before": round(s_idle["rss"] / 2**20, 1) if s_idle else None,
            "rss_mb_steady_end": round(s1["rss"] / 2**20, 1) if s1 else None,
            "rss_mb_peak": round(peak / 2**20, 1) if peak else None,
            "rss_mb_per_call": (round((s1["rss"] - s_idle["rss"]) / 2**20 / self.n, 3)
                                if s1 and s_idle and self.n else None),
        }
        res["host_cpu"] = host_cpu_delta(h0, h1)
        own_cpu = round(100.0 * (p1 - p0) / (w1 - w0), 1) if w1 > w0 else None
        lat = percentiles(np.asarray(self.lateness) * 1000.0, (50, 99))
        res["loadgen"] = {
            "cpu_pct": own_cpu,
            "cpu_pct_per_stream": round(own_cpu / self.n, 4) if own_cpu is not None and self.n else None,
            "send_lateness_ms": lat,
            "send_skipped_backpressure": sum(c.send_skipped for c in self.streams),
            "media_sent": sum(c.sent for c in self.streams),
            "saturated": bool((own_cpu is not None and own_cpu > a.loadgen_cpu_limit)
                              or (lat["p99"] is not None and lat["p99"] > 5.0)),
        }
        return res


def yield_cpu() -> None:
    """Leaves a real-time scheduling policy (`--fifo` in bench/media_streams.py) for the normal
    one, keeping the niceness: after its window this process's work is not urgent, and under
    SCHED_FIFO it would keep a process sharing core 1 (another generator) from running."""
    try:
        if os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        pass


async def run_trial_async(a: argparse.Namespace, n: int, pid: int | None) -> dict[str, Any]:
    trial = Trial(a, n, ProcSampler(pid))
    try:
        async with asyncio.timeout(a.trial_timeout):
            return await trial.run()
    except TimeoutError:
        for c in trial.streams:
            if c.transport is not None:
                c.transport.abort()
        return {"n": n, "pass": False, "fail_reasons": ["trial timed out"], "pooled": None}


def run_trial(a: argparse.Namespace, n: int, pid: int | None) -> dict[str, Any]:
    speed = {"server_cpu": cpu_speed(None), "loadgen_cpu": cpu_speed(set(os.sched_getaffinity(0)))}
    runner: Any = asyncio.run
    if a.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    res: dict[str, Any] = runner(run_trial_async(a, n, pid))
    res["cpu_speed_mloops"] = speed
    return res


def summary_line(r: dict[str, Any]) -> str:
    if not r.get("pooled"):
        return f"N={r['n']} FAIL {r.get('fail_reasons')}"
    p, j, s, lg = r["pooled"], r["pooled"]["jitter_ms"], r["server"], r["loadgen"]
    return (f"N={r['n']:>4} {'PASS' if r['pass'] else 'FAIL'}  jitter p50/p95/p99/max="
            f"{j['p50']}/{j['p95']}/{j['p99']}/{j['max']} ms  stalls={p['stalls']}  "
            f"pdv p99={p['pdv_ms']['p99']} ms  delivery min={p['delivery_min']}  "
            f"first-frame p50={p['first_frame_ms']['p50']} ms  srv cpu={s['cpu_pct']}% "
            f"rss={s['rss_mb_steady_end']} MB  streamgen cpu={lg['cpu_pct']}% "
            f"send lateness p99={lg['send_lateness_ms']['p99']} ms"
            f"{' SATURATED' if lg['saturated'] else ''}"
            f"{'  [' + '; '.join(r['fail_reasons']) + ']' if r['fail_reasons'] else ''}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="ws:// URL of the media-stream endpoint (loopback only)")
    ap.add_argument("--ramp", required=True, help="comma-separated N, one trial each, e.g. 100,200")
    ap.add_argument("--duration", type=float, default=20.0,
                    help="seconds all N calls stay up after the last one connected, warm-up included")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds left out at the start of the window")
    ap.add_argument("--connect-rate", type=float, default=100.0, help="new calls per second while ramping in")
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("--trial-timeout", type=float, default=60.0, help="hard wall-clock cap per trial")
    ap.add_argument("--custom-params", default='{"from_number":"+15550100{i}","to_number":"+15550199"}',
                    help="JSON object for start.customParameters ({i} = call index)")
    ap.add_argument("--calls-file", default=None,
                    help="JSON list, entry i = {callSid, customParameters} of call i")
    ap.add_argument("--tracks", default="inbound", help="start.tracks, comma-separated")
    ap.add_argument("--header", action="append", default=[], help="extra upgrade header 'Name: value'")
    ap.add_argument("--max-p99-ms", type=float, default=5.0, help="pass: pooled gap-jitter p99 <= this")
    ap.add_argument("--max-stalls", type=int, default=0, help="pass: stalls <= this")
    ap.add_argument("--stall-ms", type=float, default=20.0,
                    help="a gap longer than the previous frame's length + this is a stall")
    ap.add_argument("--min-delivery", type=float, default=0.95,
                    help="pass: every stream delivered >= this fraction of real time in the window")
    ap.add_argument("--send-slots", type=int, default=20, help="send phases spread over each 20 ms")
    ap.add_argument("--send-buffer-limit", type=int, default=256 * 1024,
                    help="skip a frame (counted) while the socket's write buffer holds more bytes")
    ap.add_argument("--loadgen-cpu-limit", type=float, default=85.0,
                    help="flag this generator as saturated above this CPU %%")
    ap.add_argument("--server-pid", default=None, help="pid whose process tree is sampled, or 'auto'")
    ap.add_argument("--cpu", default=None, help="pin this process to this CPU list, e.g. 1")
    ap.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    ap.add_argument("--cooldown", type=float, default=2.0, help="idle seconds between trials")
    ap.add_argument("--per-stream", action="store_true", help="per-stream figures in the JSON")
    ap.add_argument("--label", default="", help="free text stored in the JSON")
    ap.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    a = ap.parse_args(argv)
    u = urlparse(a.url)
    if u.scheme != "ws":
        ap.error("only ws:// URLs are supported")
    host = u.hostname or ""
    try:
        loopback = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        ap.error("refusing a non-loopback target")
    for h in a.header:
        if ":" not in h:
            ap.error(f"--header {h!r}: expected 'Name: value'")
    a.ns = [int(x) for x in a.ramp.split(",") if x.strip()]
    if not a.ns or min(a.ns) < 1:
        ap.error("--ramp needs positive counts")
    if a.warmup >= a.duration:
        ap.error("--warmup must be shorter than --duration")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    if a.cpu:
        os.sched_setaffinity(0, {int(x) for x in a.cpu.split(",")})
    if a.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            a.loop = "asyncio"
    pid: int | None = None
    if a.server_pid == "auto":
        pid = find_listener_pid(urlparse(a.url).port or 80)
    elif a.server_pid:
        pid = int(a.server_pid)
    out: dict[str, Any] = {
        "tool": "voicecall bench/streamgen.py (Twilio Media Streams)",
        "label": a.label, "url": a.url, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"cpus": os.cpu_count(), "loadgen_affinity": sorted(os.sched_getaffinity(0)),
                 "python": platform.python_version(), "kernel": platform.release(),
                 "generator": "streamgen", "loadgen_loop": a.loop},
        "criteria": {"max_p99_ms": a.max_p99_ms, "max_stalls": a.max_stalls,
                     "stall_ms_over_frame": a.stall_ms, "min_delivery": a.min_delivery},
        "config": {k: v for k, v in vars(a).items() if k not in ("header", "ns")},
        "trials": [],
    }
    for n in a.ns:
        if out["trials"]:
            time.sleep(a.cooldown)
        r = run_trial(a, n, pid)
        out["trials"].append(r)
        print(summary_line(r) + f"  cpu-speed={r['cpu_speed_mloops']}", file=sys.stderr, flush=True)
    passing = [r["n"] for r in out["trials"] if r.get("pass")]
    failing = [r["n"] for r in out["trials"] if not r.get("pass")]
    out["max_passing_n"] = max(passing) if passing else 0
    out["min_failing_n"] = min(failing) if failing else None
    out["any_loadgen_saturation"] = any((r.get("loadgen") or {}).get("saturated") for r in out["trials"])
    text = json.dumps(out, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
