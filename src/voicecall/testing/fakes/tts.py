"""Local stand-ins for the OpenAI and ElevenLabs speech APIs, for tests: real HTTP on 127.0.0.1.

    async with FakeSpeech(chunk_bytes=4800, chunk_delay_s=0.05) as fake:
        tts = OpenAITts("sk-test", base_url=fake.openai_base_url)
        audio = b"".join([chunk async for chunk in tts.stream("Hello")])
        assert audio == fake.expected_pcm("Hello", 24_000)

Served routes (both on one server; `routes()` also mounts them next to `FakeOpenAI.routes()`):
- `POST /v1/audio/speech`: OpenAI's wire format. Needs `Authorization: Bearer ...`, a JSON body
  with `model`, `input` (at most 4096 characters), `voice` and `response_format: "pcm"` (the only
  format the fake can produce); answers 24 kHz PCM16LE mono.
- `POST /v1/text-to-speech/{voice_id}/stream?output_format=pcm_22050`: ElevenLabs' wire format.
  Needs `xi-api-key`, a JSON body with `text`; `output_format` must be `pcm_<rate>` (the real
  default, mp3, is refused with 400).

The audio for a text is `expected_pcm(text, rate)`: a sine whose pitch depends on the text and
whose length grows with it, so tests can compare bytes exactly. It is streamed in pieces of
`chunk_bytes`, the first after `first_byte_delay_s` and the rest `chunk_delay_s` apart; `script()`
changes that (or makes the request fail) for the next request to one provider. Every request is
kept in `recorded`, with the times its audio chunks were sent.

`audio_seconds` makes every unscripted answer that long instead (the same tone, looped and made
chunk by chunk, so minutes of audio cost no memory): continuous playback for load tests. Its first
bytes are `expected_pcm(text)`'s. `speed` paces the chunks on a drift-free schedule at that multiple
of real time (instead of `chunk_delay_s` apart), after the first `lead_s` seconds of audio sent at
once: `FakeSpeech(audio_seconds=120, speed=1.25, lead_s=1.0)` streams two minutes of 24 kHz audio
one second ahead, then at 1.25 x real time, in 4800-byte (100 ms) chunks.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from voicecall.testing.fakes.openai_server import LoopbackFake, openai_error

__all__ = [
    "FakeSpeech",
    "LoopedPcm",
    "SpeechProvider",
    "SpeechRequest",
    "SpeechScript",
    "elevenlabs_error",
    "expected_pcm",
]

SpeechProvider = Literal["openai", "elevenlabs"]

OPENAI_SAMPLE_RATE = 24_000
ELEVENLABS_SAMPLE_RATE = 22_050
OPENAI_MAX_INPUT = 4096
_PCM_FORMAT = re.compile(r"^pcm_(8000|16000|22050|24000|44100|48000)$")


def expected_pcm(text: str, sample_rate: int = OPENAI_SAMPLE_RATE) -> bytes:
    """The fake's audio for `text`: PCM16LE mono, 0.1 s + 10 ms per character (at most 3 s), a sine
    between 200 and 830 Hz chosen by the text's CRC-32, amplitude 0.3 of full scale."""
    seconds = min(3.0, 0.1 + 0.01 * len(text))
    frequency = 200.0 + (zlib.crc32(text.encode("utf-8")) % 64) * 10.0
    n = int(sample_rate * seconds)
    t = np.arange(n, dtype=np.float64) / sample_rate
    wave = np.round(0.3 * 32767.0 * np.sin(2.0 * math.pi * frequency * t))
    return wave.astype("<i2").tobytes()


class LoopedPcm:
    """`seconds` of `expected_pcm(text, rate)`'s tone, looped, sliceable like bytes but built on
    demand. The tone's pitch is a whole number of hertz, so one second of it loops seamlessly."""

    def __init__(self, text: str, sample_rate: int, seconds: float) -> None:
        frequency = 200.0 + (zlib.crc32(text.encode("utf-8")) % 64) * 10.0
        t = np.arange(sample_rate, dtype=np.float64) / sample_rate
        second = np.round(0.3 * 32767.0 * np.sin(2.0 * math.pi * frequency * t)).astype("<i2").tobytes()
        self._period = len(second)
        self._twice = second * 2
        self._length = 2 * int(sample_rate * seconds)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: slice) -> bytes:
        start, stop, step = index.indices(self._length)
        if step != 1:
            raise ValueError("LoopedPcm supports contiguous slices only")
        out = bytearray()
        while start < stop:
            offset = start % self._period
            take = min(stop - start, self._period)
            out += self._twice[offset:offset + take]
            start += take
        return bytes(out)


def elevenlabs_error(status: int, message: str, *, status_code: str = "error") -> JSONResponse:
    """An error response in ElevenLabs' shape: `{"detail": {"status", "message"}}`."""
    return JSONResponse({"detail": {"status": status_code, "message": message}}, status_code=status)


class _Dropped(Exception):
    """Raised inside a streaming body to cut the connection mid-response (as a crashed server would)."""


@dataclass
class SpeechScript:
    """How the fake answers one speech request. `None` fields take the server's defaults.

    `status` other than 200 answers with the provider's error JSON (`message`). `fail_after_bytes`
    sends that many audio bytes and then drops the connection. `empty` answers 200 with no audio.
    `hang` sends the headers and then nothing until the client gives up or the server stops.
    `pcm` replaces the audio.
    """

    status: int = 200
    message: str | None = None
    first_byte_delay_s: float | None = None
    chunk_delay_s: float | None = None
    chunk_bytes: int | None = None
    fail_after_bytes: int | None = None
    empty: bool = False
    hang: bool = False
    pcm: bytes | None = None


@dataclass
class SpeechRequest:
    """One request the fake received."""

    provider: SpeechProvider
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    received_at: float = field(default_factory=time.monotonic)
    chunk_sent_at: list[float] = field(default_factory=list)
    """`time.monotonic()` when each audio chunk was handed to the server, in order."""
    bytes_sent: int = 0
    status: int | None = None


class FakeSpeech(LoopbackFake):
    """OpenAI + ElevenLabs speech endpoints on 127.0.0.1; an async context manager.

    `openai_api_key` / `elevenlabs_api_key`, when given, are the only keys accepted; otherwise any
    non-empty key is.
    """

    def __init__(self, *, openai_api_key: str | None = None, elevenlabs_api_key: str | None = None,
                 chunk_bytes: int = 4800, first_byte_delay_s: float = 0.0, chunk_delay_s: float = 0.0,
                 audio_seconds: float | None = None, speed: float | None = None, lead_s: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.openai_api_key = openai_api_key
        self.elevenlabs_api_key = elevenlabs_api_key
        self.chunk_bytes = chunk_bytes
        self.first_byte_delay_s = first_byte_delay_s
        self.chunk_delay_s = chunk_delay_s
        self.audio_seconds = audio_seconds
        self.speed = speed
        self.lead_s = lead_s
        self.recorded: list[SpeechRequest] = []
        self._scripts: dict[SpeechProvider, deque[SpeechScript]] = {"openai": deque(), "elevenlabs": deque()}
        super().__init__(self.app(), host=host, port=port)

    @property
    def openai_base_url(self) -> str:
        """What `OpenAITts` takes as `base_url`: `http://127.0.0.1:PORT/v1`."""
        return f"{self._server.url}/v1"

    @property
    def elevenlabs_base_url(self) -> str:
        """What `ElevenLabsTts` takes as `base_url`: `http://127.0.0.1:PORT`."""
        return self._server.url

    # -- scripting -------------------------------------------------------------------------------
    def script(self, provider: SpeechProvider, *, status: int = 200, message: str | None = None,
               first_byte_delay_s: float | None = None, chunk_delay_s: float | None = None,
               chunk_bytes: int | None = None, fail_after_bytes: int | None = None, empty: bool = False,
               hang: bool = False, pcm: bytes | None = None) -> SpeechScript:
        """Queue how the next request to `provider` is answered (see SpeechScript)."""
        scripted = SpeechScript(status=status, message=message, first_byte_delay_s=first_byte_delay_s,
                                chunk_delay_s=chunk_delay_s, chunk_bytes=chunk_bytes,
                                fail_after_bytes=fail_after_bytes, empty=empty, hang=hang, pcm=pcm)
        self._scripts[provider].append(scripted)
        return scripted

    def reset(self) -> None:
        """Forget scripts and recorded requests, and restore the default timing (to share a server)."""
        for queue in self._scripts.values():
            queue.clear()
        self.recorded.clear()

    def requests_for(self, provider: SpeechProvider) -> list[SpeechRequest]:
        return [r for r in self.recorded if r.provider == provider]

    @staticmethod
    def expected_pcm(text: str, sample_rate: int = OPENAI_SAMPLE_RATE) -> bytes:
        """See the module function `expected_pcm`."""
        return expected_pcm(text, sample_rate)

    # -- the app ---------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/audio/speech", self._openai_speech, methods=["POST"]),
            Route("/v1/text-to-speech/{voice_id}/stream", self._elevenlabs_stream, methods=["POST"]),
        ]

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())

    async def _record(self, provider: SpeechProvider, request: Request) -> SpeechRequest:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        recorded = SpeechRequest(provider, request.method, request.url.path, dict(request.query_params),
                                 dict(request.headers), body)
        self.recorded.append(recorded)
        return recorded

    def _next_script(self, provider: SpeechProvider) -> SpeechScript:
        queue = self._scripts[provider]
        return queue.popleft() if queue else SpeechScript()

    async def _openai_speech(self, request: Request) -> Response:
        recorded = await self._record("openai", request)
        response = self._openai_checks(request, recorded.body)
        if response is None:
            scripted = self._next_script("openai")
            if scripted.status != 200:
                message = scripted.message or f"scripted error {scripted.status}"
                kind = "server_error" if scripted.status >= 500 else "invalid_request_error"
                response = openai_error(scripted.status, message, type_=kind)
            else:
                pcm = scripted.pcm if scripted.pcm is not None else self._pcm(recorded.body["input"],
                                                                              OPENAI_SAMPLE_RATE)
                response = self._audio(recorded, scripted, pcm, OPENAI_SAMPLE_RATE)
        recorded.status = response.status_code
        return response

    def _openai_checks(self, request: Request, body: Any) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return openai_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                     "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                                     "YOUR_KEY).")
        if self.openai_api_key is not None and token.strip() != self.openai_api_key:
            return openai_error(401, "Incorrect API key provided.", code="invalid_api_key")
        if not isinstance(body, dict):
            return openai_error(400, "We could not parse the JSON body of your request.")
        for name in ("model", "input", "voice"):
            if not isinstance(body.get(name), str) or not body[name]:
                return openai_error(400, f"Missing required parameter: '{name}'.", param=name)
        if len(body["input"]) > OPENAI_MAX_INPUT:
            return openai_error(400, f"'input' is too long: at most {OPENAI_MAX_INPUT} characters.",
                                param="input")
        if body.get("response_format") != "pcm":
            return openai_error(400, "the fake speech server only produces response_format 'pcm'",
                                param="response_format")
        return None

    async def _elevenlabs_stream(self, request: Request) -> Response:
        recorded = await self._record("elevenlabs", request)
        response: Response | None = None
        key = request.headers.get("xi-api-key", "")
        body = recorded.body
        fmt = _PCM_FORMAT.match(request.query_params.get("output_format", "mp3_44100_128"))
        if not key.strip():
            response = elevenlabs_error(401, "Missing xi-api-key header.", status_code="needs_authorization")
        elif self.elevenlabs_api_key is not None and key != self.elevenlabs_api_key:
            response = elevenlabs_error(401, "Invalid API key", status_code="invalid_api_key")
        elif not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
            response = JSONResponse({"detail": [{"loc": ["body", "text"], "msg": "Field required",
                                                 "type": "missing"}]}, status_code=422)
        elif fmt is None:
            response = elevenlabs_error(400, "the fake speech server only produces pcm_<rate> output formats",
                                        status_code="invalid_output_format")
        else:
            scripted = self._next_script("elevenlabs")
            if scripted.status != 200:
                message = scripted.message or f"scripted error {scripted.status}"
                response = elevenlabs_error(scripted.status, message)
            else:
                rate = int(fmt.group(1))
                pcm = scripted.pcm if scripted.pcm is not None else self._pcm(body["text"], rate)
                response = self._audio(recorded, scripted, pcm, rate)
        recorded.status = response.status_code
        return response

    def _pcm(self, text: str, rate: int) -> bytes | LoopedPcm:
        if self.audio_seconds is None:
            return expected_pcm(text, rate)
        return LoopedPcm(text, rate, self.audio_seconds)

    def _audio(self, recorded: SpeechRequest, scripted: SpeechScript, pcm: bytes | LoopedPcm,
               sample_rate: int) -> Response:
        return StreamingResponse(self._body(recorded, scripted, pcm, sample_rate), media_type="audio/pcm")

    async def _body(self, recorded: SpeechRequest, scripted: SpeechScript, pcm: bytes | LoopedPcm,
                    sample_rate: int = OPENAI_SAMPLE_RATE) -> AsyncIterator[bytes]:
        first_delay = _pick(scripted.first_byte_delay_s, self.first_byte_delay_s)
        delay = _pick(scripted.chunk_delay_s, self.chunk_delay_s)
        size = max(1, self.chunk_bytes if scripted.chunk_bytes is None else scripted.chunk_bytes)
        if first_delay:
            await asyncio.sleep(first_delay)
        if scripted.hang:
            await self._stopping.wait()
            return
        if scripted.empty:
            return
        limit = len(pcm) if scripted.fail_after_bytes is None else min(len(pcm), scripted.fail_after_bytes)
        loop = asyncio.get_running_loop()
        paced_from = loop.time()
        lead = int(self.lead_s * sample_rate) * 2
        for offset in range(0, limit, size):
            if self.speed:  # chunk k is due when the audio before it, past the lead, has "played"
                wait = paced_from + max(0, offset - lead) / (2 * sample_rate * self.speed) - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            elif offset and delay:
                await asyncio.sleep(delay)
            piece = pcm[offset:min(offset + size, limit)]
            recorded.chunk_sent_at.append(time.monotonic())
            recorded.bytes_sent += len(piece)
            yield piece
        if scripted.fail_after_bytes is not None:
            if delay:
                await asyncio.sleep(delay)
            raise _Dropped("fake speech server dropped the connection (scripted)")


def _pick(scripted: float | None, default: float) -> float:
    return default if scripted is None else scripted
