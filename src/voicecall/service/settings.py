"""What the call service acts on: its settings, and the fixed bounds of its waits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voicecall.calls.model import CallMode

DEFAULT_GREETING = "Hello! How can I help you today?"
DIAL_TIMEOUT_S = 30.0
HANGUP_TIMEOUT_S = 10.0
STATUS_TIMEOUT_S = 10.0
LISTEN_TIMEOUT_S = 30.0
DTMF_TIMEOUT_S = 30.0
RING_GRACE_MS = 5_000
"""How long past `ringTimeoutMs` we wait for the carrier's own no-answer before ending the call."""


@dataclass(frozen=True, slots=True)
class TransferSettings:
    """Putting calls through to a person (D46)."""

    allowed_numbers: tuple[str, ...] = ()
    """Where the agent's model may transfer (operators may transfer anywhere)."""
    caller_id: str = "ours"
    timeout_s: int = 30
    unavailable_message: str = "Sorry, nobody could take the call right now. I'm still here to help."


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """The parts of the configuration the call service acts on."""

    provider_name: str = "mock"
    from_number: str = "+15550000000"
    max_concurrent_calls: int = 1
    max_duration_seconds: int = 300
    transcript_timeout_ms: int = 180_000
    ring_timeout_ms: int = 30_000
    ring_grace_ms: int = RING_GRACE_MS
    notify_hangup_delay_sec: float = 3
    stale_call_reaper_seconds: int = 120
    reaper_interval_s: float = 30.0
    default_mode: CallMode = "notify"
    inbound_policy: str = "disabled"
    allow_from: tuple[str, ...] = ()
    inbound_greeting: str | None = None
    session_scope: str = "per-phone"
    agent_id: str = "main"
    routes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """`numbers` routes by dialed E.164 number (camelCase keys), stored on the call once."""
    auto_reply: bool = False
    idle_prompt_after_s: float | None = None
    idle_prompt: str = "Are you still there?"
    idle_hangup_after_s: float | None = None
    idle_goodbye: str = "Goodbye!"
    transfer: TransferSettings = field(default_factory=TransferSettings)
    host_pid: int | None = None
    """Set when a CLI command hosts its calls itself (no gateway running): the calls it places
    record it as `metadata.hostPid`, and a later start ends them if that process is gone."""


def speak_timeout_s(text: str) -> float:
    """How long speaking `text` may take before it counts as failed."""
    return 30.0 + len(text) * 0.2


def speech_turn_timeout_s(settings: ServiceSettings) -> float:
    """How long speech may wait for its turn (the answer, then the speech asked for before it):
    as long as a call can live, ringing and then answered."""
    ring_s = (settings.ring_timeout_ms + settings.ring_grace_ms) / 1000
    return ring_s + settings.max_duration_seconds
