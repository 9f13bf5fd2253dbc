"""A call's speech line: who may speak next (docs/decisions.md D21).

Every utterance, key sequence and `continue` prompt takes a place in its call's line the moment
it is asked for (before any `await`), and plays only when it is at the head of the line and the
call has been answered. A call created with an opening (its first message, or keys to send first)
has the head reserved for it, so speech asked for before the answer, at the answer or during
the opening message always follows the opening. When the call ends, every waiting place fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from voicecall.calls.model import CallRecord


class Place:
    """One place in a speech line."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return f"<Place {self.label}>"


class TurnError(Exception):
    """A place never reached its turn; the message says why (the call ended, or the wait ran
    out)."""


def has_opening(record: CallRecord) -> bool:
    """Whether the call still has its opening to deliver: the first message, or the keys to
    send before it."""
    meta = record.metadata
    keys_due = bool(meta.get("dtmfSequence")) and not meta.get("dtmfSequenceSent")
    return bool(meta.get("initialMessage")) or keys_due


class SpeechLine:
    """The order in which a call's speech plays; see the module docstring."""

    def __init__(self, *, answered: bool, opening: bool) -> None:
        self._places: deque[Place] = deque()
        self._answered = answered
        self._ended: str | None = None
        self._changed = asyncio.Event()
        self._opening: Place | None = self.join("opening") if opening else None

    def join(self, label: str = "speech") -> Place:
        """A new place at the end of the line (call it before any `await`: arrival order)."""
        place = Place(label)
        self._places.append(place)
        return place

    def claim_opening(self) -> Place | None:
        """The place reserved for the opening, once (None when there is none or it was
        claimed)."""
        place, self._opening = self._opening, None
        return place

    def waiting(self) -> bool:
        """Whether any speech is waiting in the line."""
        return bool(self._places)

    def answered(self) -> None:
        """The call was answered: the head of the line may speak."""
        self._answered = True
        self._wake()

    def end(self, reason: str) -> None:
        """The call ended: every place still waiting fails with `reason`."""
        self._ended = reason
        self._opening = None
        self._wake()

    def leave(self, place: Place) -> None:
        """Give up `place` (done, or failed); the next one may speak. Leaving twice is harmless."""
        was_head = bool(self._places) and self._places[0] is place
        with contextlib.suppress(ValueError):
            self._places.remove(place)
        if was_head:
            self._wake()

    def is_turn(self, place: Place) -> bool:
        return self._answered and bool(self._places) and self._places[0] is place

    async def wait_turn(self, place: Place, timeout_s: float) -> None:
        """Return once `place` may speak; `TurnError` when the call ends first or after
        `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._ended is None and not self.is_turn(place):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TurnError(self._late(timeout_s))
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        if self._ended is not None:
            raise TurnError(f"the call ended ({self._ended}) before it was said")

    def _late(self, timeout_s: float) -> str:
        if not self._answered:
            return f"the call was not answered within {timeout_s:g} s"
        return f"earlier speech on the call did not finish within {timeout_s:g} s"

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
