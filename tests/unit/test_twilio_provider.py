"""Twilio adapter decisions that need no network: the stream TwiML policy and stream tokens."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.helpers import StubContext
from voicecall.calls.model import CallRecord, CallState, EndReason
from voicecall.providers.base import DialRequest, EventOutcome, Verification, WebhookRequest
from voicecall.providers.http import CarrierApiError
from voicecall.providers.stream_auth import is_valid_stream_token
from voicecall.providers.twilio.provider import TwilioProvider, TwilioSettings

BASE = "https://gw.example/voice/webhook"


class Context(StubContext):
    webhook_url = BASE


def inbound_call(call_id: str, sid: str) -> CallRecord:
    return CallRecord(call_id=call_id, provider="twilio", direction="inbound", state=CallState.RINGING,
                      from_="+15557770001", to="+15550000000", started_at=1, provider_call_id=sid)


def request(query: str, **params: str) -> WebhookRequest:
    from urllib.parse import parse_qsl, urlencode

    return WebhookRequest(method="POST", url=f"{BASE}?{query}", path="/voice/webhook",
                          query=dict(parse_qsl(query)), headers={}, body=urlencode(params).encode(),
                          remote_addr="127.0.0.1")


def provider(stream_url: str | None) -> tuple[TwilioProvider, Context]:
    p = TwilioProvider(TwilioSettings(account_sid="AC1", auth_token="t",
                                      api_base_url="http://127.0.0.1:9", stream_url=stream_url))
    ctx = Context()
    p.bind(ctx)
    return p, ctx


async def reply_for(p: TwilioProvider, req: WebhookRequest, call: CallRecord) -> str:
    parsed = p.parse_webhook(req, Verification(ok=True, request_key="k"))
    reply = await p.webhook_reply(req, parsed, [EventOutcome(call=call)])
    assert reply.body is not None
    return reply.body


async def test_with_streaming_the_answer_connects_a_stream_with_a_persisted_token() -> None:
    p, ctx = provider("wss://gw.example/voice/stream")
    call = inbound_call("c1", "CA1")
    ctx.calls["c1"] = call
    body = await reply_for(p, request("callId=c1&type=answered", CallSid="CA1", CallStatus="in-progress",
                                      Direction="inbound"), call)
    token = ctx.state["c1"]["streamToken"]
    assert '<Stream url="wss://gw.example/voice/stream">' in body and f'value="{token}"' in body
    assert len(token) == 22 and await is_valid_stream_token(p.context, "c1", token)
    assert not await is_valid_stream_token(p.context, "c1", token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert await p.stream_token("c1") == token  # created once, reused


async def test_a_second_inbound_caller_waits_in_the_queue_while_a_stream_is_busy() -> None:
    p, ctx = provider("wss://gw.example/voice/stream")
    first, second = inbound_call("c1", "CA1"), inbound_call("c2", "CA2")
    ctx.calls.update(c1=first, c2=second)
    await reply_for(p, request("callId=c1&type=answered", CallSid="CA1", CallStatus="in-progress",
                               Direction="inbound"), first)
    body = await reply_for(p, request("", CallSid="CA2", CallStatus="ringing", Direction="inbound",
                                      From="+15557770001"), second)
    assert "<Enqueue" in body and "type=hold-music" in body


async def test_without_streaming_an_accepted_inbound_call_is_redirected_to_its_answer() -> None:
    p, ctx = provider(None)
    call = inbound_call("c1", "CA1")
    body = await reply_for(p, request("", CallSid="CA1", CallStatus="ringing", Direction="inbound",
                                      From="+15557770001"), call)
    assert f"<Redirect method=\"POST\">{BASE}?callId=c1&amp;type=answered</Redirect>" in body
    assert ctx.state["c1"] == {"webhookUrl": BASE}


def test_region_chooses_the_rest_host_and_api_base_url_overrides_it() -> None:
    from voicecall.config import VoiceCallConfig
    from voicecall.providers.registry import build_provider

    def base(**twilio: str) -> str:
        cfg = VoiceCallConfig.model_validate({"provider": "twilio", "fromNumber": "+15550000000",
                                              "twilio": {"accountSid": "AC1", "authToken": "t", **twilio}})
        built = build_provider(cfg)
        assert isinstance(built, TwilioProvider)
        return built.settings.api_base_url

    assert base() == "https://api.twilio.com"
    assert base(region="ie1") == "https://api.dublin.ie1.twilio.com"
    assert base(region="au1") == "https://api.sydney.au1.twilio.com"
    assert base(apiBaseUrl="http://127.0.0.1:8080") == "http://127.0.0.1:8080"


@pytest.mark.parametrize(("status", "code"), [(400, 21220), (404, 20404), (404, None)])
async def test_hangup_of_a_call_twilio_says_has_ended_counts_as_success(
        status: int, code: int | None) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, json={"code": code, "message": "Call is not in-progress.",
                                            "status": status})

    p = TwilioProvider(TwilioSettings(account_sid="AC1", auth_token="t", api_base_url="http://sim"),
                       transport=httpx.MockTransport(handler))
    p.bind(Context())

    await p.hangup_call(inbound_call("c1", "CA1"), EndReason.HANGUP_BOT)  # no error raised

    assert [(r.method, r.url.path) for r in sent] == [("POST", "/2010-04-01/Accounts/AC1/Calls/CA1.json")]
    assert parse_qs(sent[0].content.decode()) == {"Status": ["completed"]}


async def test_hangup_still_fails_on_an_error_that_does_not_say_the_call_has_ended() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"code": 20003, "message": "Authenticate", "status": 401})

    p = TwilioProvider(TwilioSettings(account_sid="AC1", auth_token="t", api_base_url="http://sim"),
                       transport=httpx.MockTransport(handler))
    p.bind(Context())
    with pytest.raises(CarrierApiError) as info:
        await p.hangup_call(inbound_call("c1", "CA1"), EndReason.HANGUP_BOT)
    assert (info.value.status, info.value.code) == (401, 20003)


async def test_rest_errors_name_twilio_its_code_status_and_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": 21211, "message": "The 'To' number is not valid.",
                                         "status": 400})

    p = TwilioProvider(TwilioSettings(account_sid="AC1", auth_token="t", api_base_url="http://sim"),
                       transport=httpx.MockTransport(handler))
    p.bind(Context())
    with pytest.raises(CarrierApiError) as info:
        await p.initiate_call(DialRequest(call_id="c1", from_="+15550000000", to="+1555", webhook_url=BASE,
                                          mode="notify", message="hi", ring_timeout_ms=30_000))
    assert str(info.value) == "Twilio API error (code 21211), HTTP 400: The 'To' number is not valid."


def parse(query: str, **params: str) -> Any:
    p, _ctx = provider(None)
    return p.parse_webhook(request(query, **params), Verification(ok=True, request_key="k"))


def test_a_gather_callback_becomes_the_callers_speech_with_a_clamped_confidence() -> None:
    for given, expected in (("0.42", 0.42), ("1.7", 1.0), ("-1", 0.0), ("", 0.9), ("n/a", 0.9)):
        parsed = parse("callId=c1&type=listen&turnToken=t1", CallSid="CA1", CallStatus="in-progress",
                       SpeechResult=" book a table ", Confidence=given, Digits="5")
        [event] = parsed.events
        assert (event.type, event.transcript, event.confidence) == ("call.speech", "book a table", expected)
        assert (event.call_id, event.provider_call_id, event.turn_token, event.dedupe_key) == (
            "c1", "CA1", "t1", "k:0")
        assert parsed.meta["gather"] is True and parsed.meta["kind"] == "listen"


def test_keys_pressed_become_a_dtmf_event() -> None:
    parsed = parse("callId=c1&type=listen", CallSid="CA1", Digits="42#")
    assert [(e.type, e.digits) for e in parsed.events] == [("call.dtmf", "42#")]
    assert parsed.meta["gather"] is True


def test_a_status_callback_becomes_call_events_and_the_first_inbound_request_is_marked() -> None:
    parsed = parse("", CallSid="CA9", CallStatus="ringing", Direction="inbound", From="+15557770001",
                   To="+15550000000")
    assert [e.type for e in parsed.events] == ["call.initiated", "call.ringing"]
    assert {(e.call_id, e.direction, e.from_, e.to) for e in parsed.events} == {
        ("CA9", "inbound", "+15557770001", "+15550000000")}
    assert parsed.meta["inboundStart"] is True and "gather" not in parsed.meta
    outbound = parse("callId=c1&type=status", CallSid="CA1", CallStatus="Busy",
                     Direction="outbound-api")
    assert [(e.type, e.reason.value, e.direction) for e in outbound.events] == [
        ("call.ended", "busy", "outbound")]
    assert "inboundStart" not in outbound.meta
    assert parse("callId=c1&type=played&utt=u1", CallSid="CA1", CallStatus="in-progress").events == []


def test_a_malformed_twilio_webhook_is_refused() -> None:
    from voicecall.providers.base import WebhookParseError

    with pytest.raises(WebhookParseError, match="CallSid is missing"):
        parse("callId=c1", CallStatus="ringing")
    p, _ctx = provider(None)
    bad = request("callId=c1")._replace(body=b"CallSid=\xff")
    with pytest.raises(WebhookParseError, match="not UTF-8"):
        p.parse_webhook(bad, Verification(ok=True, request_key="k"))
