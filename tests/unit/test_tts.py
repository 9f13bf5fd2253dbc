"""Streaming telephony TTS over real loopback sockets: OpenAI and ElevenLabs providers against
FakeSpeech, the fallback chain, and building the chain from a TtsConfig."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from voicecall.config.schema import TtsConfig
from voicecall.speech.tts import (
    ElevenLabsTts,
    OpenAITts,
    TtsChain,
    TtsError,
    TtsProvider,
    aligned_pcm16,
    build_tts_chain,
)
from voicecall.speech.tts.base import error_detail
from voicecall.testing.fakes.tts import FakeSpeech, LoopedPcm, expected_pcm

OPENAI_KEY = "sk-test-tts-0123456789"
XI_KEY = "xi-test-tts-9876543210"
TEXT = "Hello there, this is a test call."

aio = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[FakeSpeech]:
    async with FakeSpeech(openai_api_key=OPENAI_KEY, elevenlabs_api_key=XI_KEY, chunk_bytes=4800) as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="module")
async def fake(server: FakeSpeech) -> AsyncIterator[FakeSpeech]:
    server.reset()
    yield server
    server.reset()


def openai(fake: FakeSpeech, **kwargs: Any) -> OpenAITts:
    return OpenAITts(OPENAI_KEY, base_url=fake.openai_base_url, env={}, **kwargs)


def eleven(fake: FakeSpeech, **kwargs: Any) -> ElevenLabsTts:
    return ElevenLabsTts(XI_KEY, base_url=fake.elevenlabs_base_url, **kwargs)


async def collect(provider: TtsProvider, text: str = TEXT) -> list[bytes]:
    try:
        return [chunk async for chunk in provider.stream(text)]
    finally:
        await provider.aclose()


async def collect_chain(chain: TtsChain, text: str = TEXT) -> list[tuple[int, bytes]]:
    try:
        return [item async for item in chain.stream(text)]
    finally:
        await chain.aclose()


# -- providers ------------------------------------------------------------------------------------
@aio
async def test_openai_streams_incrementally_and_bytes_match(fake: FakeSpeech) -> None:
    fake.script("openai", chunk_delay_s=0.08, chunk_bytes=4800)
    provider = openai(fake)
    received: list[tuple[float, bytes]] = []
    try:
        async for chunk in provider.stream(TEXT):
            received.append((time.monotonic(), chunk))
    finally:
        await provider.aclose()
    audio = b"".join(c for _, c in received)
    assert audio == expected_pcm(TEXT, 24_000)
    assert provider.sample_rate == 24_000
    sent = fake.requests_for("openai")[0].chunk_sent_at
    assert len(sent) >= 5
    # The first chunk reached the client long before the server sent its last one.
    assert received[0][0] < sent[-1] - 0.2
    assert len(received) >= 3
    assert all(len(c) % 2 == 0 and c for _, c in received)


@aio
async def test_openai_request_shape(fake: FakeSpeech) -> None:
    await collect(openai(fake, voice="nova", speed=1.25, instructions="Speak warmly."))
    request = fake.recorded[-1]
    assert request.path == "/v1/audio/speech"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.body == {"model": "gpt-4o-mini-tts", "input": TEXT, "voice": "nova",
                            "response_format": "pcm", "speed": 1.25, "instructions": "Speak warmly."}


@aio
async def test_openai_instructions_only_for_gpt_4o_mini_tts(fake: FakeSpeech) -> None:
    await collect(openai(fake, model="tts-1", instructions="Speak warmly."))
    body = fake.recorded[-1].body
    assert body == {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "pcm"}


@aio
async def test_openai_error_names_provider_status_and_message(fake: FakeSpeech) -> None:
    fake.script("openai", status=429, message="Rate limit reached for requests")
    with pytest.raises(TtsError) as info:
        await collect(openai(fake))
    message = str(info.value)
    assert "OpenAI" in message and "429" in message and "Rate limit reached for requests" in message


@aio
async def test_openai_bad_key_is_not_echoed(fake: FakeSpeech) -> None:
    provider = OpenAITts("sk-wrong-secret", base_url=fake.openai_base_url, env={})
    with pytest.raises(TtsError) as info:
        await collect(provider)
    assert "401" in str(info.value) and "sk-wrong-secret" not in str(info.value)
    assert "sk-wrong-secret" not in repr(provider)


def test_openai_base_url_from_env() -> None:
    assert OpenAITts("k", env={}).base_url == "https://api.openai.com/v1"
    assert OpenAITts("k", env={"OPENAI_BASE_URL": "http://a/v1/"}).base_url == "http://a/v1"
    env = {"OPENAI_BASE_URL": "http://a/v1", "OPENAI_TTS_BASE_URL": "http://b/v1"}
    assert OpenAITts("k", env=env).base_url == "http://b/v1"
    assert OpenAITts("k", base_url="http://c/v1", env=env).base_url == "http://c/v1"


@aio
async def test_elevenlabs_path_header_query_and_bytes(fake: FakeSpeech) -> None:
    provider = eleven(fake, voice_id="voice123", model_id="eleven_turbo_v2_5",
                      voice_settings={"stability": 0.5, "similarity_boost": 0.75, "style": None})
    chunks = await collect(provider)
    assert b"".join(chunks) == expected_pcm(TEXT, 22_050)
    assert provider.sample_rate == 22_050
    request = fake.recorded[-1]
    assert request.provider == "elevenlabs"
    assert request.path == "/v1/text-to-speech/voice123/stream"
    assert request.query == {"output_format": "pcm_22050"}
    assert request.headers["xi-api-key"] == XI_KEY
    assert "authorization" not in request.headers
    assert request.body == {"text": TEXT, "model_id": "eleven_turbo_v2_5",
                            "voice_settings": {"stability": 0.5, "similarity_boost": 0.75}}


@aio
async def test_elevenlabs_defaults_and_error(fake: FakeSpeech) -> None:
    await collect(eleven(fake))
    request = fake.recorded[-1]
    assert request.path == "/v1/text-to-speech/pMsXgVXv3BLzUgSXRplE/stream"
    assert request.body == {"text": TEXT, "model_id": "eleven_multilingual_v2"}
    fake.script("elevenlabs", status=503, message="Service overloaded")
    with pytest.raises(TtsError, match=r"ElevenLabs TTS failed: HTTP 503: Service overloaded"):
        await collect(eleven(fake))


@aio
async def test_elevenlabs_streams_incrementally(fake: FakeSpeech) -> None:
    fake.script("elevenlabs", chunk_delay_s=0.08, chunk_bytes=4410)
    provider = eleven(fake)
    first_at: float | None = None
    audio = b""
    try:
        async for chunk in provider.stream(TEXT):
            first_at = first_at or time.monotonic()
            audio += chunk
    finally:
        await provider.aclose()
    assert audio == expected_pcm(TEXT, 22_050)
    sent = fake.requests_for("elevenlabs")[0].chunk_sent_at
    assert first_at is not None and first_at < sent[-1] - 0.2


@aio
async def test_aligned_pcm16_keeps_whole_samples() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"\x01", b"\x02\x03", b"", b"\x04\x05\x06", b"\x07"):
            yield piece

    out = [chunk async for chunk in aligned_pcm16(pieces())]
    assert all(len(c) % 2 == 0 and c for c in out)
    assert b"".join(out) == b"\x01\x02\x03\x04\x05\x06"  # the trailing odd byte is dropped


def test_error_detail_shapes() -> None:
    assert error_detail(b'{"error": {"message": "bad voice", "type": "x"}}') == "bad voice"
    assert error_detail(b'{"detail": {"status": "s", "message": "quota exceeded"}}') == "quota exceeded"
    assert error_detail(b'{"detail": [{"msg": "Field required"}]}') == "Field required"
    assert error_detail(b"plain  text\n") == "plain text"


# -- chain ----------------------------------------------------------------------------------------
@aio
async def test_chain_yields_sample_rate_and_chunks(fake: FakeSpeech) -> None:
    out = await collect_chain(TtsChain([openai(fake), eleven(fake)]))
    assert {rate for rate, _ in out} == {24_000}
    assert b"".join(c for _, c in out) == expected_pcm(TEXT, 24_000)
    assert fake.requests_for("elevenlabs") == []


@aio
async def test_chain_streams_before_synthesis_ends(fake: FakeSpeech) -> None:
    fake.script("openai", chunk_delay_s=0.08)
    chain = TtsChain([openai(fake)])
    first_at: float | None = None
    try:
        async for _rate, _chunk in chain.stream(TEXT):
            first_at = first_at or time.monotonic()
    finally:
        await chain.aclose()
    sent = fake.requests_for("openai")[0].chunk_sent_at
    assert first_at is not None and first_at < sent[-1] - 0.2


@aio
async def test_chain_falls_back_before_audio(fake: FakeSpeech, caplog: pytest.LogCaptureFixture) -> None:
    fake.script("openai", status=500, message="The server had an error")
    caplog.set_level(logging.INFO, logger="voicecall.speech")
    out = await collect_chain(TtsChain([openai(fake), eleven(fake)]))
    assert {rate for rate, _ in out} == {22_050}
    assert b"".join(c for _, c in out) == expected_pcm(TEXT, 22_050)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "Telephony TTS fallback used from=openai to=elevenlabs attempts=2" in warnings
    assert OPENAI_KEY not in caplog.text and XI_KEY not in caplog.text


@aio
async def test_chain_falls_back_on_empty_audio(fake: FakeSpeech) -> None:
    fake.script("openai", empty=True)
    out = await collect_chain(TtsChain([openai(fake), eleven(fake)]))
    assert {rate for rate, _ in out} == {22_050}


@aio
async def test_chain_no_fallback_after_audio_started(fake: FakeSpeech) -> None:
    fake.script("openai", fail_after_bytes=9600, chunk_bytes=4800)
    chain = TtsChain([openai(fake), eleven(fake)])
    got = b""
    with pytest.raises(TtsError, match="after audio started"):
        try:
            async for _rate, chunk in chain.stream(TEXT):
                got += chunk
        finally:
            await chain.aclose()
    assert got == expected_pcm(TEXT, 24_000)[:9600]
    assert fake.requests_for("elevenlabs") == []


@aio
async def test_chain_every_provider_fails(fake: FakeSpeech) -> None:
    fake.script("openai", status=401, message="nope")
    fake.script("elevenlabs", status=500, message="down")
    with pytest.raises(TtsError) as info:
        await collect_chain(TtsChain([openai(fake), eleven(fake)]))
    assert "openai" in str(info.value) and "elevenlabs" in str(info.value)


@aio
async def test_chain_timeout_before_first_byte(fake: FakeSpeech) -> None:
    fake.script("openai", first_byte_delay_s=2.0)
    start = time.monotonic()
    with pytest.raises(TtsError, match=r"^Telephony TTS synthesis timed out after 300 ms$"):
        await collect_chain(TtsChain([openai(fake), eleven(fake)], timeout_s=0.3))
    assert time.monotonic() - start < 1.5
    assert fake.requests_for("elevenlabs") == []


@aio
async def test_chain_timeout_covers_whole_synthesis(fake: FakeSpeech) -> None:
    fake.script("openai", chunk_delay_s=0.4, chunk_bytes=4800)
    chain = TtsChain([openai(fake)], timeout_s=1.0)
    got = 0
    with pytest.raises(TtsError, match="timed out after 1000 ms"):
        try:
            async for _rate, chunk in chain.stream(TEXT):
                got += len(chunk)
        finally:
            await chain.aclose()
    assert 0 < got < len(expected_pcm(TEXT, 24_000))


@aio
async def test_chain_timeout_ignores_slow_consumer(fake: FakeSpeech) -> None:
    chain = TtsChain([openai(fake)], timeout_s=1.0)
    got = b""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async for _rate, chunk in chain.stream(TEXT):
            if not got:
                await asyncio.sleep(1.2)  # pacing playback after the first chunk: not synthesis time
            got += chunk
        assert loop.time() - started > 1.0, "the consumer must outlast the timeout to prove anything"
    finally:
        await chain.aclose()
    assert got == expected_pcm(TEXT, 24_000)


@aio
async def test_chain_max_text_length_before_any_request(fake: FakeSpeech) -> None:
    with pytest.raises(TtsError, match="too long"):
        await collect_chain(TtsChain([openai(fake)], max_text_length=10), "x" * 11)
    assert fake.recorded == []


@aio
async def test_chain_empty_audio(fake: FakeSpeech) -> None:
    fake.script("openai", empty=True)
    with pytest.raises(TtsError, match=r"^Telephony TTS produced no audio$"):
        await collect_chain(TtsChain([openai(fake)]))
    fake.script("openai", empty=True)
    fake.script("elevenlabs", empty=True)
    with pytest.raises(TtsError, match=r"^Telephony TTS produced no audio$"):
        await collect_chain(TtsChain([openai(fake), eleven(fake)]))


@aio
async def test_chain_without_providers() -> None:
    with pytest.raises(TtsError, match="no usable provider"):
        await collect_chain(TtsChain([]))


@aio
async def test_chain_closed_early_cancels_the_download(fake: FakeSpeech) -> None:
    fake.script("openai", chunk_delay_s=0.1, chunk_bytes=2400)
    chain = TtsChain([openai(fake)])
    stream = chain.stream(TEXT)
    start = time.monotonic()
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    await chain.aclose()
    assert time.monotonic() - start < 0.5


# -- build_tts_chain ------------------------------------------------------------------------------
def test_build_seed_shape_order_and_settings() -> None:
    cfg = TtsConfig.model_validate({
        "provider": "elevenlabs", "timeoutMs": 5000, "maxTextLength": 500,
        "openai": {"apiKey": "sk-cfg", "baseUrl": "http://127.0.0.1:9/v1", "voice": "nova", "model": "tts-1"},
        "elevenlabs": {"apiKey": "xi-cfg", "baseUrl": "http://127.0.0.1:8/", "voiceId": "v1",
                       "modelId": "m1", "voiceSettings": {"stability": 0.4, "useSpeakerBoost": True}},
    })
    chain = build_tts_chain(cfg, {})
    assert chain.names == ["elevenlabs", "openai"]
    assert chain.timeout_s == 5.0 and chain.max_text_length == 500
    el, oa = chain.providers
    assert isinstance(el, ElevenLabsTts) and isinstance(oa, OpenAITts)
    assert el.base_url == "http://127.0.0.1:8" and el.voice_id == "v1" and el.model_id == "m1"
    assert el.voice_settings == {"stability": 0.4, "use_speaker_boost": True}
    assert oa.base_url == "http://127.0.0.1:9/v1" and oa.voice == "nova" and oa.model == "tts-1"


def test_build_providers_shape_defaults_and_env_keys(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voicecall.speech")
    cfg = TtsConfig.model_validate({"providers": {"openai": {"voice": "echo"}}})
    chain = build_tts_chain(cfg, {"OPENAI_API_KEY": "sk-env-secret", "ELEVENLABS_API_KEY": "xi-env-secret"})
    assert chain.names == ["openai", "elevenlabs"]
    assert chain.timeout_s == 8.0 and chain.max_text_length == 4096
    assert isinstance(chain.providers[0], OpenAITts) and chain.providers[0].voice == "echo"
    assert "sk-env-secret" not in caplog.text and "xi-env-secret" not in repr(chain)


def test_build_skips_edge_microsoft_and_keyless(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voicecall.speech")
    cfg = TtsConfig.model_validate({"provider": "edge", "edge": {"voice": "en-US-JennyNeural"},
                                    "elevenlabs": {"apiKey": "xi-secret-value"}})
    chain = build_tts_chain(cfg, {})
    assert chain.names == ["elevenlabs"]
    assert "edge: unsupported for telephony" in caplog.text
    assert "openai: no API key" in caplog.text
    assert "xi-secret-value" not in caplog.text
    caplog.clear()
    cfg = TtsConfig.model_validate({"provider": "microsoft", "providers": {"openai": {"apiKey": "sk-x"}}})
    assert build_tts_chain(cfg, {}).names == ["openai"]
    assert "microsoft: unsupported for telephony" in caplog.text
    assert build_tts_chain(TtsConfig(), {}).names == []
    assert build_tts_chain(None, {"XI_API_KEY": "xi"}).names == ["elevenlabs"]


@aio
async def test_built_chain_speaks_through_the_fake(fake: FakeSpeech,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voicecall.speech")
    fake.script("elevenlabs", status=401, message="Invalid API key")
    cfg = TtsConfig.model_validate({
        "provider": "elevenlabs",
        "providers": {"elevenlabs": {"apiKey": XI_KEY, "baseUrl": fake.elevenlabs_base_url},
                      "openai": {"apiKey": OPENAI_KEY, "baseUrl": fake.openai_base_url,
                                 "instructions": "Be brief."}},
    })
    out = await collect_chain(build_tts_chain(cfg, {}))
    assert b"".join(c for _, c in out) == expected_pcm(TEXT, 24_000)
    assert fake.requests_for("openai")[0].body["instructions"] == "Be brief."
    assert "Telephony TTS fallback used from=elevenlabs to=openai attempts=2" in caplog.text
    assert OPENAI_KEY not in caplog.text and XI_KEY not in caplog.text


# -- FakeSpeech(audio_seconds=...): long playback for load tests ----------------------------------
def test_looped_pcm_starts_like_expected_pcm_and_loops_seamlessly() -> None:
    looped = LoopedPcm(TEXT, 24_000, 5.0)
    assert len(looped) == 2 * 24_000 * 5
    short = expected_pcm(TEXT, 24_000)
    assert looped[0:len(short)] == short
    one_second = 2 * 24_000
    assert looped[one_second:one_second + 4800] == looped[0:4800]
    across = looped[one_second - 100:one_second + 100]  # the loop point is inside a slice
    assert across == looped[one_second - 100:one_second] + looped[0:100]
    assert looped[len(looped) - 10:len(looped) + 50] == looped[one_second - 10:one_second]
    with pytest.raises(ValueError):
        looped[0:10:2]


async def test_fake_speech_audio_seconds_streams_long_audio_in_paced_chunks() -> None:
    async with FakeSpeech(audio_seconds=1.0, chunk_bytes=4800, chunk_delay_s=0.01) as fake:
        provider = OpenAITts(OPENAI_KEY, base_url=fake.openai_base_url, env={})
        audio = b"".join(await collect(provider))
        request = fake.requests_for("openai")[0]
    assert len(audio) == 48_000 and request.bytes_sent == 48_000
    assert audio == LoopedPcm(TEXT, 24_000, 1.0)[0:48_000]
    assert len(request.chunk_sent_at) == 10
    assert request.chunk_sent_at[-1] - request.chunk_sent_at[0] >= 0.08  # 9 gaps of 10 ms


async def test_fake_speech_speed_paces_after_the_lead_on_a_fixed_schedule() -> None:
    async with FakeSpeech(audio_seconds=1.0, speed=4.0, lead_s=0.5, chunk_bytes=4800) as fake:
        provider = OpenAITts(OPENAI_KEY, base_url=fake.openai_base_url, env={})
        audio = b"".join(await collect(provider))
        sent = fake.requests_for("openai")[0].chunk_sent_at
    assert len(audio) == 48_000 and len(sent) == 10
    t0 = sent[0]
    assert sent[5] - t0 < 0.05  # the first 0.5 s (five chunks) go out at once
    # then 100 ms chunks at 4x real time: chunk k is due 25 ms x (k - 5) after the start
    for k in range(6, 10):
        assert sent[k] - t0 >= 0.025 * (k - 5) - 0.002
    assert sent[9] - t0 < 0.25


class _BurstProvider:
    """Yields `n` small chunks back to back (a burst of network reads)."""

    name = "burst"
    sample_rate = 24_000

    def __init__(self, n: int) -> None:
        self.n = n

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        for i in range(self.n):
            yield bytes([i]) * 480
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        return None


@aio
async def test_chain_hands_over_what_has_already_arrived_as_one_chunk() -> None:
    chain = TtsChain([_BurstProvider(10)])
    received: list[bytes] = []
    async for _rate, pcm in chain.stream("hello"):
        received.append(pcm)
        await asyncio.sleep(0.05)  # meanwhile the rest of the burst arrives
    assert b"".join(received) == b"".join(bytes([i]) * 480 for i in range(10))
    assert len(received) == 2  # the first chunk at once, then the rest of the burst together


class _FastLongProvider:
    """4 s of audio in 100 ms chunks, as fast as the consumer lets it."""

    name = "fast"
    sample_rate = 24_000

    def __init__(self) -> None:
        self.yielded = 0

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        for _ in range(40):
            self.yielded += 4800
            yield b"\x01\x00" * 2400
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        return None


@aio
async def test_chain_reads_at_most_read_ahead_beyond_the_consumer_and_waiting_is_not_timed() -> None:
    provider = _FastLongProvider()
    chain = TtsChain([provider], timeout_s=0.5, read_ahead_s=0.2)  # 9600 bytes of read-ahead
    loop = asyncio.get_running_loop()
    started, consumed, worst_lead = loop.time(), 0, 0
    async for _rate, pcm in chain.stream("long answer"):
        consumed += len(pcm)
        await asyncio.sleep(0.03)  # playback pace
        worst_lead = max(worst_lead, provider.yielded - consumed)
    assert consumed == 40 * 4800
    assert loop.time() - started > 0.5  # longer than the timeout, yet it did not time out
    assert worst_lead <= 9600 + 2 * 4800, worst_lead


def test_tts_tls_uses_certifi_or_ssl_cert_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import ssl

    from voicecall.speech.tts.base import tls_context

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 50  # certifi's bundle
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):
        tls_context()
