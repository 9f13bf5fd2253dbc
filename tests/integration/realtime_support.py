"""Audio helpers the realtime end-to-end tests share: what the fake models say, as the caller
should hear it, and how close what was heard is to it."""

from __future__ import annotations

from typing import Any

import numpy as np

from voicecall.audio.g711 import ALAW_SILENCE, ULAW_SILENCE, alaw_decode, ulaw_decode
from voicecall.audio.resample import StreamingResampler
from voicecall.providers.streams import Codec
from voicecall.testing.fakes.realtime import FakeOpenAIRealtime, model_audio

__all__ = ["FRAME", "SILENCE", "at_8k", "correlation", "decoded", "key_tone", "openai_realtime",
           "reference"]

FRAME = 160
"""Bytes (and samples) in one 20 ms frame of 8 kHz G.711."""
SILENCE = ULAW_SILENCE[0]
"""The μ-law idle byte."""
INSTRUCTIONS = "You answer the clinic's phone."


def decoded(g711: bytes | bytearray, codec: Codec = "ulaw") -> np.ndarray:
    """Received G.711 (in `codec`) as float PCM, from the first non-silent frame on."""
    silence = (ULAW_SILENCE if codec == "ulaw" else ALAW_SILENCE)[0]
    data = bytes(g711)
    start = next((i for i in range(0, len(data), FRAME)
                  if any(b != silence for b in data[i:i + FRAME])), len(data))
    decode = ulaw_decode if codec == "ulaw" else alaw_decode
    return decode(data[start:]).astype(np.float64)


def correlation(heard: np.ndarray, reference: np.ndarray) -> float:
    """Peak normalized correlation over alignment shifts of up to one frame."""
    n = min(len(reference), len(heard)) - FRAME
    assert n > 800, f"too little audio: heard {len(heard)} samples, expected {len(reference)}"
    ref = reference[:n]
    best = 0.0
    for shift in range(FRAME):
        seg = heard[shift:shift + n]
        denom = float(np.linalg.norm(seg) * np.linalg.norm(ref))
        if denom:
            best = max(best, float(np.dot(seg, ref)) / denom)
    return best


def reference(text: str) -> np.ndarray:
    """What the fake OpenAI model says for `text` (8 kHz), as float PCM."""
    return np.frombuffer(model_audio(text), dtype="<i2").astype(np.float64)


def at_8k(text: str) -> np.ndarray:
    """What the fake Gemini says for `text` (24 kHz), brought to 8 kHz as the gateway must."""
    resampler = StreamingResampler(24000, 8000)
    pcm = resampler.process(model_audio(text, 24000)) + resampler.flush()
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def key_tone(pcm: np.ndarray) -> tuple[float, float]:
    """The strongest frequency of `pcm` (8 kHz) in DTMF's low band and in its high band."""
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    low, high = (freqs > 600) & (freqs < 1000), (freqs > 1100) & (freqs < 1700)
    return float(freqs[low][np.argmax(spectrum[low])]), float(freqs[high][np.argmax(spectrum[high])])


def openai_realtime(model: FakeOpenAIRealtime) -> dict[str, Any]:
    """The gateway's `realtime` config block for the fake OpenAI Realtime model `model`."""
    return {"enabled": True, "instructions": INSTRUCTIONS,
            "providers": {"openai": {"apiKey": "sk-test", "baseUrl": model.base_url}}}
