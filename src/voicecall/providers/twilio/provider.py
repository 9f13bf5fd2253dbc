"""Twilio Programmable Voice behind the carrier interface.

How a call is driven (no media stream):
- placing: REST create with `Url` (answer TwiML) and `StatusCallback`, both carrying our call id;
- the answer fetch carries the call's first document (its opening `<Say>`, keys or `<Gather>`)
  when the gateway has one at once (D45), else a *hold* document (a long Pause, then a Redirect
  back to us), so the call stays up while the gateway decides what to say;
- speaking: `<Say>` followed by a `<Redirect>` to a per-utterance `played` URL (in the answer, or
  a REST update),
  so `play_tts` returns exactly when Twilio has finished saying it (a notify call hangs up
  only once its message has played) and every utterance is rendered once;
- listening: a speech `<Gather>` whose action URL carries the turn token (a stale callback cannot
  complete a newer turn), `timeout=120`, then a Redirect that re-arms the Gather on silence;
- DTMF: `<Play digits>` then the same `played` redirect;
- transfer: `<Dial><Number>` with an `action` URL (the leg's `DialCallStatus`) and the number's
  `answered` status callback (bridged), both carrying our call id (D46);
- inbound: after signature verification and the caller policy, rejected callers get `<Reject>`
  (and one REST hang-up); accepted ones are redirected once to an `answered` URL, which starts
  the call like an outbound answer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from voicecall.calls.events import TRANSFER_STATUSES
from voicecall.calls.model import CallRecord, Direction, EndReason
from voicecall.providers.base import (
    DialRequest,
    ProviderError,
    TransferRequest,
    Verification,
    WebhookRequest,
)
from voicecall.providers.canonical_form import NotCanonical, canonical_request, signed_form
from voicecall.providers.http import CarrierApiError, json_error
from voicecall.providers.markup import MarkupCarrierSettings, MarkupProvider, speech_confidence
from voicecall.providers.streams import StreamSerializer
from voicecall.providers.twilio import twiml
from voicecall.providers.twilio.canonical import check_twilio_form
from voicecall.providers.twilio.signature import verify_twilio_webhook
from voicecall.providers.twilio.stream import TwilioStreamSerializer

log = logging.getLogger(__name__)

API_HOSTS = {
    "us1": "https://api.twilio.com",
    "ie1": "https://api.dublin.ie1.twilio.com",
    "au1": "https://api.sydney.au1.twilio.com",
}
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
ALREADY_ENDED_CODES = {21220, 20404}
MACHINE_ANSWERS = ("machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other",
                   "fax")


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioSettings(MarkupCarrierSettings):
    account_sid: str
    auth_token: str
    ngrok_loopback_bypass: bool = False
    voice: str = "Polly.Joanna"
    real_api_hosts: ClassVar[tuple[str, ...]] = tuple(API_HOSTS.values())


def _json_body(request: WebhookRequest) -> bool:
    """A JSON post, signed through its `bodySHA256` query parameter instead of form fields."""
    return "bodySHA256=" in request.url.partition("?")[2]


def _twilio_direction(params: dict[str, str]) -> Direction | None:
    """Twilio's `Direction` ("inbound", "outbound-api", "outbound-dial") as ours."""
    raw = params.get("Direction", "")
    if raw == "inbound":
        return "inbound"
    return "outbound" if raw.startswith("outbound") else None


def _caller_input_events(params: dict[str, str]) -> list[dict[str, Any]]:
    """What a `<Gather>` heard: the caller's speech, else the keys pressed; empty for neither."""
    speech = params.get("SpeechResult", "").strip()
    if speech:
        return [{"type": "call.speech", "transcript": speech, "isFinal": True,
                 "confidence": speech_confidence(params.get("Confidence"))}]
    if params.get("Digits"):
        return [{"type": "call.dtmf", "digits": params["Digits"]}]
    return []


class TwilioProvider(MarkupProvider):
    """The Twilio adapter (REST + signed webhooks + TwiML); the call flows are shared with every
    markup carrier (`MarkupProvider`)."""

    name = "twilio"
    dialect = twiml.TwimlDialect()
    call_id_params = ("CallSid",)

    def __init__(self, settings: TwilioSettings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(settings, label="Twilio", auth=(settings.account_sid, settings.auth_token),
                         parse_error=json_error("message", "code"), transport=transport,
                         signature_headers=("x-twilio-signature",))
        self.settings: TwilioSettings = settings
        self.serializer: StreamSerializer = TwilioStreamSerializer()

    def _call_path(self, provider_call_id: str) -> str:
        return self._accounts(f"/Calls/{provider_call_id}.json")

    def _accounts(self, suffix: str) -> str:
        return f"/2010-04-01/Accounts/{self.settings.account_sid}{suffix}"

    def _voice_name(self, voice: str) -> str:
        return twiml.polly_voice(voice)

    # -- webhooks ----------------------------------------------------------------------------
    def _verify(self, request: WebhookRequest) -> Verification:
        s = self.settings
        result = verify_twilio_webhook(request, auth_token=s.auth_token, public_url=s.public_url,
                                       policy=s.policy, ngrok_loopback_bypass=s.ngrok_loopback_bypass,
                                       skip_verification=s.skip_signature_verification)
        if result.ok and not s.skip_signature_verification:
            # Only Twilio's own arrangement of the signed content is applied (D61).
            try:
                canonical = canonical_request(request, form_body=not _json_body(request))
                if not _json_body(request):
                    check_twilio_form(canonical, s.account_sid)
            except NotCanonical as exc:
                result = Verification(ok=False, reason=f"signed request not in Twilio's form: {exc}")
        return result

    _form = staticmethod(signed_form)

    def _direction(self, params: dict[str, str]) -> Direction | None:
        return _twilio_direction(params)

    def _input_events(self, params: dict[str, str]) -> list[dict[str, Any]]:
        return _caller_input_events(params)

    def _status_events(self, meta: dict[str, Any], params: dict[str, str]) -> list[dict[str, Any]]:
        status = meta["status"]
        if status in ("initiated", "queued"):
            return [{"type": "call.initiated"}] if status == "initiated" else []
        if status == "ringing":
            return [{"type": "call.initiated"}, {"type": "call.ringing"}]
        if status == "in-progress":
            answered_by = params.get("AnsweredBy", "")
            if self.settings.machine_detection and answered_by in MACHINE_ANSWERS:
                ended = self._machine_answered(meta["callId"])
                if ended:
                    return ended
            return [{"type": "call.answered"}]
        return self._end_reason_events(status)

    # -- commands ----------------------------------------------------------------------------
    async def initiate_call(self, request: DialRequest) -> str:
        base = await self._remember_base(request.call_id)
        self._expect_answer(request.call_id)
        params: list[tuple[str, str]] = [
            ("To", request.to), ("From", request.from_),
            ("Url", self._url(base, request.call_id)), ("Method", "POST"),
            ("StatusCallback", self._url(base, request.call_id, type="status")),
            ("StatusCallbackMethod", "POST"),
            *(("StatusCallbackEvent", e) for e in STATUS_EVENTS),
            ("Timeout", str(max(1, math.ceil(request.ring_timeout_ms / 1000)))),
        ]
        if self.settings.machine_detection and request.mode == "notify":
            params.append(("MachineDetection", "Enable"))
        response = await self.http.request("POST", self._accounts("/Calls.json"), data=params)
        sid = response.json().get("sid")
        if not isinstance(sid, str) or not sid:
            raise ProviderError("Twilio API error: create-call response has no sid")
        return sid

    async def _update(self, call: CallRecord, params: list[tuple[str, str]], *,
                      tolerate_ended: bool = False) -> None:
        if not call.provider_call_id:
            raise ProviderError("twilio: the call has no CallSid yet")
        try:
            await self.http.request("POST", self._accounts(f"/Calls/{call.provider_call_id}.json"),
                                    data=params, idempotent=tolerate_ended)
        except CarrierApiError as exc:
            if tolerate_ended and (exc.status == 404 or exc.code in ALREADY_ENDED_CODES):
                return
            raise

    async def _push(self, call: CallRecord, document: str) -> None:
        await self._update(call, [("Twiml", document)])

    async def _update_to_url(self, call: CallRecord, url: str) -> None:
        await self._update(call, [("Twiml", self.dialect.redirect(url))], tolerate_ended=True)

    async def transfer_call(self, call: CallRecord, request: TransferRequest) -> None:
        self._listening.pop(call.call_id, None)
        document = twiml.dial(
            request.to, caller_id=request.caller_id, timeout_s=request.timeout_s,
            action_url=await self._call_url(call.call_id, type="dial"),
            status_url=await self._call_url(call.call_id, type="dial-status"))
        await self._push(call, document)

    def _transfer_events(self, kind: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The person answered (`dial-status`, the `<Number>` callback), or the `<Dial>` is over
        (`dial`, its action: `DialCallStatus`)."""
        if kind == "dial-status":
            answered = params.get("CallStatus", "").strip().lower() == "in-progress"
            return [{"type": "call.transfer", "text": "bridged"}] if answered else []
        status = params.get("DialCallStatus", "").strip().lower()
        if status == "answered":  # Twilio's word for a bridged leg that is over
            status = "completed"
        return [{"type": "call.transfer", "text": status}] if status in TRANSFER_STATUSES else []

    async def hangup_call(self, call: CallRecord, reason: EndReason) -> None:
        self._fail_pending(call.call_id)
        await self._update(call, [("Status", "completed")], tolerate_ended=True)
