"""Re-arranged copies of genuinely signed Twilio requests (the signed string has no separators,
so characters can move between the URL, names and values and keep the signature)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from tests.adversarial.conftest import (
    ACCOUNT_SID,
    CALLER,
    OUR_NUMBER,
    post_signed,
    signed_url,
    twilio_signature,
)
from tests.helpers import eventually, free_port
from voicecall.gateway.runtime import Runtime
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator

INBOUND_SID = "CA" + "7" * 32


async def adopt_inbound(gateway: Runtime) -> str:
    """A genuine inbound call webhook; returns our call id for it."""
    params = {"AccountSid": ACCOUNT_SID, "CallSid": INBOUND_SID, "CallStatus": "ringing",
              "Direction": "inbound", "From": CALLER, "To": OUR_NUMBER}
    response = await post_signed(gateway, signed_url(gateway), params)
    assert response.status_code == 200, response.text
    record = gateway.service.live(INBOUND_SID)
    assert record is not None
    return record.call_id


def gather_params(speech: str) -> dict[str, str]:
    return {"AccountSid": ACCOUNT_SID, "CallSid": INBOUND_SID, "CallStatus": "in-progress",
            "Confidence": "0.92", "Direction": "inbound", "From": CALLER,
            "SpeechResult": speech, "To": OUR_NUMBER}


CALLEE = "+15555550123"


@pytest.fixture
async def sim_gateway(tmp_path: Path) -> AsyncIterator[tuple[TwilioSimulator, Runtime]]:
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as sim:
        port = free_port()
        config = {"provider": "twilio", "fromNumber": OUR_NUMBER,
                  "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                             "apiBaseUrl": sim.base_url},
                  "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook"}
        async with running_gateway(tmp_path, config) as gateway:
            yield sim, gateway


async def test_account_sid_moved_onto_the_turn_token_does_not_cost_the_callers_words(
        sim_gateway: tuple[TwilioSimulator, Runtime]) -> None:
    sim, gateway = sim_gateway
    sim.script(CALLEE, Callee(answer_after_s=0.1))  # the callee stays silent: we answer
    placed = await gateway.api.call("voicecall.initiate", {"to": CALLEE, "message": "Hello",
                                                           "mode": "conversation"})
    record = await gateway.service.get_call(placed["callId"])
    assert record is not None and record.provider_call_id
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
    turn = asyncio.create_task(gateway.api.call("voicecall.continue",
                                                {"callId": record.call_id, "message": "Why?"}))
    token = await eventually(lambda: gateway.service.turn_token(record.call_id))
    # The Gather callback Twilio would send for this turn, signed with the official SDK.
    url = f"{gateway.webhook_url}?{urlencode({'callId': record.call_id, 'turnToken': token})}"
    params = {"AccountSid": sim.account_sid, "ApiVersion": "2010-04-01",
              "CallSid": record.provider_call_id, "CallStatus": "in-progress",
              "Confidence": "0.92", "Direction": "outbound-api", "From": OUR_NUMBER,
              "SpeechResult": "because I said so", "To": CALLEE}
    signature = RequestValidator(sim.auth_token).compute_signature(url, params)
    # The copy: "AccountSid<sid>" moved from the body onto the end of the query (the turn
    # token) signs the same, and arrives first.
    moved = {k: v for k, v in params.items() if k != "AccountSid"}
    copy_url = url + "AccountSid" + sim.account_sid
    assert RequestValidator(sim.auth_token).compute_signature(copy_url, moved) == signature
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        headers = {"x-twilio-signature": signature}
        copy = await http.post(copy_url, data=moved, headers=headers)
        assert copy.status_code >= 400
        genuine = await http.post(url, data=params, headers=headers)
        assert genuine.status_code == 200
    result = await asyncio.wait_for(turn, 10)
    assert result["transcript"] == "because I said so"
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_a_value_that_swallows_the_next_parameter_is_not_applied_in_its_place(
        twilio_gateway: Runtime) -> None:
    call_id = await adopt_inbound(twilio_gateway)
    url = signed_url(twilio_gateway, {"callId": call_id})
    params = gather_params("yes")
    signature = twilio_signature(url, params)
    # "SpeechResult" + "yes" + "To" + number: the speech value can swallow the "To" pair.
    swallowed = {k: v for k, v in params.items() if k != "To"}
    swallowed["SpeechResult"] = "yesTo" + OUR_NUMBER
    assert twilio_signature(url, swallowed) == signature
    body = urlencode(swallowed).encode()
    await post_signed(twilio_gateway, url, swallowed, signature=signature, body=body)
    genuine = await post_signed(twilio_gateway, url, params, signature=signature)
    assert genuine.status_code == 200
    record = await twilio_gateway.service.get_call(call_id)
    assert record is not None
    assert [t.text for t in record.transcript if t.speaker == "user"] == ["yes"]


def language_gather(speech: str) -> dict[str, str]:
    return {**gather_params(speech), "Language": "en-US"}


async def _variant_then_genuine(gateway: Runtime, params: dict[str, str],
                                variant: dict[str, str]) -> list[str]:
    """Send `variant` (which must sign like `params`) first, then the genuine request; the
    caller's words on the call afterwards."""
    call_id = await adopt_inbound(gateway)
    url = signed_url(gateway, {"callId": call_id})
    signature = twilio_signature(url, params)
    assert twilio_signature(url, variant) == signature
    copy = await post_signed(gateway, url, variant, signature=signature,
                             body=urlencode(variant).encode())
    assert copy.status_code == 401
    genuine = await post_signed(gateway, url, params, signature=signature)
    assert genuine.status_code == 200
    record = await gateway.service.get_call(call_id)
    assert record is not None
    return [t.text for t in record.transcript if t.speaker == "user"]


async def test_the_parameter_before_the_speech_swallowing_it_is_refused(twilio_gateway: Runtime) -> None:
    params = language_gather("yes please")
    # "Language" + "en-US" + "SpeechResult" + words: the language value can swallow the speech.
    variant = {k: v for k, v in params.items() if k != "SpeechResult"}
    variant["Language"] = "en-USSpeechResultyes please"
    assert await _variant_then_genuine(twilio_gateway, params, variant) == ["yes please"]


async def test_the_speech_swallowing_an_optional_neighbour_is_refused(twilio_gateway: Runtime) -> None:
    params = {**gather_params("yes"), "StirVerstat": "TN-Validation-Passed-A"}
    variant = {k: v for k, v in params.items() if k != "StirVerstat"}
    variant["SpeechResult"] = "yesStirVerstatTN-Validation-Passed-A"
    assert await _variant_then_genuine(twilio_gateway, params, variant) == ["yes"]


async def test_the_speech_giving_up_its_tail_as_a_new_parameter_is_refused(
        twilio_gateway: Runtime) -> None:
    params = gather_params("call me Sunday")
    variant = {**params, "SpeechResult": "call me ", "Sunday": ""}
    assert await _variant_then_genuine(twilio_gateway, params, variant) == ["call me Sunday"]


async def test_a_name_swallowing_the_start_of_its_value_is_refused(twilio_gateway: Runtime) -> None:
    params = gather_params("yes")
    variant = {k: v for k, v in params.items() if k != "SpeechResult"}
    variant["SpeechResulty"] = "es"
    assert await _variant_then_genuine(twilio_gateway, params, variant) == ["yes"]


async def test_the_called_number_swallowing_its_city_is_refused(twilio_gateway: Runtime) -> None:
    params = {**gather_params("yes"), "ToCity": "BOSTON"}
    variant = {k: v for k, v in params.items() if k != "ToCity"}
    variant["To"] = params["To"] + "ToCityBOSTON"
    assert await _variant_then_genuine(twilio_gateway, params, variant) == ["yes"]
