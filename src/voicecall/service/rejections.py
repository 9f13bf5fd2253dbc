"""Webhooks refused at verification, counted against the live call they name.

A refused request is unauthenticated, so it never changes a call and is never persisted with it:
the count lives in memory on the live call and only explains why a call looks stuck (the
`status` result, the log, and the end detail of a call that then times out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voicecall.shared.clock import now_ms

if TYPE_CHECKING:
    from voicecall.service.live import LiveCall, LiveCalls

MAX_REASON_CHARS = 300
"""A reason may quote attacker-controlled text (a URL): it is cut to this length."""


def clean_reason(reason: str) -> str:
    """`reason` on one line, printable characters only, at most `MAX_REASON_CHARS` long."""
    text = "".join(c if c.isprintable() else " " for c in reason[:MAX_REASON_CHARS + 1])
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS - 1] + "…"


@dataclass(slots=True)
class Rejections:
    """How many webhooks naming one call were refused, and the latest reason."""

    count: int = 0
    last_reason: str = ""
    last_at: int = 0

    def to_json(self) -> dict[str, Any]:
        """The `webhookRejections` object of a status result."""
        return {"count": self.count, "lastReason": self.last_reason, "lastAt": self.last_at}

    def describe(self) -> str:
        """One phrase for logs and end details."""
        noun = "webhook was" if self.count == 1 else "webhooks were"
        return f"{self.count} {noun} rejected (last: {self.last_reason})"


class WebhookRejections:
    """Counts refused webhooks per live call (the webhook server's `RejectionSink`)."""

    def __init__(self, calls: LiveCalls) -> None:
        self._calls = calls

    def record(self, claimed_call_id: str | None, reason: str) -> tuple[str, int] | None:
        """Count a refusal against the live call `claimed_call_id` names (our id or the
        carrier's); our call id and its count, or None when it names no live call."""
        call = self._calls.get(claimed_call_id) if claimed_call_id else None
        if call is None:
            return None
        if call.rejections is None:
            call.rejections = Rejections()
        entry = call.rejections
        entry.count += 1
        entry.last_reason = clean_reason(reason)
        entry.last_at = now_ms()
        return call.call_id, entry.count

    def of(self, call_id: str) -> Rejections | None:
        """The refusals counted against a live call, if any."""
        call = self._calls.get(call_id)
        return call.rejections if call is not None else None

    @staticmethod
    def annotate(call: LiveCall, detail: str | None) -> str | None:
        """An end detail that also says how many webhooks of the call were refused."""
        if call.rejections is None:
            return detail
        note = call.rejections.describe()
        return f"{detail}; {note}" if detail else note
