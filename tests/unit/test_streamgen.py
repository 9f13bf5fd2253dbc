"""bench/streamgen.py, the media-stream load generator: its client frames as the websockets
library parses them, its incremental parser of the server's frames (split and coalesced reads),
its opening handshake, and the jitter / stall / delivery / pdv figures on synthetic arrivals."""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import math
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader
from websockets.utils import accept_key

PATH = Path(__file__).resolve().parents[2] / "bench" / "streamgen.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("streamgen", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("streamgen", module)
    spec.loader.exec_module(module)
    return module


sg = _load()


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


def parse_frames(data: bytes, *, mask: bool) -> list[Frame]:
    """Every frame in `data`, parsed by the websockets library (masked: as a server reads them)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        gen = Frame.parse(reader.read_exact, mask=mask, max_size=None, extensions=None)
        try:
            next(gen)
        except StopIteration as stop:
            frames.append(stop.value)
        else:
            raise AssertionError("incomplete frame")
    return frames


def server_frame(text: str | bytes, opcode: Opcode = Opcode.TEXT, fin: bool = True) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return Frame(opcode, data, fin=fin).serialize(mask=False, extensions=None)


def media_msg(nbytes: int = 160, sid: str = "MZ1") -> str:
    payload = base64.b64encode(bytes(nbytes)).decode()
    msg = {"event": "media", "streamSid": sid, "media": {"payload": payload}}
    return json.dumps(msg, separators=(",", ":"))


def open_stream(custom: dict[str, Any] | None = None) -> tuple[Any, FakeTransport]:
    s = sg.Stream(3, "CA1", "AC1", custom or {"token": "t"}, "127.0.0.1:9", "/voice/stream",
                  [("X-Twilio-Signature", "sig")], sg.inbound_payloads())
    tr = FakeTransport()
    s.transport = tr
    s.open = s.fast = s.active = True
    return s, tr


# -- client frames -------------------------------------------------------------------------------


def test_media_frames_parse_as_websockets_reads_them() -> None:
    s, tr = open_stream()
    payloads = sg.inbound_payloads()
    chunks = [*range(0, 12), 98, 99, 100, 499, 500, 4999, 5000, 49999, 50000]
    for seq, chunk in enumerate(chunks, start=1):
        s.chunk, s.seq = chunk, seq
        s.tick(0.0, 1 << 20)
    frames = parse_frames(b"".join(tr.written), mask=True)
    assert len(frames) == len(chunks)
    for seq, (chunk, frame) in enumerate(zip(chunks, frames, strict=True), start=2):
        assert frame.opcode == Opcode.TEXT and frame.fin
        msg = json.loads(frame.data)
        assert msg == {"event": "media", "sequenceNumber": str(seq),
                       "media": {"track": "inbound", "chunk": str(chunk + 1), "timestamp": str(chunk * 20),
                                 "payload": payloads[chunk % 50].decode()},
                       "streamSid": s.stream_sid}
        assert len(base64.b64decode(msg["media"]["payload"])) == 160


def test_masker_round_trip_all_lengths_and_opcodes() -> None:
    m = sg.Masker(bytes([0x12, 0x9A, 0xFF, 0x00]))
    rng = random.Random(1)
    for n in [0, 1, 2, 3, 4, 5, 125, 126, 127, 300, 65535, 65536, 70001]:
        data = bytes(rng.getrandbits(8) for _ in range(n))
        (frame,) = parse_frames(m.text(data), mask=True)
        assert frame.opcode == Opcode.TEXT and frame.data == data
        (frame,) = parse_frames(m.frame(0x9, data[:125]), mask=True)
        assert frame.opcode == Opcode.PING and frame.data == data[:125]
    for phase in range(4):  # masking from an offset equals the tail of a masking from 0
        data = bytes(range(40))
        assert m.mask(data, phase) == m.mask(bytes(phase) + data)[phase:]


def test_start_stop_and_marks_are_twilio_messages() -> None:
    s, tr = open_stream({"token": "tok"})
    s.send_start(["inbound"])
    connected, start = (json.loads(f.data) for f in parse_frames(b"".join(tr.written), mask=True))
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    assert start["start"]["callSid"] == "CA1" and start["start"]["customParameters"] == {"token": "tok"}
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    tr.written.clear()
    # a mark comes back once the audio queued before it has played
    s.data_received(server_frame(media_msg(160)))
    t_played = s.playout_end
    s.data_received(server_frame(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": "m1"}})))
    assert s.marks_in == 1 and s.pending_marks[0][1] == "m1"
    s.tick(t_played - 0.001, 1 << 20)
    assert s.marks_out == 0
    s.tick(t_played, 1 << 20)
    msgs = [json.loads(f.data) for f in parse_frames(b"".join(tr.written), mask=True)]
    assert [m["event"] for m in msgs] == ["media", "media", "mark"]
    assert msgs[2]["mark"] == {"name": "m1"} and int(msgs[2]["sequenceNumber"]) == 4


def test_clear_returns_pending_marks_at_once() -> None:
    s, _ = open_stream()
    for _ in range(50):
        s.data_received(server_frame(media_msg(160)))
    s.data_received(server_frame(json.dumps({"event": "mark", "mark": {"name": "a"}})))
    assert s.pending_marks[0][0] > s.arr[-1] + 0.9  # a second of audio queued before it
    s.data_received(server_frame(json.dumps({"event": "clear"})))
    assert s.clears == 1 and s.pending_marks[0][0] <= s.arr[-1] + 0.01


# -- the server's frames -------------------------------------------------------------------------


def test_parser_handles_split_and_coalesced_reads() -> None:
    sizes = [160, 320, 1, 2, 3, 0, 160, 16000, 160]
    msgs = [media_msg(n) for n in sizes]
    other = json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": "x"}})
    blob = b"".join(server_frame(m) for m in msgs[:4]) + server_frame(other) + b"".join(
        server_frame(m) for m in msgs[4:])
    for split in [1, 2, 3, 5, 7, 64, 333, len(blob)]:
        s, _ = open_stream()
        for i in range(0, len(blob), split):
            s.data_received(blob[i:i + split])
        assert list(s.nbytes) == sizes, split
        assert s.marks_in == 1 and s.buf == b"" and s.fast
        assert s.error is None and s.bad_json == 0


def test_parser_fragmented_message_ping_close_and_non_json() -> None:
    s, tr = open_stream()
    msg = media_msg(160).encode()
    data = (server_frame(msg[:50], fin=False) + server_frame(b"ping!", Opcode.PING)
            + server_frame(msg[50:200], Opcode.CONT, fin=False) + server_frame(msg[200:], Opcode.CONT)
            + server_frame("not json") + server_frame(media_msg(160).replace(":", ": ")))  # not compact
    for i in range(0, len(data), 9):
        s.data_received(data[i:i + 9])
    assert list(s.nbytes) == [160, 160] and s.bad_json == 1
    (pong,) = parse_frames(b"".join(tr.written), mask=True)
    assert pong.opcode == Opcode.PONG and pong.data == b"ping!"
    tr.written.clear()
    s.data_received(server_frame(Close(1011, "bye").serialize(), Opcode.CLOSE))
    assert s.close_code == 1011 and not s.active and tr.closing
    (echo,) = parse_frames(b"".join(tr.written), mask=True)
    assert echo.opcode == Opcode.CLOSE and Close.parse(echo.data).code == 1011


def test_parser_rejects_masked_server_frames() -> None:
    s, _ = open_stream()
    s.data_received(Frame(Opcode.TEXT, media_msg().encode()).serialize(mask=True, extensions=None))
    assert s.error is not None and s.error.startswith("recv: ProtocolError") and not s.active


def test_b64_decoded_len() -> None:
    for n in range(0, 40):
        enc = base64.b64encode(bytes(n))
        assert sg.b64_decoded_len(len(enc), enc[-2:]) == n


def g711_ulaw(sample: int) -> int:
    """Textbook G.711 mu-law (bias 0x84, clip 32635), one sample."""
    sign = 0x80 if sample < 0 else 0
    mag = min(abs(sample), 32635) + 0x84
    exponent = max(0, mag.bit_length() - 8)
    return ~(sign | exponent << 4 | (mag >> (exponent + 3)) & 0x0F) & 0xFF


def test_mulaw_encoding() -> None:
    import numpy as np

    samples = [*range(-32768, 32768, 97), -1, 0, 1, 131, 132, -132, 32767]
    assert sg.mulaw_encode(np.array(samples)) == bytes(g711_ulaw(x) for x in samples)
    assert g711_ulaw(0) == 0xFF and g711_ulaw(32767) == 0x80 and g711_ulaw(-32768) == 0x00
    assert all(len(base64.b64decode(p)) == 160 for p in sg.inbound_payloads())


# -- the opening handshake ---------------------------------------------------------------------


async def test_handshake_checks_status_and_accept() -> None:
    def response(s: Any, status: str = "101 Switching Protocols", accept: str | None = None) -> bytes:
        key = s.request.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0].decode()
        return (f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept or accept_key(key)}\r\n\r\n").encode()

    s = sg.Stream(0, "CA1", "AC1", {}, "127.0.0.1:9", "/p?q=1", [("X-A", "b")], sg.inbound_payloads())
    s.connection_made(FakeTransport())
    assert s.request.startswith(b"GET /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
    assert b"\r\nX-A: b\r\n" in s.request
    raw = response(s) + server_frame(media_msg(160))  # the first frame in the same read
    s.data_received(raw[:30])
    assert not s.handshake.done()
    s.data_received(raw[30:])
    await s.handshake
    assert s.open and list(s.nbytes) == [160]

    bad = sg.Stream(1, "CA1", "AC1", {}, "h", "/", [], sg.inbound_payloads())
    bad.connection_made(FakeTransport())
    bad.data_received(response(bad, accept="x" * 28))
    with pytest.raises(sg.InvalidHandshake):
        await bad.handshake

    busy = sg.Stream(2, "CA1", "AC1", {}, "h", "/", [], sg.inbound_payloads())
    busy.connection_made(FakeTransport())
    busy.data_received(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(sg.InvalidStatus, match="HTTP 503"):
        await busy.handshake


# -- the figures -------------------------------------------------------------------------------


def reference_window(arr: list[float], nb: list[int], w0: float, w1: float,
                     stall_ms: float) -> dict[str, Any]:
    """The measurement as the reference load generator defines it, one frame at a time."""
    gaps, jit, pdv = [], [], []
    stalls = 0
    delivered = 0.0
    cum, min_off = 0.0, math.inf
    prev_t = prev_d = None
    frames = 0
    for t, n in zip(arr, nb, strict=True):
        d = n / 8000
        if w0 <= t <= w1:
            frames += 1
            delivered += d * 1000
            min_off = min(min_off, t - cum)
            pdv.append((t - cum - min_off) * 1000)
            if prev_t is not None and prev_t >= w0:
                gap, exp = (t - prev_t) * 1000, prev_d * 1000
                gaps.append(gap)
                jit.append(abs(gap - exp))
                stalls += gap > exp + stall_ms
        prev_t, prev_d = t, d
        cum += d
    return {"frames": frames, "delivered_ms": delivered, "gaps": gaps, "jitter": jit, "pdv": pdv,
            "stalls": stalls}


def test_window_matches_the_definition_on_random_arrivals() -> None:
    rng = random.Random(7)
    for _ in range(20):
        t, arr, nb = 0.0, [], []
        for _ in range(rng.randint(0, 400)):
            t += rng.choice([0.0, 0.0005, 0.019, 0.02, 0.021, 0.02, 0.045, 0.1])
            arr.append(t)
            nb.append(rng.choice([160, 160, 160, 320, 80]))
        w0, w1 = rng.uniform(0, 1), rng.uniform(1, 8)
        got = sg.stream_window(arr, nb, w0, w1, 20.0)
        want = reference_window(arr, nb, w0, w1, 20.0)
        assert got["frames"] == want["frames"] and got["stalls"] == want["stalls"]
        assert got["delivered_ms"] == pytest.approx(want["delivered_ms"])
        for key in ("gaps", "jitter", "pdv"):
            assert list(got[key]) == pytest.approx(want[key], abs=1e-9), key


def test_jitter_stalls_and_delivery_of_a_stalled_stream() -> None:
    # 20 ms frames; one 70 ms gap (a stall) and its 50 ms jitter; a burst of 2 back to back
    arr = [i * 0.02 for i in range(100)]
    arr = arr[:50] + [a + 0.05 for a in arr[50:]]
    s, _ = open_stream()
    s.t_start = -0.01
    for t in arr:
        s.arr.append(t)
        s.nbytes.append(160)
    quiet, _ = open_stream()
    quiet.t_start = 0.0
    a = argparse.Namespace(stall_ms=20.0, per_stream=True, max_p99_ms=5.0, max_stalls=0, min_delivery=0.95)
    res = sg.analyze([s, quiet], 2, 0.0, 2.05, a, {"InvalidStatus": 1})
    p = res["pooled"]
    assert p["stalls"] == 1 and res["worst_stream"]["jitter_max"] == pytest.approx(50.0)
    assert p["frames"] == 100 and p["streams_with_no_frames"] == 1
    assert res["streams"][0]["delivery"] == pytest.approx(2000 / 2050, abs=1e-4)
    assert res["streams"][0]["first_frame_ms"] == pytest.approx(10.0)
    assert p["pdv_ms"]["max"] == pytest.approx(50.0)
    assert res["connect_errors"] == {"InvalidStatus": 1}
    assert not res["pass"]
    assert "1 stalls" in res["fail_reasons"] and "1 streams got no media" in res["fail_reasons"]
    assert any(r.startswith("min delivery") for r in res["fail_reasons"])


def test_only_loopback_ws_urls() -> None:
    assert sg.parse_args(["--url", "ws://127.0.0.1:1/x", "--ramp", "1,2"]).ns == [1, 2]
    assert sg.parse_args(["--url", "ws://localhost:1/x", "--ramp", "3"]).ns == [3]
    for url in ("ws://10.0.0.1:1/x", "wss://127.0.0.1:1/x", "http://127.0.0.1:1/x", "ws://example.com/x"):
        with pytest.raises(SystemExit):
            sg.parse_args(["--url", url, "--ramp", "1"])
