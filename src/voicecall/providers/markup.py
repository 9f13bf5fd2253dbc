"""Call flows shared by carriers that drive calls with markup documents (Twilio's TwiML, Plivo
XML): the carrier fetches a document from the gateway, runs it, and comes back for the next.

A `MarkupProvider` owns everything that is the same for those carriers (D80):
- the per-call webhook base URL, persisted so a restart keeps reaching the call;
- playback that returns once played: a document says the text, then redirects to a per-utterance
  `played` URL, and `play_tts` returns when the carrier requests it;
- listening with per-turn tokens in the action URL (a stale callback cannot complete a newer
  turn) and a redirect that re-arms the listen on silence;
- the answers to webhooks: hold, reject, hang up, stream, queue the second inbound streamer;
- the call's first document in the answer to its answer webhook (`AnswerWindow`, D45);
- a transfer's progress webhooks (`dial`, `dial-status`, D46).

What every carrier adapter has (the REST client, playback waits, media-stream tokens and stream
authorization) comes from `CarrierAdapter`, which the Telnyx adapter shares.

A carrier subclass supplies its `MarkupDialect` (how each document is written), how a document
replaces the one the call is running (`_push`), and its REST, signatures and webhook parsing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import httpx

from voicecall.calls.events import CallEvent
from voicecall.calls.model import CallRecord, Direction, EndReason
from voicecall.providers.adapter import CarrierAdapter, CarrierSettings
from voicecall.providers.answer_window import AnswerWindow
from voicecall.providers.base import (
    EventOutcome,
    ParsedWebhook,
    ProviderCallStatus,
    Verification,
    WebhookParseError,
    WebhookRequest,
    map_call_status,
)
from voicecall.providers.http import CarrierApiError, ErrorParser
from voicecall.providers.replies import call_for, ended_call_ids, machine_ends_call
from voicecall.providers.voices import route_voice
from voicecall.security.public_url import ForwardingPolicy
from voicecall.shared.clock import now_ms

log = logging.getLogger(__name__)

__all__ = ["MarkupCarrierSettings", "MarkupDialect", "MarkupProvider"]


class MarkupDialect(Protocol):
    """How one carrier writes the documents the shared call flows answer with."""

    content_type: str

    def empty(self) -> str: ...
    def hangup(self) -> str: ...
    def reject(self) -> str: ...
    def redirect(self, url: str) -> str:
        """A document that sends the call to `url` at once."""
        ...
    def hold(self, next_url: str) -> str:
        """Keep the call up a while, then come back to `next_url`."""
        ...
    def speak(self, text: str, *, voice: str, language: str, played_url: str) -> str:
        """Say `text`, then request `played_url` (the end of playback)."""
        ...
    def play_digits(self, digits: str, played_url: str) -> str: ...
    def listen(self, action_url: str, again_url: str, *, language: str) -> str:
        """Collect speech, posted to `action_url`; on silence go to `again_url`."""
        ...
    def stream(self, stream_url: str, token: str) -> str: ...
    def queue(self, hold_music_url: str) -> str: ...
    def hold_music(self) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkupCarrierSettings(CarrierSettings):
    """What every markup carrier has besides `CarrierSettings`: the public URL its signatures
    cover and which forwarding headers rebuild it."""

    public_url: str | None = None
    policy: ForwardingPolicy = field(default_factory=ForwardingPolicy)


def query_value(query: Mapping[str, str], name: str) -> str | None:
    """A parameter of the query we put on our own webhook URLs; None when absent or blank."""
    return (query.get(name) or "").strip() or None


def speech_confidence(raw: str | None) -> float:
    """A carrier's recognition confidence clamped to 0..1; 0.9 when missing, not a number, or
    not a finite one (NaN is treated as absent)."""
    try:
        value = float(raw or 0.9)
    except ValueError:
        return 0.9
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else 0.9


class MarkupProvider(CarrierAdapter, ABC):
    """The shared half of a markup-driven carrier adapter (see the module docstring).

    Webhook meta a subclass's `parse_webhook` fills for `webhook_reply`: `providerCallId`,
    `callId` (ours, from the query), `kind` (the `type` we put in the URL), `turnToken`, `utt`,
    `doc`, `status` (the carrier's call status, lower case) and `inboundStart` (the first
    webhook of an inbound call)."""

    settings: MarkupCarrierSettings
    dialect: MarkupDialect
    call_id_params: tuple[str, ...]
    """The form fields that carry the carrier's call id, first found wins."""
    status_field: str = "status"
    """The call resource's status field."""
    status_aliases: Mapping[str, str] = {}
    """The carrier's own call statuses spelled as the shared ones (`map_call_status`)."""

    def __init__(self, settings: MarkupCarrierSettings, *, label: str, auth: tuple[str, str],
                 parse_error: ErrorParser, signature_headers: tuple[str, ...],
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`label` names the carrier in errors; `signature_headers` are the webhook's
        `required_headers` unless signature checks are off."""
        super().__init__(settings, label=label, signature_headers=signature_headers,
                         parse_error=parse_error, auth=auth, transport=transport)
        self.settings: MarkupCarrierSettings = settings
        self._bases: dict[str, str] = {}
        self._listening: dict[str, str] = {}
        self._documents: dict[str, tuple[str, str]] = {}
        self._windows: dict[str, AnswerWindow] = {}
        self._streaming_inbound: set[str] = set()
        self._queued_inbound: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what a carrier supplies ---------------------------------------------------------------
    @abstractmethod
    async def _push(self, call: CallRecord, document: str) -> None:
        """Make the live call run `document` now instead of the one it is running."""

    @abstractmethod
    async def _update_to_url(self, call: CallRecord, url: str) -> None:
        """Make the live call fetch `url` and run what it answers (tolerating an ended call)."""

    @abstractmethod
    def _verify(self, request: WebhookRequest) -> Verification:
        """The carrier's signature check (see `Provider.verify_webhook`)."""

    @abstractmethod
    def _direction(self, params: dict[str, str]) -> Direction | None:
        """The call's direction as the webhook states it."""

    @abstractmethod
    def _input_events(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """What the caller said or keyed in answer to a listen; empty for neither."""

    @abstractmethod
    def _status_events(self, meta: dict[str, Any], params: dict[str, str]) -> list[dict[str, Any]]:
        """The events a call-progress webhook means."""

    def _form(self, request: WebhookRequest) -> tuple[dict[str, str], Mapping[str, str]]:
        """The webhook's form fields and our query, as this carrier's signature covers them;
        `WebhookParseError` for a body that is not form data."""
        try:
            params = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError as exc:
            raise WebhookParseError("body is not UTF-8 form data") from exc
        return params, request.query

    def _transfer_events(self, kind: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """A transfer's progress (`call.transfer` events, D46) from its `dial` (the leg is over)
        or `dial-status` (the person answered) webhook; none for a carrier without transfers."""
        return []

    def _number(self, raw: str | None) -> str | None:
        """A phone number as the carrier's webhook gives it, in E.164."""
        return raw or None

    def _voice_name(self, voice: str) -> str:
        """A route's TTS voice as this carrier's speech voice."""
        return voice

    # -- lifecycle -----------------------------------------------------------------------------
    def set_public_url(self, url: str) -> None:
        """A tunnel's URL: the carrier signs it, so signatures are checked against it (a
        configured publicUrl wins)."""
        if self.settings.public_url is None:
            self.settings = dataclasses.replace(self.settings, public_url=url)

    def _cancel_pending(self) -> None:
        super()._cancel_pending()
        for task in list(self._tasks):
            task.cancel()
        for window in self._windows.values():
            window.close()
        self._windows.clear()

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
        state = await self.context.get_provider_state(call_id) or {}
        await self.context.put_provider_state(call_id, {**state, "webhookUrl": base})
        return base

    @staticmethod
    def _url(base: str, call_id: str, **query: str) -> str:
        joiner = "&" if "?" in base else "?"
        return f"{base}{joiner}{urlencode({'callId': call_id, **query})}"

    async def _call_url(self, call_id: str, **query: str) -> str:
        return self._url(await self._base(call_id), call_id, **query)

    # -- webhooks ------------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest) -> Verification:
        """The carrier's check; a refusal names the call the request claims (our `callId` from
        its query, else the carrier's id from its body), unverified, to count it against."""
        result = self._verify(request)
        if result.ok:
            return result
        claimed = query_value(request.query, "callId")
        if claimed is None:
            fields = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
            claimed = next((fields[n].strip() for n in self.call_id_params if fields.get(n)), None)
        return result._replace(call_id=claimed or None)

    def parse_webhook(self, request: WebhookRequest, verification: Verification) -> ParsedWebhook:
        """Form body + our query (callId, type, turnToken, utt, doc) → normalized events."""
        params, query = self._form(request)
        meta = self._webhook_meta(params, query)
        events = self._input_events(params)
        if events:
            meta["gather"] = True
        elif meta["kind"] in ("dial", "dial-status"):
            events = self._transfer_events(meta["kind"], params)
        elif meta["kind"] in (None, "status", "answered", "amd"):
            events = self._status_events(meta, params)
        common = {
            "callId": meta["callId"] or meta["providerCallId"],
            "providerCallId": meta["providerCallId"], "direction": self._direction(params),
            "from": self._number(params.get("From")), "to": self._number(params.get("To")),
            "turnToken": meta["turnToken"], "timestamp": now_ms(),
        }
        parsed = [CallEvent.model_validate(
            {**common, **e, "dedupeKey": f"{verification.request_key}:{i}"})
            for i, e in enumerate(events)]
        return ParsedWebhook(events=parsed, headers={"content-type": self.dialect.content_type},
                             meta=meta)

    def _webhook_meta(self, params: dict[str, str], query: Mapping[str, str]) -> dict[str, Any]:
        """What `webhook_reply` needs besides the events (see the class docstring).

        `inboundStart` marks the first webhook of an inbound call: the carrier asks the number's
        answer URL, which carries none of our query."""
        carrier_id = next((params[n].strip() for n in self.call_id_params if params.get(n, "").strip()),
                          "")
        if not carrier_id:
            raise WebhookParseError(f"{self.call_id_params[0]} is missing")
        meta: dict[str, Any] = {
            "providerCallId": carrier_id, "callId": query_value(query, "callId"),
            "kind": query_value(query, "type"), "turnToken": query_value(query, "turnToken"),
            "utt": query.get("utt"), "doc": query.get("doc"),
            "status": params.get("CallStatus", "").strip().lower(),
        }
        if meta["callId"] is None and meta["kind"] is None and self._direction(params) == "inbound":
            meta["inboundStart"] = True
        return meta

    def _machine_answered(self, call_id: str | None) -> list[dict[str, Any]]:
        """A machine answered: a notify call (or one we cannot see) ends as voicemail; a
        conversation goes on."""
        if machine_ends_call(self.context, call_id):
            return [{"type": "call.ended", "reason": EndReason.VOICEMAIL.value}]
        return []

    # -- webhook answers -------------------------------------------------------------------------
    async def webhook_reply(self, request: WebhookRequest, parsed: ParsedWebhook,
                            outcomes: list[EventOutcome] | None) -> ParsedWebhook:
        """The document for this request; a replay (outcomes None) gets an equivalent answer
        without side effects."""
        meta = parsed.meta
        reply = ParsedWebhook(events=parsed.events,
                              headers={"content-type": self.dialect.content_type})
        reply.body = await self._reply_body(meta, parsed.events, outcomes)
        return reply

    async def _reply_body(self, meta: dict[str, Any], events: list[CallEvent],
                          outcomes: list[EventOutcome] | None) -> str:
        d = self.dialect
        kind = meta.get("kind")
        if kind in ("status", "dial-status"):
            self._settle_if_ended(events, outcomes)
            return d.empty()
        if kind == "hold-music":
            return d.hold_music()
        call = await self._call_for(meta, outcomes)
        if call is None:
            return d.reject() if meta.get("inboundStart") else d.empty()
        self._settle_if_ended(events, outcomes)
        if call.is_terminal:
            return d.hangup()
        if kind == "played" and meta.get("utt"):
            self._played.played(meta["utt"])
        if kind == "doc":
            stored = self._documents.get(call.call_id)
            if stored is not None and stored[0] == meta.get("doc"):
                return stored[1]
        answering = kind in (None, "answered") and meta.get("status") == "in-progress"
        if meta.get("inboundStart"):
            # Opened before anything is awaited; the outbound call's opened when it was placed.
            self._expect_answer(call.call_id)
        speech_due = any(o.speech_due for o in outcomes or [])
        return await self._answer(call, meta, answering, speech_due)

    async def _answer(self, call: CallRecord, meta: dict[str, Any], answering: bool,
                      speech_due: bool) -> str:
        d = self.dialect
        if meta.get("inboundStart"):
            queued = await self._inbound_start(call, answered=answering)
            if queued is not None:
                return queued
        stream_url = self._stream_url()
        if stream_url and (answering or meta.get("kind") == "dial"):  # dial: a transfer nobody took
            self._close_window(call.call_id)
            if call.direction == "inbound":
                self._streaming_inbound.add(call.call_id)
            return d.stream(stream_url, await self.stream_token(call.call_id))
        if meta.get("kind") == "listen" and \
                self._listening.get(call.call_id) == meta.get("turnToken"):
            return await self._listen_document(call.call_id, meta["turnToken"])
        window = self._windows.get(call.call_id) if answering else None
        if window is not None:
            first = await window.take(wait=speech_due)
            if self._windows.get(call.call_id) is window:
                del self._windows[call.call_id]
            if first is not None:
                return first
        return d.hold(await self._call_url(call.call_id, type="hold"))

    async def _inbound_start(self, call: CallRecord, *, answered: bool) -> str | None:
        """An accepted inbound caller: queued behind a busy inbound stream, else sent to the
        answer URL; None when the carrier reports the call answered already (Plivo), which then
        proceeds like any answer."""
        await self._remember_base(call.call_id)
        if self._stream_url() and self._streaming_inbound - {call.call_id}:
            if call.call_id not in self._queued_inbound:
                self._queued_inbound.append(call.call_id)
            return self.dialect.queue(await self._call_url(call.call_id, type="hold-music"))
        if answered:
            return None
        return self.dialect.redirect(await self._call_url(call.call_id, type="answered"))

    def _expect_answer(self, call_id: str) -> None:
        """The call's answer webhook is still to come: its first document may ride in it (D45).
        Called when an outbound call is placed and when an inbound call is accepted."""
        self._windows.setdefault(call_id, AnswerWindow())

    def _close_window(self, call_id: str) -> None:
        window = self._windows.pop(call_id, None)
        if window is not None:
            window.close()

    async def _send_document(self, call: CallRecord, document: str) -> None:
        """Run `document` on the call: in the answer to its answer webhook when that is still
        to go out (D45), else by the carrier's own means."""
        window = self._windows.get(call.call_id)
        if window is not None and await window.park(document):
            return
        await self._push(call, document)

    async def _call_for(self, meta: dict[str, Any],
                        outcomes: list[EventOutcome] | None) -> CallRecord | None:
        return await call_for(self.context, outcomes, meta.get("callId"), meta.get("providerCallId"))

    def _settle_if_ended(self, events: list[CallEvent], outcomes: list[EventOutcome] | None) -> None:
        """A call that ended fails its pending playback waits at once (nothing waits forever)
        and frees its inbound stream slot. The event may name the call by the carrier's id only
        (an inbound call's status callback), so our id comes from the applied outcome."""
        for call_id in ended_call_ids(self.context, events, outcomes):
            self._fail_pending(call_id)

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
        self._documents.pop(call_id, None)
        self._close_window(call_id)

    async def _connect_next_queued(self) -> None:
        """The inbound stream is free: take the longest-waiting queued caller off hold."""
        while self._queued_inbound and not self._streaming_inbound:
            call = self.context.live(self._queued_inbound.pop(0))
            if call is None or call.is_terminal:
                continue
            self._streaming_inbound.add(call.call_id)
            try:
                await self._update_to_url(call, await self._call_url(call.call_id, type="answered"))
            except Exception as exc:
                log.warning("call %s: could not take the caller off hold: %s", call.call_id, exc)
                self._streaming_inbound.discard(call.call_id)
                continue
            log.info("call %s: connected from the hold queue", call.call_id)
            return

    # -- media-stream tokens -------------------------------------------------------------------
    async def _state_defaults(self, call_id: str) -> dict[str, Any]:
        """A streamed call keeps the webhook URL it uses with its token (a restart reaches it)."""
        return {"webhookUrl": await self._base(call_id)}

    # -- commands ------------------------------------------------------------------------------
    async def _play(self, call: CallRecord, render: Callable[[str], str]) -> None:
        """Run the document `render(played_url)` and return once the carrier requests that URL."""
        async def send(utt: str) -> None:
            played_url = await self._call_url(call.call_id, type="played", utt=utt)
            await self._send_document(call, render(played_url))
        await self._played.play(call.call_id, send)

    def _voice_for(self, call: CallRecord) -> str:
        """The call's `numbers` route voice when it has one, else the configured voice."""
        voice = route_voice(call)
        return self._voice_name(voice) if voice else self.settings.voice

    async def play_tts(self, call: CallRecord, text: str) -> None:
        voice, language = self._voice_for(call), self.settings.language
        self._listening.pop(call.call_id, None)
        await self._play(call, lambda url: self.dialect.speak(text, voice=voice, language=language,
                                                              played_url=url))

    async def send_dtmf(self, call: CallRecord, digits: str) -> None:
        self._listening.pop(call.call_id, None)
        await self._play(call, lambda url: self.dialect.play_digits(digits, url))

    async def _listen_document(self, call_id: str, token: str | None) -> str:
        query = {"turnToken": token} if token else {}
        return self.dialect.listen(await self._call_url(call_id, **query),
                                   await self._call_url(call_id, type="listen", **query),
                                   language=self.settings.language)

    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None:
        if turn_token:
            self._listening[call.call_id] = turn_token
        await self._send_document(call, await self._listen_document(call.call_id, turn_token))

    async def stop_listening(self, call: CallRecord) -> None:
        self._listening.pop(call.call_id, None)

    @abstractmethod
    def _call_path(self, provider_call_id: str) -> str:
        """The REST path of one call resource."""

    async def _status_path(self, call: CallRecord) -> str:
        """Where the status of a call in progress is read: its call resource."""
        return self._call_path(await self._status_call_id(call))

    async def _status_call_id(self, call: CallRecord) -> str:
        """The id the carrier's call resource is known by: the call's carrier id."""
        return call.provider_call_id or ""

    async def get_call_status(self, call: CallRecord) -> ProviderCallStatus:
        """GET the call resource: a missing call has ended; a failed request or an unreadable
        answer is unknown, never a guess."""
        try:
            response = await self.http.request("GET", await self._status_path(call),
                                               idempotent=True, ok_statuses=(404,))
        except CarrierApiError:
            return ProviderCallStatus("error", is_terminal=False, is_unknown=True)
        if response.status_code == 404:
            return ProviderCallStatus("not-found", is_terminal=True, end_reason=EndReason.COMPLETED)
        with contextlib.suppress(ValueError, AttributeError):
            raw = str(response.json().get(self.status_field, "")).strip().lower()
            return map_call_status(self.status_aliases.get(raw, raw))
        return ProviderCallStatus("error", is_terminal=False, is_unknown=True)

    def _end_reason_events(self, status: str) -> list[dict[str, Any]]:
        """`call.ended` for a terminal status (mapped the same for every carrier), else nothing."""
        mapped = map_call_status(self.status_aliases.get(status, status))
        if mapped.is_terminal and mapped.end_reason is not None:
            return [{"type": "call.ended", "reason": mapped.end_reason.value}]
        return []
