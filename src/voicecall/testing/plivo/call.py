"""One simulated Plivo call: what the far end heard and did, and helpers to wait for it."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from voicecall.testing.far_end import Callee, CallerFeed

if TYPE_CHECKING:
    from voicecall.testing.plivo.media import PlivoStreamRecord

__all__ = ["ENDED", "CallbackRecord", "Callee", "PlivoCall", "SpeakRecord"]

ENDED = frozenset({"completed", "busy", "failed", "no-answer", "timeout", "cancel"})
"""Plivo's end statuses (`CallStatus` of the hangup callback)."""


@dataclass(slots=True)
class CallbackRecord:
    """One signed request the simulator sent to the app (each retry is its own record)."""

    kind: str  # answer / ring / hangup / action / redirect / transfer / machine
    call_uuid: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    status_code: int | None = None
    body: str = ""
    error: str | None = None


@dataclass(slots=True)
class SpeakRecord:
    """A `<Speak>` the far end heard to the end."""

    text: str
    voice: str | None
    language: str | None


@dataclass
class _Changes:
    """A version counter the waiting helpers poll, woken on every change."""

    version: int = 0
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def bump(self) -> None:
        self.version += 1
        self.event.set()
        self.event = asyncio.Event()


class PlivoCall:
    """A call as Plivo runs it, seen from the far end (the callee or inbound caller)."""

    def __init__(self, *, uuid: str, direction: str, from_: str, to: str, callee: Callee,
                 answer_url: str, hangup_url: str | None = None, ring_url: str | None = None,
                 machine_detection_url: str | None = None, ring_timeout_s: float = 120.0) -> None:
        self.uuid = uuid
        self.request_uuid = uuid
        """What the create-call API answered; the same as `uuid` unless the simulator is told
        otherwise (`distinct_request_uuid`)."""
        self.direction = direction
        self.from_ = from_
        self.to = to
        self.callee = dataclasses.replace(callee, replies=list(callee.replies),
                                          digits=list(callee.digits))
        self.answer_url = answer_url
        self.hangup_url = hangup_url
        self.ring_url = ring_url
        self.machine_detection_url = machine_detection_url
        self.ring_timeout_s = ring_timeout_s
        self.status = "queued"
        self.statuses = ["queued"]
        self.created_at = time.time()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.hangup_cause: str | None = None
        self.hangup_source: str | None = None
        self.heard: list[tuple[str, str]] = []
        self.spoken: list[SpeakRecord] = []
        self.documents: list[str] = []
        self.get_inputs: list[dict[str, str]] = []
        self.dialed: list[str] = []
        self.dial_results: list[tuple[str, str]] = []
        """(number, DialStatus) of each finished `<Dial>`."""
        self.streams: list[PlivoStreamRecord] = []
        self.errors: list[str] = []
        self.feed = CallerFeed()
        self.transfers: asyncio.Queue[str] = asyncio.Queue()
        self.input_arrived = asyncio.Event()
        self.end_requested = asyncio.Event()
        self.end_status: tuple[str, str, str] | None = None  # status, cause, source
        self.finished = asyncio.Event()
        self.streaming = False
        self._changes = _Changes()

    def __repr__(self) -> str:
        return f"<PlivoCall {self.uuid} {self.direction} {self.from_}->{self.to} {self.status}>"

    # -- views -----------------------------------------------------------------------------------
    @property
    def is_ended(self) -> bool:
        return self.status in ENDED

    @property
    def said(self) -> list[str]:
        """The texts of every `<Speak>` heard to the end."""
        return [value for kind, value in self.heard if kind == "speak"]

    @property
    def digits_heard(self) -> str:
        """Every DTMF key the app played to the far end, in order."""
        return "".join(value for kind, value in self.heard if kind == "digits")

    @property
    def duration_s(self) -> int:
        if self.answered_at is None:
            return 0
        return max(0, round((self.ended_at or time.time()) - self.answered_at))

    # -- recording -------------------------------------------------------------------------------
    def changed(self) -> None:
        self._changes.bump()

    def set_status(self, status: str) -> None:
        self.status = status
        self.statuses.append(status)
        self.changed()

    def hear(self, kind: str, value: str) -> None:
        self.heard.append((kind, value))
        self.changed()

    def request_end(self, status: str, cause: str, source: str) -> None:
        """End the call soon (a hang-up by someone); the first request wins."""
        if self.end_status is None and not self.is_ended:
            self.end_status = (status, cause, source)
            self.end_requested.set()

    def next_input(self, kinds: set[str]) -> tuple[str, str] | None:
        """The far end's next answer to a `GetInput` taking `kinds`, consumed."""
        if "speech" in kinds and self.callee.replies:
            return "speech", self.callee.replies.pop(0)
        if "dtmf" in kinds and self.callee.digits:
            return "dtmf", self.callee.digits.pop(0)
        return None

    # -- driving the far end ---------------------------------------------------------------------
    def reply(self, text: str) -> None:
        """The far end says `text` (to the current or next speech `GetInput`)."""
        self.callee.replies.append(text)
        self.input_arrived.set()

    def press(self, digits: str) -> None:
        """The far end presses keys: `dtmf` on an open stream, else a `GetInput` answer."""
        if self.streaming:
            self.feed.press(digits)
        else:
            self.callee.digits.append(digits)
            self.input_arrived.set()

    def send_audio(self, mulaw: bytes) -> None:
        """The far end speaks raw 8 kHz μ-law audio into the open stream."""
        self.feed.add_audio(mulaw)

    async def hangup(self, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """The far end hangs up; returns the final status."""
        self.request_end("completed", "NORMAL_CLEARING", "Caller" if self.direction == "inbound"
                         else "Callee")
        return await self.wait_ended(timeout)

    # -- waiting ---------------------------------------------------------------------------------
    async def wait_until(self, predicate: Callable[[], object], timeout: float = 5.0,  # noqa: ASYNC109
                         what: str = "condition") -> None:
        """Wait until `predicate()` is true; TimeoutError after `timeout` seconds."""
        async def until() -> None:
            while not predicate():
                await self._changes.event.wait()
        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise TimeoutError(f"{self!r}: no {what} within {timeout}s (statuses={self.statuses}, "
                               f"heard={self.heard}, errors={self.errors})") from None

    async def wait_ended(self, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """Wait until the call has ended and its hangup callback has been delivered."""
        await self.wait_until(self.finished.is_set, timeout, "end")
        return self.status

    async def wait_heard(self, text: str, timeout: float = 5.0) -> tuple[str, str]:  # noqa: ASYNC109
        """Wait until something containing `text` has been heard to the end; returns it."""
        await self.wait_until(lambda: any(text in v for _, v in self.heard), timeout,
                              f"heard {text!r}")
        return next(h for h in self.heard if text in h[1])

    async def wait_stream(self, timeout: float = 5.0) -> PlivoStreamRecord:  # noqa: ASYNC109
        """Wait until an audio stream has started; returns its record."""
        await self.wait_until(lambda: any(s.started for s in self.streams), timeout, "stream")
        return next(s for s in self.streams if s.started)
