"""Which realtime provider a configuration selects, and how its settings and keys are checked
(docs/decisions.md D120)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from voicecall.config.schema import RealtimeConfig
from voicecall.speech.realtime import RealtimeError, build_realtime_factory, selected_provider
from voicecall.speech.realtime.base import RealtimeEvents, RealtimeSetup
from voicecall.speech.realtime.google import GeminiLive, GeminiSettings
from voicecall.speech.realtime.openai import OpenAIRealtime


def realtime(**raw: Any) -> RealtimeConfig:
    return RealtimeConfig.model_validate({"enabled": True, **raw})


def test_the_named_provider_wins_else_the_first_configured_else_openai() -> None:
    assert selected_provider(realtime(provider="google")) == "google"
    assert selected_provider(realtime(providers={"google": {}, "openai": {}})) == "google"
    assert selected_provider(realtime()) == "openai"
    assert selected_provider(RealtimeConfig.model_validate({"provider": "google"})) is None  # off


def test_an_unknown_provider_selects_nothing_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert selected_provider(realtime(provider="acme"), warn=True) is None
    assert "'acme' is unknown" in caplog.text and "classic path" in caplog.text


def test_keys_come_from_the_config_else_the_environment() -> None:
    setup, events = RealtimeSetup("be brief"), RealtimeEvents()
    model = build_realtime_factory(realtime(), {"OPENAI_API_KEY": "sk-env"})(setup, events)
    assert isinstance(model, OpenAIRealtime)
    assert model.socket.headers["Authorization"] == "Bearer sk-env"
    assert model.socket.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    gemini = build_realtime_factory(realtime(provider="google"), {"GOOGLE_API_KEY": "g-env"})(setup, events)
    assert isinstance(gemini, GeminiLive) and gemini.settings.api_key == "g-env"
    preferred = build_realtime_factory(realtime(provider="google"),
                                       {"GOOGLE_API_KEY": "g-env", "GEMINI_API_KEY": "g-gem"})(setup, events)
    assert isinstance(preferred, GeminiLive) and preferred.settings.api_key == "g-gem"


@pytest.mark.parametrize(("provider", "variable"),
                         [("openai", "OPENAI_API_KEY"), ("google", "GEMINI_API_KEY")])
def test_a_missing_key_is_refused_naming_the_key_and_the_variable(provider: str, variable: str) -> None:
    with pytest.raises(RealtimeError, match=f"realtime.providers.{provider}.apiKey.*{variable}"):
        build_realtime_factory(realtime(provider=provider), {})


@pytest.mark.parametrize(("settings", "message"), [
    ({"silenceDurationMs": 0}, "silenceDurationMs must be a positive integer"),
    ({"silenceDurationMs": "600"}, "silenceDurationMs must be a positive integer"),
    ({"startSensitivity": "medium"}, 'startSensitivity must be "high" or "low"'),
])
def test_bad_gemini_settings_are_refused_by_name(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(RealtimeError, match=message):
        GeminiSettings.from_mapping(settings, api_key="k")


def test_gemini_setup_carries_voice_detection_tools_and_instructions() -> None:
    from voicecall.speech.realtime.base import FunctionTool

    settings = GeminiSettings.from_mapping({"speakerVoice": "Puck", "endSensitivity": "LOW",
                                            "model": "gemini-live-x"}, api_key="k")
    setup = RealtimeSetup("be brief", tools=(FunctionTool("end_call", "Hang up."),))
    body = GeminiLive(setup, RealtimeEvents(), settings).setup_message()["setup"]
    assert body["model"] == "models/gemini-live-x"
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert body["realtimeInputConfig"]["automaticActivityDetection"] == {
        "endOfSpeechSensitivity": "END_SENSITIVITY_LOW"}
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "end_call"


def test_setup_reports_the_realtime_model_and_a_missing_key() -> None:
    from voicecall.config.loader import load_config_dict
    from voicecall.gateway.setup import run_checks

    def checks(realtime_raw: dict[str, Any], env: dict[str, str]) -> dict[str, tuple[bool, str]]:
        raw = {"provider": "twilio", "fromNumber": "+15550000000", "inboundPolicy": "open",
               "twilio": {"accountSid": "AC1", "authToken": "t"},
               "realtime": {"enabled": True, **realtime_raw}}
        return {c.id: (c.ok, c.message) for c in run_checks(load_config_dict(raw, env=env))}

    found = checks({}, {"OPENAI_API_KEY": "sk"})
    assert found["realtime"] == (True, "calls are bridged to the openai realtime model")
    assert found["mode"] == (True, "realtime voice")
    ok, message = checks({"provider": "google"}, {})["realtime"]
    assert not ok and "GEMINI_API_KEY" in message
