"""Realtime (speech-to-speech) voice models: which provider a configuration selects, and the
factory that opens one call's session with it (docs/decisions.md D120)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr

from voicecall.config.schema import RealtimeConfig
from voicecall.speech.realtime.base import (
    FunctionTool,
    RealtimeError,
    RealtimeEvents,
    RealtimeModel,
    RealtimeSetup,
)

__all__ = ["KNOWN_REALTIME_PROVIDERS", "FunctionTool", "RealtimeError", "RealtimeEvents", "RealtimeModel",
           "RealtimeSetup", "build_realtime_factory", "selected_provider"]

log = logging.getLogger(__name__)

KNOWN_REALTIME_PROVIDERS = ("openai", "google")
ModelFactory = Callable[[RealtimeSetup, RealtimeEvents], RealtimeModel]


def selected_provider(cfg: RealtimeConfig, *, warn: bool = False) -> str | None:
    """The provider realtime calls use: `realtime.provider`, else the first configured under
    `realtime.providers`, else `openai`. None when realtime is off, or the provider is unknown
    (then calls take the classic path; with `warn` a warning says so)."""
    if not cfg.enabled:
        return None
    pid = (cfg.provider or next(iter(cfg.providers), None) or "openai").strip().lower()
    if pid in KNOWN_REALTIME_PROVIDERS:
        return pid
    if warn:
        log.warning("realtime.provider %r is unknown (known: %s); calls use the classic path",
                    pid, ", ".join(KNOWN_REALTIME_PROVIDERS))
    return None


def _text(settings: Mapping[str, Any], key: str) -> str | None:
    value = settings.get(key)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def build_realtime_factory(cfg: RealtimeConfig, env: Mapping[str, str] | None = None) -> ModelFactory:
    """The factory of the selected provider's sessions; `RealtimeError` naming the key to set
    when its credential is missing (checked now, not at the first call)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    pid = selected_provider(cfg)
    if pid is None:
        raise RealtimeError("realtime voice is off or its provider is unknown")
    settings: Mapping[str, Any] = cfg.providers.get(pid, {})
    if pid == "openai":
        from voicecall.speech.realtime.openai import (
            DEFAULT_BASE_URL,
            DEFAULT_MODEL,
            DEFAULT_VOICE,
            OpenAIRealtime,
        )

        found = _text(settings, "apiKey") or _text(environ, "OPENAI_API_KEY")
        if not found:
            raise RealtimeError("realtime.providers.openai.apiKey is not set and OPENAI_API_KEY is not "
                                "in the environment")
        model = _text(settings, "model") or DEFAULT_MODEL
        voice = _text(settings, "voice") or DEFAULT_VOICE
        base_url = _text(settings, "baseUrl") or _text(environ, "OPENAI_BASE_URL") or DEFAULT_BASE_URL
        key = found
        audio_format = (_text(settings, "audioFormat") or "g711").lower()
        if audio_format not in ("g711", "pcm16"):
            raise RealtimeError('realtime.providers.openai.audioFormat must be "g711" or "pcm16"')
        pcm = audio_format == "pcm16"

        def openai(setup: RealtimeSetup, events: RealtimeEvents) -> RealtimeModel:
            return OpenAIRealtime(setup, events, api_key=key, model=model, voice=voice, base_url=base_url,
                                  pcm=pcm)
        return openai
    from voicecall.speech.realtime.google import GeminiLive, GeminiSettings

    gkey = _text(settings, "apiKey") or _text(environ, "GEMINI_API_KEY") or _text(environ, "GOOGLE_API_KEY")
    if not gkey:
        raise RealtimeError("realtime.providers.google.apiKey is not set and neither GEMINI_API_KEY nor "
                            "GOOGLE_API_KEY is in the environment")
    gemini = GeminiSettings.from_mapping(settings, api_key=gkey)

    def google(setup: RealtimeSetup, events: RealtimeEvents) -> RealtimeModel:
        return GeminiLive(setup, events, gemini)
    return google
