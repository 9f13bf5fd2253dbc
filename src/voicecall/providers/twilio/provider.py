"""Twilio Programmable Voice behind the carrier interface.

How a call is driven (no media stream):
- placing: REST create with `Url` (answer TwiML) and `StatusCallback`, both carrying our call id;
- the answer fetch gets a *hold* document (a long Pause, then a Redirect back to us), so the call
  stays up while the gateway decides what to say;
- speaking: a REST update with `<Say>` followed by a `<Redirect>` to a per-utterance `played` URL,
  so `play_tts` returns exactly when Twilio has finished saying it (a notify call hangs up
  only once its message has played) and every utterance is rendered once;
- listening: a speech `<Gather>` whose action URL carries the turn token (a stale callback cannot
  complete a newer turn), `timeout=120`, then a Redirect that re-arms the Gather on silence;
- DTMF: `<Play digits>` then the same `played` redirect;
- inbound: after signature verification and the caller policy, rejected callers get `<Reject>`
  (and one REST hang-up); accepted ones are redirected once to an `answered` URL, which starts
  the call like an outbound answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from voicecall.calls.events import CallEvent
from voicecall.calls.model import CallRecord, Direction, EndReason
from voicecall.providers import stream_auth
from voicecall.providers.adapter import CarrierAdapter, CarrierSettings
from voicecall.providers.base import (
    DialRequest,
    EventOutcome,
    ParsedWebhook,
    ProviderCallStatus,
    ProviderError,
    Verification,
    WebhookParseError,
    WebhookRequest,
    map_call_status,
)
from voicecall.providers.http import CarrierApiError
from voicecall.providers.replies import call_for, ended_call_ids, machine_ends_call
from voicecall.providers.streams import StreamSerializer
from voicecall.providers.twilio import twiml
from voicecall.providers.twilio.signature import form_params, verify_twilio_webhook
from voicecall.providers.twilio.stream import TwilioStreamSerializer
from voicecall.providers.voices import route_voice
from voicecall.security.public_url import ForwardingPolicy
from voicecall.shared.clock import now_ms

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
class TwilioSettings(CarrierSettings):
    """Streamed calls get `<Connect><Stream>` when answered."""

    account_sid: str
    auth_token: str
    public_url: str | None = None
    policy: ForwardingPolicy = field(default_factory=ForwardingPolicy)
    ngrok_loopback_bypass: bool = False
    voice: str = "Polly.Joanna"

    @property
    def uses_real_api(self) -> bool:
        return self.api_base_url.rstrip("/") in API_HOSTS.values()


def _twilio_error(response: httpx.Response) -> tuple[str | int | None, str]:
    try:
        body = response.json()
        return body.get("code"), str(body.get("message") or response.reason_phrase)
    except ValueError:
        return None, response.text[:300] or response.reason_phrase


def _form_params(body: bytes) -> dict[str, str]:
    """The webhook's form fields (Twilio posts `application/x-www-form-urlencoded`)."""
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError as exc:
        raise WebhookParseError("body is not UTF-8 form data") from exc


def _query_value(query: Mapping[str, str], name: str) -> str | None:
    """A parameter of the query we put on our own webhook URLs; None when absent or blank."""
    return (query.get(name) or "").strip() or None


def _claimed_call_id(request: WebhookRequest) -> str | None:
    """The call a refused webhook names: our `callId` from its query, else the body's `CallSid`.
    Unverified, so it serves only to count the refusal against that call."""
    claimed = _query_value(request.query, "callId")
    if claimed is None:
        claimed = next((v.strip() for k, v in form_params(request.body) if k == "CallSid"), None)
    return claimed or None


def _direction(params: dict[str, str]) -> Direction | None:
    """Twilio's `Direction` ("inbound", "outbound-api", "outbound-dial") as ours."""
    raw = params.get("Direction", "")
    if raw == "inbound":
        return "inbound"
    return "outbound" if raw.startswith("outbound") else None


def _webhook_meta(params: dict[str, str], query: Mapping[str, str]) -> dict[str, Any]:
    """What `webhook_reply` needs to know about the request besides its events.

    `inboundStart` marks the first webhook of an inbound call: Twilio asks the number's voice
    URL, which carries none of our query."""
    call_sid = params.get("CallSid", "").strip()
    if not call_sid:
        raise WebhookParseError("CallSid is missing")
    meta: dict[str, Any] = {"callSid": call_sid, "callId": _query_value(query, "callId"),
                            "kind": _query_value(query, "type"),
                            "turnToken": _query_value(query, "turnToken"), "utt": query.get("utt"),
                            "status": params.get("CallStatus", "").strip().lower()}
    if meta["callId"] is None and meta["kind"] is None and _direction(params) == "inbound":
        meta["inboundStart"] = True
    return meta


def _common_event_fields(params: dict[str, str], meta: dict[str, Any]) -> dict[str, Any]:
    """The fields every event of one webhook shares (the call, its parties, the turn)."""
    return {
        "callId": meta["callId"] or meta["callSid"], "providerCallId": meta["callSid"],
        "direction": _direction(params), "from": params.get("From") or None,
        "to": params.get("To") or None, "turnToken": meta["turnToken"], "timestamp": now_ms(),
    }


def _speech_confidence(raw: str | None) -> float:
    """Twilio's `Confidence` clamped to 0..1; 0.9 when it is missing or not a number."""
    try:
        return min(max(float(raw or 0.9), 0.0), 1.0)
    except ValueError:
        return 0.9


def _caller_input_events(params: dict[str, str]) -> list[dict[str, Any]]:
    """What a `<Gather>` heard: the caller's speech, else the keys pressed; empty for neither."""
    speech = params.get("SpeechResult", "").strip()
    if speech:
        return [{"type": "call.speech", "transcript": speech, "isFinal": True,
                 "confidence": _speech_confidence(params.get("Confidence"))}]
    if params.get("Digits"):
        return [{"type": "call.dtmf", "digits": params["Digits"]}]
    return []


class TwilioProvider(CarrierAdapter):
    """The Twilio adapter (REST + signed webhooks + TwiML)."""

    name = "twilio"

    def __init__(self, settings: TwilioSettings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        super().__init__(settings, carrier="Twilio", signature_headers=("x-twilio-signature",),
                         auth=(settings.account_sid, settings.auth_token),
                         parse_error=_twilio_error, transport=transport)
        self._bases: dict[str, str] = {}
        self._listening: dict[str, str] = {}
        self._streaming_inbound: set[str] = set()
        self._queued_inbound: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.serializer: StreamSerializer = TwilioStreamSerializer()

    def _stream_url(self) -> str | None:
        if self.settings.stream_url:
            return self.settings.stream_url
        return self.context.stream_url if self.settings.streaming else None

    # -- lifecycle ---------------------------------------------------------------------------
    def set_public_url(self, url: str) -> None:
        """A tunnel's URL: Twilio signs it, so signatures are checked against it (a configured
        publicUrl wins)."""
        if self.settings.public_url is None:
            self.settings = dataclasses.replace(self.settings, public_url=url)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await super().stop()

    def _accounts(self, suffix: str) -> str:
        return f"/2010-04-01/Accounts/{self.settings.account_sid}{suffix}"

    # -- URLs and per-call state ---------------------------------------------------------------
    async def _base(self, call_id: str) -> str:
        base = self._bases.get(call_id)
        if base is None:
            state = await self.context.get_provider_state(call_id)
            base = str(state["webhookUrl"]) if state and state.get("webhookUrl") else \
                self.context.webhook_url
            self._bases[call_id] = base
        return base

    async def _remember_base(self, call_id: str) -> str:
        base = self.context.webhook_url
        self._bases[call_id] = base
        await self.context.put_provider_state(call_id, {"webhookUrl": base})
        return base

    @staticmethod
    def _url(base: str, call_id: str, **query: str) -> str:
        joiner = "&" if "?" in base else "?"
        return f"{base}{joiner}{urlencode({'callId': call_id, **query})}"

    async def _call_url(self, call_id: str, **query: str) -> str:
        return self._url(await self._base(call_id), call_id, **query)

    # -- webhooks ----------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest) -> Verification:
        s = self.settings
        result = verify_twilio_webhook(request, auth_token=s.auth_token, public_url=s.public_url,
                                       policy=s.policy, ngrok_loopback_bypass=s.ngrok_loopback_bypass,
                                       skip_verification=s.skip_signature_verification)
        return result if result.ok else result._replace(call_id=_claimed_call_id(request))

    def parse_webhook(self, request: WebhookRequest, verification: Verification) -> ParsedWebhook:
        """Form body + our query (callId, type, turnToken, utt) → normalized events."""
        params = _form_params(request.body)
        meta = _webhook_meta(params, request.query)
        events = _caller_input_events(params)
        if events:
            meta["gather"] = True
        elif meta["kind"] in (None, "status", "answered"):
            events = self._status_events(meta["status"], params, meta["callId"])
        common = _common_event_fields(params, meta)
        parsed = [CallEvent.model_validate(
            {**common, **e, "dedupeKey": f"{verification.request_key}:{i}"})
            for i, e in enumerate(events)]
        return ParsedWebhook(events=parsed, headers={"content-type": "application/xml"},
                             meta=meta)

    def _status_events(self, status: str, params: dict[str, str],
                       call_id: str | None) -> list[dict[str, Any]]:
        if status in ("initiated", "queued"):
            return [{"type": "call.initiated"}] if status == "initiated" else []
        if status == "ringing":
            return [{"type": "call.initiated"}, {"type": "call.ringing"}]
        if status == "in-progress":
            answered_by = params.get("AnsweredBy", "")
            if (self.settings.machine_detection and answered_by in MACHINE_ANSWERS
                    and machine_ends_call(self.context, call_id)):
                return [{"type": "call.ended", "reason": EndReason.VOICEMAIL.value}]
            return [{"type": "call.answered"}]
        mapped = map_call_status(status)
        if mapped.is_terminal and mapped.end_reason is not None:
            return [{"type": "call.ended", "reason": mapped.end_reason.value}]
        return []

    async def webhook_reply(self, request: WebhookRequest, parsed: ParsedWebhook,
                            outcomes: list[EventOutcome] | None) -> ParsedWebhook:
        """The TwiML for this request; a replay (outcomes None) gets the same answer."""
        meta = parsed.meta
        reply = ParsedWebhook(events=parsed.events, headers={"content-type": "application/xml"})
        kind = meta.get("kind")
        if kind == "status":
            self._settle_if_ended(parsed.events, outcomes)
            reply.body = twiml.empty()
            return reply
        if kind == "hold-music":
            reply.body = twiml.hold_music()
            return reply
        call = await call_for(self.context, outcomes, meta.get("callId"), meta["callSid"])
        if call is None:
            reply.body = twiml.reject() if meta.get("inboundStart") else twiml.empty()
            return reply
        self._settle_if_ended(parsed.events, outcomes)
        if call.is_terminal:
            reply.body = twiml.document("<Hangup/>")
            return reply
        if kind == "played" and meta.get("utt"):
            self._played.played(meta["utt"])
        if meta.get("inboundStart"):
            await self._remember_base(call.call_id)
            if self._stream_url() and self._streaming_inbound - {call.call_id}:
                if call.call_id not in self._queued_inbound:
                    self._queued_inbound.append(call.call_id)
                reply.body = twiml.queue(await self._call_url(call.call_id, type="hold-music"))
                return reply
            reply.body = twiml.document(twiml.redirect(await self._call_url(call.call_id,
                                                                            type="answered")))
            return reply
        stream_url = self._stream_url()
        if stream_url and kind in (None, "answered") and meta["status"] == "in-progress":
            if call.direction == "inbound":
                self._streaming_inbound.add(call.call_id)
            reply.body = twiml.stream(stream_url, await self.stream_token(call.call_id))
            return reply
        if kind == "listen" and self._listening.get(call.call_id) == meta.get("turnToken"):
            reply.body = await self._listen_twiml(call.call_id, meta["turnToken"])
            return reply
        reply.body = twiml.hold(await self._call_url(call.call_id, type="hold"))
        return reply

    def _settle_if_ended(self, events: list[CallEvent], outcomes: list[EventOutcome] | None) -> None:
        """A call that ended fails its pending playback waits at once (nothing waits forever)
        and frees its inbound stream slot."""
        for call_id in ended_call_ids(self.context, events, outcomes):
            self._fail_pending(call_id)

    async def stream_token(self, call_id: str) -> str:
        """The call's media-stream token, persisted with the webhook URL the call uses."""
        return await stream_auth.stream_token(self.context, call_id,
                                              {"webhookUrl": await self._base(call_id)})

    def _fail_pending(self, call_id: str) -> None:
        if call_id in self._queued_inbound:
            self._queued_inbound.remove(call_id)
        if call_id in self._streaming_inbound:
            self._streaming_inbound.discard(call_id)
            if not self._streaming_inbound and self._queued_inbound:
                task = asyncio.get_running_loop().create_task(self._connect_next_queued())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._played.fail_call(call_id)
        self._listening.pop(call_id, None)

    # -- commands ----------------------------------------------------------------------------
    async def _connect_next_queued(self) -> None:
        """The inbound stream is free: take the longest-waiting queued caller off hold."""
        while self._queued_inbound and not self._streaming_inbound:
            call = self.context.live(self._queued_inbound.pop(0))
            if call is None or call.is_terminal:
                continue
            self._streaming_inbound.add(call.call_id)
            redirect = twiml.document(twiml.redirect(await self._call_url(call.call_id, type="answered")))
            try:
                await self._update(call, [("Twiml", redirect)], tolerate_ended=True)
            except Exception as exc:
                log.warning("call %s: could not take the caller off hold: %s", call.call_id, exc)
                self._streaming_inbound.discard(call.call_id)
                continue
            log.info("call %s: connected from the hold queue", call.call_id)
            return

    async def initiate_call(self, request: DialRequest) -> str:
        base = await self._remember_base(request.call_id)
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

    async def hangup_call(self, call: CallRecord, reason: EndReason) -> None:
        self._fail_pending(call.call_id)
        await self._update(call, [("Status", "completed")], tolerate_ended=True)

    async def _play(self, call: CallRecord, render: Callable[[str], str]) -> None:
        async def send(utt: str) -> None:
            played_url = await self._call_url(call.call_id, type="played", utt=utt)
            await self._update(call, [("Twiml", render(played_url))])
        await self._played.play(call.call_id, send)

    def _voice_for(self, call: CallRecord) -> str:
        """The call's `numbers` route voice when it has one, else the configured voice."""
        voice = route_voice(call)
        return twiml.polly_voice(voice) if voice else self.settings.voice

    async def play_tts(self, call: CallRecord, text: str) -> None:
        voice, language = self._voice_for(call), self.settings.language
        self._listening.pop(call.call_id, None)
        await self._play(call, lambda url: twiml.speak(text, voice=voice, language=language,
                                                       played_url=url))

    async def send_dtmf(self, call: CallRecord, digits: str) -> None:
        self._listening.pop(call.call_id, None)
        await self._play(call, lambda url: twiml.play_digits(digits, url))

    async def _listen_twiml(self, call_id: str, token: str | None) -> str:
        query = {"turnToken": token} if token else {}
        return twiml.listen(await self._call_url(call_id, **query),
                            await self._call_url(call_id, type="listen", **query),
                            language=self.settings.language)

    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None:
        if turn_token:
            self._listening[call.call_id] = turn_token
        await self._update(call, [("Twiml", await self._listen_twiml(call.call_id, turn_token))])

    async def stop_listening(self, call: CallRecord) -> None:
        self._listening.pop(call.call_id, None)

    async def get_call_status(self, provider_call_id: str) -> ProviderCallStatus:
        try:
            response = await self.http.request("GET", self._accounts(f"/Calls/{provider_call_id}.json"),
                                               idempotent=True, ok_statuses=(404,))
        except CarrierApiError:
            return ProviderCallStatus("error", is_terminal=False, is_unknown=True)
        if response.status_code == 404:
            return ProviderCallStatus("not-found", is_terminal=True, end_reason=EndReason.COMPLETED)
        with contextlib.suppress(ValueError):
            return map_call_status(str(response.json().get("status", "")))
        return ProviderCallStatus("error", is_terminal=False, is_unknown=True)
