"""The first words of a call in the answer to its answer webhook (docs/decisions.md D45).

A carrier that drives calls with documents (TwiML, Plivo XML) asks the gateway what to do the
moment the callee answers. Without help, the gateway answers "hold", then sends the opening
message in a second request (a REST update): one more round trip before the callee hears
anything. An `AnswerWindow` lets the first document the call is sent ride in that answer:

- the adapter opens a window when the call is placed (or an inbound call is accepted);
- a command that would send the call a document first offers it to the window (`park`); the
  answer takes it (`take`) and the command skips its REST request;
- the answer waits a short, bounded time for a document when the call service said speech is
  due (`EventOutcome.speech_due`); a parked document that no answer takes in time is reclaimed
  and sent by REST, so nothing is lost whichever side comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

ANSWER_WAIT_S = 1.0
"""How long an answer waits for the first document when speech is due."""
PARK_WAIT_S = 2.0
"""How long a parked document waits for an answer to take it before it is sent by REST."""

_State = Literal["open", "parked", "taken", "closed"]


class AnswerWindow:
    """One call's window; see the module docstring. Not thread-safe (one event loop)."""

    __slots__ = ("_arrived", "_document", "_state", "_taken")

    def __init__(self) -> None:
        self._state: _State = "open"
        self._document: str | None = None
        self._arrived = asyncio.Event()
        self._taken = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return self._state == "open"

    async def park(self, document: str) -> bool:
        """Offer `document` to the answer; True once an answer took it, False when the window
        was not open or no answer took it within `PARK_WAIT_S` (send it yourself then)."""
        if self._state != "open":
            return False
        self._state, self._document = "parked", document
        self._arrived.set()
        try:
            await asyncio.wait_for(self._taken.wait(), PARK_WAIT_S)
        except TimeoutError:
            if self._state == "parked":  # still not taken: reclaim it
                self._state, self._document = "closed", None
                return False
        return True

    async def take(self, *, wait: bool) -> str | None:
        """The parked document for the answer (waiting up to `ANSWER_WAIT_S` for one when
        `wait`), or None; either way the window closes."""
        if wait and self._state == "open":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), ANSWER_WAIT_S)
        if self._state != "parked":
            self._state = "closed"
            return None
        document, self._document, self._state = self._document, None, "taken"
        self._taken.set()
        return document

    def close(self) -> None:
        """No answer will take a document any more (the call ended or streams its audio)."""
        if self._state == "open":
            self._state = "closed"
