"""One shared real-time clock that paces outbound media frames for many streams.

A single ``Pacer`` ticks every ``frame_ms`` on absolute deadlines ``t0 + n * frame_ms`` scheduled
with ``loop.call_at`` (drift-free: a late tick does not push later ticks back). On each tick it
asks every registered sink for its due frame and sends it — one wakeup per tick for all streams
instead of one timer per stream.

After a stall (a tick fires more than one frame late) the missed ticks are skipped, never
replayed: each sink still gets at most one frame per tick, so a hiccup costs latency once instead
of bursting the backlog into the carrier's jitter buffer (which would also defeat ``clear``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

__all__ = ["FrameSink", "Pacer", "PacerStats"]

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    """A stream the pacer feeds. Both methods run on the event loop and must not block."""

    def next_frame(self) -> Any:
        """The frame due now (bytes, or a ready carrier message), or None if nothing is due
        (nothing is sent this tick)."""
        ...

    def send_frame(self, frame: Any) -> None:
        """Send ``frame`` without blocking (e.g. write it to a transport)."""
        ...


@dataclass
class PacerStats:
    ticks: int = 0
    """Ticks run."""
    late_ticks: int = 0
    """Ticks that fired more than one frame late (stalls); each one skipped >= 1 tick."""
    skipped_ticks: int = 0
    """Scheduled ticks dropped after stalls instead of being replayed."""
    max_lateness_ms: float = 0.0
    """Worst lateness of a tick against its deadline."""
    frames_sent: int = 0
    sink_errors: int = 0
    """Sinks removed because next_frame or send_frame raised."""
    lateness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=0))
    """Lateness of the most recent ticks (kept only when ``Pacer(history=N)``, N > 0)."""


class Pacer:
    """Shared frame clock: ``add`` sinks, ``await start()``, ``await stop()``."""

    def __init__(self, frame_ms: int = 20, *, history: int = 0) -> None:
        if frame_ms <= 0:
            raise ValueError(f"frame_ms must be positive, got {frame_ms}")
        self.frame_ms = frame_ms
        self._period = frame_ms / 1000.0
        self._sinks: dict[FrameSink, None] = {}  # insertion-ordered set, O(1) removal
        self._snapshot: tuple[FrameSink, ...] | None = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._n = 0
        self.stats = PacerStats(lateness_ms=deque(maxlen=max(0, history)))
        self.after_tick: Callable[[], None] | None = None
        """Called after each tick has sent its frames: work that must not delay a frame (e.g.
        garbage collection) runs here, in the gap before the next tick."""

    # sinks -----------------------------------------------------------------------------------

    def add(self, sink: FrameSink) -> None:
        """Start pacing ``sink`` from the next tick (adding twice is a no-op)."""
        if sink not in self._sinks:
            self._sinks[sink] = None
            self._snapshot = None

    def remove(self, sink: FrameSink) -> None:
        """Stop pacing ``sink`` from the next tick (unknown sinks are ignored)."""
        if sink in self._sinks:
            del self._sinks[sink]
            self._snapshot = None

    def __len__(self) -> int:
        return len(self._sinks)

    def __contains__(self, sink: object) -> bool:
        return sink in self._sinks

    # clock -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._handle is not None

    async def start(self) -> None:
        """Start ticking on the running loop; the first tick is due now."""
        if self._handle is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._t0 = loop.time()
        self._n = 0
        self._handle = loop.call_at(self._t0, self._tick)

    async def stop(self) -> None:
        """Stop ticking (sinks stay registered)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        period = self._period
        stats = self.stats
        lateness = loop.time() - (self._t0 + self._n * period)
        if lateness > period:
            # Stalled: the deadlines n+1 .. n+missed have passed too. Serve one tick now and
            # drop the rest rather than bursting them out back to back.
            missed = int(lateness // period)
            self._n += missed
            stats.late_ticks += 1
            stats.skipped_ticks += missed
        lateness_ms = lateness * 1000.0
        if lateness_ms > stats.max_lateness_ms:
            stats.max_lateness_ms = lateness_ms
        if stats.lateness_ms.maxlen:
            stats.lateness_ms.append(lateness_ms)
        stats.ticks += 1

        sinks = self._snapshot
        if sinks is None:
            sinks = self._snapshot = tuple(self._sinks)
        sent = 0
        for sink in sinks:
            try:
                frame = sink.next_frame()
                if frame is not None:
                    sink.send_frame(frame)
                    sent += 1
            except Exception:
                log.exception("frame sink %r failed; removing it from the pacer", sink)
                stats.sink_errors += 1
                self.remove(sink)
        stats.frames_sent += sent
        if self.after_tick is not None:
            try:
                self.after_tick()
            except Exception:
                log.exception("the pacer's after-tick hook failed")

        self._n += 1
        if self._handle is not None:  # not stopped by a sink during this tick
            self._handle = loop.call_at(self._t0 + self._n * period, self._tick)
