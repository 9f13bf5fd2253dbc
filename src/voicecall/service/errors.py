"""Errors of call commands, safe to show to users; `code` is the JSON-RPC error code."""

from __future__ import annotations


class CallError(Exception):
    """A call command could not be carried out; the message is safe to show to users."""

    def __init__(self, message: str, *, call_id: str | None = None, code: int = -32000) -> None:
        super().__init__(message)
        self.call_id = call_id
        self.code = code


class CallNotFound(CallError):
    def __init__(self, call_id: str) -> None:
        super().__init__(f"Call not found: {call_id}", call_id=call_id, code=-32004)


class CapacityReached(CallError):
    """`maxConcurrentCalls` live calls already hold every slot; the message names them and how
    to free one or raise the cap."""

    SHOWN = 5

    def __init__(self, limit: int, live_call_ids: list[str]) -> None:
        shown = ", ".join(live_call_ids[:self.SHOWN])
        if len(live_call_ids) > self.SHOWN:
            shown += f" and {len(live_call_ids) - self.SHOWN} more"
        example = live_call_ids[0] if live_call_ids else "<id>"
        super().__init__(
            f"Maximum concurrent calls ({limit}) reached: held by live call(s) {shown}. End one "
            f"with `voicecall end --call-id {example}`, or raise maxConcurrentCalls in the config",
            code=-32003)
