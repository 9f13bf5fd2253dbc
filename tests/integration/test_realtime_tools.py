"""Realtime calls' tools, provider selection and error handling (docs/decisions.md D120-D123),
through the Twilio simulator and the fake OpenAI Realtime model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.helpers import eventually, openai_speech_settings
from tests.integration.realtime_support import SILENCE, correlation, decoded
from tests.integration.test_realtime_e2e import answered_call, realtime_config
from voicecall.audio.resample import StreamingResampler
from voicecall.config import ConfigError
from voicecall.media.playback import split_sentences
from voicecall.media.realtime import APOLOGY
from voicecall.testing.fakes import FakeOpenAI, LoopbackServer
from voicecall.testing.fakes.realtime import FakeOpenAIRealtime, ModelAnswer, model_audio
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech, expected_pcm
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator

TRANSFER_TO = "+15557779999"


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    async with TwilioSimulator() as simulator:
        yield simulator


@pytest.fixture
async def model() -> AsyncIterator[FakeOpenAIRealtime]:
    async with FakeOpenAIRealtime(api_key="sk-test") as fake:
        yield fake


class HoursTool:
    """A plain HTTP tool on loopback that records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, Any], str | None]] = []

        async def hours(request: Request) -> JSONResponse:
            self.requests.append((await request.json(), request.headers.get("x-voicecall-call-id")))
            return JSONResponse({"monday": "9 to 5"})

        self.server = LoopbackServer(Starlette(routes=[Route("/hours", hours, methods=["POST"])]))


async def test_user_http_tools_and_transfer_are_offered_and_a_tool_result_goes_back_to_the_model(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    tool = HoursTool()
    async with tool.server:
        config = realtime_config(sim, model, transfer={"allowedNumbers": [TRANSFER_TO]}, responder={
            "tools": [{"name": "opening_hours", "description": "Opening hours by day.",
                       "url": f"{tool.server.url}/hours",
                       "parameters": {"type": "object", "properties": {"day": {"type": "string"}}}}]})
        async with running_gateway(tmp_path, config) as gateway:
            call, record = await answered_call(gateway, sim)
            tools = {t["name"]: t for t in model.sessions[0]["tools"]}
            assert set(tools) == {"end_call", "send_dtmf", "call_info", "transfer_call", "opening_hours"}
            assert tools["transfer_call"]["parameters"]["properties"]["to"]["enum"] == [TRANSFER_TO]
            model.answer_next(heard="When are you open on Monday?",
                              answer=ModelAnswer(function_call=("opening_hours", {"day": "monday"})))
            model.respond_with(ModelAnswer("Monday we are open nine to five."))
            call.send_audio(bytes([SILENCE]) * 160)
            await eventually(lambda: any(t.text == "Monday we are open nine to five."
                                         for t in record.transcript), 10)
            assert tool.requests == [({"day": "monday"}, record.call_id)]
            assert model.function_outputs[0]["output"] == '{"monday": "9 to 5"}'
            assert [t.text for t in record.transcript if t.speaker == "tool"] == [
                'opening_hours {"day": "monday"} -> {"monday": "9 to 5"}']


async def test_tool_policy_none_leaves_only_end_call(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    config = realtime_config(sim, model, transfer={"allowedNumbers": [TRANSFER_TO]})
    config["realtime"]["toolPolicy"] = "none"
    async with running_gateway(tmp_path, config) as gateway:
        await answered_call(gateway, sim)
        assert [t["name"] for t in model.sessions[0]["tools"]] == ["end_call"]


async def test_an_unknown_provider_warns_and_calls_take_the_classic_path(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime,
        caplog: pytest.LogCaptureFixture) -> None:
    config = realtime_config(sim, model)
    config["realtime"]["provider"] = "acme"
    with caplog.at_level(logging.WARNING):
        async with running_gateway(tmp_path, config) as gateway:
            assert gateway.realtime_provider is None and gateway.media is None
            call = await sim.place_inbound("+15557770001", "+15550000000", gateway.webhook_url)
            await call.wait_heard("Hello, clinic here.", timeout=10)  # carrier-native speech
            assert call.active_stream is None and model.connections == 0
    assert "realtime.provider 'acme' is unknown" in caplog.text


async def test_a_missing_model_key_fails_the_start_naming_the_key_and_variable(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    config = realtime_config(sim, model)
    config["realtime"]["providers"] = {"openai": {"baseUrl": model.base_url}}
    with pytest.raises(ConfigError) as info:
        async with running_gateway(tmp_path, config):
            pass
    assert "realtime.providers.openai" in str(info.value) and "OPENAI_API_KEY" in str(info.value)


async def test_a_provider_error_plays_an_apology_then_ends_the_call_with_reason_error(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime, speech: FakeSpeech,
        stt: FakeRealtimeTranscription) -> None:
    config = realtime_config(sim, model, tts=openai_speech_settings(speech, stt)["tts"])
    async with running_gateway(tmp_path, config) as gateway:
        call, record = await answered_call(gateway, sim)
        stream = call.active_stream
        start = len(stream.received_audio)
        await model.end_session(code=1011)
        await eventually(lambda: record.is_terminal, 10)
        assert record.end_reason == "error"
        resampler = StreamingResampler(24000, 8000)  # synthesized sentence by sentence
        apology = b"".join(resampler.process(expected_pcm(s)) + resampler.flush()
                           for s in split_sentences(APOLOGY))
        reference = np.frombuffer(apology, dtype="<i2").astype(np.float64)
        assert correlation(decoded(stream.received_audio[start:]), reference) > 0.9


async def test_end_call_with_last_words_has_the_model_say_them_before_the_hang_up(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    async with running_gateway(tmp_path, realtime_config(sim, model)) as gateway:
        call, record = await answered_call(gateway, sim)
        stream = call.active_stream
        model.answer_next(heard="Bye.", answer=ModelAnswer(
            function_call=("end_call", {"last_words": "Goodbye, take care."})))
        start = len(stream.received_audio)
        call.send_audio(bytes([SILENCE]) * 160)
        await eventually(lambda: record.is_terminal, 15)
        assert record.end_reason == "hangup-bot"
        said = [e["response"].get("instructions", "") for e in model.events_of("response.create")
                if e.get("response")]
        assert said[-1].endswith("nothing else: Goodbye, take care.")
        assert [t.text for t in record.transcript if t.speaker == "bot"][-1] == "Goodbye, take care."
        heard = decoded(stream.received_audio[start:])
        reference = np.frombuffer(model_audio("Goodbye, take care."), dtype="<i2").astype(np.float64)
        assert len(heard) >= len(reference) - 160 and correlation(heard, reference) > 0.9


async def test_send_dtmf_from_the_model_plays_key_tones_on_the_stream(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    async with running_gateway(tmp_path, realtime_config(sim, model)) as gateway:
        call, record = await answered_call(gateway, sim)
        stream = call.active_stream
        press = ModelAnswer(function_call=("send_dtmf", {"digits": "5"}))
        model.answer_next(heard="Press five.", answer=press)
        start = len(stream.received_audio)
        call.send_audio(bytes([SILENCE]) * 160)
        await eventually(lambda: model.function_outputs, 10)
        assert model.function_outputs[0]["output"] == "sent 5"
        tone = decoded(stream.received_audio[start:])[:800]
        spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone))))
        freqs = np.fft.rfftfreq(len(tone), 1 / 8000)
        low_band, high_band = (freqs > 600) & (freqs < 1000), (freqs > 1100) & (freqs < 1700)
        assert abs(float(freqs[low_band][np.argmax(spectrum[low_band])]) - 770) < 20
        assert abs(float(freqs[high_band][np.argmax(spectrum[high_band])]) - 1336) < 20
        assert not record.is_terminal


@pytest.mark.slow
async def test_transfer_call_from_the_model_says_its_message_then_bridges_the_caller(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    config = realtime_config(sim, model, transfer={"allowedNumbers": [TRANSFER_TO]})
    async with running_gateway(tmp_path, config) as gateway:
        sim.script(TRANSFER_TO, Callee(answer_after_s=0.2, hangup_after_s=1.0))
        call, record = await answered_call(gateway, sim)
        model.answer_next(heard="Can I talk to a person?", answer=ModelAnswer(function_call=(
            "transfer_call", {"to": TRANSFER_TO, "message": "Putting you through now."})))
        call.send_audio(bytes([SILENCE]) * 160)
        await eventually(lambda: record.is_terminal, 20)
        assert record.end_reason == "transferred"
        assert record.metadata["transfer"]["to"] == TRANSFER_TO
        assert "Putting you through now." in [t.text for t in record.transcript if t.speaker == "bot"]
        assert [(d.number, d.status) for d in sim.call(call.sid).dials] == [(TRANSFER_TO, "completed")]


# -- the consult of the full agent (D125) ----------------------------------------------------------

@pytest.fixture
async def chat() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


def chat_env(chat: FakeOpenAI) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-chat-test", "OPENAI_BASE_URL": chat.base_url}


async def test_the_model_consults_the_agent_and_gets_its_answer_with_the_calls_transcript(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime, chat: FakeOpenAI) -> None:
    chat.script("We open at nine on Tuesdays.")
    config = realtime_config(sim, model, responseSystemPrompt="You know the clinic's opening hours.")
    async with running_gateway(tmp_path, config, env=chat_env(chat)) as gateway:
        call, record = await answered_call(gateway, sim)
        assert "openclaw_agent_consult" in {t["name"] for t in model.sessions[0]["tools"]}
        model.answer_next(heard="When are you open on Tuesday?", answer=ModelAnswer(function_call=(
            "openclaw_agent_consult", {"question": "Opening hours on Tuesday?"})))
        model.respond_with(ModelAnswer("We open at nine on Tuesdays."))
        call.send_audio(bytes([SILENCE]) * 160)
        await eventually(lambda: model.function_outputs, 10)
        assert model.function_outputs[0]["output"] == "We open at nine on Tuesdays."
        [request] = chat.requests
        system, *_, question = request["messages"]
        assert question == {"role": "user", "content": "Opening hours on Tuesday?"}
        assert "You know the clinic's opening hours." in system["content"]
        assert "When are you open on Tuesday?" in system["content"]  # the call's transcript
        await eventually(lambda: any(t.text == "We open at nine on Tuesdays." for t in record.transcript), 10)
        assert [t.text for t in record.transcript if t.speaker == "tool"] == [
            'openclaw_agent_consult {"question": "Opening hours on Tuesday?"} -> '
            'We open at nine on Tuesdays.']


async def test_a_consult_the_agent_cannot_answer_is_an_error_result_the_model_can_explain(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime, chat: FakeOpenAI) -> None:
    chat.script("", status=500, error_message="the model is overloaded")
    async with running_gateway(tmp_path, realtime_config(sim, model), env=chat_env(chat)) as gateway:
        call, record = await answered_call(gateway, sim)
        model.answer_next(heard="Is the doctor in?", answer=ModelAnswer(function_call=(
            "openclaw_agent_consult", {"question": "Is the doctor in today?"})))
        call.send_audio(bytes([SILENCE]) * 160)
        await eventually(lambda: model.function_outputs, 10)
        output = model.function_outputs[0]["output"]
        assert output.startswith("the agent could not answer:") and "overloaded" in output
        assert not record.is_terminal  # the call goes on


async def test_consult_policy_and_agent_context_files_shape_the_models_instructions(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime, chat: FakeOpenAI) -> None:
    notes = tmp_path / "clinic.md"
    notes.write_text("The clinic is closed on public holidays.\n", encoding="utf-8")
    config = realtime_config(sim, model)
    config["realtime"].update(consultPolicy="always", agentContext={"enabled": True, "files": [str(notes)]})
    async with running_gateway(tmp_path, config, env=chat_env(chat)) as gateway:
        await answered_call(gateway, sim)
        instructions = model.sessions[0]["instructions"]
        assert instructions.startswith("You answer the clinic's phone.")
        assert "Call openclaw_agent_consult before every answer" in instructions
        assert "## clinic.md\nThe clinic is closed on public holidays." in instructions


async def test_without_a_usable_responder_no_consult_is_offered_or_mentioned(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    config = realtime_config(sim, model)
    del config["realtime"]["instructions"]  # the default ones name the consult tool
    async with running_gateway(tmp_path, config, env={}) as gateway:
        await answered_call(gateway, sim)
        session = model.sessions[0]
        assert "openclaw_agent_consult" not in {t["name"] for t in session["tools"]}
        assert "openclaw_agent_consult" not in session["instructions"]
        assert session["instructions"].startswith("You are OpenClaw's phone-call realtime voice interface.")


async def test_an_agent_context_file_that_cannot_be_read_fails_the_start_naming_it(
        tmp_path: Path, sim: TwilioSimulator, model: FakeOpenAIRealtime) -> None:
    config = realtime_config(sim, model)
    config["realtime"]["agentContext"] = {"enabled": True, "files": [str(tmp_path / "missing.md")]}
    with pytest.raises(ConfigError) as caught:
        async with running_gateway(tmp_path, config):
            pass
    assert "realtime.agentContext.files" in str(caught.value) and "missing.md" in str(caught.value)
