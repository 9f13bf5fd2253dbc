"""How `voicecall serve` runs the garbage collector: tuned for paced audio.

After start-up, everything allocated so far is frozen out of the collector's reach and
automatic full collections (which walk every live object and stalled every call's audio for
60-140 ms under load) are replaced by one every `FULL_GC_INTERVAL_S`; almost all garbage here is
freed by reference counting anyway.

Young collections are timed around the media pacer, so a collection never delays a frame. A
young-generation collection stops the whole process for 1-10 ms, and an automatic one starts
whenever an allocation crosses the threshold: often in the middle of a pacer tick or just
before one, so every call's next frame goes out late together. With media streams running,
`voicecall serve` turns the automatic collections off and runs young collections (at Python's
default thresholds) right after a tick has sent every stream its frame: the pause then falls in
the gap before the next tick instead of on top of it. Without media, the automatic collector
runs young collections less often than Python's default (`AUTOMATIC_THRESHOLDS`).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Final

__all__ = [
    "AUTOMATIC_THRESHOLDS",
    "FULL_GC_INTERVAL_S",
    "YOUNG_THRESHOLDS",
    "CollectAfterTicks",
    "collect_garbage_periodically",
    "settle_garbage_collector",
]

FULL_GC_INTERVAL_S: Final = 600.0
YOUNG_THRESHOLDS: Final = (700, 10)
"""Python's default generation-0 and generation-1 thresholds: what `CollectAfterTicks` runs
the young collections at while media streams are paced (measured there, so kept)."""
AUTOMATIC_THRESHOLDS: Final = (2000, 10)
"""The automatic collector's, while no pacer runs the collections (webhook and control
traffic): Python 3.13's young threshold. A collection walks every young object still alive,
and a few dozen webhooks in flight hold about a thousand, so at 700 they alone crossed the
threshold every few dozen webhooks (measurements: bench/README.md)."""


def settle_garbage_collector() -> None:
    """Tune the collector once start-up is done (see the module docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*AUTOMATIC_THRESHOLDS, 1_000_000)


async def collect_garbage_periodically(interval_s: float = FULL_GC_INTERVAL_S) -> None:
    """The scheduled full collection that `settle_garbage_collector` leaves out."""
    while True:
        await asyncio.sleep(interval_s)
        gc.collect()


class CollectAfterTicks:
    """A pacer `after_tick` hook: run the young collection that is due, if any.

    `install()` switches the automatic collector off (full collections stay with
    `collect_garbage_periodically`); `uninstall()` switches it back on.
    """

    def __init__(self, young: int = YOUNG_THRESHOLDS[0], middle: int = YOUNG_THRESHOLDS[1]) -> None:
        if young < 1 or middle < 1:
            raise ValueError("thresholds must be positive")
        self.young = young
        self.middle = middle
        self.collections = [0, 0]
        """Young (generation 0) and middle (generation 1) collections run."""
        self._was_enabled = True

    def install(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def uninstall(self) -> None:
        if self._was_enabled:
            gc.enable()

    def __call__(self) -> None:
        young, middle, _ = gc.get_count()
        if middle >= self.middle:
            gc.collect(1)
            self.collections[1] += 1
        elif young >= self.young:
            gc.collect(0)
            self.collections[0] += 1
