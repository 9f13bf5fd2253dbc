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
