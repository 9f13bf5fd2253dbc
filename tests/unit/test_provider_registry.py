"""The carrier registry turns a carrier's media streams on for speech-to-text streaming and for
realtime voice alike, on every carrier that has them (docs/decisions.md D126)."""

from __future__ import annotations

from typing import Any

import pytest

from voicecall.config import VoiceCallConfig
from voicecall.providers.registry import build_provider

CARRIERS: dict[str, dict[str, Any]] = {
    "twilio": {"accountSid": "AC1", "authToken": "t"},
    "telnyx": {"apiKey": "KEY1", "connectionId": "conn-1"},
    "plivo": {"authId": "MA1", "authToken": "t"},
}


def config(carrier: str, **extra: Any) -> VoiceCallConfig:
    return VoiceCallConfig.model_validate({
        "provider": carrier, "fromNumber": "+15550000000", carrier: CARRIERS[carrier],
        "skipSignatureVerification": True, "inboundPolicy": "allowlist",
        "allowFrom": ["+15557770001"], **extra})


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
@pytest.mark.parametrize(("extra", "streams"), [
    ({}, False),
    ({"realtime": {"enabled": True, "providers": {"openai": {"apiKey": "sk-test"}}}}, True),
    ({"realtime": {"enabled": True, "provider": "no-such-model"}}, False),  # the classic path
    ({"streaming": {"enabled": True}}, True),
], ids=["off", "realtime", "realtime-unknown-provider", "streaming"])
def test_a_carrier_streams_its_calls_for_realtime_voice_as_for_streaming(
        carrier: str, extra: dict[str, Any], streams: bool) -> None:
    provider = build_provider(config(carrier, **extra))
    assert (provider.media_streams is not None) is streams
