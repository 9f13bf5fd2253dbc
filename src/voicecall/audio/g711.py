"""ITU-T G.711 μ-law and A-law codecs, table driven.

Linear audio is signed 16-bit PCM (little-endian when passed as ``bytes``). Every conversion is a
single NumPy ``take`` through a precomputed table:

- decode: 256-entry ``int16`` table indexed by the code byte;
- encode: 65536-entry ``uint8`` table indexed by the ``uint16`` view of the ``int16`` sample.

The tables are built once, vectorised, at import time from the classic G.711 reference
algorithms (the Sun/CCITT ``g711.c`` formulation):

- μ-law: sign-magnitude, magnitude clipped to 32635, bias 0x84 added, 3-bit exponent (segment)
  from the position of the leading one, 4-bit mantissa, all bits inverted; decode returns the
  middle of the quantisation interval (``((m << 3) + 0x84) << e) - 0x84``).
- A-law: 13-bit magnitude (``x >> 3``; negatives as ``-x - 1``), 8 segments, 4-bit mantissa,
  even bits inverted (XOR 0x55, sign bit set for non-negative samples).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_ulaw",
    "ulaw_decode",
    "ulaw_encode",
]

ULAW_SILENCE: Final = b"\xff"
"""μ-law code for linear 0 (positive zero)."""
ALAW_SILENCE: Final = b"\xd5"
"""A-law code for the smallest positive level (linear +8), the conventional A-law idle pattern."""

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 32635
_ALAW_SEG_END: Final = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)

Int16Array = npt.NDArray[np.int16]


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its uint16 bit pattern (index i -> int16 with bits i)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x = _all_int16()
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS  # 0x84 .. 0x7FFF
    exponent = np.zeros_like(mag)
    for e in range(1, 8):  # 8 segments, vectorised over all inputs
        exponent[mag >= (0x100 << (e - 1))] = e
    mantissa = (mag >> (exponent + 3)) & 0x0F
    code: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return code


def _build_ulaw_decode() -> Int16Array:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = _all_int16() >> 3  # 13-bit
    negative = x < 0
    mask = np.where(negative, 0x55, 0xD5)
    mag = np.where(negative, -x - 1, x)  # 0 .. 4095
    seg = np.zeros_like(mag)
    for end in _ALAW_SEG_END:
        seg += mag > end
    mantissa = np.where(seg < 2, mag >> 1, mag >> np.maximum(seg, 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (seg << 4) | mantissa)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _build_alaw_decode() -> Int16Array:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENC: Final = _build_ulaw_encode()
_ULAW_DEC: Final = _build_ulaw_decode()
_ALAW_ENC: Final = _build_alaw_encode()
_ALAW_DEC: Final = _build_alaw_decode()
for _t in (_ULAW_ENC, _ULAW_DEC, _ALAW_ENC, _ALAW_DEC):
    _t.flags.writeable = False


def _as_u16(pcm: bytes | bytearray | memoryview | npt.NDArray[np.int16]) -> npt.NDArray[np.uint16]:
    if isinstance(pcm, np.ndarray):
        if pcm.dtype != np.int16:
            raise TypeError(f"expected an int16 array, got {pcm.dtype}")
        return np.ascontiguousarray(pcm).reshape(-1).view(np.uint16)
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM needs an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<u2")


def ulaw_encode(pcm: bytes | bytearray | memoryview | npt.NDArray[np.int16]) -> bytes:
    """Encode 16-bit PCM (little-endian bytes or an int16 array) to μ-law bytes."""
    return _ULAW_ENC.take(_as_u16(pcm)).tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> Int16Array:
    """Decode μ-law bytes to an int16 array (one sample per byte)."""
    return _ULAW_DEC.take(np.frombuffer(data, dtype=np.uint8))


def alaw_encode(pcm: bytes | bytearray | memoryview | npt.NDArray[np.int16]) -> bytes:
    """Encode 16-bit PCM (little-endian bytes or an int16 array) to A-law bytes."""
    return _ALAW_ENC.take(_as_u16(pcm)).tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> Int16Array:
    """Decode A-law bytes to an int16 array (one sample per byte)."""
    return _ALAW_DEC.take(np.frombuffer(data, dtype=np.uint8))


_ALAW_TO_ULAW: Final = bytes(ulaw_encode(_ALAW_DEC))


def alaw_to_ulaw(data: bytes | bytearray | memoryview) -> bytes:
    """A-law bytes as μ-law bytes (one table lookup a byte), for consumers that take μ-law only."""
    return bytes(data).translate(_ALAW_TO_ULAW)
