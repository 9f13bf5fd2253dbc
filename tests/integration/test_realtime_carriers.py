"""Realtime voice on every carrier with media streams (issue 19, item 5; docs/decisions.md
D120-D123, D126): calls on the Telnyx simulator's media stream (PCMU, and PCMA when
`telnyx.streamCodec` asks for it) or on the Plivo simulator's audio stream, bridged to the fake
OpenAI Realtime model through the same bridge as Twilio's: both directions of audio, barge-in
truncation, the model's tools (`end_call`, `send_dtmf`, `transfer_call`) and outbound calls.
Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest

from tests.helpers import CALLEE, FRIEND, OUR_NUMBER, eventually, free_port, place_call
from tests.integration.plivo_setup import plivo_config
from tests.integration.realtime_support import (
    FRAME,
    at_8k,
    correlation,
    decoded,
    key_tone,
    openai_realtime,
    reference,
)
from tests.integration.test_telnyx_e2e import telnyx_config
from voicecall.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from voicecall.audio.resample import StreamingResampler
from voicecall.calls.model import CallRecord
from voicecall.gateway.runtime import Runtime
from voicecall.providers.streams import Codec
from voicecall.testing.fakes.gemini_live import FakeGeminiLive
from voicecall.testing.fakes.realtime import FakeOpenAIRealtime, ModelAnswer, model_audio
from voicecall.testing.gateway import running_gateway
from voicecall.testing.plivo import Callee as PlivoCallee
from voicecall.testing.plivo import PlivoCall, PlivoSimulator, PlivoStreamRecord
from voicecall.testing.telnyx import Callee as TelnyxCallee
from voicecall.testing.telnyx import MediaClient, TelnyxSimulator
from voicecall.testing.telnyx import SimCall as TelnyxCall

GREETING = "Hello, clinic here."
DESK = "+15557779999"
"""A person the model may put callers through to."""


@dataclass
class Leg:
    """The caller's side of one answered call and its media stream, whatever the carrier."""

    provider_call_id: str
    codec: Codec
    """The G.711 law on the stream, both ways."""
    sent: bytearray
    """Every byte of audio the gateway put on the stream, in `codec`."""
    clear_positions: list[int]
    """`len(sent)` at each of the carrier's clear messages the gateway sent."""
    speak: Callable[[bytes], None]
    """The caller says 8 kHz 16-bit PCM (encoded in `codec` by the carrier)."""
    acknowledged: Callable[[], bool]
    """Every mark (Telnyx) or checkpoint (Plivo) the gateway sent came back as played."""
    ended: Callable[[], Awaitable[str]]
    """Wait until the carrier ended the call."""
    carrier_said: Callable[[], list[str]]
    """What the carrier's own speech (`speak`, `<Speak>`) said on the call."""


def telnyx_leg(call: TelnyxCall, media: MediaClient) -> Leg:
    return Leg(call.call_control_id, "ulaw" if media.codec == "PCMU" else "alaw", media.received_audio,
               media.clear_positions, call.send_audio, lambda: media.marks == media.marks_echoed,
               lambda: call.wait_ended(10), lambda: call.said)


def plivo_leg(call: PlivoCall, stream: PlivoStreamRecord) -> Leg:
    return Leg(call.uuid, "ulaw", stream.received_audio, stream.clear_positions,
               lambda pcm: call.send_audio(ulaw_encode(pcm)),
               lambda: stream.checkpoints == stream.played_checkpoints, lambda: call.wait_ended(10),
               lambda: call.said)


class Carrier(Protocol):
    """A running carrier simulator, the gateway config that points at it, and its calls."""

    codec: Codec
    """The law its streams should carry."""

    def config(self, port: int) -> dict[str, Any]: ...

    async def call_in(self, webhook_url: str) -> Leg:
        """A caller (FRIEND) dials the gateway; once the stream is up."""
        ...

    async def call_out(self, gateway: Runtime, message: str) -> tuple[Leg, CallRecord]:
        """A conversation call from the gateway to CALLEE, who answers; once the stream is up."""
        ...

    def script(self, number: str, *, answer_after_s: float, hangup_after_s: float) -> None:
        """How the person at `number` answers the calls the gateway makes to them."""
        ...


@dataclass
class Telnyx:
    """Telnyx: A-law streams are asked for with `telnyx.streamCodec: PCMA`; μ-law is its default."""

    sim: TelnyxSimulator
    codec: Codec

    def config(self, port: int) -> dict[str, Any]:
        settings = telnyx_config(self.sim, port)
        if self.codec == "alaw":
            settings["telnyx"]["streamCodec"] = "PCMA"
        return settings

    async def call_in(self, webhook_url: str) -> Leg:
        call = self.sim.place_inbound(FRIEND, OUR_NUMBER, webhook_url)
        return telnyx_leg(call, await call.wait_stream(timeout=10))

    def script(self, number: str, *, answer_after_s: float, hangup_after_s: float) -> None:
        self.sim.script(number, TelnyxCallee(answer_after_s=answer_after_s, hangup_after_s=hangup_after_s))

    async def call_out(self, gateway: Runtime, message: str) -> tuple[Leg, CallRecord]:
        self.sim.script(CALLEE, TelnyxCallee(answer_after_s=0.05))
        record = await place_call(gateway, CALLEE, message, "conversation")
        call = self.sim.call(record.provider_call_id or "")
        return telnyx_leg(call, await call.wait_stream(timeout=10)), record


@dataclass
class Plivo:
    """Plivo: `<Stream bidirectional>` in μ-law, checkpoints for marks, `clearAudio` to clear."""

    sim: PlivoSimulator
    codec: Codec = "ulaw"

    def config(self, port: int) -> dict[str, Any]:
        return plivo_config(self.sim, port)

    async def call_in(self, webhook_url: str) -> Leg:
        call = await self.sim.place_inbound(FRIEND, OUR_NUMBER, webhook_url)
        return plivo_leg(call, await call.wait_stream(timeout=10))

    def script(self, number: str, *, answer_after_s: float, hangup_after_s: float) -> None:
        self.sim.script(number, PlivoCallee(answer_after_s=answer_after_s, hangup_after_s=hangup_after_s))

    async def call_out(self, gateway: Runtime, message: str) -> tuple[Leg, CallRecord]:
        self.sim.script(CALLEE, PlivoCallee(answer_after_s=0.05))
        record = await place_call(gateway, CALLEE, message, "conversation")
        call = self.sim.call(record.provider_call_id or "")
        return plivo_leg(call, await call.wait_stream(timeout=10)), record


@pytest.fixture
async def model() -> AsyncIterator[FakeOpenAIRealtime]:
    async with FakeOpenAIRealtime(api_key="sk-test") as fake:
        yield fake


@pytest.fixture(params=["telnyx", "plivo"])
async def carrier(request: pytest.FixtureRequest) -> AsyncIterator[Carrier]:
    """Telnyx (on its default stream codec, PCMU) and Plivo."""
    async for found in _carrier(str(request.param)):
        yield found


@pytest.fixture(params=["telnyx", "telnyx-pcma", "plivo"])
async def any_carrier(request: pytest.FixtureRequest) -> AsyncIterator[Carrier]:
    """Every carrier, and Telnyx also with `telnyx.streamCodec: PCMA` (A-law)."""
    async for found in _carrier(str(request.param)):
        yield found


async def _carrier(name: str) -> AsyncIterator[Carrier]:
    if name == "plivo":
        async with PlivoSimulator() as plivo:
            yield Plivo(plivo)
        return
    async with TelnyxSimulator() as telnyx:
        yield Telnyx(telnyx, "alaw" if name == "telnyx-pcma" else "ulaw")


def realtime_gateway(tmp_path: Path, carrier: Carrier, model: FakeOpenAIRealtime, **extra: Any
                     ) -> AbstractAsyncContextManager[Runtime]:
    """A gateway on `carrier` that greets inbound callers and bridges them to `model`."""
    config = carrier.config(free_port())
    config.update(inboundGreeting=GREETING, realtime=openai_realtime(model), **extra)
    return running_gateway(tmp_path, config)


async def answered_call(gateway: Runtime, carrier: Carrier) -> tuple[Leg, CallRecord]:
    """An inbound call whose greeting (said by the model) has played."""
    leg = await carrier.call_in(gateway.webhook_url)
    record: CallRecord = await eventually(lambda: gateway.service.live(leg.provider_call_id), 5)
    await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
    return leg, record


def caller_voice() -> np.ndarray:
    return np.frombuffer(model_audio("caller voice", seconds=0.6), dtype="<i2")


def as_heard_on_the_line(pcm: np.ndarray, codec: Codec) -> np.ndarray:
    """`pcm` after the carrier's G.711 law (what the gateway can at best receive)."""
    if codec == "ulaw":
        return ulaw_decode(ulaw_encode(pcm)).astype(np.float64)
    return alaw_decode(alaw_encode(pcm)).astype(np.float64)


async def test_caller_and_model_hear_each_other_and_the_transcript_holds_both_sides(
        tmp_path: Path, any_carrier: Carrier, model: FakeOpenAIRealtime) -> None:
    async with realtime_gateway(tmp_path, any_carrier, model) as gateway:
        leg, record = await answered_call(gateway, any_carrier)
        assert leg.codec == any_carrier.codec
        session = model.sessions[0]
        audio = session["audio"]
        assert audio["input"]["format"] == audio["output"]["format"] == {"type": "audio/pcmu"}
        assert correlation(decoded(leg.sent, leg.codec), reference(GREETING)) > 0.9

        voice = caller_voice()
        answer = "We open at nine."
        model.answer_next(answer, after_bytes=len(voice), heard="When are you open?")
        before_in, before_out = len(model.audio), len(leg.sent)
        leg.speak(voice.tobytes())
        await eventually(lambda: sum(1 for t in record.transcript if t.speaker == "bot") == 2, 10)

        def voice_in() -> tuple[np.ndarray] | None:
            """What the model got from where the caller's voice begins, once all of it is in."""
            received = ulaw_decode(bytes(model.audio[before_in:])).astype(np.float64)
            loud = np.flatnonzero(np.abs(received) > 200)  # where the caller's voice begins
            if not len(loud) or len(received) < loud[0] + len(voice):
                return None
            return (received[max(0, loud[0] - FRAME):],)

        (received,) = await eventually(voice_in, 5)
        assert correlation(received, as_heard_on_the_line(voice, leg.codec)) > 0.9
        out = bytes(leg.sent[before_out:])
        heard = decoded(out, leg.codec)
        assert correlation(heard, reference(answer)) > 0.9
        # The same bytes decoded in the other law are not the answer: the stream's law was used.
        other = (alaw_decode if leg.codec == "ulaw" else ulaw_decode)(out[len(out) - len(heard):])
        assert correlation(other.astype(np.float64), reference(answer)) < 0.9
        assert [(t.speaker, t.text) for t in record.transcript] == [
            ("bot", GREETING), ("user", "When are you open?"), ("bot", answer)]
        assert leg.carrier_said() == []  # every word went over the stream


async def test_barge_in_clears_within_a_frame_and_truncates_the_answer_at_the_played_offset(
        tmp_path: Path, carrier: Carrier, model: FakeOpenAIRealtime) -> None:
    async with realtime_gateway(tmp_path, carrier, model) as gateway:
        leg, record = await answered_call(gateway, carrier)
        long_answer = ("This is a long answer with many words in it so that the caller has plenty "
                       "of time to interrupt it before it is over")
        start = len(leg.sent)
        model.respond_with(ModelAnswer(long_answer))
        said = "Let me explain the opening hours."
        speaking = asyncio.ensure_future(gateway.service.speak(record.call_id, said))
        await eventually(lambda: len(leg.sent) - start >= 8000, 10)  # one second heard
        model.barge_in()
        result = await speaking
        assert result.interrupted
        await eventually(lambda: model.truncations, 5)
        assert leg.clear_positions, "the gateway never sent the carrier's clear message"
        clear_at = leg.clear_positions[0]
        await asyncio.sleep(0.1)  # five frames' time: any audio still going out would show
        assert len(leg.sent) - clear_at <= FRAME, "audio kept coming after the clear"
        item_id, sent = model.answers_sent[-1]
        assert sent.text == long_answer
        truncation = model.truncations[0]
        assert truncation["item_id"] == item_id
        played_ms = (clear_at - start) / 8
        assert abs(truncation["audio_end_ms"] - played_ms) <= 60
        bot = [t.text for t in record.transcript if t.speaker == "bot"]
        assert bot[-1] and bot[-1] != said and said.startswith(bot[-1])


async def test_end_call_from_the_model_hangs_up_after_its_last_audio_has_played(
        tmp_path: Path, carrier: Carrier, model: FakeOpenAIRealtime) -> None:
    async with realtime_gateway(tmp_path, carrier, model) as gateway:
        leg, record = await answered_call(gateway, carrier)
        goodbye = "Thank you for calling, goodbye."
        model.answer_next(heard="That's all, bye.",
                          answer=ModelAnswer(goodbye, function_call=("end_call", {})))
        start = len(leg.sent)
        leg.speak(bytes(2 * FRAME))  # one frame of the caller: the scripted turn comes
        await eventually(lambda: record.is_terminal, 15)
        assert record.end_reason == "hangup-bot"
        assert record.metadata["endDetail"] == "ended by the agent"
        heard = decoded(leg.sent[start:], leg.codec)
        assert len(heard) >= len(reference(goodbye)) - FRAME  # all of it played before the hang-up
        assert correlation(heard, reference(goodbye)) > 0.9
        assert leg.acknowledged()
        assert [t.text for t in record.transcript if t.speaker == "bot"][-1] == goodbye
        assert model.function_outputs and model.function_outputs[0]["call_id"].startswith("call_")
        await leg.ended()


async def test_send_dtmf_from_the_model_plays_key_tones_on_the_stream_in_its_law(
        tmp_path: Path, any_carrier: Carrier, model: FakeOpenAIRealtime) -> None:
    async with realtime_gateway(tmp_path, any_carrier, model) as gateway:
        leg, record = await answered_call(gateway, any_carrier)
        start = len(leg.sent)
        model.answer_next(heard="Press five.",
                          answer=ModelAnswer(function_call=("send_dtmf", {"digits": "5"})))
        await eventually(lambda: model.function_outputs, 10)
        assert model.function_outputs[0]["output"] == "sent 5"
        low, high = key_tone(decoded(leg.sent[start:], leg.codec)[:800])
        assert abs(low - 770) < 20 and abs(high - 1336) < 20  # the 5 key
        assert not record.is_terminal


@pytest.mark.slow
async def test_transfer_call_from_the_model_says_its_message_then_bridges_the_caller(
        tmp_path: Path, carrier: Carrier, model: FakeOpenAIRealtime) -> None:
    async with realtime_gateway(tmp_path, carrier, model,
                                transfer={"allowedNumbers": [DESK]}) as gateway:
        carrier.script(DESK, answer_after_s=0.2, hangup_after_s=1.0)
        leg, record = await answered_call(gateway, carrier)
        model.answer_next(heard="Can I talk to a person?", answer=ModelAnswer(function_call=(
            "transfer_call", {"to": DESK, "message": "Putting you through now."})))
        await eventually(lambda: record.is_terminal, 20)
        assert record.end_reason == "transferred"
        assert record.metadata["transfer"]["status"] == "completed"
        assert [t.text for t in record.transcript if t.speaker == "bot"] == [
            GREETING, "Putting you through now."]
        assert [t.text for t in record.transcript if t.speaker == "tool"][-3:] == [
            f"transfer to {DESK}: dialing", f"transfer to {DESK}: bridged",
            f"transfer to {DESK}: completed"]
        assert leg.carrier_said() == []  # the message was the model's, over the stream


async def test_an_outbound_conversation_call_opens_with_the_model_saying_its_message(
        tmp_path: Path, carrier: Carrier, model: FakeOpenAIRealtime) -> None:
    async with realtime_gateway(tmp_path, carrier, model) as gateway:
        opening = "Hi, the clinic calling."
        leg, record = await carrier.call_out(gateway, opening)
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
        assert correlation(decoded(leg.sent, leg.codec), reference(opening)) > 0.9
        said = [e["response"]["instructions"] for e in model.events_of("response.create")]
        assert said[0].endswith(f"word for word, and nothing else: {opening}")
        model.answer_next("See you then.", after_bytes=1600, heard="Yes, I'll be there.")
        leg.speak(caller_voice().tobytes())
        await eventually(lambda: len(record.transcript) == 3, 10)
        assert [(t.speaker, t.text) for t in record.transcript] == [
            ("bot", opening), ("user", "Yes, I'll be there."), ("bot", "See you then.")]
        assert leg.carrier_said() == []
        assert (await gateway.api.call("voicecall.end", {"callId": record.call_id}))["success"]
        await leg.ended()


async def test_gemini_live_hears_the_caller_at_16_khz_and_is_heard_in_the_streams_law(
        tmp_path: Path, any_carrier: Carrier) -> None:
    async with FakeGeminiLive(api_key="g-test") as gemini:
        realtime = {"enabled": True, "provider": "google",
                    "providers": {"google": {"apiKey": "g-test", "baseUrl": gemini.base_url}}}
        config = any_carrier.config(free_port())
        config.update(inboundGreeting=GREETING, realtime=realtime)
        async with running_gateway(tmp_path, config) as gateway:
            leg, record = await answered_call(gateway, any_carrier)
            assert correlation(decoded(leg.sent, leg.codec), at_8k(GREETING)) > 0.9
            voice = caller_voice()
            answer = "We open at nine."
            gemini.answer_next(answer, after_bytes=len(voice) * 4, heard="When are you open?")
            before_in, before_out = len(gemini.audio), len(leg.sent)
            leg.speak(voice.tobytes())
            await eventually(lambda: sum(1 for t in record.transcript if t.speaker == "bot") == 2, 10)
            line = as_heard_on_the_line(voice, leg.codec).astype("<i2").tobytes()
            sent = np.frombuffer(StreamingResampler(8000, 16000).process(line), "<i2").astype(np.float64)
            received = np.frombuffer(bytes(gemini.audio[before_in:]), "<i2").astype(np.float64)
            start = int(np.argmax(np.abs(received) > 200))  # where the caller's voice begins
            assert correlation(received[max(0, start - 100):], sent) > 0.9
            assert correlation(decoded(leg.sent[before_out:], leg.codec), at_8k(answer)) > 0.9
            assert [(t.speaker, t.text) for t in record.transcript] == [
                ("bot", GREETING), ("user", "When are you open?"), ("bot", answer)]
