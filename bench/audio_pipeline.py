#!/usr/bin/env python
"""Audio hot-path benchmark: TTS PCM → 8 kHz μ-law frames, and the shared pacer's tick jitter.

1. Transcode: 24 kHz 16-bit mono PCM (OpenAI TTS rate) fed in streaming chunks through
   `StreamingResampler` (24k → 8k) + `ulaw_encode` + `FrameSplitter` — the per-stream work of
   outbound playback. Reported as µs of CPU per 20 ms output frame (best of `--rounds`, since a
   shared VM only ever adds time) and as the number of streams one core can keep in real time:
   1e6 µs / (50 frames/s * µs per frame). Chunks of 960 B (20 ms) and 4800 B (100 ms).
2. Pacer: one `Pacer(20)` driving `--sinks` dummy sinks (next_frame returns a prebuilt frame,
   send_frame appends to a list) for `--seconds`; lateness of every tick against its absolute
   deadline (p50 / p99 / max), plus late/skipped tick counts and the mean CPU cost of a tick.

Prints one JSON object.

    .venv/bin/python bench/audio_pipeline.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from typing import Any

import numpy as np

from voicecall.audio import FrameSplitter, Pacer, StreamingResampler, ulaw_encode

FRAMES_PER_SECOND = 50


def speech_like(rate: int, seconds: float, seed: int = 1) -> bytes:
    """Voiced-speech stand-in: a gliding 120-220 Hz harmonic series, syllable envelope, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0 = 170 + 50 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    x = 6000 * voiced * envelope + 300 * rng.standard_normal(len(t))
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def transcode_once(pcm: bytes, in_rate: int, chunk: int, quality: str) -> tuple[float, int]:
    resampler = StreamingResampler(in_rate, 8000, quality=quality)
    splitter = FrameSplitter(160)
    frames = 0
    start = time.perf_counter()
    for i in range(0, len(pcm), chunk):
        frames += len(splitter.push(ulaw_encode(resampler.process(pcm[i : i + chunk]))))
    tail = ulaw_encode(resampler.flush())
    frames += len(splitter.push(tail))
    frames += splitter.flush() is not None
    return time.perf_counter() - start, frames


def bench_transcode(in_rate: int, chunk: int, quality: str, seconds: float, rounds: int) -> dict[str, Any]:
    pcm = speech_like(in_rate, seconds)
    transcode_once(pcm[: in_rate * 2], in_rate, chunk, quality)  # warm up
    times = []
    frames = 0
    for _ in range(rounds):
        dt, frames = transcode_once(pcm, in_rate, chunk, quality)
        times.append(dt)
    us_per_frame = min(times) / frames * 1e6
    return {
        "inRate": in_rate,
        "chunkBytes": chunk,
        "chunkMs": round(chunk / 2 / in_rate * 1000, 2),
        "quality": quality,
        "usPerFrame": round(us_per_frame, 2),
        "usPerFrameMedian": round(statistics.median(times) / frames * 1e6, 2),
        "streamsPerCore": int(1e6 / (FRAMES_PER_SECOND * us_per_frame)),
    }


class DummySink:
    __slots__ = ("frame", "out")

    def __init__(self) -> None:
        self.frame = b"\xff" * 160
        self.out: list[bytes] = []

    def next_frame(self) -> bytes | None:
        return self.frame

    def send_frame(self, frame: bytes) -> None:
        self.out.append(frame)


async def bench_pacer(n_sinks: int, seconds: float) -> dict[str, Any]:
    period_s = 0.02
    pacer = Pacer(20, history=int(seconds / period_s) + 100)
    sinks = [DummySink() for _ in range(n_sinks)]
    for s in sinks:
        pacer.add(s)
    cpu0 = time.process_time()
    await pacer.start()
    await asyncio.sleep(seconds)
    await pacer.stop()
    cpu = time.process_time() - cpu0
    lat = np.array(pacer.stats.lateness_ms)
    st = pacer.stats
    return {
        "sinks": n_sinks,
        "seconds": seconds,
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "ticks": st.ticks,
        "lateTicks": st.late_ticks,
        "skippedTicks": st.skipped_ticks,
        "framesSent": st.frames_sent,
        "latenessMs": {
            "p50": round(float(np.percentile(lat, 50)), 3),
            "p99": round(float(np.percentile(lat, 99)), 3),
            "max": round(float(lat.max()), 3),
        },
        "cpuPerTickUs": round(cpu / max(st.ticks, 1) * 1e6, 1),
        "cpuPerFrameUs": round(cpu / max(st.frames_sent, 1) * 1e6, 3),
        "processCpuPct": round(cpu / seconds * 100, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per transcode round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quality", default="HQ")
    ap.add_argument("--sinks", type=int, default=400)
    ap.add_argument("--pacer-seconds", type=float, default=5.0)
    ap.add_argument("--uvloop", action="store_true", help="run the pacer on uvloop")
    ap.add_argument("--compare-qualities", action="store_true", help="also time MQ/HQ/VHQ at 960 B")
    args = ap.parse_args()

    transcode = [
        bench_transcode(24000, chunk, args.quality, args.seconds, args.rounds) for chunk in (960, 4800)
    ]
    transcode.append(bench_transcode(22050, 882, args.quality, args.seconds, args.rounds))
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "transcode": transcode,
    }
    if args.compare_qualities:
        result["qualities"] = [
            bench_transcode(24000, 960, q, args.seconds, args.rounds) for q in ("LQ", "MQ", "HQ", "VHQ")
        ]
    if args.uvloop:
        import uvloop

        result["pacer"] = uvloop.run(bench_pacer(args.sinks, args.pacer_seconds))
    else:
        result["pacer"] = asyncio.run(bench_pacer(args.sinks, args.pacer_seconds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
