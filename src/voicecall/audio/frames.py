"""Cut a byte stream into fixed-size media frames (160 bytes = 20 ms of 8 kHz G.711)."""

from __future__ import annotations

from typing import Final, Literal

from voicecall.audio.g711 import ALAW_SILENCE, ULAW_SILENCE

__all__ = ["FRAME_BYTES", "FrameSplitter", "silence_frame"]

FRAME_BYTES: Final = 160
"""20 ms at 8 kHz, one byte per sample."""

Codec = Literal["ulaw", "alaw", "pcm16"]
_SILENCE_BYTE: Final[dict[str, bytes]] = {"ulaw": ULAW_SILENCE, "alaw": ALAW_SILENCE, "pcm16": b"\x00"}


def silence_frame(n: int = FRAME_BYTES, codec: Codec = "ulaw") -> bytes:
    """``n`` bytes of digital silence for ``codec`` ("ulaw", "alaw", or "pcm16" zeros)."""
    try:
        return _SILENCE_BYTE[codec] * n
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}") from None


class FrameSplitter:
    """Accumulate bytes and hand out complete ``frame_bytes``-sized frames."""

    __slots__ = ("_buf", "_frame_bytes")

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        if frame_bytes <= 0:
            raise ValueError(f"frame_bytes must be positive, got {frame_bytes}")
        self._frame_bytes = frame_bytes
        self._buf = bytearray()

    @property
    def frame_bytes(self) -> int:
        return self._frame_bytes

    @property
    def pending(self) -> int:
        """Bytes buffered towards the next (incomplete) frame."""
        return len(self._buf)

    def push(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return every frame completed by it (possibly none)."""
        buf = self._buf
        buf += data
        fb = self._frame_bytes
        end = len(buf) - len(buf) % fb
        if end == 0:
            return []
        view = memoryview(buf)
        try:
            frames = [bytes(view[i : i + fb]) for i in range(0, end, fb)]
        finally:
            view.release()
        del buf[:end]
        return frames

    def flush(self, pad: bytes = ULAW_SILENCE) -> bytes | None:
        """Return the buffered partial frame padded with the one-byte ``pad`` (None if empty)."""
        if len(pad) != 1:
            raise ValueError("pad must be a single byte")
        if not self._buf:
            return None
        frame = bytes(self._buf) + pad * (self._frame_bytes - len(self._buf))
        self._buf.clear()
        return frame

    def clear(self) -> None:
        """Drop the buffered partial frame."""
        self._buf.clear()
