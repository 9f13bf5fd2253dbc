"""OpenAI text-to-speech (`POST /audio/speech`, `response_format: "pcm"`): 24 kHz PCM16LE mono, streamed."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from voicecall.speech.tts.base import (
    DEFAULT_HTTP_TIMEOUT_S,
    HttpClientHolder,
    TtsChunk,
    TtsError,
    stream_pcm,
)

__all__ = [
    "DEFAULT_OPENAI_TTS_BASE_URL",
    "DEFAULT_OPENAI_TTS_MODEL",
    "DEFAULT_OPENAI_TTS_VOICE",
    "OPENAI_TTS_SAMPLE_RATE",
    "OpenAITts",
    "openai_speech_body",
    "resolve_openai_base_url",
]

DEFAULT_OPENAI_TTS_BASE_URL = "https://api.openai.com/v1"
DEFAULT_OPENAI_TTS_MODEL = "gpt-4o-mini-tts"
DEFAULT_OPENAI_TTS_VOICE = "alloy"
OPENAI_TTS_SAMPLE_RATE = 24_000
"""OpenAI's `pcm` format: 24 kHz, signed 16-bit little-endian, mono, no header."""

_INSTRUCTIONS_MODEL = "gpt-4o-mini-tts"


def resolve_openai_base_url(base_url: str | None, env: Mapping[str, str]) -> str:
    """The given URL, else `OPENAI_TTS_BASE_URL`, else `OPENAI_BASE_URL`, else OpenAI's; no trailing slash."""
    for candidate in (base_url, env.get("OPENAI_TTS_BASE_URL"), env.get("OPENAI_BASE_URL")):
        if candidate and candidate.strip():
            return candidate.strip().rstrip("/")
    return DEFAULT_OPENAI_TTS_BASE_URL


def openai_speech_body(text: str, *, model: str, voice: str, speed: float | None,
                       instructions: str | None) -> dict[str, Any]:
    """The JSON body of `POST /audio/speech`; `instructions` only for gpt-4o-mini-tts models."""
    body: dict[str, Any] = {"model": model, "input": text, "voice": voice, "response_format": "pcm"}
    if speed is not None:
        body["speed"] = speed
    if instructions and instructions.strip() and _INSTRUCTIONS_MODEL in model:
        body["instructions"] = instructions
    return body


class OpenAITts:
    """Streaming OpenAI TTS. `env` (default `os.environ`) supplies `OPENAI_TTS_BASE_URL` /
    `OPENAI_BASE_URL` when `base_url` is not given."""

    name = "openai"
    sample_rate = OPENAI_TTS_SAMPLE_RATE

    def __init__(self, api_key: str, *, base_url: str | None = None, model: str = DEFAULT_OPENAI_TTS_MODEL,
                 voice: str = DEFAULT_OPENAI_TTS_VOICE, speed: float | None = None,
                 instructions: str | None = None, env: Mapping[str, str] | None = None,
                 session: aiohttp.ClientSession | None = None,
                 http_timeout_s: float = DEFAULT_HTTP_TIMEOUT_S) -> None:
        if not api_key:
            raise TtsError("OpenAI TTS needs an API key")
        self._api_key = api_key
        self.base_url = resolve_openai_base_url(base_url, os.environ if env is None else env)
        self.model = model
        self.voice = voice
        self.speed = speed
        self.instructions = instructions
        self._http = HttpClientHolder(session, http_timeout_s)

    def __repr__(self) -> str:
        return f"OpenAITts(base_url={self.base_url!r}, model={self.model!r}, voice={self.voice!r})"

    async def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        body = openai_speech_body(text, model=self.model, voice=self.voice, speed=self.speed,
                                  instructions=self.instructions)
        headers = {"authorization": f"Bearer {self._api_key}", "accept": "audio/pcm"}
        async for chunk in stream_pcm(self._http.get(), "OpenAI", f"{self.base_url}/audio/speech",
                                      json_body=body, headers=headers):
            yield chunk

    async def aclose(self) -> None:
        await self._http.aclose()
