"""DTMF key tones as audio, for calls whose audio goes over a media stream (a stream carries no
out-of-band keys). Pause characters follow Twilio's `<Play digits>`: `w`, `p` and `,` wait 0.5 s,
`W` and `P` 1 s."""

from __future__ import annotations

import numpy as np

__all__ = ["DTMF_FREQUENCIES", "dtmf_pcm"]

DTMF_FREQUENCIES: dict[str, tuple[int, int]] = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}
_PAUSES_S = {"w": 0.5, "p": 0.5, ",": 0.5, "W": 1.0, "P": 1.0}


def dtmf_pcm(digits: str, rate: int = 8000, *, tone_ms: int = 100, gap_ms: int = 100,
             level: float = 0.35) -> bytes:
    """PCM16LE mono of `digits`: each key `tone_ms` of its two tones, then `gap_ms` of silence."""
    parts: list[np.ndarray] = []
    tone_n, gap_n = rate * tone_ms // 1000, rate * gap_ms // 1000
    t = np.arange(tone_n) / rate
    for ch in digits:
        if ch in _PAUSES_S:
            parts.append(np.zeros(int(rate * _PAUSES_S[ch])))
            continue
        low, high = DTMF_FREQUENCIES[ch.upper()]
        parts.append((np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)) * (level / 2) * 32767)
        parts.append(np.zeros(gap_n))
    if not parts:
        return b""
    return np.concatenate(parts).astype("<i2").tobytes()
