"""Plivo adapter without a network: the event mapping, the XML answers and the REST requests
(against an `httpx.MockTransport` that records them)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from tests.helpers import FakeProviderContext
from voicecall.calls.model import CallRecord, CallState, EndReason
from voicecall.providers.base import (
    DialRequest,
    EventOutcome,
    ProviderError,
    Verification,
    WebhookParseError,
    WebhookRequest,
)
from voicecall.providers.plivo.provider import PlivoProvider, PlivoSettings, plivo_number
from voicecall.providers.plivo.stream import PlivoStreamSerializer
from voicecall.providers.streams import (
    StreamAudio,
    StreamCleared,
    StreamDtmf,
    StreamMark,
    StreamStart,
)

BASE = "https://gw.example/voice/webhook"
AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
UUID = "2a3b4c5d-0000-1111-2222-333344445555"

Handler = Any


def make(handler: Handler | None = None, **settings: Any) -> tuple[PlivoProvider, FakeProviderContext,
                                                                    list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request) if handler else httpx.Response(201, json={"request_uuid": UUID})

    p = PlivoProvider(PlivoSettings(auth_id=AUTH_ID, auth_token="t", api_base_url="http://sim",
                                    **settings), transport=httpx.MockTransport(record))
    ctx = FakeProviderContext(BASE)
    p.bind(ctx)
    return p, ctx, seen


def call(call_id: str = "c1", *, mode: str = "conversation", answered: bool = True,
         direction: str = "outbound") -> CallRecord:
    return CallRecord(call_id=call_id, provider="plivo", direction=direction,
                      state=CallState.ANSWERED if answered else CallState.RINGING,
                      metadata={"mode": mode},
                      from_="+15550000000", to="+15555550123", started_at=1,
                      answered_at=2 if answered else None, provider_call_id=UUID)


def request(query: str, **params: str) -> WebhookRequest:
    return WebhookRequest(method="POST", url=f"{BASE}?{query}", path="/voice/webhook",
                          query=dict(parse_qsl(query)), headers={},
                          body=urlencode(params).encode(), remote_addr="127.0.0.1")


def events(p: PlivoProvider, req: WebhookRequest) -> list[tuple[str, dict[str, Any]]]:
    parsed = p.parse_webhook(req, Verification(ok=True, request_key="plivo:v3:k"))
    return [(e.type, e.model_dump(by_alias=True, exclude_none=True)) for e in parsed.events]


# --- event mapping ------------------------------------------------------------------------------

def test_status_callbacks_map_to_the_shared_events_with_our_call_id() -> None:
    p, _, _ = make()
    got = events(p, request("callId=c1&type=status", CallUUID=UUID, CallStatus="ringing",
                            Direction="outbound", From="15550000000", To="15555550123"))
    assert [t for t, _ in got] == ["call.initiated", "call.ringing"]
    assert got[0][1]["callId"] == "c1" and got[0][1]["providerCallId"] == UUID
    assert got[0][1]["dedupeKey"] == "plivo:v3:k:0" and got[1][1]["dedupeKey"] == "plivo:v3:k:1"
    assert [t for t, _ in events(p, request("callId=c1", CallUUID=UUID, CallStatus="in-progress",
                                            Event="StartApp"))] == ["call.answered"]


@pytest.mark.parametrize("status,reason", [("completed", "completed"), ("busy", "busy"),
                                           ("failed", "failed"), ("no-answer", "no-answer"),
                                           ("timeout", "no-answer"), ("cancel", "hangup-bot")])
def test_hangup_statuses_end_the_call_with_the_shared_reasons(status: str, reason: str) -> None:
    p, _, _ = make()
    got = events(p, request("callId=c1&type=status", CallUUID=UUID, CallStatus=status,
                            HangupCause="NORMAL_CLEARING"))
    assert got == [("call.ended", got[0][1])] and got[0][1]["reason"] == reason


def test_getinput_speech_carries_the_turn_token_and_confidence() -> None:
    p, _, _ = make()
    got = events(p, request("callId=c1&turnToken=T2", CallUUID=UUID, CallStatus="in-progress",
                            InputType="speech", Speech="book a table", Digits="",
                            SpeechConfidenceScore="0.87"))
    assert len(got) == 1 and got[0][0] == "call.speech"
    assert got[0][1]["transcript"] == "book a table" and got[0][1]["turnToken"] == "T2"
    assert got[0][1]["confidence"] == pytest.approx(0.87)


def test_getinput_digits_become_a_dtmf_event() -> None:
    p, _, _ = make()
    got = events(p, request("callId=c1", CallUUID=UUID, CallStatus="in-progress",
                            InputType="dtmf", Digits="42", Speech=""))
    assert [(t, e["digits"]) for t, e in got] == [("call.dtmf", "42")]


def test_a_machine_answering_a_notify_call_ends_it_as_voicemail() -> None:
    p, ctx, _ = make(machine_detection=True)
    ctx.calls["c1"] = call(mode="notify")
    got = events(p, request("callId=c1&type=amd", CallUUID=UUID, Machine="true"))
    assert [(t, e["reason"]) for t, e in got] == [("call.ended", "voicemail")]
    assert events(p, request("callId=c1&type=amd", CallUUID=UUID, Machine="false")) == []


def test_a_callback_without_a_call_uuid_is_malformed() -> None:
    p, _, _ = make()
    with pytest.raises(WebhookParseError, match="CallUUID"):
        p.parse_webhook(request("callId=c1", CallStatus="ringing"), Verification(True, "k"))


# --- XML answers --------------------------------------------------------------------------------

async def reply(p: PlivoProvider, req: WebhookRequest, record: CallRecord | None,
                outcomes: list[EventOutcome] | None = None) -> ET.Element:
    parsed = p.parse_webhook(req, Verification(ok=True, request_key="k"))
    if outcomes is None and record is not None:
        outcomes = [EventOutcome(call=record)]
    answer = await p.webhook_reply(req, parsed, outcomes)
    assert answer.headers["content-type"] == "text/xml" and answer.body is not None
    return ET.fromstring(answer.body)


async def test_the_answer_carries_the_first_words_without_a_transfer() -> None:
    import asyncio

    p, ctx, seen = make()
    record = call()
    ctx.calls["c1"] = record
    p._expect_answer("c1")  # as initiate_call does
    answer = asyncio.ensure_future(reply(p, request("callId=c1", CallUUID=UUID,
                                                    CallStatus="in-progress"), record,
                                         [EventOutcome(call=record, speech_due=True)]))
    await asyncio.sleep(0.05)
    speaking = asyncio.ensure_future(p.play_tts(record, "Your order has shipped"))
    root = await answer
    speak, redirect = list(root)
    assert (speak.tag, speak.text) == ("Speak", "Your order has shipped")
    assert redirect.tag == "Redirect" and "type=played" in (redirect.text or "")
    assert seen == []  # no REST transfer: the words rode in the answer
    played = request((redirect.text or "").partition("?")[2], CallUUID=UUID,
                     CallStatus="in-progress")
    await reply(p, played, record)
    await asyncio.wait_for(speaking, 1)


async def test_later_words_transfer_the_a_leg_to_a_document_url_that_serves_them() -> None:
    import asyncio

    p, ctx, seen = make(lambda r: httpx.Response(202, json={"message": "call transferred"}))
    record = call()
    ctx.calls["c1"] = record
    speaking = asyncio.ensure_future(p.play_tts(record, "Anything else?"))
    await asyncio.sleep(0.05)
    assert len(seen) == 1 and seen[0].method == "POST"
    assert seen[0].url.path == f"/v1/Account/{AUTH_ID}/Call/{UUID}/"
    body = json.loads(seen[0].content)
    assert body["legs"] == "aleg" and body["aleg_method"] == "POST"
    root = await reply(p, request(body["aleg_url"].partition("?")[2], CallUUID=UUID,
                                  CallStatus="in-progress"), record)
    assert root[0].tag == "Speak" and root[0].text == "Anything else?"
    speaking.cancel()


async def test_listening_uses_getinput_speech_with_the_turn_token_and_a_rearming_redirect() -> None:
    p, _, seen = make(lambda r: httpx.Response(202, json={}))
    record = call()
    await p.start_listening(record, "T7")
    aleg_url = json.loads(seen[0].content)["aleg_url"]
    root = await reply(p, request(aleg_url.partition("?")[2], CallUUID=UUID,
                                  CallStatus="in-progress"), record)
    get_input, redirect = list(root)
    assert get_input.tag == "GetInput" and get_input.attrib["inputType"] == "speech"
    assert "turnToken=T7" in get_input.attrib["action"] and get_input.attrib["redirect"] == "true"
    assert "type=listen" in (redirect.text or "") and "turnToken=T7" in (redirect.text or "")


async def test_a_rejected_inbound_caller_is_hung_up_as_rejected() -> None:
    p, _, _ = make()
    root = await reply(p, request("", CallUUID=UUID, CallStatus="ringing", Direction="inbound",
                                  From="15557770001"), None,
                       outcomes=[EventOutcome(call=None, rejected="not allowed")])
    assert [(e.tag, e.attrib) for e in root] == [("Hangup", {"reason": "rejected"})]


async def test_an_accepted_inbound_caller_is_redirected_to_its_answer() -> None:
    p, ctx, _ = make()
    record = call(direction="inbound", answered=False)
    root = await reply(p, request("", CallUUID=UUID, CallStatus="ringing", Direction="inbound",
                                  From="15557770001"), record)
    assert root[0].tag == "Redirect" and root[0].text == f"{BASE}?callId=c1&type=answered"
    assert ctx.state["c1"] == {"webhookUrl": BASE}


async def test_with_streaming_the_answer_opens_a_bidirectional_stream_with_the_token() -> None:
    p, ctx, _ = make(stream_url="wss://gw.example/voice/stream")
    record = call()
    ctx.calls.update({"c1": record, UUID: record})  # the service finds calls by either id
    root = await reply(p, request("callId=c1", CallUUID=UUID, CallStatus="in-progress"), record)
    stream = root[0]
    token = ctx.state["c1"]["streamToken"]
    assert stream.tag == "Stream" and stream.text == "wss://gw.example/voice/stream"
    assert stream.attrib["bidirectional"] == stream.attrib["keepCallAlive"] == "true"
    assert stream.attrib["extraHeaders"] == f"token={token}" and token.isalnum()
    start = StreamStart(call_sid=UUID, stream_id="s1", token=token)
    assert await p.authorize_stream(start, None) == "c1"
    assert await p.authorize_stream(StreamStart(call_sid=UUID, stream_id="s1", token="x"), None) is None


# --- REST ---------------------------------------------------------------------------------------

async def test_create_call_posts_json_with_callback_urls_and_ring_timeout() -> None:
    p, _, seen = make(machine_detection=True)
    uuid = await p.initiate_call(DialRequest(call_id="c1", from_="+1 (555) 000-0000",
                                             to="+15555550123", webhook_url=BASE, mode="notify",
                                             message="hi", ring_timeout_ms=25_500))
    assert uuid == UUID
    sent = seen[0]
    assert sent.url.path == f"/v1/Account/{AUTH_ID}/Call/"
    assert sent.headers["authorization"].startswith("Basic ")
    body = json.loads(sent.content)
    assert body["from"] == "15550000000" and body["to"] == "15555550123"
    assert body["answer_url"] == f"{BASE}?callId=c1" and body["answer_method"] == "POST"
    assert body["hangup_url"] == f"{BASE}?callId=c1&type=status"
    assert body["ring_timeout"] == 26
    assert body["machine_detection"] == "true" and "type=amd" in body["machine_detection_url"]


def test_sip_targets_are_kept_and_numbers_lose_everything_but_digits() -> None:
    assert plivo_number("sip:alice@example.com") == "sip:alice@example.com"
    assert plivo_number("+1 555-000") == "1555000"


async def test_api_errors_name_plivo_the_status_and_plivos_message() -> None:
    p, _, _ = make(lambda r: httpx.Response(400, json={"api_id": "x", "error": "invalid to"}))
    with pytest.raises(ProviderError, match=r"Plivo API error, HTTP 400: invalid to"):
        await p.initiate_call(DialRequest(call_id="c1", from_="+1555", to="+1556",
                                          webhook_url=BASE, mode="notify", message=None,
                                          ring_timeout_ms=1000))


async def test_hangup_of_an_ended_call_is_tolerated_and_cancels_a_ringing_request() -> None:
    p, _, seen = make(lambda r: httpx.Response(404, json={"error": "not found"}))
    await p.hangup_call(call(answered=False), EndReason.HANGUP_BOT)
    assert [(r.method, r.url.path) for r in seen] == [
        ("DELETE", f"/v1/Account/{AUTH_ID}/Call/{UUID}/"),
        ("DELETE", f"/v1/Account/{AUTH_ID}/Request/{UUID}/")]


@pytest.mark.parametrize("response,terminal,unknown", [
    (httpx.Response(200, json={"call_status": "in-progress"}), False, False),
    (httpx.Response(200, json={"call_status": "completed"}), True, False),
    (httpx.Response(404, json={"error": "not found"}), True, False),
    (httpx.Response(400, json={"error": "bad"}), False, True),
])
async def test_call_status_is_read_and_errors_are_unknown(response: httpx.Response, terminal: bool,
                                                          unknown: bool) -> None:
    p, _, _ = make(lambda r: response)
    status = await p.get_call_status(call())
    assert (status.is_terminal, status.is_unknown) == (terminal, unknown)


async def test_after_a_restart_the_status_is_asked_by_the_call_uuid_kept_in_the_carrier_state() -> None:
    """A placed call is known by its request_uuid until the callbacks name its CallUUID; a
    fresh adapter (a restarted gateway) finds that CallUUID in the call's carrier state."""
    call_uuid = "7e57ca11-0000-4000-8000-00000000c0de"
    first, ctx, _ = make()
    record = call()
    ctx.calls[record.call_id] = record
    req = request(f"callId={record.call_id}&type=status", CallUUID=call_uuid, CallStatus="in-progress",
                  Direction="outbound", From="15550000000", To="15555550123", RequestUUID=UUID)
    parsed = first.parse_webhook(req, Verification(ok=True, request_key="plivo:v3:k"))
    await first.webhook_reply(req, parsed, [EventOutcome(call=record)])
    assert ctx.state[record.call_id]["callUuid"] == call_uuid

    restarted, _, seen = make(lambda r: httpx.Response(200, json={"call_status": "in-progress"}))
    restarted.bind(ctx)
    status = await restarted.get_call_status(record)
    assert not status.is_terminal and not status.is_unknown
    assert [(r.method, r.url.path) for r in seen] == [
        ("GET", f"/v1/Account/{AUTH_ID}/Call/{call_uuid}/")]


# --- the stream wire format ---------------------------------------------------------------------

def test_stream_messages_parse_and_render_in_plivos_format() -> None:
    s = PlivoStreamSerializer()
    start = s.parse(json.dumps({"event": "start", "sequenceNumber": 1, "start": {
        "callId": UUID, "streamId": "s1", "accountId": AUTH_ID, "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}},
        "extra_headers": "token=abc123;x=y"}))
    assert isinstance(start, StreamStart) and start.call_sid == UUID and start.token == "abc123"
    media = s.parse(json.dumps({"event": "media", "sequenceNumber": 2, "streamId": "s1", "media": {
        "track": "inbound", "timestamp": "1", "chunk": 1, "payload": "/" * 216}}))
    assert media == StreamAudio(b"\xff" * 162)
    assert s.parse('{"event":"playedStream","streamId":"s1","name":"m1"}') == StreamMark("m1")
    assert s.parse('{"event":"dtmf","streamId":"s1","dtmf":{"digit":"5"}}') == StreamDtmf("5")
    assert s.parse('{"event":"clearedAudio","streamId":"s1"}') == StreamCleared()
    assert s.parse('{"event":"somethingNew"}') is None
    with pytest.raises(ValueError):
        s.parse('{"event":"media","media":{"payload":"@@"}}')
    assert json.loads(s.audio("s1", b"\xff"))["event"] == "playAudio"
    assert json.loads(s.mark("s1", "m1")) == {"event": "checkpoint", "streamId": "s1", "name": "m1"}
    assert json.loads(s.clear("s1")) == {"event": "clearAudio", "streamId": "s1"}


def test_speak_voices_keep_plivos_own_and_map_openai_voices_as_for_twilio() -> None:
    from voicecall.providers.plivo.xml import plivo_voice

    assert [plivo_voice(v) for v in (None, "MAN", "Polly.Amy", "onyx", "someone")] == [
        "WOMAN", "MAN", "Polly.Amy", "Polly.Brian", "WOMAN"]


async def test_words_that_miss_the_answer_are_transferred_not_lost() -> None:
    import asyncio

    from voicecall.providers import answer_window

    p, ctx, seen = make(lambda r: httpx.Response(202, json={}))
    record = call()
    ctx.calls["c1"] = record
    p._expect_answer("c1")
    saved, answer_window.ANSWER_WAIT_S = answer_window.ANSWER_WAIT_S, 0.05
    try:
        root = await reply(p, request("callId=c1", CallUUID=UUID, CallStatus="in-progress"),
                           record, [EventOutcome(call=record, speech_due=True)])
    finally:
        answer_window.ANSWER_WAIT_S = saved
    assert [e.tag for e in root] == ["Wait", "Redirect"]  # nothing came in time: hold
    speaking = asyncio.ensure_future(p.play_tts(record, "Late words"))
    await asyncio.sleep(0.05)
    assert len(seen) == 1 and "type=doc" in json.loads(seen[0].content)["aleg_url"]
    speaking.cancel()
