"""Inbound caller policy (docs/decisions.md D16) and session keys (D18)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from voicecall.calls.phone import digits_only

InboundPolicy = Literal["disabled", "allowlist", "pairing", "open"]
SessionScope = Literal["per-phone", "per-call", "main"]


@dataclass(frozen=True, slots=True)
class Decision:
    accepted: bool
    reason: str


def check_inbound(policy: str, allow_from: Iterable[str], caller: str | None) -> Decision:
    """Accept or reject an inbound caller. Allowlists match digits exactly: no prefixes."""
    if policy == "open":
        return Decision(True, "policy is open")
    if policy == "disabled":
        return Decision(False, "inbound calls are disabled (inboundPolicy: disabled)")
    if policy in ("allowlist", "pairing"):
        number = digits_only(caller)
        if not number:
            return Decision(False, "caller ID is missing or anonymous")
        if any(digits_only(entry) == number for entry in allow_from):
            return Decision(True, "caller is on the allowlist")
        return Decision(False, "caller is not on the allowlist")
    return Decision(False, f"unknown inbound policy {policy!r}")


def session_key(scope: str, agent_id: str, *, call_id: str, remote_number: str | None) -> str:
    """The conversation-memory key for a call. `per-phone` keys on the *remote* party."""
    prefix = f"agent:{agent_id}:voice"
    if scope == "main":
        return f"agent:{agent_id}:main"
    if scope == "per-call":
        return f"{prefix}:call:{call_id}"
    return f"{prefix}:{digits_only(remote_number) or 'unknown'}"
