"""Plivo Voice API behind the carrier interface; the call flows are the shared markup ones
(`providers/markup.py`), written in Plivo XML.

How a call is driven (no media stream):
- placing: REST `POST Call/` with `answer_url`, `ring_url` and `hangup_url`, all carrying our
  call id, `ring_timeout` from `ringTimeoutMs`, and machine detection for notify calls when
  `outbound.machineDetection` is on;
- the answer fetch waits briefly for the call's first document (its first words, or a listen)
  and answers with it, so a notify message costs no extra round trip; else it holds (D81);
- every later document (speak, listen, keys as `<DTMF>`, D83) is kept by the adapter and the
  A-leg is transferred (`POST Call/{uuid}/`, `aleg_url`) to a URL that serves it;
- speech input is a `GetInput inputType="speech"` whose action URL carries the turn token;
- hang-up: `DELETE Call/{uuid}/`, and `DELETE Request/{uuid}/` for a call still ringing; 404 is
  "already ended";
- the call is known by the `request_uuid` the API answers with until the callbacks name its
  `CallUUID`; commands and streams then use the CallUUID.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import uuid4

import httpx

from voicecall.calls.events import TRANSFER_STATUSES
from voicecall.calls.model import CallRecord, Direction, EndReason
from voicecall.providers.base import (
    DialRequest,
    EventOutcome,
    ParsedWebhook,
    ProviderError,
    TransferRequest,
    Verification,
    WebhookRequest,
)
from voicecall.providers.canonical_form import NotCanonical, canonical_request, signed_form
from voicecall.providers.http import json_error
from voicecall.providers.markup import MarkupCarrierSettings, MarkupProvider, speech_confidence
from voicecall.providers.plivo.canonical import check_plivo_form
from voicecall.providers.plivo.signature import (
    V2_HEADER,
    V2_NONCE_HEADER,
    V3_HEADER,
    V3_NONCE_HEADER,
    verify_plivo_webhook,
)
from voicecall.providers.plivo.stream import PlivoStreamSerializer
from voicecall.providers.plivo.xml import PlivoXmlDialect, plivo_voice
from voicecall.providers.streams import StreamSerializer

log = logging.getLogger(__name__)

API_BASE_URL = "https://api.plivo.com"
SPEECH_FIELDS = ("Speech", "Transcription", "TranscriptionText", "SpeechResult",
                 "RecognizedSpeech", "Text")
"""Where Plivo's speech callbacks put the transcript; the first non-empty one is used."""
PLIVO_STATUS = {"timeout": "no-answer", "cancel": "canceled", "machine": "completed",
                "hangup": "completed"}
"""Plivo's own end statuses as the shared ones (`map_call_status`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlivoSettings(MarkupCarrierSettings):
    """The Plivo account (auth id and token: REST Basic auth and the key of every signature);
    the rest is what every markup carrier has."""

    auth_id: str
    auth_token: str
    api_base_url: str = API_BASE_URL
    voice: str = "WOMAN"
    real_api_hosts: ClassVar[tuple[str, ...]] = (API_BASE_URL,)


def plivo_number(number: str) -> str:
    """A number as Plivo's API takes it: `sip:` URIs as they are, else digits only."""
    return number if number.startswith("sip:") else re.sub(r"[^0-9]", "", number)


def e164(raw: str | None) -> str | None:
    """A number from a Plivo callback (digits, no `+`) in E.164; SIP URIs as they are."""
    value = (raw or "").strip()
    if not value or value.startswith("sip:") or value.startswith("+"):
        return value or None
    return "+" + value if value.isdigit() else value


def _plivo_input_events(params: dict[str, str]) -> list[dict[str, Any]]:
    """What a `GetInput` collected: keys pressed, the caller's words, or nothing."""
    if params.get("Digits", "").strip():
        return [{"type": "call.dtmf", "digits": params["Digits"].strip()}]
    transcript = next((params[f].strip() for f in SPEECH_FIELDS if params.get(f, "").strip()), "")
    if transcript:
        return [{"type": "call.speech", "transcript": transcript, "isFinal": True,
                 "confidence": speech_confidence(params.get("SpeechConfidenceScore"))}]
    return []


class PlivoProvider(MarkupProvider):
    """The Plivo adapter (REST + V3/V2-signed callbacks + Plivo XML + audio streams)."""

    name = "plivo"
    dialect = PlivoXmlDialect()
    call_id_params = ("CallUUID", "RequestUUID")
    status_field = "call_status"
    status_aliases = PLIVO_STATUS
    serializer: StreamSerializer = PlivoStreamSerializer()  # stateless: one for every stream
    _voice_name = staticmethod(plivo_voice)

    def __init__(self, settings: PlivoSettings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(settings, label="Plivo", auth=(settings.auth_id, settings.auth_token),
                         parse_error=json_error("error"), transport=transport, signature_headers=(
                             f"{V3_HEADER}|{V2_HEADER}", f"{V3_NONCE_HEADER}|{V2_NONCE_HEADER}"))
        self.settings: PlivoSettings = settings
        self._call_uuids: dict[str, str] = {}
        """Our call id → its CallUUID, where that differs from the request_uuid."""

    def _call_path(self, provider_call_id: str) -> str:
        return self._path(f"Call/{provider_call_id}/")

    def _path(self, suffix: str) -> str:
        return f"/v1/Account/{self.settings.auth_id}/{suffix}"

    def _new_stream_token(self) -> str:
        return secrets.token_hex(16)  # extraHeaders allow alphanumerics only

    # -- webhooks ----------------------------------------------------------------------------
    def _verify(self, request: WebhookRequest) -> Verification:
        s = self.settings
        result = verify_plivo_webhook(request, auth_token=s.auth_token, public_url=s.public_url,
                                      policy=s.policy,
                                      skip_verification=s.skip_signature_verification)
        if result.ok and not s.skip_signature_verification:
            # Only Plivo's own arrangement of the signed content is applied (D67).
            try:
                check_plivo_form(canonical_request(request))
            except NotCanonical as exc:
                result = Verification(ok=False, reason=f"signed request not in Plivo's form: {exc}")
        return result

    _form = staticmethod(signed_form)

    def _direction(self, params: dict[str, str]) -> Direction | None:
        raw = params.get("Direction", "").strip().lower()
        return "inbound" if raw == "inbound" else "outbound" if raw == "outbound" else None

    def _number(self, raw: str | None) -> str | None:
        return e164(raw)

    def _input_events(self, params: dict[str, str]) -> list[dict[str, Any]]:
        return _plivo_input_events(params)

    def _status_events(self, meta: dict[str, Any], params: dict[str, str]) -> list[dict[str, Any]]:
        if meta["kind"] == "amd":
            machine = params.get("Machine", "").strip().lower() == "true"
            return self._machine_answered(meta["callId"]) if machine else []
        status = meta["status"]
        if status == "ringing":
            return [{"type": "call.initiated"}, {"type": "call.ringing"}]
        if status == "in-progress" or (params.get("Event") == "StartApp" and not status):
            return [{"type": "call.answered"}]
        return self._end_reason_events(status)

    # -- commands ----------------------------------------------------------------------------
    async def initiate_call(self, request: DialRequest) -> str:
        base = await self._remember_base(request.call_id)
        self._expect_answer(request.call_id)
        body: dict[str, Any] = {
            "from": plivo_number(request.from_), "to": plivo_number(request.to),
            "answer_url": self._url(base, request.call_id), "answer_method": "POST",
            "ring_url": self._url(base, request.call_id, type="status"), "ring_method": "POST",
            "hangup_url": self._url(base, request.call_id, type="status"),
            "hangup_method": "POST",
            "ring_timeout": max(1, math.ceil(request.ring_timeout_ms / 1000)),
        }
        if self.settings.machine_detection and request.mode == "notify":
            body.update(machine_detection="true", machine_detection_method="POST",
                        machine_detection_url=self._url(base, request.call_id, type="amd"))
        response = await self.http.request("POST", self._path("Call/"), json=body)
        try:
            uuid: Any = response.json().get("request_uuid")
        except (ValueError, AttributeError):
            uuid = None
        if isinstance(uuid, list):
            uuid = uuid[0] if uuid else None
        if not isinstance(uuid, str) or not uuid:
            raise ProviderError("Plivo API error: create-call response has no request_uuid")
        return uuid

    # -- request_uuid → CallUUID --------------------------------------------------------------
    async def webhook_reply(self, request: WebhookRequest, parsed: ParsedWebhook,
                            outcomes: list[EventOutcome] | None) -> ParsedWebhook:
        if outcomes is not None:
            await self._learn_call_uuid(parsed.meta, outcomes)
        return await super().webhook_reply(request, parsed, outcomes)

    async def _learn_call_uuid(self, meta: dict[str, Any], outcomes: list[EventOutcome]) -> None:
        """A call placed through the API is known by its `request_uuid` until Plivo's callbacks
        name its `CallUUID`; when they differ, REST commands and streams use the CallUUID from
        then on (kept in the call's carrier state, so a restart keeps it)."""
        call = next((o.call for o in outcomes if o.call is not None), None)
        uuid = meta.get("providerCallId")
        if call is None or not uuid or uuid == call.provider_call_id:
            return
        if self._call_uuids.get(call.call_id) != uuid:
            self._call_uuids[call.call_id] = uuid
            state = await self.context.get_provider_state(call.call_id) or {}
            await self.context.put_provider_state(call.call_id, {**state, "callUuid": uuid})

    async def _call_uuid(self, call: CallRecord) -> str:
        uuid = self._call_uuids.get(call.call_id)
        if uuid is None:
            state = await self.context.get_provider_state(call.call_id) or {}
            uuid = str(state.get("callUuid") or call.provider_call_id or "")
            if uuid:
                self._call_uuids[call.call_id] = uuid
        if not uuid:
            raise ProviderError("plivo: the call has no CallUUID yet")
        return uuid

    async def _status_call_id(self, call: CallRecord) -> str:
        """The CallUUID once the callbacks named it (restored from the carrier state after a
        restart), not the request_uuid the call was placed with."""
        return await self._call_uuid(call)

    async def _status_path(self, call: CallRecord) -> str:
        """Plivo's live call resource (`?status=live`): a plain GET reads the record of a call
        that has ended, and has none for a call in progress."""
        return self._call_path(await self._status_call_id(call)) + "?status=live"

    def _stream_call(self, carrier_call_id: str) -> CallRecord | None:
        ours = next((cid for cid, uuid in self._call_uuids.items() if uuid == carrier_call_id),
                    None)
        call = self.context.live(ours) if ours else None
        return call if call is not None else super()._stream_call(carrier_call_id)

    async def _transfer(self, call: CallRecord, url: str, *, tolerate_ended: bool = False) -> None:
        """Send the A-leg to `url`: Plivo fetches it and runs the XML it answers."""
        body = {"legs": "aleg", "aleg_url": url, "aleg_method": "POST"}
        response = await self.http.request("POST", self._path(f"Call/{await self._call_uuid(call)}/"),
                                           json=body, ok_statuses=(404,) if tolerate_ended else ())
        if response.status_code == 404:
            log.info("call %s: transfer skipped, the call has ended", call.call_id)

    async def _push(self, call: CallRecord, document: str) -> None:
        doc_id = uuid4().hex
        self._documents[call.call_id] = (doc_id, document)
        await self._transfer(call, await self._call_url(call.call_id, type="doc", doc=doc_id))

    async def _update_to_url(self, call: CallRecord, url: str) -> None:
        await self._transfer(call, url, tolerate_ended=True)

    async def transfer_call(self, call: CallRecord, request: TransferRequest) -> None:
        """`<Dial>` the person (the A-leg is transferred to it like any later document)."""
        self._listening.pop(call.call_id, None)
        document = self.dialect.dial(
            plivo_number(request.to), caller_id=plivo_number(request.caller_id),
            timeout_s=request.timeout_s,
            action_url=await self._call_url(call.call_id, type="dial"),
            callback_url=await self._call_url(call.call_id, type="dial-status"))
        await self._push(call, document)

    def _transfer_events(self, kind: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The person answered (`dial-status`: `DialAction=answer`), or the `<Dial>` is over
        (`dial`: `DialStatus`; Plivo's `timeout` is a `no-answer`)."""
        if kind == "dial-status":
            answered = params.get("DialAction", "").strip().lower() == "answer"
            return [{"type": "call.transfer", "text": "bridged"}] if answered else []
        status = params.get("DialStatus", "").strip().lower()
        status = {"timeout": "no-answer", "cancel": "canceled"}.get(status, status)
        return [{"type": "call.transfer", "text": status}] if status in TRANSFER_STATUSES else []

    async def hangup_call(self, call: CallRecord, reason: EndReason) -> None:
        self._fail_pending(call.call_id)
        uuid = await self._call_uuid(call)
        response = await self.http.request("DELETE", self._path(f"Call/{uuid}/"), idempotent=True,
                                           ok_statuses=(404,))
        if response.status_code == 404 and call.answered_at is None and call.provider_call_id:
            await self.http.request("DELETE", self._path(f"Request/{call.provider_call_id}/"),
                                    idempotent=True, ok_statuses=(404,))
