"""Telnyx Call Control v2 behind the carrier interface.

Telnyx answers nothing meaningful to its webhooks (we reply an empty 200): the call is driven
by REST actions, and what happened comes back as signed webhook events.

- placing: `POST /calls` with our webhook URL, the ring timeout, and our call id in
  `client_state` (echoed by every later webhook);
- inbound: after signature verification the call service applies the caller policy when it
  adopts the call on `call.initiated`; an accepted call is answered (`answer`), a refused one
  rejected once (`reject`);
- speaking: `speak`, whose `client_state` names the utterance, so `play_tts` returns when
  `call.speak.ended` for it arrives (D20);
- listening: `transcription_start` whose `client_state` carries the turn token, which every
  `call.transcription` then echoes (a late transcript cannot complete a newer turn, D24);
- keys: `send_dtmf`; hang-up: `hangup` ("call already ended" answers count as success);
- transfer: `transfer` dials the person and bridges the call on answer; the new leg's webhooks
  (our call id and a transfer mark in its `client_state`) are the transfer's progress;
- media streams (when streaming is on): `stream_url` (with the call's token in its query),
  `stream_track`, `stream_codec` and `stream_bidirectional_mode: "rtp"` on dial and answer.

Every action carries a `command_id`, so the bounded retries of `CarrierHttp` are idempotent.
Decisions: docs/decisions.md D70 (signatures, dedupe), D71 (client_state), D72 (speech, keys,
ended calls), D73 (inbound), D74 (streams), D75 (transfer).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import quote
from uuid import uuid4

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from voicecall.calls.events import CallEvent
from voicecall.calls.model import CallRecord, EndReason
from voicecall.providers import base
from voicecall.providers.adapter import CarrierAdapter, CarrierSettings
from voicecall.providers.http import CarrierApiError
from voicecall.providers.replies import call_for, ended_call_ids, machine_ends_call
from voicecall.providers.streams import StreamSerializer
from voicecall.providers.telnyx.events import (
    Envelope,
    encode_client_state,
    map_event,
    parse_envelope,
    transfer_events,
)
from voicecall.providers.telnyx.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_telnyx_webhook,
)
from voicecall.providers.telnyx.stream import TelnyxStreamSerializer
from voicecall.providers.voices import polly_voice, route_voice
from voicecall.shared.clock import now_ms

log = logging.getLogger(__name__)

API_BASE_URL = "https://api.telnyx.com/v2"
ALREADY_ENDED_CODES = frozenset({"90018"})
"""Telnyx's "Call has already ended" (HTTP 422)."""
MIN_RING_S, MAX_RING_S = 5, 600
DTMF_DURATION_MS = 250

StreamCodec = Literal["PCMU", "PCMA"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TelnyxSettings(CarrierSettings):
    """Streamed calls ask for the stream on dial and answer."""

    api_key: str
    connection_id: str
    public_key: Ed25519PublicKey | None
    api_base_url: str = API_BASE_URL
    voice: str = "female"
    stream_codec: StreamCodec = "PCMU"
    """The G.711 law asked for on dial and answer; the stream's `start` frame has the final say."""
    real_api_hosts: ClassVar[tuple[str, ...]] = (API_BASE_URL,)


TELNYX_VOICE_PROVIDERS = ("AWS.", "Azure.", "ElevenLabs.", "Telnyx.")
"""Voice names already in Telnyx's `Provider.Model.Voice` form."""


def telnyx_voice(voice: str | None) -> str:
    """A TTS voice name as Telnyx's `speak` voice (D72, as D41 for Twilio): `male`, `female` and
    names in Telnyx's provider form as they are, Polly and OpenAI voices as `AWS.Polly.<Voice>`,
    anything else (or nothing) `female`."""
    if voice in ("male", "female") or (voice and voice.startswith(TELNYX_VOICE_PROVIDERS)):
        return voice
    polly = polly_voice(voice)
    return f"AWS.{polly}" if polly else "female"


def _telnyx_error(response: httpx.Response) -> tuple[str | int | None, str]:
    """Telnyx's `{"errors": [{"code", "title", "detail"}]}` as (code, "title: detail")."""
    with contextlib.suppress(ValueError, AttributeError, IndexError, TypeError, KeyError):
        error = response.json()["errors"][0]
        title, detail = error.get("title"), error.get("detail")
        message = ": ".join(str(part) for part in (title, detail) if part)
        return error.get("code"), message or response.reason_phrase
    return None, response.text[:300] or response.reason_phrase


def _already_ended(exc: CarrierApiError) -> bool:
    return exc.status == 404 or str(exc.code) in ALREADY_ENDED_CODES


def _telnyx_digits(digits: str) -> str:
    """Our key syntax as Telnyx's: `w` (0.5 s) and `W` (1 s) pause; `p`, `P` and `,` map onto them."""
    return digits.replace(",", "w").replace("p", "w").replace("P", "W")


def _claimed_call_id(request: base.WebhookRequest) -> str | None:
    """The call a refused webhook names (our id from `client_state`, else Telnyx's id), read
    without trusting the body for anything else."""
    try:
        envelope = parse_envelope(request.body)
    except base.WebhookParseError:
        return None
    return envelope.state.call_id or envelope.call_control_id


class TelnyxProvider(CarrierAdapter):
    """The Telnyx adapter (REST actions + Ed25519-signed webhook events)."""

    name = "telnyx"

    def __init__(self, settings: TelnyxSettings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(settings, label="Telnyx", signature_headers=(SIGNATURE_HEADER, TIMESTAMP_HEADER),
                         headers={"authorization": f"Bearer {settings.api_key}",
                                  "accept": "application/json"},
                         parse_error=_telnyx_error, transport=transport)
        self.settings: TelnyxSettings = settings
        self._listening: dict[str, str | None] = {}
        self.serializer: StreamSerializer = TelnyxStreamSerializer()

    def set_public_url(self, url: str) -> None:
        """Nothing to do: Telnyx signs the body, not the URL, and dials carry the webhook URL."""

    # -- webhooks ----------------------------------------------------------------------------
    def verify_webhook(self, request: base.WebhookRequest) -> base.Verification:
        s = self.settings
        result = verify_telnyx_webhook(request, public_key=s.public_key,
                                       skip_verification=s.skip_signature_verification)
        return result if result.ok else result._replace(call_id=_claimed_call_id(request))

    def parse_webhook(self, request: base.WebhookRequest,
                      verification: base.Verification) -> base.ParsedWebhook:
        """JSON envelope → normalized events; `meta` keeps what the reply acts on."""
        envelope = parse_envelope(request.body)
        pcid = envelope.call_control_id
        if envelope.event_type is None or pcid is None:
            return base.ParsedWebhook(meta={})
        call_id = envelope.state.call_id or pcid
        if envelope.state.transfer_leg:
            return self._transfer_webhook(envelope, verification, call_id)
        machine = self.settings.machine_detection and machine_ends_call(self.context, call_id)
        mapped = map_event(envelope, machine_ends_call=machine,
                           awaiting_machine=self._detects_machine(call_id))
        common = self._common_fields(envelope, call_id, pcid)
        events = [CallEvent.model_validate({**common, **event, "dedupeKey": self._dedupe_key(
            envelope, verification, i)}) for i, event in enumerate(mapped)]
        meta: dict[str, Any] = {"eventType": envelope.event_type, "callId": call_id,
                                "callControlId": pcid, "utterance": envelope.state.utterance,
                                "status": envelope.payload.get("status"),
                                "inboundStart": envelope.event_type == "call.initiated"
                                and envelope.direction == "inbound"}
        return base.ParsedWebhook(events=events, meta=meta)

    def _transfer_webhook(self, envelope: Envelope, verification: base.Verification,
                          call_id: str) -> base.ParsedWebhook:
        """A webhook of the leg a transfer dialled: only the transfer's progress, for our call
        (never the leg's own answer or hang-up, which are not the call's)."""
        events = [CallEvent.model_validate({**event, "callId": call_id, "timestamp": now_ms(),
                                            "dedupeKey": self._dedupe_key(envelope, verification, i)})
                  for i, event in enumerate(transfer_events(envelope))]
        return base.ParsedWebhook(events=events, meta={})

    def _detects_machine(self, call_id: str) -> bool:
        """Whether the call was dialled with answering-machine detection (outbound notify calls
        when it is on): its answer then waits for the detection result (D72)."""
        call = self.context.live(call_id)
        return (self.settings.machine_detection and call is not None and call.mode == "notify"
                and call.direction == "outbound")

    @staticmethod
    def _common_fields(envelope: Envelope, call_id: str, pcid: str) -> dict[str, Any]:
        payload = envelope.payload
        return {"callId": call_id, "providerCallId": pcid, "direction": envelope.direction,
                "from": payload.get("from") or None, "to": payload.get("to") or None,
                "turnToken": envelope.state.turn_token, "timestamp": now_ms()}

    @staticmethod
    def _dedupe_key(envelope: Envelope, verification: base.Verification, index: int) -> str:
        """Telnyx's event id (signed, and the same on every delivery attempt, whose
        `meta.attempt` changes the body); the request key when an event has no id (D70)."""
        prefix = f"telnyx:event:{envelope.event_id}" if envelope.event_id else verification.request_key
        return f"{prefix}:{index}"

    async def webhook_reply(self, request: base.WebhookRequest, parsed: base.ParsedWebhook,
                            outcomes: list[base.EventOutcome] | None) -> base.ParsedWebhook:
        """An empty 200, once the event's side effects are done: a replay (outcomes None) has
        none. Answering an accepted inbound call happens here, so a failed answer gets a 500
        and Telnyx's retry answers again (the answer's `command_id` makes that idempotent)."""
        reply = base.ParsedWebhook(events=parsed.events)
        meta = parsed.meta
        if outcomes is None or not meta:
            return reply
        for call_id in ended_call_ids(self.context, parsed.events, outcomes):
            self._forget(call_id)
        if meta["eventType"] == "call.speak.ended":
            call = await call_for(self.context, outcomes, meta["callId"], meta["callControlId"])
            utt = meta.get("utterance") or (self._played.oldest(call.call_id) if call else None)
            if utt and meta.get("status") in (None, "completed"):
                self._played.played(utt)
            elif utt:
                self._played.not_played(utt, str(meta["status"]))
        if meta.get("inboundStart"):
            call = await call_for(self.context, outcomes, meta["callId"], meta["callControlId"])
            if call is not None and not call.is_terminal and call.direction == "inbound":
                await self._answer(call)
        return reply

    def _forget(self, call_id: str) -> None:
        """The call ended: its pending playbacks fail at once and it listens no more."""
        self._played.fail_call(call_id)
        self._listening.pop(call_id, None)

    # -- media streams -----------------------------------------------------------------------
    async def _stream_params(self, call_id: str) -> dict[str, Any]:
        """Streaming fields for dial/answer (none when streaming is off). The token rides in
        the stream URL's query, which Telnyx keeps."""
        url = self._stream_url()
        if not url:
            return {}
        token = await self.stream_token(call_id)
        joiner = "&" if "?" in url else "?"
        codec = self.settings.stream_codec
        return {"stream_url": f"{url}{joiner}token={quote(token)}", "stream_track": "inbound_track",
                "stream_codec": codec, "stream_bidirectional_mode": "rtp",
                "stream_bidirectional_codec": codec}

    # -- commands ----------------------------------------------------------------------------
    async def _action(self, provider_call_id: str | None, action: str, body: dict[str, Any], *,
                      tolerate_ended: bool = False) -> None:
        """`POST /calls/{id}/actions/{action}`; with `tolerate_ended`, "already ended" is success."""
        if not provider_call_id:
            raise base.ProviderError("telnyx: the call has no call_control_id yet")
        path = f"/calls/{quote(provider_call_id, safe=':')}/actions/{action}"
        try:
            await self.http.request("POST", path, json={"command_id": str(uuid4()), **body},
                                    idempotent=True)
        except CarrierApiError as exc:
            if tolerate_ended and _already_ended(exc):
                return
            if _already_ended(exc):
                raise base.ProviderError(f"telnyx: the call has ended ({exc})") from exc
            raise

    async def initiate_call(self, request: base.DialRequest) -> str:
        ring_s = min(MAX_RING_S, max(MIN_RING_S, math.ceil(request.ring_timeout_ms / 1000)))
        body: dict[str, Any] = {
            "connection_id": self.settings.connection_id, "to": request.to, "from": request.from_,
            "webhook_url": request.webhook_url, "webhook_url_method": "POST",
            "client_state": encode_client_state(request.call_id),
            "command_id": f"voicecall-dial-{request.call_id}", "timeout_secs": ring_s,
            **await self._stream_params(request.call_id),
        }
        if self.settings.machine_detection and request.mode == "notify":
            body["answering_machine_detection"] = "detect"
        response = await self.http.request("POST", "/calls", json=body, idempotent=True)
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            pcid = response.json()["data"]["call_control_id"]
            if isinstance(pcid, str) and pcid:
                return pcid
        raise base.ProviderError("Telnyx API error: dial response has no data.call_control_id")

    async def _answer(self, call: CallRecord) -> None:
        await self._action(call.provider_call_id, "answer", {
            "command_id": f"voicecall-answer-{call.call_id}",
            "client_state": encode_client_state(call.call_id),
            **await self._stream_params(call.call_id)}, tolerate_ended=True)

    async def hangup_call(self, call: CallRecord, reason: EndReason) -> None:
        """Hang up; a caller refused before answer is rejected instead (busy to them)."""
        self._forget(call.call_id)
        if call.direction == "inbound" and call.answered_at is None:
            await self._action(call.provider_call_id, "reject", {
                "command_id": f"voicecall-reject-{call.provider_call_id}", "cause": "CALL_REJECTED"},
                tolerate_ended=True)
            return
        await self._action(call.provider_call_id, "hangup",
                           {"command_id": f"voicecall-hangup-{call.call_id}"}, tolerate_ended=True)

    def _voice_for(self, call: CallRecord) -> str:
        """The call's `numbers` route voice when it has one, else the configured voice."""
        voice = route_voice(call)
        return telnyx_voice(voice) if voice else self.settings.voice

    async def play_tts(self, call: CallRecord, text: str) -> None:
        voice, language = self._voice_for(call), self.settings.language

        async def speak(utt: str) -> None:
            await self._action(call.provider_call_id, "speak", {
                "command_id": utt, "payload": text, "voice": voice, "language": language,
                "client_state": encode_client_state(call.call_id, utterance=utt)})
        await self._played.play(call.call_id, speak)

    async def send_dtmf(self, call: CallRecord, digits: str) -> None:
        await self._action(call.provider_call_id, "send_dtmf", {
            "digits": _telnyx_digits(digits), "duration_millis": DTMF_DURATION_MS,
            "client_state": encode_client_state(call.call_id)})

    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None:
        """Start transcription; when it already runs (an automatic-reply call listening again),
        only the turn token in `client_state` changes (`client_state_update`)."""
        if call.call_id in self._listening:
            if self._listening[call.call_id] != turn_token:
                self._listening[call.call_id] = turn_token
                await self._action(call.provider_call_id, "client_state_update", {
                    "client_state": encode_client_state(call.call_id, turn_token=turn_token)})
            return
        self._listening[call.call_id] = turn_token
        await self._action(call.provider_call_id, "transcription_start", {
            "language": self.settings.language.split("-")[0], "transcription_tracks": "inbound",
            "client_state": encode_client_state(call.call_id, turn_token=turn_token)})

    async def stop_listening(self, call: CallRecord) -> None:
        if call.call_id not in self._listening:
            return
        self._listening.pop(call.call_id, None)
        await self._action(call.provider_call_id, "transcription_stop",
                           {"client_state": encode_client_state(call.call_id)}, tolerate_ended=True)

    async def transfer_call(self, call: CallRecord, request: base.TransferRequest) -> None:
        """Telnyx's `transfer`: dial the person and bridge the call to them on answer (D75).
        Transcription stops first (the bridged conversation is not the agent's turn); the new
        leg's webhooks come to our webhook URL with our call id and a transfer mark."""
        await self.stop_listening(call)
        ring_s = min(MAX_RING_S, max(MIN_RING_S, request.timeout_s))
        await self._action(call.provider_call_id, "transfer", {
            "to": request.to, "from": request.caller_id, "timeout_secs": ring_s,
            "webhook_url": self.context.webhook_url, "webhook_url_method": "POST",
            "target_leg_client_state": encode_client_state(call.call_id, transfer_leg=True)})

    async def get_call_status(self, call: CallRecord) -> base.ProviderCallStatus:
        provider_call_id = call.provider_call_id or ""
        try:
            response = await self.http.request("GET", f"/calls/{quote(provider_call_id, safe=':')}",
                                               idempotent=True, ok_statuses=(404,))
        except CarrierApiError:
            return base.ProviderCallStatus("error", is_terminal=False, is_unknown=True)
        if response.status_code == 404:
            return base.ProviderCallStatus("not-found", is_terminal=True, end_reason=EndReason.COMPLETED)
        alive: Any = None
        with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
            alive = response.json()["data"].get("is_alive")
        if not isinstance(alive, bool):
            return base.ProviderCallStatus("unknown", is_terminal=False, is_unknown=True)
        if alive:
            return base.ProviderCallStatus("active", is_terminal=False)
        return base.ProviderCallStatus("completed", is_terminal=True, end_reason=EndReason.COMPLETED)
