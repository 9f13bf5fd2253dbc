"""Values a carrier should never send, in validly signed requests: treated as absent."""

from __future__ import annotations

import pytest

from tests.adversarial.conftest import post_signed, signed_url
from tests.adversarial.test_signed_variants import adopt_inbound, gather_params
from voicecall.calls.events import CallEvent
from voicecall.gateway.runtime import Runtime


@pytest.mark.parametrize("confidence", ["NaN", "nan", "Infinity", "-inf", "1e999"])
async def test_a_non_finite_confidence_is_treated_as_absent_and_the_speech_is_kept(
        twilio_gateway: Runtime, confidence: str) -> None:
    call_id = await adopt_inbound(twilio_gateway)
    url = signed_url(twilio_gateway, {"callId": call_id})
    params = {**gather_params("my words"), "Confidence": confidence}
    response = await post_signed(twilio_gateway, url, params)
    assert response.status_code == 200, response.text
    record = await twilio_gateway.service.get_call(call_id)
    assert record is not None
    assert [t.text for t in record.transcript if t.speaker == "user"] == ["my words"]
    again = await post_signed(twilio_gateway, url, params)  # Twilio's retry: a replay, 200
    assert again.status_code == 200


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_confidence_from_any_carrier_counts_as_none(value: float) -> None:
    event = CallEvent.model_validate({"type": "call.speech", "callId": "c1", "transcript": "hi",
                                      "confidence": value})
    assert event.confidence is None
    assert CallEvent.model_validate({"type": "call.speech", "callId": "c1",
                                     "confidence": 0.5}).confidence == 0.5
