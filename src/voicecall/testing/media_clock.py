"""The carrier side of a media stream, independent of any carrier's wire format: what the
caller feeds in (audio, else silence, and keys), a frame clock ticking every 20 ms, and the
playout of the app's audio that decides when a mark has "played".

Every carrier simulator's media client (Twilio's, Telnyx's) sends its own messages around these.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["FRAME_BYTES", "FRAME_SECONDS", "CallerFeed", "Playout", "run_frames"]

FRAME_BYTES = 160
FRAME_SECONDS = 0.02
RESYNC_AFTER_S = 0.2


class CallerFeed:
    """What the caller sends into the stream: G.711 audio (else silence) and DTMF keys."""

    def __init__(self, silence: int = 0xFF) -> None:
        self.silence = silence
        self.audio = bytearray()
        self.dtmf: deque[str] = deque()

    def add_audio(self, g711: bytes) -> None:
        """Queue raw 8 kHz G.711 audio in the stream's law; it goes out 160 bytes per 20 ms frame."""
        self.audio.extend(g711)

    def press(self, digits: str) -> None:
        """Queue DTMF keys; each becomes one `dtmf` message on the next frame."""
        self.dtmf.extend(digits)

    def take_frame(self) -> bytes:
        """The next 20 ms of caller audio, padded with silence."""
        chunk = bytes(self.audio[:FRAME_BYTES])
        del self.audio[:FRAME_BYTES]
        return chunk + bytes([self.silence]) * (FRAME_BYTES - len(chunk))


class Playout:
    """The app's audio as the phone plays it: 8000 bytes a second of real time, marks echoed once
    everything queued before them has played, and everything dropped on `clear`."""

    def __init__(self) -> None:
        self.queued = 0
        """Bytes of app audio received (after clears)."""
        self.played = 0
        """Bytes of it played so far."""
        self.cleared_bytes = 0
        self._marks: deque[tuple[str, int]] = deque()

    def add_audio(self, size: int) -> None:
        self.queued += size

    def add_mark(self, name: str) -> None:
        self._marks.append((name, self.queued))

    def tick(self) -> list[str]:
        """One frame played; the marks now due."""
        self.played = min(self.queued, self.played + FRAME_BYTES)
        due: list[str] = []
        while self._marks and self._marks[0][1] <= self.played:
            due.append(self._marks.popleft()[0])
        return due

    def clear(self) -> list[str]:
        """Drop the queued audio; every pending mark is due at once."""
        self.cleared_bytes += self.queued - self.played
        self.played = self.queued
        due = [name for name, _ in self._marks]
        self._marks.clear()
        return due


async def run_frames(on_frame: Callable[[int], Awaitable[None]]) -> None:
    """Call `on_frame(k)` (k = 1, 2, ...) every 20 ms on a steady clock until cancelled; after a
    long stall (a busy loop) the clock resynchronises instead of sending a burst."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    k = 0
    while True:
        k += 1
        target = t0 + k * FRAME_SECONDS
        now = loop.time()
        if now - target > RESYNC_AFTER_S:
            t0 = now - k * FRAME_SECONDS
            target = now
        await asyncio.sleep(max(0.0, target - now))
        await on_frame(k)
