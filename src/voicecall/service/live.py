"""One object per live call, and the registry that finds them by our id or the carrier's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

from voicecall.calls.model import CallRecord
from voicecall.service.line import SpeechLine, has_opening
from voicecall.service.rejections import Rejections


@dataclass(slots=True)
class Waiter:
    """A `continue` waiting for the caller's next final transcript."""

    token: str
    future: asyncio.Future[str]
    turn_started_at: int
    listen_started_at: int = 0


@dataclass(slots=True, eq=False)
class LiveCall:
    """Everything the service keeps about a call while it is live. Its lock serializes every
    change to the record (events, commands, timers)."""

    record: CallRecord
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiter: Waiter | None = None
    """The `continue` waiting for a transcript, if any."""
    in_turn: bool = False
    """A `continue` is in progress (speaking its message or waiting)."""
    line: SpeechLine = field(init=False)
    """The order its speech plays in: the opening first, then every request as it came."""
    generation: int = 0
    """Bumped whenever the caller speaks or interrupts: replies of older generations are stale."""
    speech_ended_at: int | None = None
    """When the caller last stopped talking, from the stream's voice activity detection."""
    rejections: Rejections | None = None
    """Webhooks naming this call that failed verification (memory only, never persisted)."""
    restored: bool = False
    """Came back from the store after a restart: an earlier process saw it start (D93)."""

    def __post_init__(self) -> None:
        record = self.record
        self.line = SpeechLine(answered=record.answered_at is not None, opening=has_opening(record))

    @property
    def call_id(self) -> str:
        return self.record.call_id


class LiveCalls:
    """The live calls, by our call id, and our id by the carrier's call id."""

    def __init__(self) -> None:
        self._by_id: dict[str, LiveCall] = {}
        self._by_provider: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[LiveCall]:
        return iter(list(self._by_id.values()))

    def occupied(self) -> int:
        """Calls that take a place under `maxConcurrentCalls`: those not ended. A call that has
        just ended may still be here while its last write completes; it no longer counts."""
        return sum(1 for call in self._by_id.values() if not call.record.is_terminal)

    def get(self, call_id: str) -> LiveCall | None:
        """A live call by our id or the carrier's id."""
        call = self._by_id.get(call_id)
        if call is None and call_id in self._by_provider:
            call = self._by_id.get(self._by_provider[call_id])
        return call

    def add(self, record: CallRecord) -> LiveCall:
        call = self._by_id[record.call_id] = LiveCall(record)
        if record.provider_call_id:
            self._by_provider[record.provider_call_id] = record.call_id
        return call

    def link(self, call: LiveCall, provider_call_id: str) -> None:
        """The carrier's id for `call` became known."""
        self._by_provider[provider_call_id] = call.call_id

    def unlink(self, provider_call_id: str) -> None:
        self._by_provider.pop(provider_call_id, None)

    def remove(self, record: CallRecord) -> LiveCall | None:
        call = self._by_id.pop(record.call_id, None)
        pcid = record.provider_call_id
        if pcid and self._by_provider.get(pcid) == record.call_id:
            del self._by_provider[pcid]
        return call
