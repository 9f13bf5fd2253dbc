"""Garbage collection timed around the media pacer, so a collection never delays a frame.

A young-generation collection stops the whole process for 1-10 ms, and an automatic one starts
whenever an allocation crosses the threshold: often in the middle of a pacer tick or just
before one, so every call's next frame goes out late together. With media streams running,
`voicecall serve` turns the automatic collections off and runs the same collections, at the same
thresholds, right after a tick has sent every stream its frame: the pause then falls in the
gap before the next tick instead of on top of it.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["CollectAfterTicks"]

_DEFAULT_THRESHOLDS: Final = (700, 10)


class CollectAfterTicks:
    """A pacer `after_tick` hook: run the young collection that is due, if any.

    `install()` switches the automatic collector off (full collections stay with
    `collect_garbage_periodically`); `uninstall()` switches it back on.
    """

    def __init__(self, young: int = _DEFAULT_THRESHOLDS[0], middle: int = _DEFAULT_THRESHOLDS[1]) -> None:
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
