"""What the service calls back into higher layers, as protocols those layers implement (the
responder and the media hub), so the service never imports them."""

from __future__ import annotations

import asyncio
from typing import Protocol

from voicecall.calls.model import CallRecord
from voicecall.providers.streams import PlaybackResult


class TurnHandler(Protocol):
    """Answers a caller's turn (the responder); the service tells it when the caller spoke."""

    async def on_caller_turn(self, call: CallRecord, text: str, generation: int,
                             heard_at: int) -> None: ...

    async def on_greeted(self, call: CallRecord) -> None:
        """The opening has been said on a call it answers: start listening (`service.listen`),
        or, if it cannot answer this call at all, say so and end it."""
        ...


class MediaPlayer(Protocol):
    """Speaking over a media stream instead of carrier commands (`voicecall.media.MediaHub`)."""

    def handles(self, call: CallRecord) -> bool: ...
    def enqueue(self, call: CallRecord, text: str) -> asyncio.Future[PlaybackResult]:
        """Queue `text` for the call's stream now (in call order); the future tells how it ended."""
        ...

    def enqueue_dtmf(self, call: CallRecord, digits: str) -> asyncio.Future[PlaybackResult]:
        """Queue key tones on the call's stream (a stream has no out-of-band keys)."""
        ...
