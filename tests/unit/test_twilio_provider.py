"""Twilio adapter decisions that need no network: the stream TwiML policy and stream tokens."""

from __future__ import annotations

from typing import Any

from voicecall.calls.model import CallRecord, CallState
from voicecall.providers.base import EventOutcome, Verification, WebhookRequest
from voicecall.providers.twilio.provider import TwilioProvider, TwilioSettings

BASE = "https://gw.example/voice/webhook"


class Context:
    webhook_url = BASE
    stream_url: str | None = None

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, CallRecord] = {}

    async def emit(self, events: Any) -> list[EventOutcome]:
        return []

    async def get_provider_state(self, call_id: str) -> dict[str, Any] | None:
        return self.state.get(call_id)

    async def put_provider_state(self, call_id: str, data: dict[str, Any]) -> None:
        self.state[call_id] = data

    def live(self, call_id: str) -> CallRecord | None:
        return self.calls.get(call_id)

    async def get_call(self, call_id: str) -> CallRecord | None:
        return self.calls.get(call_id)

    async def was_rejected(self, provider_call_id: str) -> bool:
        return False


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
    p.bind(ctx)  # type: ignore[arg-type]
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
    assert len(token) == 22 and await p.is_valid_stream_token("c1", token)
    assert not await p.is_valid_stream_token("c1", token[:-1] + ("A" if token[-1] != "A" else "B"))
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


async def test_hangup_of_a_call_twilio_says_has_ended_counts_as_success() -> None:
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": 21220, "message": "Call is not in-progress.",
                                         "status": 400})

    p = TwilioProvider(TwilioSettings(account_sid="AC1", auth_token="t", api_base_url="http://sim"),
                       transport=httpx.MockTransport(handler))
    p.bind(Context())  # type: ignore[arg-type]
    from voicecall.calls.model import EndReason

    await p.hangup_call(inbound_call("c1", "CA1"), EndReason.HANGUP_BOT)  # no exception


async def test_rest_errors_name_twilio_its_code_status_and_message() -> None:
    import httpx
    import pytest

    from voicecall.providers.base import DialRequest
    from voicecall.providers.http import CarrierApiError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": 21211, "message": "The 'To' number is not valid.",
                                         "status": 400})

    p = TwilioProvider(TwilioSettings(account_sid="AC1", auth_token="t", api_base_url="http://sim"),
                       transport=httpx.MockTransport(handler))
    p.bind(Context())  # type: ignore[arg-type]
    with pytest.raises(CarrierApiError) as info:
        await p.initiate_call(DialRequest(call_id="c1", from_="+15550000000", to="+1555", webhook_url=BASE,
                                          mode="notify", message="hi", ring_timeout_ms=30_000))
    assert str(info.value) == "Twilio API error (code 21211), HTTP 400: The 'To' number is not valid."
