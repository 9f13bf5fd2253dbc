"""ElevenLabs text-to-speech (`POST /v1/text-to-speech/{voice_id}/stream?output_format=pcm_22050`):
22.05 kHz PCM16LE mono, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from voicecall.speech.tts.base import (
    DEFAULT_HTTP_TIMEOUT_S,
    HttpClientHolder,
    TtsChunk,
    TtsError,
    stream_pcm,
)

__all__ = [
    "DEFAULT_ELEVENLABS_BASE_URL",
    "DEFAULT_ELEVENLABS_MODEL_ID",
    "DEFAULT_ELEVENLABS_VOICE_ID",
    "ELEVENLABS_OUTPUT_FORMAT",
    "ELEVENLABS_TTS_SAMPLE_RATE",
    "ElevenLabsTts",
    "elevenlabs_speech_body",
]

DEFAULT_ELEVENLABS_BASE_URL = "https://api.elevenlabs.io"
DEFAULT_ELEVENLABS_VOICE_ID = "pMsXgVXv3BLzUgSXRplE"
DEFAULT_ELEVENLABS_MODEL_ID = "eleven_multilingual_v2"
ELEVENLABS_TTS_SAMPLE_RATE = 22_050
ELEVENLABS_OUTPUT_FORMAT = "pcm_22050"


def elevenlabs_speech_body(text: str, *, model_id: str, voice_settings: Mapping[str, Any] | None = None,
                           seed: int | None = None,
                           apply_text_normalization: Literal["auto", "on", "off"] | None = None,
                           language_code: str | None = None) -> dict[str, Any]:
    """The JSON body of the stream request; optional fields only when set."""
    body: dict[str, Any] = {"text": text, "model_id": model_id}
    settings = {key: value for key, value in (voice_settings or {}).items() if value is not None}
    if settings:
        body["voice_settings"] = settings
    if seed is not None:
        body["seed"] = seed
    if apply_text_normalization is not None:
        body["apply_text_normalization"] = apply_text_normalization
    if language_code:
        body["language_code"] = language_code
    return body


class ElevenLabsTts:
    """Streaming ElevenLabs TTS. `voice_settings` uses the API's snake_case keys (`stability`,
    `similarity_boost`, `style`, `use_speaker_boost`, `speed`)."""

    name = "elevenlabs"
    sample_rate = ELEVENLABS_TTS_SAMPLE_RATE

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_ELEVENLABS_BASE_URL,
                 voice_id: str = DEFAULT_ELEVENLABS_VOICE_ID, model_id: str = DEFAULT_ELEVENLABS_MODEL_ID,
                 voice_settings: Mapping[str, Any] | None = None, seed: int | None = None,
                 apply_text_normalization: Literal["auto", "on", "off"] | None = None,
                 language_code: str | None = None, session: aiohttp.ClientSession | None = None,
                 http_timeout_s: float = DEFAULT_HTTP_TIMEOUT_S) -> None:
        if not api_key:
            raise TtsError("ElevenLabs TTS needs an API key")
        self._api_key = api_key
        self.base_url = (base_url.strip() or DEFAULT_ELEVENLABS_BASE_URL).rstrip("/")
        self.voice_id = voice_id
        self.model_id = model_id
        self.voice_settings = dict(voice_settings) if voice_settings else None
        self.seed = seed
        self.apply_text_normalization = apply_text_normalization
        self.language_code = language_code
        self._http = HttpClientHolder(session, http_timeout_s)

    def __repr__(self) -> str:
        return (f"ElevenLabsTts(base_url={self.base_url!r}, voice_id={self.voice_id!r}, "
                f"model_id={self.model_id!r})")

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1/text-to-speech/{quote(self.voice_id, safe='')}/stream"

    async def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        body = elevenlabs_speech_body(text, model_id=self.model_id, voice_settings=self.voice_settings,
                                      seed=self.seed, apply_text_normalization=self.apply_text_normalization,
                                      language_code=self.language_code)
        headers = {"xi-api-key": self._api_key, "accept": "audio/pcm"}
        async for chunk in stream_pcm(self._http.get(), "ElevenLabs", self.url, json_body=body,
                                      headers=headers,
                                      params={"output_format": ELEVENLABS_OUTPUT_FORMAT}):
            yield chunk

    async def aclose(self) -> None:
        await self._http.aclose()
