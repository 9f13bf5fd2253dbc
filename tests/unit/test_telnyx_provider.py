"""The Telnyx adapter without a network: webhook envelopes as normalized events (the reference
mapping and the hangup-cause table), client_state, and the REST client's requests and errors
(through httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from tests.helpers import FakeProviderContext, eventually
from voicecall.calls.events import CallEvent
from voicecall.calls.model import CallRecord, CallState, EndReason
from voicecall.providers.base import (
    DialRequest,
    TransferRequest,
    Verification,
    WebhookParseError,
    WebhookRequest,
)
from voicecall.providers.http import CarrierApiError
from voicecall.providers.telnyx.events import (
    HANGUP_CAUSES,
    decode_client_state,
    encode_client_state,
    hangup_reason,
    parse_envelope,
)
from voicecall.providers.telnyx.provider import TelnyxProvider, TelnyxSettings, telnyx_voice

VERIFIED = Verification(ok=True, request_key="telnyx:abc")


class Context(FakeProviderContext):
    stream_url: str | None = "wss://gw.example/voice/stream"


def provider(handler: Any = None, **settings: Any) -> tuple[TelnyxProvider, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request) if handler else httpx.Response(200, json={"data": {"result": "ok"}})

    p = TelnyxProvider(TelnyxSettings(api_key="KEY1", connection_id="conn-1", public_key=None,
                                      api_base_url="http://sim/v2", skip_signature_verification=True,
                                      **settings), transport=httpx.MockTransport(record))
    p.bind(Context())
    return p, seen


def webhook(event_type: str, payload: dict[str, Any], event_id: str | None = "ev-1") -> WebhookRequest:
    body = {"data": {"event_type": event_type, "payload": {"call_control_id": "v3:abc", **payload}}}
    if event_id:
        body["data"]["id"] = event_id
    return WebhookRequest(method="POST", url="https://gw.example/voice/webhook", path="/voice/webhook",
                          query={}, headers={}, body=json.dumps(body).encode(), remote_addr="127.0.0.1")


def events(p: TelnyxProvider, event_type: str, **payload: Any) -> list[CallEvent]:
    return p.parse_webhook(webhook(event_type, payload), VERIFIED).events


def call_record(**extra: Any) -> CallRecord:
    fields: dict[str, Any] = {"direction": "outbound", "state": CallState.ANSWERED, **extra}
    return CallRecord(call_id="c1", provider="telnyx", from_="+15550000000", to="+15555550123",
                      started_at=0, provider_call_id="v3:abc", **fields)


# -- events --------------------------------------------------------------------------------------

@pytest.mark.parametrize("event_type,expected", [
    ("call.initiated", "call.initiated"), ("call.ringing", "call.ringing"),
    ("call.answered", "call.answered"), ("call.bridged", "call.active"),
    ("call.speak.started", "call.speaking"), ("call.hangup", "call.ended"),
])
def test_call_events_map_onto_the_shared_vocabulary(event_type: str, expected: str) -> None:
    p, _ = provider()
    assert [e.type for e in events(p, event_type)] == [expected]


@pytest.mark.parametrize("event_type", ["call.speak.ended", "streaming.started", "call.recording.saved",
                                        "call.machine.detection.ended"])
def test_events_that_change_no_call_state_map_to_nothing(event_type: str) -> None:
    p, _ = provider()
    assert events(p, event_type, result="human", status="completed") == []


def test_our_call_id_comes_from_client_state_and_telnyx_id_is_the_provider_id() -> None:
    p, _ = provider()
    [event] = events(p, "call.answered", client_state=encode_client_state("call-42"))
    assert event.call_id == "call-42" and event.provider_call_id == "v3:abc"


def test_without_client_state_the_call_is_named_by_its_call_control_id() -> None:
    p, _ = provider()
    [event] = events(p, "call.initiated", client_state=None, direction="incoming",
                     **{"from": "+15557770001", "to": "+15550000000"})
    assert event.call_id == "v3:abc" and event.direction == "inbound"
    assert event.from_ == "+15557770001" and event.to == "+15550000000"


@pytest.mark.parametrize("raw,direction", [("incoming", "inbound"), ("inbound", "inbound"),
                                           ("outgoing", "outbound"), ("outbound", "outbound"),
                                           ("sideways", None)])
def test_telnyx_directions_map_onto_ours(raw: str, direction: str | None) -> None:
    p, _ = provider()
    assert events(p, "call.initiated", direction=raw)[0].direction == direction


def test_a_malformed_client_state_falls_back_to_the_raw_value() -> None:
    assert decode_client_state("not base64 at all!").call_id == "not base64 at all!"
    plain = base64.b64encode(b"legacy-call-id").decode()
    assert decode_client_state(plain).call_id == "legacy-call-id"  # base64 of a bare id
    assert decode_client_state(None).call_id is None


def test_client_state_round_trips_call_turn_and_utterance() -> None:
    state = decode_client_state(encode_client_state("c1", turn_token="t1", utterance="u1"))
    assert (state.call_id, state.turn_token, state.utterance) == ("c1", "t1", "u1")
    base64.b64decode(encode_client_state("c1"), validate=True)  # always valid base64, as Telnyx requires


def test_every_hangup_cause_of_the_table_maps_and_unknown_ones_complete() -> None:
    expected = {"normal_clearing": "completed", "originator_cancel": "hangup-bot", "user_busy": "busy",
                "call_rejected": "busy", "no_answer": "no-answer", "no_user_response": "no-answer",
                "timeout": "no-answer", "destination_out_of_order": "failed",
                "network_out_of_order": "failed", "service_unavailable": "failed",
                "recovery_on_timer_expire": "failed", "machine_detected": "voicemail",
                "fax_detected": "voicemail", "user_hangup": "hangup-user",
                "subscriber_absent": "hangup-user", "time_limit": "timeout"}
    for cause, reason in expected.items():
        assert hangup_reason(cause).value == reason, cause
    assert set(expected) <= set(HANGUP_CAUSES)
    assert hangup_reason("something_new") == EndReason.COMPLETED
    p, _ = provider()
    assert events(p, "call.hangup", hangup_cause="USER_BUSY")[0].reason == EndReason.BUSY


def test_transcriptions_prefer_transcription_data_and_carry_the_turn_token() -> None:
    p, _ = provider()
    state = encode_client_state("c1", turn_token="tok-7")
    [speech] = events(p, "call.transcription", client_state=state, transcription_data={
        "transcript": " Tuesday at noon ", "is_final": False, "confidence": 0.8,
        "transcription_track": "inbound"})
    assert speech.type == "call.speech" and speech.transcript == "Tuesday at noon"
    assert speech.is_final is False and speech.confidence == 0.8 and speech.turn_token == "tok-7"
    [legacy] = events(p, "call.transcription", transcription="Hello")
    assert legacy.transcript == "Hello" and legacy.is_final is True
    assert events(p, "call.transcription", transcription_data={
        "transcript": "our own voice", "transcription_track": "outbound"}) == []


def test_keys_arrive_per_digit_and_from_gather_ended() -> None:
    p, _ = provider()
    assert [e.digits for e in events(p, "call.dtmf.received", digit="5")] == ["5"]
    assert [e.digits for e in events(p, "call.gather.ended", digits="123#")] == ["123#"]
    assert events(p, "call.gather.ended", digits="") == []


def test_a_machine_ends_a_notify_call_as_voicemail_only_when_detection_is_on() -> None:
    on, _ = provider(machine_detection=True)
    [ended] = events(on, "call.machine.detection.ended", result="machine")
    assert ended.type == "call.ended" and ended.reason == EndReason.VOICEMAIL
    assert events(on, "call.machine.detection.ended", result="human") == []
    off, _ = provider()
    assert events(off, "call.machine.detection.ended", result="machine") == []


def test_dedupe_keys_come_from_the_signed_event_id_so_retries_apply_once() -> None:
    p, _ = provider()
    first = p.parse_webhook(webhook("call.answered", {}), VERIFIED).events[0]
    retry = p.parse_webhook(webhook("call.answered", {}), VERIFIED._replace(request_key="telnyx:other"))
    assert first.dedupe_key == retry.events[0].dedupe_key == "telnyx:event:ev-1:0"
    no_id = p.parse_webhook(webhook("call.answered", {}, event_id=None), VERIFIED).events[0]
    assert no_id.dedupe_key == "telnyx:abc:0"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(WebhookParseError):
        parse_envelope(body)


@pytest.mark.parametrize("body", [{}, {"events": []}, {"data": {}}, {"data": "x"},
                                  {"data": {"payload": {"call_control_id": "v3:x"}}}])
def test_a_json_object_that_is_no_telnyx_envelope_is_a_parse_error(body: dict[str, Any]) -> None:
    with pytest.raises(WebhookParseError):
        parse_envelope(json.dumps(body).encode())


def test_json_nested_beyond_the_budget_is_a_parse_error_not_a_crash() -> None:
    with pytest.raises(WebhookParseError):
        parse_envelope(b"[" * 20_000 + b"]" * 20_000)


def test_an_event_without_a_call_or_of_an_unknown_type_means_nothing() -> None:
    p, _ = provider()
    for body in ({"data": {"event_type": "call.answered", "payload": {}}},
                 {"data": {"event_type": "call.something.new", "payload": {"call_control_id": "v3:x"}}}):
        request = webhook("x", {})._replace(body=json.dumps(body).encode())
        assert p.parse_webhook(request, VERIFIED).events == []


# -- transfer --------------------------------------------------------------------------------------

async def test_transfer_stops_transcription_then_dials_the_person_with_a_marked_leg_state() -> None:
    p, seen = provider()
    await p.start_listening(call_record(), "tok")
    await p.transfer_call(call_record(), TransferRequest(to="+15557770099", caller_id="+15550000000",
                                                         timeout_s=2))
    paths = [r.url.raw_path.decode() for r in seen]
    assert paths[1:] == ["/v2/calls/v3:abc/actions/transcription_stop",
                         "/v2/calls/v3:abc/actions/transfer"]
    body = json.loads(seen[-1].content)
    assert (body["to"], body["from"], body["timeout_secs"]) == ("+15557770099", "+15550000000", 5)
    assert body["webhook_url"] == Context().webhook_url and body["command_id"]
    leg = decode_client_state(body["target_leg_client_state"])
    assert (leg.call_id, leg.transfer_leg) == ("c1", True)
    assert "client_state" not in body  # the call's own state is left as it is


@pytest.mark.parametrize("event_type,payload,status", [
    ("call.bridged", {}, "bridged"),
    ("call.hangup", {"hangup_cause": "normal_clearing"}, "completed"),
    ("call.hangup", {"hangup_cause": "user_busy"}, "busy"),
    ("call.hangup", {"hangup_cause": "timeout"}, "no-answer"),
    ("call.hangup", {"hangup_cause": "originator_cancel"}, "canceled"),
    ("call.hangup", {"hangup_cause": "destination_out_of_order"}, "failed"),
])
def test_the_transfer_legs_webhooks_are_the_transfers_progress_for_our_call(
        event_type: str, payload: dict[str, Any], status: str) -> None:
    p, _ = provider()
    leg_state = encode_client_state("c1", transfer_leg=True)
    [event] = events(p, event_type, client_state=leg_state, direction="outgoing", **payload)
    assert (event.type, event.call_id, event.text) == ("call.transfer", "c1", status)
    assert event.provider_call_id is None  # the leg is not the call


@pytest.mark.parametrize("event_type", ["call.initiated", "call.answered", "call.ringing",
                                        "call.speak.ended", "call.machine.detection.ended"])
def test_the_transfer_legs_own_call_events_mean_nothing_for_the_call(event_type: str) -> None:
    p, _ = provider()
    leg_state = encode_client_state("c1", transfer_leg=True)
    assert events(p, event_type, client_state=leg_state, direction="outgoing") == []


# -- REST ------------------------------------------------------------------------------------------

async def test_dial_posts_json_with_bearer_auth_and_returns_the_call_control_id() -> None:
    p, seen = provider(lambda r: httpx.Response(200, json={"data": {"call_control_id": "v3:new"}}))
    pcid = await p.initiate_call(DialRequest(call_id="c1", from_="+15550000000", to="+15555550123",
                                             webhook_url="https://gw.example/voice/webhook",
                                             mode="notify", message="Hi", ring_timeout_ms=2000))
    assert pcid == "v3:new"
    request = seen[0]
    assert request.url.path == "/v2/calls" and request.headers["authorization"] == "Bearer KEY1"
    body = json.loads(request.content)
    assert body["timeout_secs"] == 5  # clamped to Telnyx's minimum
    assert body["webhook_url_method"] == "POST" and body["command_id"] == "voicecall-dial-c1"


async def test_every_action_carries_a_command_id_and_the_raw_call_control_id_in_the_path() -> None:
    p, seen = provider()
    await p.send_dtmf(call_record(), "1p2,3P")
    await p.start_listening(call_record(), "tok")
    await p.stop_listening(call_record())
    paths = [r.url.raw_path.decode() for r in seen]
    assert paths == ["/v2/calls/v3:abc/actions/send_dtmf", "/v2/calls/v3:abc/actions/transcription_start",
                     "/v2/calls/v3:abc/actions/transcription_stop"]
    bodies = [json.loads(r.content) for r in seen]
    assert all(b["command_id"] for b in bodies) and len({b["command_id"] for b in bodies}) == 3
    assert bodies[0]["digits"] == "1w2w3W"
    assert decode_client_state(bodies[1]["client_state"]).turn_token == "tok"


async def test_a_call_that_already_ended_is_success_for_hangup_and_an_error_for_speech() -> None:
    ended = {"errors": [{"code": "90018", "title": "Call has already ended",
                         "detail": "This call is no longer active and can't receive commands."}]}
    p, seen = provider(lambda r: httpx.Response(422, json=ended))
    await p.hangup_call(call_record(), EndReason.HANGUP_BOT)
    assert seen[-1].url.path.endswith("/actions/hangup")
    with pytest.raises(Exception, match="the call has ended"):
        await p.send_dtmf(call_record(), "1")


async def test_an_unanswered_inbound_caller_is_rejected_not_hung_up() -> None:
    p, seen = provider()
    probe = call_record(direction="inbound", state=CallState.RINGING)
    await p.hangup_call(probe, EndReason.HANGUP_BOT)
    body = json.loads(seen[-1].content)
    assert seen[-1].url.path.endswith("/actions/reject") and body["cause"] == "CALL_REJECTED"


async def test_errors_name_telnyx_the_http_status_and_telnyx_code_and_title() -> None:
    invalid = {"errors": [{"code": "10015", "title": "Invalid 'to'", "detail": "Must be E.164."}]}
    p, _ = provider(lambda r: httpx.Response(422, json=invalid))
    with pytest.raises(CarrierApiError) as info:
        await p.initiate_call(DialRequest(call_id="c1", from_="+15550000000", to="bad",
                                          webhook_url="https://gw.example/w", mode="notify",
                                          message=None, ring_timeout_ms=30_000))
    message = str(info.value)
    assert "Telnyx" in message and "422" in message and "10015" in message and "Invalid 'to'" in message
    assert "KEY1" not in message


@pytest.mark.parametrize("response,terminal,unknown", [
    (httpx.Response(200, json={"data": {"is_alive": True}}), False, False),
    (httpx.Response(200, json={"data": {"is_alive": False}}), True, False),
    (httpx.Response(200, json={"data": {}}), False, True),
    (httpx.Response(404, json={"errors": [{"code": "10005", "title": "Not found"}]}), True, False),
    (httpx.Response(401, json={"errors": [{"code": "10009", "title": "Auth failed"}]}), False, True),
])
async def test_call_status_reads_is_alive_and_never_guesses(response: httpx.Response, terminal: bool,
                                                            unknown: bool) -> None:
    p, _ = provider(lambda r: response)
    status = await p.get_call_status(call_record())
    assert (status.is_terminal, status.is_unknown) == (terminal, unknown)


async def test_streaming_dials_ask_for_rtp_in_the_configured_codec_with_a_persisted_token() -> None:
    p, seen = provider(lambda r: httpx.Response(200, json={"data": {"call_control_id": "v3:new"}}),
                       streaming=True, stream_codec="PCMA")
    await p.initiate_call(DialRequest(call_id="c1", from_="+15550000000", to="+15555550123",
                                      webhook_url="https://gw.example/voice/webhook",
                                      mode="conversation", message=None, ring_timeout_ms=30_000))
    body = json.loads(seen[0].content)
    token = p.context and (await p.context.get_provider_state("c1") or {})["streamToken"]
    assert body["stream_url"] == f"wss://gw.example/voice/stream?token={token}"
    assert (body["stream_codec"], body["stream_bidirectional_codec"]) == ("PCMA", "PCMA")
    assert body["stream_bidirectional_mode"] == "rtp" and body["stream_track"] == "inbound_track"
    assert p.media_streams is p


def test_a_notify_call_dialled_with_machine_detection_is_answered_only_once_no_machine_is_found(
) -> None:
    p, _ = provider(machine_detection=True)
    context = p.context
    assert isinstance(context, Context)
    context.calls["c1"] = call_record(state=CallState.RINGING, metadata={"mode": "notify"})
    state = encode_client_state("c1")
    assert events(p, "call.answered", client_state=state) == []
    [answered] = events(p, "call.machine.detection.ended", client_state=state, result="not_sure")
    assert answered.type == "call.answered"
    [voicemail] = events(p, "call.machine.detection.ended", client_state=state, result="machine")
    assert voicemail.type == "call.ended" and voicemail.reason == EndReason.VOICEMAIL
    context.calls["c1"] = call_record(state=CallState.RINGING, metadata={"mode": "conversation"})
    assert [e.type for e in events(p, "call.answered", client_state=state)] == ["call.answered"]


# -- voices ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("configured,spoken", [
    (None, "female"), ("male", "male"), ("AWS.Polly.Joanna-Neural", "AWS.Polly.Joanna-Neural"),
    ("Telnyx.KokoroTTS.af", "Telnyx.KokoroTTS.af"), ("Polly.Brian", "AWS.Polly.Brian"),
    ("onyx", "AWS.Polly.Brian"), ("someone-else", "female"),
])
def test_tts_voice_names_map_onto_telnyx_speak_voices(configured: str | None, spoken: str) -> None:
    assert telnyx_voice(configured) == spoken


async def test_a_calls_route_voice_is_spoken_in_telnyx_form() -> None:
    p, seen = provider()
    route = {"tts": {"provider": "openai", "providers": {"openai": {"voice": "nova"}}}}

    async def played() -> None:
        await p.play_tts(call_record(metadata={"route": route}), "Hello")

    task = asyncio.ensure_future(played())
    await eventually(lambda: seen)
    assert json.loads(seen[-1].content)["voice"] == "AWS.Polly.Salli"
    task.cancel()
