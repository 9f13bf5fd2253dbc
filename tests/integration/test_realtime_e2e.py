"""Realtime voice end to end (docs/decisions.md D120-D123): the Twilio simulator's caller on a
media stream, bridged to the fake OpenAI Realtime model. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import eventually, free_port
from tests.integration.realtime_support import SILENCE, at_8k, correlation, decoded, reference
from voicecall.audio.g711 import ulaw_decode, ulaw_encode
from voicecall.audio.resample import StreamingResampler
from voicecall.gateway.runtime import Runtime
from voicecall.testing.fakes.gemini_live import FakeGeminiLive
from voicecall.testing.fakes.realtime import FakeOpenAIRealtime, ModelAnswer, model_audio
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator
from voicecall.testing.twilio.simulator import SimCall

OUR_NUMBER = "+15550000000"
FRIEND = "+15557770001"
GREETING = "Hello, clinic here."


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    async with TwilioSimulator() as simulator:
        yield simulator


@pytest.fixture
async def model() -> AsyncIterator[FakeOpenAIRealtime]:
    async with FakeOpenAIRealtime(api_key="sk-test") as fake:
        yield fake


def realtime_config(sim: TwilioSimulator, model: FakeOpenAIRealtime, **extra: Any) -> dict[str, Any]:
    port = free_port()
    return {
        "provider": "twilio", "fromNumber": OUR_NUMBER,
        "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token, "apiBaseUrl": sim.base_url},
        "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
        "inboundPolicy": "allowlist", "allowFrom": [FRIEND], "inboundGreeting": GREETING,
        "realtime": {"enabled": True, "instructions": "You answer the clinic's phone.",
                     "providers": {"openai": {"apiKey": "sk-test", "baseUrl": model.base_url}}},
        **extra,
    }


@pytest.fixture
async def gateway(tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> AsyncIterator[Runtime]:
    async with running_gateway(tmp_path, realtime_config(sim, model)) as runtime:
        yield runtime


async def answered_call(gateway: Runtime, sim: TwilioSimulator) -> tuple[SimCall, Any]:
    """An inbound call whose greeting (said by the model) has played."""
    call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
    await call.wait_stream(timeout=10)
    record = await eventually(lambda: gateway.service.live(call.sid), 5)
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    return call, record


async def test_caller_and_model_hear_each_other_and_the_transcript_holds_both_sides(
        gateway: Runtime, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    call, record = await answered_call(gateway, sim)
    session = model.sessions[0]
    assert (session["type"], session["model"], session["output_modalities"]) == (
        "realtime", "gpt-realtime", ["audio"])
    assert session["audio"]["input"]["format"] == session["audio"]["output"]["format"] == {
        "type": "audio/pcmu"}
    assert session["instructions"] == "You answer the clinic's phone."
    assert session["audio"]["input"]["turn_detection"] == {"type": "server_vad"}
    assert "openai-beta" not in model.request_headers[0] and not model.refused
    assert {"end_call", "send_dtmf", "call_info"} <= {t["name"] for t in session["tools"]}
    assert correlation(decoded(call.active_stream.received_audio), reference(GREETING)) > 0.9

    caller = ulaw_encode(np.frombuffer(model_audio("caller voice", seconds=0.6), dtype="<i2"))
    answer = "We open at nine."
    model.answer_next(answer, after_bytes=len(caller), heard="When are you open?")
    before = len(call.active_stream.received_audio)
    call.send_audio(caller)
    await eventually(lambda: sum(1 for t in record.transcript if t.speaker == "bot") == 2, 10)
    assert caller in bytes(model.audio)  # the caller's audio reached the model as sent
    heard = decoded(call.active_stream.received_audio[before:])
    assert correlation(heard, reference(answer)) > 0.9
    assert [(t.speaker, t.text) for t in record.transcript] == [
        ("bot", GREETING), ("user", "When are you open?"), ("bot", answer)]
    async def latency() -> dict[str, Any] | None:
        report: dict[str, Any] = await gateway.api.call("voicecall.latency", {})
        return report if report["turnLatency"]["count"] else None

    report = await eventually(latency, 5)  # the turn is logged once its answer has played
    assert report["turnLatency"]["count"] == 1
    assert 0 <= report["turnLatency"]["maxMs"] < 1000
    [turn] = await gateway.service.store.last_log(10, kinds=("turn",))
    assert turn.data["speechEndFoundBy"] == "vad"  # OpenAI's speech_stopped started the clock


async def test_barge_in_clears_within_a_frame_and_truncates_the_answer_at_the_played_offset(
        gateway: Runtime, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    call, record = await answered_call(gateway, sim)
    stream = call.active_stream
    long_answer = ("This is a long answer with many words in it so that the caller has plenty of "
                   "time to interrupt it before it is over")
    start = len(stream.received_audio)
    model.respond_with(ModelAnswer(long_answer))
    said = "Let me explain the opening hours."
    speaking = asyncio.ensure_future(gateway.service.speak(record.call_id, said))
    await eventually(lambda: len(stream.received_audio) - start >= 8000, 10)  # one second heard
    model.barge_in()
    result = await speaking
    assert result.interrupted
    await eventually(lambda: model.truncations, 5)
    assert stream.clear_positions, "the gateway never sent clear"
    clear_at = stream.clear_positions[0]
    await eventually(lambda: len(stream.received_audio) >= clear_at, 1)
    assert len(stream.received_audio) - clear_at <= 160, "audio kept coming after the clear"
    item_id, sent = model.answers_sent[-1]
    assert sent.text == long_answer
    truncation = model.truncations[0]
    assert truncation["item_id"] == item_id
    played_ms = (clear_at - start) / 8
    assert abs(truncation["audio_end_ms"] - played_ms) <= 60
    bot = [t.text for t in record.transcript if t.speaker == "bot"]
    assert bot[-1] and bot[-1] != said and said.startswith(bot[-1])
    # The transcript keeps the words of the audio played, of all the model sent (not of the part
    # converted so far, which runs a second ahead of the caller).
    sent_ms = len(sent.audio()) / 16  # 8 kHz PCM16
    assert abs(len(bot[-1].split()) - len(said.split()) * played_ms / sent_ms) <= 1


async def test_end_call_from_the_model_hangs_up_after_its_last_audio_has_played(
        gateway: Runtime, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    call, record = await answered_call(gateway, sim)
    stream = call.active_stream
    goodbye = "Thank you for calling, goodbye."
    model.answer_next(heard="That's all, bye.", answer=ModelAnswer(goodbye, function_call=("end_call", {})))
    start = len(stream.received_audio)
    call.send_audio(bytes([SILENCE]) * 160)
    await eventually(lambda: record.is_terminal, 15)
    assert record.end_reason == "hangup-bot"
    assert record.metadata["endDetail"] == "ended by the agent"
    heard = decoded(stream.received_audio[start:])
    assert len(heard) >= len(reference(goodbye)) - 160  # all of it played before the hang-up
    assert correlation(heard, reference(goodbye)) > 0.9
    assert stream.marks == stream.marks_echoed
    assert sorted(t.speaker for t in record.transcript[-3:]) == ["bot", "tool", "user"]
    assert [t.text for t in record.transcript if t.speaker == "bot"][-1] == goodbye
    assert model.function_outputs and model.function_outputs[0]["call_id"].startswith("call_")


async def test_a_model_session_that_ends_hangs_up_the_call(
        gateway: Runtime, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    call, record = await answered_call(gateway, sim)
    await model.end_session()
    await eventually(lambda: record.is_terminal, 10)
    assert record.end_reason == "hangup-bot"
    assert "realtime model ended the session" in (record.metadata.get("endDetail") or "")
    await eventually(lambda: sim.calls[call.sid].status == "completed", 5)


async def test_a_model_error_ends_the_call_with_reason_error(
        gateway: Runtime, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    _call, record = await answered_call(gateway, sim)
    await model.end_session(code=1011)
    await eventually(lambda: record.is_terminal, 10)
    assert record.end_reason == "error"
    assert "connection lost" in (record.metadata.get("endDetail") or "")


async def test_thirty_seconds_without_inbound_media_is_a_disconnect_then_a_grace(
        gateway: Runtime, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    call, record = await answered_call(gateway, sim)
    stream = call.active_stream
    assert gateway.media is not None
    assert gateway.media.check_stalls(time.monotonic() + 29) == 0  # media keeps flowing
    assert gateway.media.check_stalls(time.monotonic() + 30.5) == 1  # time faked: 30 s of silence
    assert gateway.media.session_for(record.call_id) is None  # the stream counts as gone...
    assert not record.is_terminal  # ...and the call gets the 2 s grace first
    await eventually(lambda: record.is_terminal, 5)
    assert stream.closed_by == "app"
    # The simulator, like Twilio, ends the call once its <Connect><Stream> is closed, and that may
    # come before the grace runs out; otherwise the grace ends it.
    assert (record.end_reason, record.metadata.get("endDetail")) in (
        ("completed", None), ("hangup-bot", "media stream disconnected"))


CALLEE = "+15557770002"


async def place(gateway: Runtime, sim: TwilioSimulator, message: str, mode: str) -> Any:
    sim.script(CALLEE, Callee(answer_after_s=0.05))
    result = await gateway.api.call("voicecall.initiate", {"to": CALLEE, "message": message, "mode": mode})
    record = await gateway.service.get_call(result["callId"])
    assert record is not None and record.provider_call_id
    return record


async def test_an_outbound_conversation_opens_with_its_message_said_by_the_model_then_talks(
        gateway: Runtime, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    opening = "Hi, this is the clinic about your appointment."
    record = await place(gateway, sim, opening, "conversation")
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    stream = sim.call(record.provider_call_id).active_stream
    assert correlation(decoded(stream.received_audio), reference(opening)) > 0.9
    said = [e["response"]["instructions"] for e in model.events_of("response.create")]
    assert said == [f"Say exactly this to the caller, word for word, and nothing else: {opening}"]

    model.answer_next("See you then.", after_bytes=8000, heard="Yes, I will be there.")
    sim.call(record.provider_call_id).send_audio(bytes([SILENCE]) * 8000)
    await eventually(lambda: len(record.transcript) == 3, 10)
    assert [(t.speaker, t.text) for t in record.transcript] == [
        ("bot", opening), ("user", "Yes, I will be there."), ("bot", "See you then.")]


async def test_an_outbound_notify_call_has_the_model_say_its_message_then_hangs_up(
        gateway: Runtime, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    message = "Your prescription is ready for pickup."
    record = await place(gateway, sim, message, "notify")
    await eventually(lambda: record.is_terminal, 20)
    stream = sim.call(record.provider_call_id).streams[0]
    heard = decoded(stream.received_audio)
    assert len(heard) >= len(reference(message)) - 320  # all of it played before the hang-up
    assert correlation(heard, reference(message)) > 0.9
    assert record.end_reason == "completed"  # as on the classic path: the notify call is done
    assert [(t.speaker, t.text) for t in record.transcript] == [("bot", message)]


# -- Gemini Live ----------------------------------------------------------------------------------

@pytest.fixture
async def gemini() -> AsyncIterator[FakeGeminiLive]:
    async with FakeGeminiLive(api_key="g-test") as fake:
        yield fake


@pytest.fixture
async def gemini_gateway(tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime,
                         gemini: FakeGeminiLive) -> AsyncIterator[Runtime]:
    config = realtime_config(sim, model)
    config["realtime"] = {"enabled": True, "provider": "google", "providers": {"google": {
        "apiKey": "g-test", "baseUrl": gemini.base_url, "speakerVoice": "Puck",
        "silenceDurationMs": 600, "startSensitivity": "high"}}}
    async with running_gateway(tmp_path, config) as runtime:
        yield runtime


async def test_gemini_caller_and_model_hear_each_other_and_the_transcript_holds_both_sides(
        gemini_gateway: Runtime, sim: TwilioSimulator, gemini: FakeGeminiLive) -> None:
    call, record = await answered_call(gemini_gateway, sim)
    setup = gemini.setups[0]
    assert setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"] == {
        "voiceName": "Puck"}
    assert setup["realtimeInputConfig"]["automaticActivityDetection"] == {
        "startOfSpeechSensitivity": "START_SENSITIVITY_HIGH", "silenceDurationMs": 600}
    assert "sessionResumption" in setup and "contextWindowCompression" in setup
    assert "end_call" in {f["name"] for f in setup["tools"][0]["functionDeclarations"]}
    assert correlation(decoded(call.active_stream.received_audio), at_8k(GREETING)) > 0.9

    voice = np.frombuffer(model_audio("caller voice", seconds=0.6), dtype="<i2")
    caller = ulaw_encode(voice)
    gemini.answer_next("We open at nine.", after_bytes=len(caller) * 4, heard="When are you open?")
    before_in, before_out = len(gemini.audio), len(call.active_stream.received_audio)
    call.send_audio(caller)
    await eventually(lambda: sum(1 for t in record.transcript if t.speaker == "bot") == 2, 10)
    upsampler = StreamingResampler(8000, 16000)
    sent = np.frombuffer(upsampler.process(ulaw_decode(caller).tobytes()), dtype="<i2").astype(np.float64)
    received = np.frombuffer(bytes(gemini.audio[before_in:]), dtype="<i2").astype(np.float64)
    start = int(np.argmax(np.abs(received) > 200))  # where the caller's voice begins
    assert correlation(received[max(0, start - 100):], sent) > 0.9  # 16 kHz PCM reached the model
    heard = decoded(call.active_stream.received_audio[before_out:])
    assert correlation(heard, at_8k("We open at nine.")) > 0.9
    assert [(t.speaker, t.text) for t in record.transcript] == [
        ("bot", GREETING), ("user", "When are you open?"), ("bot", "We open at nine.")]
    # The greeting went in as realtime text: a clientContent turn would have closed the session.
    assert not gemini.refused and not any("clientContent" in m for m in gemini.messages)

    async def latency() -> dict[str, Any] | None:
        report: dict[str, Any] = await gemini_gateway.api.call("voicecall.latency", {})
        return report if report["turnLatency"]["count"] else None

    report = await eventually(latency, 5)  # Gemini reports no end of speech: found in the audio
    assert report["turnLatency"]["count"] == 1
    assert 0 <= report["turnLatency"]["maxMs"] < 1000
    [turn] = await gemini_gateway.service.store.last_log(10, kinds=("turn",))
    assert turn.data["speechEndFoundBy"] == "audio"


async def test_gemini_interruption_clears_within_a_frame_and_keeps_the_played_words(
        gemini_gateway: Runtime, sim: TwilioSimulator, gemini: FakeGeminiLive) -> None:
    call, record = await answered_call(gemini_gateway, sim)
    stream = call.active_stream
    said = ("This is a long answer with many words in it so that the caller has plenty of time "
            "to interrupt it before it is over")
    start = len(stream.received_audio)
    speaking = asyncio.ensure_future(gemini_gateway.service.speak(record.call_id, said))
    await eventually(lambda: len(stream.received_audio) - start >= 8000, 10)
    assert gemini.answers_sent[-1].text == said
    gemini.barge_in()
    result = await speaking
    assert result.interrupted
    clear_at = stream.clear_positions[0]
    await eventually(lambda: len(stream.received_audio) >= clear_at, 1)
    assert len(stream.received_audio) - clear_at <= 160
    bot = [t.text for t in record.transcript if t.speaker == "bot"]
    assert bot[-1] and bot[-1] != said and said.startswith(bot[-1])
    # Gemini keeps all it sent, so it is told what the caller heard: the words played, no more.
    await gemini.wait_until(lambda: bool(gemini.texts))
    [note] = gemini.texts
    noted = note.split('"')[1]
    assert said.startswith(noted) and abs(len(noted.split()) - len(bot[-1].split())) <= 1


async def test_gemini_end_call_hangs_up_after_the_last_audio(
        gemini_gateway: Runtime, sim: TwilioSimulator, gemini: FakeGeminiLive) -> None:
    call, record = await answered_call(gemini_gateway, sim)
    stream = call.active_stream
    goodbye = "Thank you for calling, goodbye."
    gemini.answer_next(heard="Bye.", answer=ModelAnswer(goodbye, function_call=("end_call", {})))
    start = len(stream.received_audio)
    call.send_audio(bytes([SILENCE]) * 160)
    await eventually(lambda: record.is_terminal, 15)
    assert record.end_reason == "hangup-bot"
    heard = decoded(stream.received_audio[start:])
    assert len(heard) >= len(at_8k(goodbye)) - 320
    assert correlation(heard, at_8k(goodbye)) > 0.9
    assert gemini.function_responses and gemini.function_responses[0]["name"] == "end_call"


async def test_continue_has_the_model_ask_and_returns_the_callers_answer(
        gateway: Runtime, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    call, record = await answered_call(gateway, sim)
    model.answer_next(heard="Tuesday at noon.", after_bytes=8000 * 3)  # 3 s on: after the question
    before = len(call.active_stream.received_audio)
    answer = await gateway.api.call("voicecall.continue", {"callId": record.call_id,
                                                           "message": "When can you come in?"})
    assert answer["transcript"] == "Tuesday at noon."
    assert correlation(decoded(call.active_stream.received_audio[before:]),
                       reference("When can you come in?")) > 0.9
    said = [e["response"]["instructions"] for e in model.events_of("response.create")]
    assert said[-1].endswith("word for word, and nothing else: When can you come in?")
    assert [(t.speaker, t.text) for t in record.transcript][-2:] == [
        ("bot", "When can you come in?"), ("user", "Tuesday at noon.")]


async def test_gemini_resumes_its_session_on_a_new_connection_after_go_away(
        gemini_gateway: Runtime, sim: TwilioSimulator, gemini: FakeGeminiLive) -> None:
    call, record = await answered_call(gemini_gateway, sim)
    await gemini.go_away()
    await eventually(lambda: len(gemini.setups) == 2, 5)
    assert gemini.setups[1]["sessionResumption"] == {"handle": "handle-1"}
    before = len(call.active_stream.received_audio)
    await gemini_gateway.api.call("voicecall.speak", {"callId": record.call_id, "message": "Still here."})
    assert correlation(decoded(call.active_stream.received_audio[before:]), at_8k("Still here.")) > 0.9
    assert not record.is_terminal


async def test_a_pcm16_session_gets_24_khz_audio_both_ways_through_the_resampler(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    config = realtime_config(sim, model)
    config["realtime"]["providers"]["openai"]["audioFormat"] = "pcm16"
    async with running_gateway(tmp_path, config) as gateway:
        call, record = await answered_call(gateway, sim)
        audio = model.sessions[0]["audio"]
        assert audio["input"]["format"] == audio["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert correlation(decoded(call.active_stream.received_audio), at_8k(GREETING)) > 0.9
        caller = ulaw_encode(np.frombuffer(model_audio("caller voice", seconds=0.6), dtype="<i2"))
        before = len(model.audio)
        call.send_audio(caller)
        await eventually(lambda: len(model.audio) - before >= len(caller) * 6, 5)
        upsampler = StreamingResampler(8000, 24000)
        sent = np.frombuffer(upsampler.process(ulaw_decode(caller).tobytes()), "<i2").astype(np.float64)
        received = np.frombuffer(bytes(model.audio[before:]), "<i2").astype(np.float64)
        start = int(np.argmax(np.abs(received) > 200))
        assert correlation(received[max(0, start - 150):], sent) > 0.9
        assert not record.is_terminal
