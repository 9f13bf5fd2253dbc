"""The carrier interface and the carrier-neutral shapes that cross it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from voicecall.calls.events import CallEvent
from voicecall.calls.model import CallMode, CallRecord, EndReason
from voicecall.providers.streams import MediaStreams
from voicecall.shared.request import WebhookRequest as WebhookRequest


class EventOutcome(NamedTuple):
    """What became of one applied event: the call it now belongs to, or why it was refused."""

    call: CallRecord | None
    rejected: str | None = None
    speech_due: bool = False
    """The event answered the call and the service is about to send it something (its opening,
    speech asked for before the answer, or a listen): an answer that can carry the first words
    may wait briefly for them (providers/answer_window.py)."""


class ProviderContext(Protocol):
    """What the call service offers a carrier adapter: event delivery, the carrier-side state
    it must keep across restarts (such as the webhook URL a call was placed with, or its
    media-stream token), and read access to calls."""

    webhook_url: str
    """Where carriers reach this gateway's webhook (the public URL when one is configured)."""
    stream_url: str | None
    """Where carriers open media streams (ws:// or wss://), when streaming is on."""

    async def emit(self, events: list[CallEvent]) -> list[EventOutcome]: ...
    async def get_provider_state(self, call_id: str) -> dict[str, Any] | None: ...
    async def put_provider_state(self, call_id: str, data: dict[str, Any]) -> None: ...
    def live(self, call_id: str) -> CallRecord | None: ...
    async def get_call(self, call_id: str) -> CallRecord | None: ...
    async def was_rejected(self, provider_call_id: str) -> bool: ...


class ProviderError(Exception):
    """A carrier request failed; the message names the carrier, status and reason."""


class Verification(NamedTuple):
    """Result of checking a webhook's authenticity; `request_key` identifies it for replay checks."""

    ok: bool
    request_key: str | None = None
    reason: str | None = None
    call_id: str | None = None
    """On failure, the call the request names (our id or the carrier's), as the adapter reads it
    without trusting the request: used only to count the refusal against that call."""


@dataclass(slots=True)
class ParsedWebhook:
    """What a webhook means (events) and what to answer the carrier (body, headers, status)."""

    events: list[CallEvent] = field(default_factory=list)
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    meta: dict[str, Any] = field(default_factory=dict)
    """What the adapter learnt while parsing that it needs again to choose its reply."""


class WebhookParseError(Exception):
    """The webhook body is malformed; answered with 400 and nothing changes."""


@dataclass(frozen=True, slots=True)
class DialRequest:
    """Everything a carrier needs to place an outbound call."""

    call_id: str
    from_: str
    to: str
    webhook_url: str
    mode: CallMode
    message: str | None
    ring_timeout_ms: int


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """Put the call through to a person (D46)."""

    to: str
    caller_id: str
    """The number the person sees calling."""
    timeout_s: int
    """How long the person's phone rings before the transfer counts as `no-answer`."""


@dataclass(frozen=True, slots=True)
class ProviderCallStatus:
    """A carrier's view of a call: its raw status, whether it has ended, and the end reason."""

    status: str
    is_terminal: bool
    is_unknown: bool = False
    end_reason: EndReason | None = None


@runtime_checkable
class Provider(Protocol):
    """A carrier adapter. Commands raise `ProviderError`; `play_tts` returns once it has played."""

    name: str
    required_headers: tuple[str, ...]
    """Lower-case header names a genuine webhook always has (an entry `a|b` is satisfied by
    either); a request without them gets 401 before its body is read."""

    @property
    def requires_public_webhook(self) -> bool:
        """True when the carrier must reach the webhook from the internet (no local-only URL)."""
        ...

    @property
    def media_streams(self) -> MediaStreams | None:
        """The carrier's media-stream support when calls are to be streamed, else None."""
        ...

    def bind(self, context: ProviderContext) -> None: ...
    def set_public_url(self, url: str) -> None:
        """The public webhook URL a tunnel gave the gateway (used like a configured publicUrl,
        which wins when set)."""
        ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def verify_webhook(self, request: WebhookRequest) -> Verification: ...
    def parse_webhook(self, request: WebhookRequest, verification: Verification) -> ParsedWebhook: ...
    async def webhook_reply(self, request: WebhookRequest, parsed: ParsedWebhook,
                            outcomes: list[EventOutcome] | None) -> ParsedWebhook:
        """The answer to the carrier, once the events are applied (`outcomes` is None for a
        replay, which must get the same answer without side effects)."""
        ...
    async def initiate_call(self, request: DialRequest) -> str: ...
    async def hangup_call(self, call: CallRecord, reason: EndReason) -> None: ...
    async def play_tts(self, call: CallRecord, text: str) -> None: ...
    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None: ...
    async def stop_listening(self, call: CallRecord) -> None: ...
    async def send_dtmf(self, call: CallRecord, digits: str) -> None: ...
    async def transfer_call(self, call: CallRecord, request: TransferRequest) -> None:
        """Dial `request.to` and bridge the call to it; returns once the carrier accepted that.
        Progress arrives as `call.transfer` events: `bridged`, then `completed` when that leg is
        over, or why the person was never reached (`busy`, `no-answer`, `failed`, `canceled`),
        after which the call is the agent's again."""
        ...

    async def get_call_status(self, call: CallRecord) -> ProviderCallStatus:
        """The carrier's view of `call` (asked when restoring calls after a restart), looked up
        by whichever of its ids the carrier knows it by now."""
        ...


TERMINAL_STATUS: dict[str, EndReason] = {
    "completed": EndReason.COMPLETED,
    "failed": EndReason.FAILED,
    "busy": EndReason.BUSY,
    "no-answer": EndReason.NO_ANSWER,
    "canceled": EndReason.HANGUP_BOT,
}


def map_call_status(raw: str | None) -> ProviderCallStatus:
    """Normalize a carrier's call status string (the same mapping for every carrier)."""
    status = (raw or "").strip().lower() or "unknown"
    reason = TERMINAL_STATUS.get(status)
    return ProviderCallStatus(
        status=status, is_terminal=reason is not None, is_unknown=status == "unknown",
        end_reason=reason,
    )
