"""`voicecall setup` with media streaming on: TTS and STT keys are checked, naming what is missing."""

from __future__ import annotations

from typing import Any

from voicecall.config import load_config_dict
from voicecall.gateway.setup import run_checks


def checks(config: dict[str, Any], env: dict[str, str]) -> dict[str, tuple[bool, str]]:
    loaded = load_config_dict({"streaming": {"enabled": True}, **config}, env={"HOME": "/nonexistent", **env})
    return {c.id: (c.ok, c.message) for c in run_checks(loaded)}


def test_streaming_without_keys_names_the_missing_tts_and_stt_keys() -> None:
    result = checks({}, {})
    assert result["streaming-tts"][0] is False and "tts.providers.openai.apiKey" in result["streaming-tts"][1]
    assert result["streaming-stt"][0] is False
    assert "streaming.providers.openai.apiKey" in result["streaming-stt"][1]


def test_streaming_with_an_openai_key_is_ready() -> None:
    result = checks({}, {"OPENAI_API_KEY": "sk-x"})
    assert result["streaming-tts"] == (True, "streamed speech via openai")
    assert result["streaming-stt"] == (True, "speech-to-text via openai")


def test_streaming_provider_none_needs_no_stt_key() -> None:
    result = checks({"streaming": {"enabled": True, "provider": "none"},
                     "tts": {"providers": {"elevenlabs": {"apiKey": "el-x"}}}}, {})
    assert result["streaming-tts"][0] is True
    assert result["streaming-stt"] == (True, "speech-to-text is off (streaming.provider: none)")
