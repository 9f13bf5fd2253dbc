"""Telnyx Call Control webhooks as normalized call events.

A webhook is a JSON envelope `{"data": {"id", "event_type", "payload": {...}}, "meta": {...}}`.
Our call id rides in `client_state` (base64, echoed by Telnyx on every later webhook of the call);
it also carries the turn token of the listen in progress and the id of the utterance being
spoken, so a late transcript cannot complete a newer turn (D24) and `call.speak.ended` names
the utterance it ends (docs/decisions.md D71). The leg a transfer dials carries our call id with a
transfer mark, and its webhooks are the transfer's progress (`transfer_events`, D75).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voicecall.calls.model import Direction, EndReason
from voicecall.providers.base import WebhookParseError
from voicecall.shared import bounded_json

log = logging.getLogger(__name__)

__all__ = [
    "HANGUP_CAUSES",
    "ClientState",
    "Envelope",
    "decode_client_state",
    "encode_client_state",
    "hangup_reason",
    "map_event",
    "parse_envelope",
    "transfer_events",
]

HANGUP_CAUSES: dict[str, EndReason] = {
    "normal_clearing": EndReason.COMPLETED,
    "normal_unspecified": EndReason.COMPLETED,
    "unspecified": EndReason.COMPLETED,
    "originator_cancel": EndReason.HANGUP_BOT,
    "call_rejected": EndReason.BUSY,
    "user_busy": EndReason.BUSY,
    "no_answer": EndReason.NO_ANSWER,
    "no_user_response": EndReason.NO_ANSWER,
    "timeout": EndReason.NO_ANSWER,
    "destination_out_of_order": EndReason.FAILED,
    "network_out_of_order": EndReason.FAILED,
    "service_unavailable": EndReason.FAILED,
    "recovery_on_timer_expire": EndReason.FAILED,
    "not_found": EndReason.FAILED,
    "machine_detected": EndReason.VOICEMAIL,
    "fax_detected": EndReason.VOICEMAIL,
    "user_hangup": EndReason.HANGUP_USER,
    "subscriber_absent": EndReason.HANGUP_USER,
    "time_limit": EndReason.TIMEOUT,
}
"""`call.hangup` causes as end reasons (reference table; `timeout` is the unanswered dial)."""

MACHINE_RESULTS = frozenset({"machine", "fax"})
MACHINE_EVENTS = frozenset({"call.machine.detection.ended", "call.machine.premium.detection.ended"})


@dataclass(frozen=True, slots=True)
class ClientState:
    """What our `client_state` says: the call, and the turn or utterance it was set for."""

    call_id: str | None
    turn_token: str | None = None
    utterance: str | None = None
    transfer_leg: bool = False
    """The webhook is about the person a transfer dialled, not about the call itself."""


def encode_client_state(call_id: str, *, turn_token: str | None = None,
                        utterance: str | None = None, transfer_leg: bool = False) -> str:
    """Base64 of a compact JSON object (`c` call id, `t` turn token, `u` utterance id, `l`
    the transfer leg mark)."""
    state: dict[str, str] = {"c": call_id}
    if turn_token:
        state["t"] = turn_token
    if utterance:
        state["u"] = utterance
    if transfer_leg:
        state["l"] = "transfer"
    return base64.b64encode(json.dumps(state, separators=(",", ":")).encode()).decode("ascii")


def decode_client_state(raw: Any) -> ClientState:
    """Our state from `client_state`. Base64 of plain text is a call id (as other tools set it);
    a value that is not base64 at all is taken as the call id itself."""
    if not isinstance(raw, str) or not raw.strip():
        return ClientState(None)
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        log.debug("client_state is not base64; using it as the call id")
        return ClientState(raw.strip())
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("c"), str) and data["c"]:
        t, u = data.get("t"), data.get("u")
        return ClientState(data["c"], t if isinstance(t, str) else None, u if isinstance(u, str) else None,
                           data.get("l") == "transfer")
    return ClientState(text.strip() or None)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One webhook: its event id and type, the payload, and our state from it."""

    event_id: str | None
    event_type: str | None
    payload: dict[str, Any]
    state: ClientState

    @property
    def call_control_id(self) -> str | None:
        value = self.payload.get("call_control_id")
        return value.strip() if isinstance(value, str) and value.strip() else None

    @property
    def direction(self) -> Direction | None:
        raw = self.payload.get("direction")
        if raw in ("incoming", "inbound"):
            return "inbound"
        return "outbound" if raw in ("outgoing", "outbound") else None


def parse_envelope(body: bytes) -> Envelope:
    """The webhook body, read within the JSON budget (D62); WebhookParseError for a body that is
    not a Telnyx envelope (a JSON object whose `data` object names its `event_type`). An event
    without a call, or of a type we do not know, is valid and means nothing."""
    try:
        message = bounded_json.loads(body)
    except ValueError as exc:
        raise WebhookParseError(f"body is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise WebhookParseError("body is not a JSON object")
    data = message.get("data")
    if not isinstance(data, dict):
        raise WebhookParseError("body has no data object")
    event_type = data.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise WebhookParseError("data has no event_type")
    payload = data.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    event_id = data.get("id")
    return Envelope(event_id if isinstance(event_id, str) and event_id else None, event_type,
                    payload, decode_client_state(payload.get("client_state")))


def hangup_reason(cause: Any) -> EndReason:
    """The end reason of a `hangup_cause`; an unknown cause ends the call `completed`."""
    reason = HANGUP_CAUSES.get(str(cause or "").strip().lower())
    if reason is None:
        log.warning("unknown Telnyx hangup_cause %r; ending the call as completed", cause)
        return EndReason.COMPLETED
    return reason


TRANSFER_ENDS: dict[str, str] = {
    "normal_clearing": "completed",
    "user_busy": "busy",
    "call_rejected": "busy",
    "timeout": "no-answer",
    "no_answer": "no-answer",
    "no_user_response": "no-answer",
    "originator_cancel": "canceled",
}
"""The `hangup_cause` of a transfer's leg as the transfer's outcome (anything else: `failed`)."""


def transfer_events(envelope: Envelope) -> list[dict[str, Any]]:
    """The transfer progress (`call.transfer`, D46) one webhook of the dialled leg stands for:
    `bridged` when Telnyx bridges it to the call, and how it ended; its other events mean
    nothing for the call."""
    if envelope.event_type == "call.bridged":
        return [{"type": "call.transfer", "text": "bridged"}]
    if envelope.event_type == "call.hangup":
        cause = str(envelope.payload.get("hangup_cause") or "").strip().lower()
        return [{"type": "call.transfer", "text": TRANSFER_ENDS.get(cause, "failed")}]
    return []


def _confidence(raw: Any) -> float | None:
    return min(max(float(raw), 0.0), 1.0) if isinstance(raw, (int, float)) else None


def _transcription(payload: dict[str, Any]) -> dict[str, Any] | None:
    """A `call.transcription` as a `call.speech` event; None for our own track or no words."""
    data = payload.get("transcription_data")
    data = data if isinstance(data, dict) else payload
    if data.get("transcription_track") == "outbound":
        return None
    text = data.get("transcript", data.get("transcription"))
    if not isinstance(text, str) or not text.strip():
        return None
    is_final = data.get("is_final")
    return {"type": "call.speech", "transcript": text.strip(),
            "isFinal": is_final if isinstance(is_final, bool) else True,
            "confidence": _confidence(data.get("confidence"))}


def _digits_event(value: Any) -> list[dict[str, Any]]:
    return [{"type": "call.dtmf", "digits": value}] if isinstance(value, str) and value else []


def _spoken_event(payload: dict[str, Any]) -> list[dict[str, Any]]:
    text = payload.get("text") or payload.get("payload")
    return [{"type": "call.speaking", "text": text if isinstance(text, str) else ""}]


def _transcription_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    speech = _transcription(payload)
    return [speech] if speech else []


def _hangup_event(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "call.ended", "reason": hangup_reason(payload.get("hangup_cause")).value}]


_PAYLOAD_EVENTS: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "call.initiated": lambda _p: [{"type": "call.initiated"}],
    "call.ringing": lambda _p: [{"type": "call.ringing"}],
    "call.bridged": lambda _p: [{"type": "call.active"}],
    "call.speak.started": _spoken_event,
    "call.transcription": _transcription_events,
    "call.dtmf.received": lambda p: _digits_event(p.get("digit")),
    "call.gather.ended": lambda p: _digits_event(p.get("digits")),
    "call.hangup": _hangup_event,
}
"""Events whose meaning depends on their payload alone."""


def map_event(envelope: Envelope, *, machine_ends_call: bool,
              awaiting_machine: bool = False) -> list[dict[str, Any]]:
    """The normalized events (without the common fields) that one webhook stands for. With
    `awaiting_machine` (answering-machine detection was asked for), the answer counts only once
    detection says no machine picked up, so nothing is said to a machine."""
    kind, payload = envelope.event_type, envelope.payload
    if kind == "call.answered":
        return [] if awaiting_machine else [{"type": "call.answered"}]
    if kind in MACHINE_EVENTS:
        if payload.get("result") in MACHINE_RESULTS and machine_ends_call:
            return [{"type": "call.ended", "reason": EndReason.VOICEMAIL.value}]
        return [{"type": "call.answered"}] if awaiting_machine else []
    mapped = _PAYLOAD_EVENTS.get(kind) if kind else None
    return mapped(payload) if mapped is not None else []
