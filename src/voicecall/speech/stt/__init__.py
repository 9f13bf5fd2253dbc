"""Streaming speech-to-text sessions for phone-call media streams (8 kHz mu-law in, text out).

    session = build_stt_session(cfg.streaming.provider, cfg.streaming.providers, callbacks, os.environ)
    await session.connect()
    session.send_audio(frame)   # from the media stream; queued while (re)connecting
    await session.close()
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from voicecall.speech.stt.base import (
    AudioQueue,
    SttCallbacks,
    SttError,
    SttSession,
    WebSocketSttSession,
)
from voicecall.speech.stt.deepgram import DeepgramStt
from voicecall.speech.stt.openai_realtime import OpenAIRealtimeStt

__all__ = [
    "KNOWN_STT_PROVIDERS",
    "AudioQueue",
    "DeepgramStt",
    "OpenAIRealtimeStt",
    "SttCallbacks",
    "SttError",
    "SttSession",
    "WebSocketSttSession",
    "build_stt_session",
    "resolve_stt_provider",
]

KNOWN_STT_PROVIDERS: dict[str, str] = {"openai": "OPENAI_API_KEY", "deepgram": "DEEPGRAM_API_KEY"}
"""Provider id → the environment variable holding its API key when the config has none."""

_KEY_PATH = "streaming.providers.{id}.apiKey"


def resolve_stt_provider(provider_id: str | None, providers: Mapping[str, Mapping[str, Any]]) -> str:
    """`streaming.provider`, else the first configured known provider, else `openai`."""
    if provider_id:
        pid = provider_id.strip().lower()
        if pid not in KNOWN_STT_PROVIDERS:
            known = ", ".join(sorted(KNOWN_STT_PROVIDERS))
            raise SttError(f"streaming.provider: unknown speech-to-text provider {provider_id!r} "
                           f"(known: {known})")
        return pid
    for pid in providers:
        if pid.lower() in KNOWN_STT_PROVIDERS:
            return pid.lower()
    return "openai"


def _get(cfg: Mapping[str, Any], *names: str) -> Any:
    """The first present, non-None value among the camelCase / snake_case spellings."""
    for name in names:
        if name in cfg and cfg[name] is not None:
            return cfg[name]
    return None


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    raw = getter() if callable(getter) else value
    if not isinstance(raw, str):
        return None
    return raw.strip() or None


def _num(cfg: Mapping[str, Any], pid: str, *names: str, kind: type[int] | type[float]) -> Any:
    value = _get(cfg, *names)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SttError(f"streaming.providers.{pid}.{names[0]}: expected a number, got {value!r}")
    return kind(value)


def _str(cfg: Mapping[str, Any], pid: str, *names: str) -> str | None:
    value = _get(cfg, *names)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SttError(f"streaming.providers.{pid}.{names[0]}: expected a non-empty string")
    return value.strip()


def build_stt_session(provider_id: str | None, providers: Mapping[str, Mapping[str, Any]],
                      callbacks: SttCallbacks | None = None,
                      env: Mapping[str, str] | None = None) -> SttSession:
    """Build the session for `streaming.provider` / `streaming.providers.<id>` (not yet connected).

    The API key comes from `streaming.providers.<id>.apiKey` (str or SecretStr), else the provider's
    environment variable (`OPENAI_API_KEY`, `DEEPGRAM_API_KEY`); neither → `SttError`.
    Explicit `0` values are honoured (only absent / null keys fall back to defaults).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    pid = resolve_stt_provider(provider_id, providers)
    cfg: Mapping[str, Any] = next((v for k, v in providers.items() if k.lower() == pid), {}) or {}
    env_var = KNOWN_STT_PROVIDERS[pid]
    api_key = _secret(_get(cfg, "apiKey", "api_key")) or _secret(environ.get(env_var))
    if not api_key:
        raise SttError(f"{_KEY_PATH.format(id=pid)} is not set and {env_var} is not in the environment: "
                       f"the {pid} speech-to-text provider needs an API key")
    base_url = _str(cfg, pid, "baseUrl", "base_url")
    model = _str(cfg, pid, "model")
    kwargs: dict[str, Any] = {}
    if base_url is not None:
        kwargs["base_url"] = base_url
    if model is not None:
        kwargs["model"] = model
    if pid == "openai":
        for key, names, kind in (
            ("silence_duration_ms", ("silenceDurationMs", "silence_duration_ms"), int),
            ("vad_threshold", ("vadThreshold", "vad_threshold"), float),
            ("prefix_padding_ms", ("prefixPaddingMs", "prefix_padding_ms"), int),
        ):
            value = _num(cfg, pid, *names, kind=kind)
            if value is not None:
                kwargs[key] = value
        return OpenAIRealtimeStt(api_key, callbacks, **kwargs)
    endpointing = _num(cfg, pid, "endpointingMs", "endpointing_ms", "endpointing",
                       "silenceDurationMs", kind=int)
    if endpointing is not None:
        kwargs["endpointing_ms"] = endpointing
    language = _str(cfg, pid, "language")
    if language is not None:
        kwargs["language"] = language
    return DeepgramStt(api_key, callbacks, **kwargs)
