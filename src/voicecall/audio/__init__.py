"""Media-stream audio: G.711 codecs, streaming resampling, framing and the shared frame pacer.

Hot-path rule: audio stays in ``bytes`` / NumPy arrays; no per-sample Python loops.
"""

from __future__ import annotations

from voicecall.audio.frames import FRAME_BYTES, FrameSplitter, silence_frame
from voicecall.audio.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)
from voicecall.audio.pacer import FrameSink, Pacer, PacerStats
from voicecall.audio.resample import StreamingResampler

__all__ = [
    "ALAW_SILENCE",
    "FRAME_BYTES",
    "ULAW_SILENCE",
    "FrameSink",
    "FrameSplitter",
    "Pacer",
    "PacerStats",
    "StreamingResampler",
    "alaw_decode",
    "alaw_encode",
    "silence_frame",
    "ulaw_decode",
    "ulaw_encode",
]
