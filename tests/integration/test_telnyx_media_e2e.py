"""Telnyx media streaming end to end: the Telnyx simulator opens the stream the gateway asked for
on dial, in PCMA or PCMU as its `start` frame says; the fake OpenAI TTS speaks and the fake
realtime transcription hears the caller. Everything over real sockets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import CALLEE, FRIEND, OUR_NUMBER, call_ended, eventually, free_port, place_call
from tests.integration.test_media_e2e import best_correlation, telephone_version
from tests.integration.test_telnyx_e2e import telnyx_config
from voicecall.audio.g711 import ALAW_SILENCE, ULAW_SILENCE, alaw_decode, ulaw_decode
from voicecall.gateway.runtime import Runtime
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.telnyx import Callee, TelnyxSimulator


@pytest.fixture
async def sim() -> AsyncIterator[TelnyxSimulator]:
    async with TelnyxSimulator() as simulator:
        yield simulator


def streaming_config(sim: TelnyxSimulator, speech: FakeSpeech, stt: FakeRealtimeTranscription,
                     port: int, codec: str, **extra: Any) -> dict[str, Any]:
    config = telnyx_config(sim, port, **extra)
    config["telnyx"]["streamCodec"] = codec
    return {**config,
            "streaming": {"enabled": True, "provider": "openai",
                          "providers": {"openai": {"apiKey": "sk-test", "baseUrl": stt.base_url}}},
            "tts": {"provider": "openai",
                    "providers": {"openai": {"apiKey": "sk-test", "baseUrl": speech.openai_base_url}}}}


@pytest.fixture
async def gateway(tmp_path: Path, sim: TelnyxSimulator, speech: FakeSpeech,
                  stt: FakeRealtimeTranscription) -> AsyncIterator[Runtime]:
    async with running_gateway(tmp_path, streaming_config(sim, speech, stt, free_port(), "PCMA")) as runtime:
        yield runtime


def decoded(audio: bytes | bytearray, codec: str) -> np.ndarray:
    """The far end's audio as PCM, from its first non-silent frame on, decoded in `codec`."""
    silence = (ALAW_SILENCE if codec == "PCMA" else ULAW_SILENCE)[0]
    data = bytes(audio)
    start = next((i for i in range(0, len(data), 160) if any(b != silence for b in data[i:i + 160])),
                 len(data))
    decode = alaw_decode if codec == "PCMA" else ulaw_decode
    return decode(data[start:]).astype(np.float64)


@pytest.mark.parametrize("codec", ["PCMA", "PCMU"])
async def test_streamed_notify_is_heard_in_the_start_frames_codec_then_hung_up(
        tmp_path: Path, sim: TelnyxSimulator, speech: FakeSpeech, stt: FakeRealtimeTranscription,
        codec: str) -> None:
    text = "Your order has shipped."
    async with running_gateway(tmp_path, streaming_config(sim, speech, stt, free_port(), codec)) as gateway:
        sim.script(CALLEE, Callee(answer_after_s=0.05))
        record = await place_call(gateway, CALLEE, text, "notify")
        call = sim.call(record.provider_call_id or "")
        media = await call.wait_stream(timeout=10)
        start = next(m for m in media.sent if m["event"] == "start")
        assert start["start"]["media_format"]["encoding"] == codec
        final = await call_ended(gateway, record.call_id, 15)
        assert final.end_reason == "completed"
        assert [(t.speaker, t.text) for t in final.transcript] == [("bot", text)]
        heard = decoded(media.received_audio, codec)
        reference = telephone_version(text)
        assert abs(len(heard) - len(reference)) < 400  # one utterance, not two and not half
        assert best_correlation(heard, reference) > 0.95
        # Decoded in the other law, the same bytes are not the speech: the codec was honoured.
        other = decoded(media.received_audio, "PCMU" if codec == "PCMA" else "PCMA")
        assert best_correlation(other, reference) < 0.9
        assert media.marks and media.marks == media.marks_echoed
        assert media.errors_sent == []  # every message the gateway sent was valid for Telnyx
        dial = next(r for r in sim.api_requests if r.path == "/v2/calls")
        assert dial.body["stream_codec"] == dial.body["stream_bidirectional_codec"] == codec
        assert dial.body["stream_bidirectional_mode"] == "rtp" and "token=" in dial.body["stream_url"]
        await call.wait_ended()
        assert call.said == [] and call.spoken == []  # speech went over the stream, not `speak`


async def test_caller_audio_in_pcma_reaches_speech_recognition_as_the_same_sound(
        gateway: Runtime, sim: TelnyxSimulator, stt: FakeRealtimeTranscription) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    record = await place_call(gateway, CALLEE, "Hello from the clinic.", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    call = sim.call(record.provider_call_id or "")
    t = np.arange(8000) / 8000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    stt.say("Tuesday at noon works", after_bytes=8000)
    before = len(stt.audio)
    call.send_audio(tone.tobytes())
    answer = await gateway.api.call("voicecall.continue", {"callId": record.call_id,
                                                           "message": "When can you come in?"})
    assert answer["transcript"] == "Tuesday at noon works"
    await stt.wait_for_audio(before + 8000)
    heard = ulaw_decode(bytes(stt.audio[before:])).astype(np.float64)
    assert best_correlation(heard, tone.astype(np.float64)[:4000]) > 0.95
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_a_stream_without_the_calls_token_is_refused(
        gateway: Runtime, sim: TelnyxSimulator) -> None:
    from voicecall.testing.telnyx import MediaClient

    sim.script(CALLEE, Callee(answer_after_s=0.05))
    record = await place_call(gateway, CALLEE, "Hello.", "conversation")
    call = sim.call(record.provider_call_id or "")
    await call.wait_stream(timeout=10)
    stream_url = next(r for r in sim.api_requests if r.path == "/v2/calls").body["stream_url"]
    forged = MediaClient(url=stream_url.split("?")[0] + "?token=wrong", call_control_id=call.call_control_id,
                         call_session_id=call.call_session_id, from_=call.from_, to=call.to,
                         client_state=None, codec="PCMU")
    await forged.run()
    assert forged.closed_by == "app" and forged.received_audio == bytearray()
    await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_an_answered_inbound_call_streams_and_hears_the_greeting(
        tmp_path: Path, sim: TelnyxSimulator, speech: FakeSpeech, stt: FakeRealtimeTranscription) -> None:
    config = streaming_config(sim, speech, stt, free_port(), "PCMA", inboundGreeting="Hello, clinic here.",
                              responder={"enabled": False})  # the caller's side drives this call
    async with running_gateway(tmp_path, config) as gateway:
        call = sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
        media = await call.wait_stream(timeout=10)
        answer = next(r for r in sim.api_requests if r.path.endswith("/actions/answer"))
        assert answer.body["stream_codec"] == "PCMA" and "token=" in answer.body["stream_url"]
        record = await eventually(lambda: gateway.service.live(call.call_control_id), 5)
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
        heard = decoded(media.received_audio, "PCMA")
        assert best_correlation(heard, telephone_version("Hello, clinic here.")) > 0.95
        await call.hangup()
        assert (await call_ended(gateway, record.call_id)).end_reason == "completed"
