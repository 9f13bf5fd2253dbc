"""The simulated far end every carrier simulator shares: how the callee (or inbound caller)
behaves; what it sends into a media stream is `media_clock.CallerFeed`, re-exported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from voicecall.testing.media_clock import FRAME_BYTES, CallerFeed

__all__ = ["FRAME_BYTES", "SILENCE", "Callee", "CallerFeed", "Outcome"]

SILENCE = 0xFF
"""μ-law silence."""

Outcome = Literal["answer", "busy", "no-answer", "failed"]


@dataclass
class Callee:
    """How the far end behaves: the person answering an outbound call, or the inbound caller."""

    outcome: Outcome = "answer"
    answer_after_s: float = 0.5  # ring time before answering (or before `busy`)
    replies: list[str] = field(default_factory=list)  # one per speech listen, then silence
    digits: list[str] = field(default_factory=list)  # one per DTMF listen
    reply_delay_s: float = 0.3  # from the end of the prompt to the start of the reply
    hangup_after_s: float | None = None  # hang up this long after answer
    answered_by: str = "human"  # the machine-detection result (machine_* is a machine)
    confidence: float = 0.92  # recognition confidence posted with the speech
    open_streams: bool = True
    """Twilio simulator: with False, a `<Connect><Stream>` is recorded on the call (`streams`,
    never `started_at`) and the call stays there, as if the stream were open, until it is hung up
    or redirected: a load generator then opens the stream itself, with
    `TwilioSimulator.stream_entries()`."""
