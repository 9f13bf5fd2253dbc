"""Streaming STT sessions (OpenAI realtime transcription, Deepgram) against loopback fakes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from voicecall.config.schema import StreamingConfig
from voicecall.speech.stt import (
    AudioQueue,
    DeepgramStt,
    OpenAIRealtimeStt,
    SttCallbacks,
    SttError,
    SttSession,
    build_stt_session,
)
from voicecall.testing.fakes.stt import FakeDeepgram, FakeRealtimeTranscription

FAST = (0.01, 0.01, 0.01)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def callbacks(self) -> SttCallbacks:
        return SttCallbacks(
            on_partial=lambda text: self.events.append(("partial", text)),
            on_final=lambda text: self.events.append(("final", text)),
            on_speech_start=lambda: self.events.append(("speech",)),
            on_error=lambda message: self.events.append(("error", message)),
        )

    def of(self, kind: str) -> list[tuple[str, ...]]:
        return [e for e in self.events if e[0] == kind]


async def until(predicate: Callable[[], bool], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def frames(n: int, size: int = 160, seed: int = 0) -> list[bytes]:
    return [bytes((seed + i * 7 + j) % 256 for j in range(size)) for i in range(n)]


# --- OpenAI realtime transcription -----------------------------------------------------------------


async def test_openai_session_update_shape_headers_and_zero_values() -> None:
    async with FakeRealtimeTranscription(api_key="sk-test") as fake:
        stt = OpenAIRealtimeStt("sk-test", base_url=fake.base_url, model="gpt-4o-mini-transcribe",
                                silence_duration_ms=0, vad_threshold=0.0, prefix_padding_ms=0)
        assert isinstance(stt, SttSession)
        await stt.connect()
        await until(lambda: len(fake.sessions) == 1)
        assert fake.sessions[0] == {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcmu"},
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "server_vad", "threshold": 0.0, "prefix_padding_ms": 0,
                               "silence_duration_ms": 0},
        }}}
        assert fake.queries[0] == {"intent": "transcription"}
        assert fake.request_headers[0]["authorization"] == "Bearer sk-test"
        # The generally available protocol: the retired beta's header closes the session.
        assert "openai-beta" not in fake.request_headers[0]
        assert fake.errors == []
        await stt.close()


async def test_openai_defaults_and_url() -> None:
    stt = OpenAIRealtimeStt("k")
    assert stt.url() == "wss://api.openai.com/v1/realtime?intent=transcription"
    audio_in = stt.session_update()["session"]["audio"]["input"]
    assert audio_in["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 800}
    assert audio_in["transcription"] == {"model": "gpt-4o-transcribe"}
    assert OpenAIRealtimeStt("k", base_url="https://proxy.local/v1/").url() == (
        "wss://proxy.local/v1/realtime?intent=transcription")


async def test_openai_audio_is_base64_mulaw_and_arrives_intact() -> None:
    async with FakeRealtimeTranscription() as fake:
        stt = OpenAIRealtimeStt("sk-test", base_url=fake.base_url)
        await stt.connect()
        sent = frames(50)
        for frame in sent:
            stt.send_audio(frame)
        await fake.wait_for_audio(len(sent) * 160)
        assert bytes(fake.audio) == b"".join(sent)
        appends = [e for e in fake.events if e["type"] == "input_audio_buffer.append"]
        assert appends and all(isinstance(e["audio"], str) for e in appends)
        assert fake.events[0]["type"] == "session.update"
        assert fake.errors == []
        await stt.close()


async def test_openai_speech_started_partials_then_final_in_order() -> None:
    rec = Recorder()
    async with FakeRealtimeTranscription() as fake:
        fake.say("hello there friend", after_bytes=1600, partial_chunks=3)
        fake.say("second one", after_bytes=800, partial_chunks=2)
        stt = OpenAIRealtimeStt("sk-test", rec.callbacks(), base_url=fake.base_url)
        await stt.connect()
        for frame in frames(10):  # exactly 1600 bytes → only the first utterance
            stt.send_audio(frame)
        await until(lambda: len(rec.of("final")) == 1)
        assert rec.events == [
            ("speech",),
            ("partial", "hello"),
            ("partial", "hello there"),
            ("partial", "hello there friend"),
            ("final", "hello there friend"),
        ]
        rec.events.clear()
        for frame in frames(5):
            stt.send_audio(frame)
        await until(lambda: len(rec.of("final")) == 1)
        assert rec.events == [("speech",), ("partial", "second"), ("partial", "second one"),
                              ("final", "second one")]
        await stt.close()


async def test_openai_speech_started_resets_partial_and_error_event() -> None:
    rec = Recorder()
    async with FakeRealtimeTranscription() as fake:
        stt = OpenAIRealtimeStt("sk-test", rec.callbacks(), base_url=fake.base_url)
        await stt.connect()
        await fake.wait_for_connections(1)
        await fake.send({"type": "conversation.item.input_audio_transcription.delta", "delta": "abandoned"})
        await fake.send({"type": "input_audio_buffer.speech_started"})
        await fake.send({"type": "conversation.item.input_audio_transcription.delta", "delta": "new"})
        await fake.send({"type": "error", "error": {"message": "bad thing"}})
        await until(lambda: len(rec.of("error")) == 1)
        assert rec.events == [("partial", "abandoned"), ("speech",), ("partial", "new"),
                              ("error", "openai: bad thing")]
        await stt.close()


async def test_openai_audio_queued_before_connect_is_delivered() -> None:
    async with FakeRealtimeTranscription() as fake:
        stt = OpenAIRealtimeStt("sk-test", base_url=fake.base_url)
        early = frames(25, seed=3)
        for frame in early:
            stt.send_audio(frame)
        assert len(stt.queue) == 25 * 160
        await stt.connect()
        late = frames(5, seed=9)
        for frame in late:
            stt.send_audio(frame)
        await fake.wait_for_audio(30 * 160)
        assert bytes(fake.audio) == b"".join(early + late)
        # session.update always precedes the audio
        assert fake.events[0]["type"] == "session.update"
        assert fake.errors == []
        await stt.close()


def test_audio_queue_is_bounded_dropping_oldest() -> None:
    queue = AudioQueue(max_bytes=1000)
    for i in range(10):
        queue.push(bytes([i]) * 160)  # 1600 bytes in
    assert len(queue) == 1000
    assert queue.dropped_bytes == 600
    data = queue.pop_chunk(10_000)
    assert len(data) == 1000 and data[-160:] == bytes([9]) * 160 and data[:40] == bytes([3]) * 40
    assert len(queue) == 0
    queue.push(b"x" * 5000)
    assert queue.pop_chunk() == b"x" * 1000


async def test_openai_reconnects_after_drop_and_keeps_delivering_audio() -> None:
    rec = Recorder()
    async with FakeRealtimeTranscription() as fake:
        stt = OpenAIRealtimeStt("sk-test", rec.callbacks(), base_url=fake.base_url, backoff=(0.05,) * 5)
        await stt.connect()
        first = frames(10, seed=1)
        for frame in first:
            stt.send_audio(frame)
        await fake.wait_for_audio(1600)
        await fake.drop()
        await until(lambda: not stt.connected)
        second = frames(10, seed=2)  # sent while reconnecting → queued
        for frame in second:
            stt.send_audio(frame)
        await fake.wait_for_connections(2)
        await fake.wait_for_audio(3200)
        assert bytes(fake.audio) == b"".join(first + second)
        assert len(fake.sessions) == 2 and stt.reconnects == 1
        fake.say("still here", after_bytes=160)
        stt.send_audio(frames(1)[0])
        await until(lambda: rec.of("final") == [("final", "still here")])
        assert rec.of("error") == []
        await stt.close()


async def test_openai_gives_up_after_backoff_schedule_and_reports_error() -> None:
    rec = Recorder()
    async with FakeRealtimeTranscription() as fake:
        stt = OpenAIRealtimeStt("sk-test", rec.callbacks(), base_url=fake.base_url, backoff=FAST)
        await stt.connect()
        await fake.wait_for_connections(1)
        fake.refuse_connections = True
        await fake.drop()
        await until(lambda: len(rec.of("error")) == 1)
        assert "gave up after 3 reconnect attempts" in rec.of("error")[0][1]
        assert fake.rejected == 3 and fake.connections == 1
        assert stt.closed
        stt.send_audio(b"\xff" * 160)  # ignored after giving up
        assert len(stt.queue) == 0
        await stt.close()


async def test_openai_connect_rejected_raises_stt_error() -> None:
    async with FakeRealtimeTranscription(api_key="sk-right") as fake:
        stt = OpenAIRealtimeStt("sk-wrong", base_url=fake.base_url)
        with pytest.raises(SttError, match="HTTP 403"):
            await stt.connect()
        await stt.close()
    closed = OpenAIRealtimeStt("k", base_url="ws://127.0.0.1:9")
    await closed.close()
    with pytest.raises(SttError, match="closed"):
        await closed.connect()


async def test_close_stops_callbacks_and_is_idempotent() -> None:
    rec = Recorder()
    async with FakeRealtimeTranscription() as fake:
        stt = OpenAIRealtimeStt("sk-test", rec.callbacks(), base_url=fake.base_url, backoff=FAST)
        await stt.connect()
        await fake.wait_for_connections(1)
        await stt.close()
        await stt.close()
        await asyncio.sleep(0.05)
        assert fake.connections == 1 and rec.events == []


# --- Deepgram --------------------------------------------------------------------------------------


async def test_deepgram_query_auth_and_binary_audio() -> None:
    async with FakeDeepgram(api_key="dg-key") as fake:
        stt = DeepgramStt("dg-key", base_url=fake.base_url, model="nova-3", endpointing_ms=0)
        early = frames(3, seed=5)
        for frame in early:
            stt.send_audio(frame)
        await stt.connect()
        later = frames(7, seed=6)
        for frame in later:
            stt.send_audio(frame)
        await fake.wait_for_audio(1600)
        assert bytes(fake.audio) == b"".join(early + later)
        assert fake.queries[0] == {"encoding": "mulaw", "sample_rate": "8000", "channels": "1",
                                   "interim_results": "true", "endpointing": "0", "vad_events": "true",
                                   "model": "nova-3", "language": "en-US"}
        assert fake.request_headers[0]["authorization"] == "Token dg-key"
        await stt.close()
        assert fake.close_streams == 1
        assert fake.events[-1] == {"type": "CloseStream"}
        assert fake.errors == []


async def test_deepgram_interim_final_segments_and_speech_final() -> None:
    rec = Recorder()
    async with FakeDeepgram() as fake:
        fake.say("one two three four", after_bytes=320, chunks=2, segments=2)
        stt = DeepgramStt("dg-test", rec.callbacks(), base_url=fake.base_url)
        await stt.connect()
        stt.send_audio(b"\x7f" * 320)
        await until(lambda: len(rec.of("final")) == 1)
        assert rec.events == [
            ("speech",),
            ("partial", "one"),
            ("partial", "one two"),
            ("partial", "one two"),  # is_final segment, not yet speech_final
            ("partial", "one two three"),
            ("partial", "one two three four"),
            ("final", "one two three four"),
        ]
        await stt.close()


async def test_deepgram_keepalive_when_idle_and_pending_segments_flushed_on_close() -> None:
    rec = Recorder()
    async with FakeDeepgram() as fake:
        stt = DeepgramStt("dg-test", rec.callbacks(), base_url=fake.base_url, keepalive_interval_s=0.05)
        await stt.connect()
        await fake.wait_until(lambda: fake.keepalives >= 2)
        assert stt.keepalives_sent >= 2
        await fake.send({"type": "Results", "is_final": True, "speech_final": False,
                         "channel": {"alternatives": [{"transcript": "unfinished words"}]}})
        await until(lambda: rec.of("partial") == [("partial", "unfinished words")])
        await stt.close()
        assert fake.close_streams == 1
        assert rec.of("final") == [("final", "unfinished words")]


async def test_deepgram_utterance_end_error_and_reconnect() -> None:
    rec = Recorder()
    async with FakeDeepgram() as fake:
        stt = DeepgramStt("dg-test", rec.callbacks(), base_url=fake.base_url, backoff=FAST)
        await stt.connect()
        await fake.wait_for_connections(1)
        await fake.send({"type": "Results", "is_final": True, "speech_final": False,
                         "channel": {"alternatives": [{"transcript": "hi"}]}})
        await fake.send({"type": "UtteranceEnd"})
        await fake.send({"type": "Error", "description": "quota"})
        await until(lambda: len(rec.of("error")) == 1)
        assert rec.events == [("partial", "hi"), ("final", "hi"), ("error", "deepgram: quota")]
        await fake.drop()
        stt.send_audio(b"\x01" * 160)
        await fake.wait_for_connections(2)
        await fake.wait_for_audio(160)
        assert bytes(fake.audio) == b"\x01" * 160
        await stt.close()


# --- build_stt_session ---------------------------------------------------------------------------


def test_build_openai_from_config_with_secret_and_zero_values() -> None:
    cfg = StreamingConfig.model_validate({
        "provider": "openai",
        "providers": {"openai": {"apiKey": "sk-cfg", "model": "whisper-x", "silenceDurationMs": 0,
                                 "vadThreshold": 0, "baseUrl": "ws://127.0.0.1:1/v1"}},
    })
    assert isinstance(cfg.providers["openai"]["apiKey"], SecretStr)
    session = build_stt_session(cfg.provider, cfg.providers, SttCallbacks(), env={})
    assert isinstance(session, OpenAIRealtimeStt)
    assert session.api_key == "sk-cfg" and session.model == "whisper-x"
    assert session.silence_duration_ms == 0 and session.vad_threshold == 0.0
    assert session.url() == "ws://127.0.0.1:1/v1/realtime?intent=transcription"


def test_build_env_fallbacks_and_provider_resolution() -> None:
    session = build_stt_session(None, {}, None, env={"OPENAI_API_KEY": "sk-env"})
    assert isinstance(session, OpenAIRealtimeStt) and session.api_key == "sk-env"
    providers: dict[str, dict[str, Any]] = {"deepgram": {"model": "nova-3", "endpointingMs": 0}}
    dg = build_stt_session(None, providers, None, env={"DEEPGRAM_API_KEY": "dg-env"})
    assert isinstance(dg, DeepgramStt)
    assert dg.api_key == "dg-env" and dg.model == "nova-3" and dg.endpointing_ms == 0
    dg2 = build_stt_session("deepgram", {"deepgram": {"apiKey": SecretStr("dg-cfg")}}, None, env={})
    assert isinstance(dg2, DeepgramStt) and dg2.api_key == "dg-cfg"


def test_build_missing_key_and_unknown_provider() -> None:
    with pytest.raises(SttError) as info:
        build_stt_session("openai", {}, None, env={})
    assert "streaming.providers.openai.apiKey" in str(info.value)
    assert "OPENAI_API_KEY" in str(info.value)
    with pytest.raises(SttError, match=r"streaming\.providers\.deepgram\.apiKey.*DEEPGRAM_API_KEY"):
        build_stt_session("deepgram", {"deepgram": {}}, None, env={"OPENAI_API_KEY": "x"})
    with pytest.raises(SttError, match="unknown speech-to-text provider 'whisperd'"):
        build_stt_session("whisperd", {}, None, env={})
    with pytest.raises(SttError, match="vadThreshold"):
        build_stt_session("openai", {"openai": {"vadThreshold": "high"}}, None, env={"OPENAI_API_KEY": "x"})


def test_build_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-process")
    session = build_stt_session(None, {}, None, None)
    assert isinstance(session, OpenAIRealtimeStt) and session.api_key == "sk-process"
    assert os.environ["OPENAI_API_KEY"] == "sk-process"


async def test_audio_goes_to_the_provider_in_40_ms_batches_and_a_lone_frame_still_goes() -> None:
    rec = Recorder()
    async with FakeRealtimeTranscription() as fake:
        stt = OpenAIRealtimeStt("sk-test", rec.callbacks(), base_url=fake.base_url)
        await stt.connect()
        sent = frames(10, seed=3)
        for frame in sent:  # a media stream's pace: one 20 ms frame at a time
            stt.send_audio(frame)
            await asyncio.sleep(0.02)
        await fake.wait_for_audio(1600)
        appends = [e for e in fake.events if e.get("type") == "input_audio_buffer.append"]
        assert bytes(fake.audio) == b"".join(sent)
        assert len(appends) <= 6, len(appends)  # not one message per frame
        lone = frames(1, seed=4)[0]
        stt.send_audio(lone)  # nothing follows it: it must not wait for a partner
        await fake.wait_for_audio(1760, within_s=1.0)
        await stt.close()
