"""Waiting for a carrier to confirm that speech (or keys) it was asked to play has played.

Carriers driven by commands accept a "say this" request at once and report the end of playback
later (Twilio by requesting a per-utterance URL, Telnyx with `call.speak.ended`), while
`play_tts` must return only once the caller has heard it (D20). Each utterance gets an id the
carrier echoes back; the call's end fails its pending waits at once, so nothing waits forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from uuid import uuid4

from voicecall.providers.base import ProviderError


class PlaybackWaits:
    """Pending playbacks of one carrier adapter, by utterance id."""

    def __init__(self, carrier: str) -> None:
        self.carrier = carrier
        self._pending: dict[str, tuple[str, asyncio.Future[None]]] = {}

    async def play(self, call_id: str, send: Callable[[str], Awaitable[None]]) -> None:
        """Send the command (`send(utterance_id)`), then wait until `played(utterance_id)`."""
        utt = uuid4().hex
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[utt] = (call_id, fut)
        try:
            await send(utt)
            await fut
        finally:
            self._pending.pop(utt, None)

    def played(self, utt: str) -> bool:
        """The carrier finished playing `utt`; False when nothing waits for it (a retry)."""
        entry = self._pending.get(utt)
        if entry is None or entry[1].done():
            return False
        entry[1].set_result(None)
        return True

    def not_played(self, utt: str, why: str) -> None:
        """The carrier gave up on `utt` (the call hung up, a machine answered, ...): its wait fails."""
        entry = self._pending.get(utt)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(ProviderError(f"{self.carrier}: playback did not finish ({why})"))

    def oldest(self, call_id: str) -> str | None:
        """The call's longest-waiting utterance (carriers play a call's speech in order)."""
        return next((utt for utt, (owner, fut) in self._pending.items()
                     if owner == call_id and not fut.done()), None)

    def fail_call(self, call_id: str) -> None:
        """The call ended: its pending playbacks fail now."""
        for owner, fut in list(self._pending.values()):
            if owner == call_id and not fut.done():
                fut.set_exception(ProviderError(f"{self.carrier}: the call ended during playback"))

    def cancel_all(self) -> None:
        for _owner, fut in self._pending.values():
            if not fut.done():
                fut.cancel()
