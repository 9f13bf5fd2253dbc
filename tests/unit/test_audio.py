"""Audio pipeline: G.711 tables, streaming resampler, framing, shared frame pacer."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import numpy as np
import pytest

from voicecall.audio import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    FrameSplitter,
    Pacer,
    StreamingResampler,
    alaw_decode,
    alaw_encode,
    silence_frame,
    ulaw_decode,
    ulaw_encode,
)

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32)


# --- slow scalar G.711 reference (straight from the classic g711.c formulation) -----------------


def ref_ulaw_encode(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, 32635) + 0x84
    exponent, mask = 7, 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ref_ulaw_decode(code: int) -> int:
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    sample = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -sample if code & 0x80 else sample


def ref_alaw_encode(sample: int) -> int:
    pcm = sample >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = 0
    for end in (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF):
        if pcm <= end:
            break
        seg += 1
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1) & 0x0F if seg < 2 else (pcm >> seg) & 0x0F
    return aval ^ mask


def ref_alaw_decode(code: int) -> int:
    code ^= 0x55
    t = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if code & 0x80 else -t


# --- G.711 --------------------------------------------------------------------------------------


def test_ulaw_tables_match_scalar_reference_on_every_input() -> None:
    pcm = ALL_INT16.astype(np.int16)
    encoded = np.frombuffer(ulaw_encode(pcm), dtype=np.uint8)
    assert encoded.tolist() == [ref_ulaw_encode(int(s)) for s in ALL_INT16]
    # bytes input (little-endian) gives the same result as the array
    assert ulaw_encode(pcm.astype("<i2").tobytes()) == encoded.tobytes()
    assert ulaw_decode(bytes(range(256))).tolist() == [ref_ulaw_decode(c) for c in range(256)]


def test_alaw_tables_match_scalar_reference_on_every_input() -> None:
    pcm = ALL_INT16.astype(np.int16)
    encoded = np.frombuffer(alaw_encode(pcm), dtype=np.uint8)
    assert encoded.tolist() == [ref_alaw_encode(int(s)) for s in ALL_INT16]
    assert alaw_encode(pcm.astype("<i2").tobytes()) == encoded.tobytes()
    assert alaw_decode(bytes(range(256))).tolist() == [ref_alaw_decode(c) for c in range(256)]


def test_ulaw_round_trip_error_within_half_a_quantisation_step() -> None:
    codes = np.frombuffer(ulaw_encode(ALL_INT16.astype(np.int16)), dtype=np.uint8).astype(np.int32)
    decoded = ulaw_decode(codes.astype(np.uint8).tobytes()).astype(np.int32)
    exponent = ((~codes) >> 4) & 0x07
    half_step = 4 << exponent  # the interval is 8 << exponent wide; decode returns its middle
    clip_error = np.maximum(np.abs(ALL_INT16) - 32124, 0)  # beyond the largest code (±32124)
    error = np.abs(decoded - ALL_INT16)
    assert np.all(error <= np.maximum(half_step, clip_error))
    assert error.max() <= 644  # -32768 -> -32124
    # decoding every code and re-encoding gives the code back (except the duplicate zero 0x7F)
    again = np.frombuffer(ulaw_encode(ulaw_decode(bytes(range(256)))), dtype=np.uint8)
    assert [c for c in range(256) if again[c] != c] == [0x7F]


def test_alaw_round_trip_error_within_half_a_quantisation_step() -> None:
    codes = np.frombuffer(alaw_encode(ALL_INT16.astype(np.int16)), dtype=np.uint8).astype(np.int32)
    decoded = alaw_decode(codes.astype(np.uint8).tobytes()).astype(np.int32)
    seg = ((codes ^ 0x55) >> 4) & 0x07
    half_step = 8 << np.maximum(seg - 1, 0)
    assert np.all(np.abs(decoded - ALL_INT16) <= half_step)
    again = np.frombuffer(alaw_encode(alaw_decode(bytes(range(256)))), dtype=np.uint8)
    assert again.tolist() == list(range(256))


def test_silence_constants() -> None:
    assert ULAW_SILENCE == b"\xff" and ALAW_SILENCE == b"\xd5"
    assert ulaw_encode(b"\x00\x00" * 4) == ULAW_SILENCE * 4
    assert alaw_encode(b"\x00\x00" * 4) == ALAW_SILENCE * 4
    assert ulaw_decode(ULAW_SILENCE).tolist() == [0]
    assert abs(int(alaw_decode(ALAW_SILENCE)[0])) <= 8
    assert silence_frame() == b"\xff" * 160
    assert silence_frame(80, "alaw") == b"\xd5" * 80
    assert silence_frame(4, "pcm16") == b"\x00" * 4
    with pytest.raises(ValueError):
        silence_frame(10, "opus")  # type: ignore[arg-type]


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        ulaw_encode(b"\x00\x00\x00")
    with pytest.raises(TypeError):
        ulaw_encode(np.zeros(4, dtype=np.float32))


# --- streaming resampler ------------------------------------------------------------------------


def _sine(freq: float, rate: int, seconds: float, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2")


def _random_chunks(data: bytes, rng: np.random.Generator, max_size: int = 3000) -> list[bytes]:
    chunks, i = [], 0
    while i < len(data):
        n = int(rng.integers(1, max_size))  # odd sizes included: samples straddle chunks
        chunks.append(data[i : i + n])
        i += n
    return chunks


@pytest.mark.parametrize("in_rate", [24000, 22050])
def test_streaming_resampler_matches_one_shot_and_keeps_the_tone(in_rate: int) -> None:
    pcm = _sine(1000, in_rate, 1.0).tobytes()
    one = StreamingResampler(in_rate)
    whole = np.frombuffer(one.process(pcm) + one.flush(), dtype="<i2").astype(np.int32)

    rng = np.random.default_rng(7)
    streamed = StreamingResampler(in_rate)
    out = b"".join(streamed.process(c) for c in _random_chunks(pcm, rng)) + streamed.flush()
    pieces = np.frombuffer(out, dtype="<i2").astype(np.int32)

    expected_len = len(pcm) // 2 * 8000 / in_rate
    assert abs(len(whole) - expected_len) <= 2
    assert len(pieces) == len(whole)
    assert np.max(np.abs(pieces - whole)) <= 2  # int16 rounding only; chunk boundaries invisible

    steady = pieces[400:-400].astype(np.float64)  # skip the filter's start/end transients
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(len(steady))))
    freqs = np.fft.rfftfreq(len(steady), 1 / 8000)
    assert abs(freqs[int(np.argmax(spectrum))] - 1000) < 10
    assert 9000 < np.max(np.abs(steady)) < 11000  # passband gain ~1


def test_resampler_identity_and_odd_byte_carry() -> None:
    same = StreamingResampler(8000, 8000)
    assert same.process(b"\x01\x02\x03") == b"\x01\x02"
    assert same.process(b"\x04") == b"\x03\x04"
    assert same.process(b"\x05") == b""
    assert same.flush() == b""  # the dangling half sample is dropped

    rs = StreamingResampler(24000)
    assert rs.process(b"\x00") == b""
    assert len(rs.process(b"\x00" * 4799)) % 2 == 0
    total = len(rs.flush())
    assert total % 2 == 0
    # after flush it is a fresh stream again
    assert abs(len(rs.process(b"\x00" * 4800) + rs.flush()) - 1600) <= 4
    with pytest.raises(ValueError):
        StreamingResampler(0)


# --- framing ------------------------------------------------------------------------------------


def test_frame_splitter() -> None:
    fs = FrameSplitter()
    assert fs.push(b"a" * 100) == []
    frames = fs.push(b"b" * 400)
    assert frames == [b"a" * 100 + b"b" * 60, b"b" * 160, b"b" * 160]
    assert fs.pending == 20
    assert fs.flush() == b"b" * 20 + b"\xff" * 140
    assert fs.flush() is None
    assert fs.push(b"c" * 160) == [b"c" * 160]
    assert fs.flush() is None
    fs.push(b"x")
    assert fs.flush(pad=ALAW_SILENCE) == b"x" + b"\xd5" * 159
    small = FrameSplitter(4)
    assert small.push(memoryview(b"0123456789")) == [b"0123", b"4567"]


# --- pacer --------------------------------------------------------------------------------------


class RecordingSink:
    def __init__(self, pacer: Pacer, loop: asyncio.AbstractEventLoop) -> None:
        self.pacer = pacer
        self.loop = loop
        self.sent: list[tuple[int, float]] = []  # (tick number, loop time)

    def next_frame(self) -> bytes | None:
        return b"\xff" * 160

    def send_frame(self, frame: bytes) -> None:
        self.sent.append((self.pacer.stats.ticks, self.loop.time()))


async def test_pacer_is_drift_free(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    deadlines_asked: list[float] = []
    real_call_at = loop.call_at

    def spy(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        if callback == pacer._tick:
            deadlines_asked.append(when)
        return real_call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", spy)
    pacer = Pacer(20)
    sink = RecordingSink(pacer, loop)
    pacer.add(sink)
    start = loop.time()
    await pacer.start()
    await asyncio.sleep(1.0)
    await pacer.stop()
    elapsed = loop.time() - start
    # Every tick is scheduled on the absolute grid t0 + n * 20 ms, whatever the lateness of the
    # tick before it (a relative "sleep 20 ms" would drift by the sum of all latenesses).
    t0 = deadlines_asked[0]
    steps = [(when - t0) / 0.02 for when in deadlines_asked]
    assert all(abs(n - round(n)) < 1e-6 for n in steps)
    assert all(b > a for a, b in itertools.pairwise(steps))
    deadlines = int(elapsed / 0.02) + 1
    assert abs(pacer.stats.ticks + pacer.stats.skipped_ticks - deadlines) <= 2
    assert len(sink.sent) == pacer.stats.ticks == pacer.stats.frames_sent
    assert not pacer.running


async def test_pacer_skips_instead_of_bursting_after_a_stall() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(20)
    sinks = [RecordingSink(pacer, loop) for _ in range(3)]
    for s in sinks:
        pacer.add(s)
    await pacer.start()
    loop.call_later(0.2, time.sleep, 0.1)  # block the whole loop for 100 ms once
    await asyncio.sleep(0.5)
    await pacer.stop()

    stats = pacer.stats
    assert stats.late_ticks >= 1
    assert stats.skipped_ticks >= 4  # ~100 ms of deadlines dropped, not replayed
    assert stats.max_lateness_ms >= 80
    for s in sinks:
        ticks = [n for n, _ in s.sent]
        assert len(ticks) == len(set(ticks)) == stats.ticks  # one frame per sink per tick
        gaps = [b - a for (_, a), (_, b) in zip(s.sent, s.sent[1:], strict=False)]
        assert min(gaps) > 0.010  # never sent back to back
        assert max(gaps) >= 0.09  # the stall shows up as one gap


class FailingSink(RecordingSink):
    def __init__(self, pacer: Pacer, loop: asyncio.AbstractEventLoop, fail_in: str) -> None:
        super().__init__(pacer, loop)
        self.fail_in = fail_in
        self.calls = 0

    def next_frame(self) -> bytes | None:
        self.calls += 1
        if self.fail_in == "next" and self.calls == 3:
            raise RuntimeError("boom")
        return super().next_frame()

    def send_frame(self, frame: bytes) -> None:
        if self.fail_in == "send" and self.calls == 3:
            raise OSError("transport closed")
        super().send_frame(frame)


class IdleSink(RecordingSink):
    def next_frame(self) -> bytes | None:
        return None


async def test_failing_sink_is_removed_and_others_continue(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(20)
    good_before = RecordingSink(pacer, loop)
    bad_next = FailingSink(pacer, loop, "next")
    bad_send = FailingSink(pacer, loop, "send")
    idle = IdleSink(pacer, loop)
    good_after = RecordingSink(pacer, loop)
    for s in (good_before, bad_next, bad_send, idle, good_after):
        pacer.add(s)
    async with pacer:
        await asyncio.sleep(0.2)
    assert bad_next not in pacer and bad_send not in pacer
    assert len(pacer) == 3
    assert pacer.stats.sink_errors == 2
    assert len(bad_next.sent) == 2 and len(bad_send.sent) == 2
    assert idle.sent == []
    assert len(good_before.sent) == len(good_after.sent) == pacer.stats.ticks >= 5
    assert "removing it from the pacer" in caplog.text
    pacer.remove(bad_next)  # removing an unknown sink is harmless


async def test_after_tick_runs_once_per_tick_after_every_frame_is_sent(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(20)
    sinks = [RecordingSink(pacer, loop) for _ in range(3)]
    for s in sinks:
        pacer.add(s)
    seen: list[list[int]] = []  # frames sent by each sink when the hook ran

    def hook() -> None:
        seen.append([len(s.sent) for s in sinks])
        if len(seen) == 2:
            raise RuntimeError("hook broke")

    pacer.after_tick = hook
    async with pacer:
        await asyncio.sleep(0.15)
    assert len(seen) == pacer.stats.ticks >= 4  # a failing hook does not stop the clock
    assert all(counts == [i + 1] * 3 for i, counts in enumerate(seen))
    assert "after-tick hook failed" in caplog.text


def test_collect_after_ticks_runs_the_due_young_collection_with_automatic_gc_off() -> None:
    import gc

    from voicecall.gateway.garbage import CollectAfterTicks

    was_enabled = gc.isenabled()
    collector = CollectAfterTicks(young=50, middle=3)
    collector.install()
    try:
        assert not gc.isenabled()
        gc.collect()
        collector()
        assert collector.collections == [0, 0]  # nothing due yet
        junk: list[list[int]] = []
        for _round in range(4):
            junk.extend([i] for i in range(60))  # 60 tracked objects survive: generation 0 is due
            collector()
        assert collector.collections == [3, 1]  # the fourth is due in generation 1
        assert gc.get_count()[0] < 50
    finally:
        collector.uninstall()
    assert gc.isenabled() == was_enabled
