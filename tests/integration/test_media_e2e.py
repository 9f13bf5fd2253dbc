"""Media streams end to end: the Twilio simulator opens `<Connect><Stream>` to the gateway, the
fake OpenAI TTS streams 24 kHz PCM, the fake realtime transcription hears the caller. Everything
over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import eventually, free_port, openai_speech_settings
from voicecall.audio.g711 import ulaw_decode
from voicecall.audio.resample import StreamingResampler
from voicecall.calls.model import CallRecord
from voicecall.gateway.runtime import Runtime
from voicecall.testing.fakes import FakeOpenAI
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech, expected_pcm
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator

OUR_NUMBER = "+15550000000"
CALLEE = "+15555550123"
SILENCE = 0xFF


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    async with TwilioSimulator() as simulator:
        yield simulator


def streaming_config(sim: TwilioSimulator, speech: FakeSpeech, stt: FakeRealtimeTranscription,
                     port: int, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "twilio", "fromNumber": OUR_NUMBER,
        "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token, "apiBaseUrl": sim.base_url},
        "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
        "outbound": {"notifyHangupDelaySec": 0}, "maxConcurrentCalls": 5,
        **openai_speech_settings(speech, stt),
        **extra,
    }


@pytest.fixture
async def gateway(tmp_path: Path, sim: TwilioSimulator, speech: FakeSpeech,
                  stt: FakeRealtimeTranscription) -> AsyncIterator[Runtime]:
    async with running_gateway(tmp_path, streaming_config(sim, speech, stt, free_port())) as runtime:
        yield runtime


async def place(runtime: Runtime, message: str, mode: str) -> CallRecord:
    result = await runtime.api.call("voicecall.initiate", {"to": CALLEE, "message": message, "mode": mode})
    record = await runtime.service.get_call(result["callId"])
    assert record is not None and record.provider_call_id
    return record


def heard_speech(mulaw: bytes | bytearray) -> np.ndarray:
    """The callee's audio as int16 PCM, from the first non-silent frame on."""
    data = bytes(mulaw)
    frames = range(0, len(data), 160)
    start = next((i for i in frames if any(b != SILENCE for b in data[i:i + 160])), len(data))
    return ulaw_decode(data[start:]).astype(np.float64)


def telephone_version(text: str) -> np.ndarray:
    """What the fake TTS says for `text`, brought to 8 kHz the way the gateway must."""
    resampler = StreamingResampler(24000, 8000)
    pcm = resampler.process(expected_pcm(text)) + resampler.flush()
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def best_correlation(heard: np.ndarray, reference: np.ndarray) -> float:
    """Peak normalized correlation over small alignment shifts (a frame of lead-in at most)."""
    n = min(len(reference), len(heard)) - 200
    assert n > 800, f"too little audio: heard {len(heard)} samples, expected {len(reference)}"
    ref = reference[:n]
    best = 0.0
    for shift in range(0, 200):
        seg = heard[shift:shift + n]
        denom = float(np.linalg.norm(seg) * np.linalg.norm(ref))
        if denom:
            best = max(best, float(np.dot(seg, ref)) / denom)
    return best


async def test_notify_greeting_is_heard_as_the_tts_audio_then_hangs_up_after_the_mark(
        gateway: Runtime, sim: TwilioSimulator) -> None:
    text = "Your order has shipped."
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    record = await place(gateway, text, "notify")
    call = sim.call(record.provider_call_id or "")
    stream = await call.wait_stream(timeout=10)
    assert stream.custom_parameters.get("token")
    await eventually(lambda: record.is_terminal, 15)
    assert record.end_reason == "completed"
    assert [(t.speaker, t.text) for t in record.transcript] == [("bot", text)]
    heard = heard_speech(stream.received_audio)
    reference = telephone_version(text)
    assert abs(len(heard) - len(reference)) < 400  # one utterance, not two and not half
    assert best_correlation(heard, reference) > 0.95
    assert stream.marks and stream.marks == stream.marks_echoed
    stats = gateway.media.stats() if gateway.media else {}
    assert stats["ttsFirstByteToFirstFrameMs"]["count"] == 1


async def test_caller_answer_and_bot_reply_flow_through_the_stream(
        gateway: Runtime, sim: TwilioSimulator, stt: FakeRealtimeTranscription) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    record = await place(gateway, "Hello from the clinic.", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    call = sim.call(record.provider_call_id or "")
    stream = call.active_stream
    assert stream is not None
    stt.say("Tuesday at noon works", after_bytes=8000)  # 1 s: after the 0.3 s prompt
    answer = await gateway.api.call("voicecall.continue", {"callId": record.call_id,
                                                           "message": "When can you come in?"})
    assert answer["transcript"] == "Tuesday at noon works"
    before = len(stream.received_audio)
    await gateway.api.call("voicecall.speak", {"callId": record.call_id, "message": "See you then."})
    reply = heard_speech(stream.received_audio[before:])
    assert best_correlation(reply, telephone_version("See you then.")) > 0.95
    assert [(t.speaker, t.text) for t in record.transcript] == [
        ("bot", "Hello from the clinic."), ("bot", "When can you come in?"),
        ("user", "Tuesday at noon works"), ("bot", "See you then.")]
    assert (await gateway.api.call("voicecall.end", {"callId": record.call_id}))["success"]


async def test_streamed_llm_reply_is_pipelined_and_every_latency_stage_is_recorded(
        tmp_path: Path, sim: TwilioSimulator, speech: FakeSpeech,
        stt: FakeRealtimeTranscription) -> None:
    friend = "+15557770001"
    async with FakeOpenAI() as llm:
        llm.script(json.dumps({"spoken": "We open at nine. We close at five on weekdays."}),
                   token_delay_s=0.02)
        config = streaming_config(sim, speech, stt, free_port(), inboundPolicy="allowlist",
                                  allowFrom=[friend], inboundGreeting="Hello, clinic here.",
                                  responder={"enabled": True, "baseUrl": llm.base_url},
                                  responseModel="openai/gpt-4o-mini")
        async with running_gateway(tmp_path, config, env={"OPENAI_API_KEY": "sk-test"}) as gateway:
            call = await sim.place_inbound(friend, OUR_NUMBER, gateway.webhook_url)
            stream = await call.wait_stream(timeout=10)
            record = await eventually(lambda: gateway.service.live(call.sid), 5)
            await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
            stt.say("When are you open?", after_bytes=1600)
            await eventually(lambda: len(record.transcript) >= 4, 15)
            assert [(t.speaker, t.text) for t in record.transcript] == [
                ("bot", "Hello, clinic here."), ("user", "When are you open?"),
                ("bot", "We open at nine."), ("bot", "We close at five on weekdays.")]
            # The second sentence was synthesized while the first one was still playing.
            requests = {r.body["input"]: r for r in speech.requests_for("openai")}
            first, second = requests["We open at nine."], requests["We close at five on weekdays."]
            first_duration_s = len(expected_pcm("We open at nine.")) / 48000
            assert second.received_at - first.received_at < first_duration_s
            assert len(stream.marks) >= 3  # greeting + one per sentence
            # The turn is recorded once its last sentence has played (after the transcript entry).
            await eventually(lambda: record.metadata.get("turnCount") == 1, 5)
            report = await gateway.api.call("voicecall.latency", {})
            stages = report["stages"]
            for stage in ("speechToTranscript", "transcriptToReply", "replyToFirstTtsByte",
                          "ttsByteToFirstFrame", "speechToFirstFrame"):
                assert stages[stage]["count"] == 1, (stage, stages)
            assert stages["ttsByteToFirstFrame"]["maxMs"] < 50
            memory = await gateway.store.session_messages(record.session_key or "")
            assert memory[-1] == {"role": "assistant",
                                  "content": "We open at nine. We close at five on weekdays."}


async def test_inbound_greeting_is_pre_synthesized_once_and_a_queued_caller_is_connected_next(
        tmp_path: Path, sim: TwilioSimulator, speech: FakeSpeech,
        stt: FakeRealtimeTranscription) -> None:
    friend, other = "+15557770001", "+15557770002"
    greeting = "Thanks for calling the clinic."
    config = streaming_config(sim, speech, stt, free_port(), inboundPolicy="allowlist",
                              allowFrom=[friend, other], inboundGreeting=greeting,
                              responder={"enabled": False})  # callers stay on the line without a model
    async with running_gateway(tmp_path, config) as gateway:
        await eventually(lambda: gateway.speech_cache is not None and greeting in gateway.speech_cache, 5)
        first = await sim.place_inbound(friend, OUR_NUMBER, gateway.webhook_url)
        first_stream = await first.wait_stream(timeout=10)
        record = await eventually(lambda: gateway.service.live(first.sid), 5)
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
        assert best_correlation(heard_speech(first_stream.received_audio), telephone_version(greeting)) > 0.95
        # A second caller while the first holds the inbound stream waits in the hold queue...
        second = await sim.place_inbound(other, OUR_NUMBER, gateway.webhook_url)
        await second.wait_heard("All agents are currently busy. Please hold.", timeout=10)
        assert second.active_stream is None
        # ...and is connected (stream, greeting from memory) once the first caller hangs up.
        await sim.hangup(first.sid)
        second_stream = await second.wait_stream(timeout=10)
        second_record = await eventually(lambda: gateway.service.live(second.sid), 5)
        await eventually(lambda: "initialMessageSpokenAt" in second_record.metadata, 15)
        assert best_correlation(heard_speech(second_stream.received_audio),
                                telephone_version(greeting)) > 0.95
        greeting_requests = [r for r in speech.requests_for("openai") if r.body["input"] == greeting]
        assert len(greeting_requests) == 1  # synthesized at start, never again
        assert gateway.speech_cache is not None and gateway.speech_cache.hits == 2


async def test_keys_on_a_streamed_call_are_played_as_dtmf_tones(
        gateway: Runtime, sim: TwilioSimulator) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    record = await place(gateway, "Hi.", "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    stream = sim.call(record.provider_call_id or "").active_stream
    assert stream is not None
    before = len(stream.received_audio)
    assert (await gateway.api.call("voicecall.dtmf", {"callId": record.call_id, "digits": "5"}))["success"]
    tone = heard_speech(stream.received_audio[before:])[:800]  # the 100 ms key tone
    spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone))))
    freqs = np.fft.rfftfreq(len(tone), 1 / 8000)
    low_band, high_band = (freqs > 600) & (freqs < 1000), (freqs > 1100) & (freqs < 1700)
    low = float(freqs[low_band][np.argmax(spectrum[low_band])])
    high = float(freqs[high_band][np.argmax(spectrum[high_band])])
    assert abs(low - 770) < 20 and abs(high - 1336) < 20  # the "5" key
    assert spectrum[low_band].max() > 20 * np.median(spectrum)
    assert sim.call(record.provider_call_id or "").active_stream is stream  # the stream survived


async def test_a_numbers_route_speaks_its_greeting_and_replies_in_its_own_voice(
        tmp_path: Path, sim: TwilioSimulator, speech: FakeSpeech,
        stt: FakeRealtimeTranscription) -> None:
    friend = "+15557770001"
    route = {"inboundGreeting": "Sales desk, hello.", "tts": {"providers": {"openai": {"voice": "nova"}}}}
    config = streaming_config(sim, speech, stt, free_port(), inboundPolicy="allowlist",
                              allowFrom=[friend], numbers={OUR_NUMBER: route},
                              responder={"enabled": False})  # the caller stays on the line without a model
    async with running_gateway(tmp_path, config) as gateway:
        call = await sim.place_inbound(friend, OUR_NUMBER, gateway.webhook_url)
        stream = await call.wait_stream(timeout=10)
        record = await eventually(lambda: gateway.service.live(call.sid), 5)
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
        assert best_correlation(heard_speech(stream.received_audio),
                                telephone_version("Sales desk, hello.")) > 0.95
        await gateway.api.call("voicecall.speak", {"callId": record.call_id, "message": "One moment."})
        voices = {r.body["input"]: r.body.get("voice") for r in speech.requests_for("openai")}
        assert voices["Sales desk, hello."] == "nova" and voices["One moment."] == "nova"
        assert voices["Hello!"] != "nova"  # the default greeting keeps the default voice


async def test_an_outbound_conversation_greeting_is_not_cut_by_caller_speech(
        gateway: Runtime, sim: TwilioSimulator, stt: FakeRealtimeTranscription) -> None:
    greeting = ("Hello, this is the clinic calling about your appointment tomorrow morning, "
                "please listen to the whole message before you answer")
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    stt.say("Hello? Who is this?", after_bytes=2400, speech_started=True)  # 0.3 s into the call
    record = await place(gateway, greeting, "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    stream = sim.call(record.provider_call_id or "").active_stream
    assert stream is not None
    assert not stt._pending  # the caller's speech was emitted (during the first message)...
    assert stream.clear_positions == []  # ...and did not interrupt it
    assert [(t.speaker, t.text) for t in record.transcript] == [("bot", greeting)]
    assert best_correlation(heard_speech(stream.received_audio), telephone_version(greeting)) > 0.95
