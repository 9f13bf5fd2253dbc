"""What the built-in tools may do on the call a turn belongs to (the auto-reply implements it)."""

from __future__ import annotations

from typing import Any, Protocol


class CallControls(Protocol):
    """The call in progress, as the responder's tools see it."""

    async def send_dtmf(self, digits: str) -> None:
        """Press keys on the call, in line with its speech; `CallError` if it cannot."""
        ...

    def transfer_targets(self) -> tuple[str, ...]:
        """The numbers the model may transfer this call to (empty: no transfers)."""
        ...

    def transfer(self, to: str, message: str | None) -> str:
        """Start putting the call through to `to` (after this turn's speech, with `message`
        said first); the number dialed, or `CallError` when `to` is not allowed."""
        ...

    def info(self) -> dict[str, Any]:
        """What is known about the call (ids, numbers, direction, state, timing)."""
        ...

    def end_after_reply(self, detail: str) -> None:
        """Hang up once everything said in this turn has been spoken."""
        ...

    async def log_tool(self, text: str) -> None:
        """Keep a `tool` entry on the call's transcript."""
        ...
