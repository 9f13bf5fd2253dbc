"""The call flows every carrier must run the same way, end to end against each carrier's
simulator over real sockets: a notify call heard once and hung up after playback, a three-turn
conversation via `continue`, busy / no-answer / failed callees, answering machines, and barge-in
on a media stream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import call_ended, eventually, free_port, place_call
from tests.integration import test_media_e2e, test_telnyx_media_e2e
from tests.integration.test_telnyx_e2e import telnyx_config
from tests.integration.test_twilio_e2e import twilio_config
from voicecall.gateway.runtime import Runtime
from voicecall.testing import telnyx, twilio
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway

CALLEE = "+15555550123"


@dataclass(frozen=True)
class Carrier:
    """How a flow test drives one carrier's simulator."""

    name: str
    simulator: Callable[[float, int], Any]
    """A simulator running `time_scale` simulated seconds per second, speaking `ms` per char."""
    config: Callable[..., dict[str, Any]]
    callee: Callable[..., Any]
    machine: dict[str, Any]
    """The callee settings of an answering machine."""
    hangups: Callable[[Any, str], int]
    """How many REST hang-ups the app sent for a call."""
    asked_for_machine_detection: Callable[[Any], bool]
    streaming_config: Callable[[Any, FakeSpeech, FakeRealtimeTranscription, int], dict[str, Any]]
    stream_of: Callable[[Any], Any]
    """The media stream now open on a simulated call (its received audio, marks and clears)."""


def _twilio_hangups(sim: twilio.TwilioSimulator, sid: str) -> int:
    return sum(1 for r in sim.api_requests if sid in r.path and ("Status", "completed") in r.params)


def _telnyx_hangups(sim: telnyx.TelnyxSimulator, pcid: str) -> int:
    return sum(1 for r in sim.api_requests
               if r.path == f"/v2/calls/{pcid}/actions/hangup" and r.status_code == 200)


CARRIERS = {
    "twilio": Carrier(
        "twilio", lambda scale, ms: twilio.TwilioSimulator(time_scale=scale, say_ms_per_char=ms),
        twilio_config, twilio.Callee, {"answered_by": "machine_start"}, _twilio_hangups,
        lambda sim: ("MachineDetection", "Enable") in next(
            r for r in sim.api_requests if r.path.endswith("/Calls.json")).params,
        test_media_e2e.streaming_config, lambda call: call.active_stream),
    "telnyx": Carrier(
        "telnyx", lambda scale, ms: telnyx.TelnyxSimulator(time_scale=scale, speak_ms_per_char=ms),
        telnyx_config, telnyx.Callee, {"machine": True}, _telnyx_hangups,
        lambda sim: next(r for r in sim.api_requests
                         if r.path == "/v2/calls").body.get("answering_machine_detection") == "detect",
        lambda sim, speech, stt, port: test_telnyx_media_e2e.streaming_config(sim, speech, stt, port, "PCMU"),
        lambda call: call.media),
}


@pytest.fixture(params=list(CARRIERS))
def carrier(request: pytest.FixtureRequest) -> Carrier:
    return CARRIERS[request.param]


@contextlib.asynccontextmanager
async def gateway_with(carrier: Carrier, tmp_path: Path, *, scale: float = 0.05, ms: int = 5,
                       **extra: Any) -> AsyncIterator[tuple[Any, Runtime]]:
    async with carrier.simulator(scale, ms) as sim, \
            running_gateway(tmp_path, carrier.config(sim, free_port(), **extra)) as gateway:
        yield sim, gateway


async def test_notify_message_is_heard_exactly_once_then_hung_up_after_playback(
        carrier: Carrier, tmp_path: Path) -> None:
    # Real-time speech (10 ms a character): a hang-up that did not wait for playback would cut it.
    async with gateway_with(carrier, tmp_path, scale=1.0, ms=10) as (sim, gateway):
        sim.script(CALLEE, carrier.callee(answer_after_s=0.1))
        record = await place_call(gateway, CALLEE, "Your order has shipped", "notify")
        final = await call_ended(gateway, record.call_id)
        call = sim.call(record.provider_call_id or "")
        await call.wait_ended()
        assert call.said == ["Your order has shipped"]
        assert final.state.value == final.end_reason == "completed"
        assert [t.text for t in final.transcript] == ["Your order has shipped"]
        assert carrier.hangups(sim, record.provider_call_id or "") == 1


async def test_three_turn_conversation_driven_by_continue(carrier: Carrier, tmp_path: Path) -> None:
    async with gateway_with(carrier, tmp_path) as (sim, gateway):
        sim.script(CALLEE, carrier.callee(replies=["Hi, I'm well", "Tuesday at noon", "No, that's all"],
                                          reply_delay_s=0.2))
        record = await place_call(gateway, CALLEE, "Hello, this is the clinic", "conversation")
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
        answers = [await gateway.api.call("voicecall.continue", {"callId": record.call_id, "message": q})
                   for q in ("How are you?", "When can you come in?", "Anything else?")]
        assert [a["transcript"] for a in answers] == ["Hi, I'm well", "Tuesday at noon", "No, that's all"]
        call = sim.call(record.provider_call_id or "")
        assert call.said == ["Hello, this is the clinic", "How are you?", "When can you come in?",
                             "Anything else?"]
        assert [(t.speaker, t.text) for t in record.transcript][-2:] == [
            ("bot", "Anything else?"), ("user", "No, that's all")]
        assert (await gateway.api.call("voicecall.end", {"callId": record.call_id}))["success"]
        await call.wait_ended()


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
async def test_unanswered_outcomes_map_to_end_reasons(carrier: Carrier, tmp_path: Path,
                                                      outcome: str) -> None:
    async with gateway_with(carrier, tmp_path) as (sim, gateway):
        sim.script(CALLEE, carrier.callee(outcome=outcome, answer_after_s=0.1))
        record = await place_call(gateway, CALLEE, "Hello", "notify")
        final = await call_ended(gateway, record.call_id, within=15)
        assert final.end_reason == outcome and final.answered_at is None
        assert sim.call(record.provider_call_id or "").said == []


async def test_machine_answered_notify_call_ends_as_voicemail_when_detection_is_on(
        carrier: Carrier, tmp_path: Path) -> None:
    outbound = {"notifyHangupDelaySec": 0, "machineDetection": True}
    async with gateway_with(carrier, tmp_path, outbound=outbound) as (sim, gateway):
        sim.script(CALLEE, carrier.callee(answer_after_s=0.1, **carrier.machine))
        record = await place_call(gateway, CALLEE, "This is a reminder about a long thing", "notify")
        final = await call_ended(gateway, record.call_id)
        assert final.end_reason == "voicemail"
        assert carrier.asked_for_machine_detection(sim)
        call = sim.call(record.provider_call_id or "")
        await call.wait_ended()
        assert call.said == [] and carrier.hangups(sim, record.provider_call_id or "") == 1


async def test_barge_in_clears_within_a_frame_and_keeps_only_the_played_words(
        carrier: Carrier, tmp_path: Path, speech: FakeSpeech, stt: FakeRealtimeTranscription) -> None:
    async with carrier.simulator(1.0, 30) as sim, running_gateway(
            tmp_path, carrier.streaming_config(sim, speech, stt, free_port())) as gateway:
        sim.script(CALLEE, carrier.callee(answer_after_s=0.05))
        record = await place_call(gateway, CALLEE, "Hi.", "conversation")
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
        stream = carrier.stream_of(sim.call(record.provider_call_id or ""))
        assert stream is not None
        long_text = ("This is a long announcement with many words in it so that the caller has "
                     "plenty of time to interrupt before it is over and done with")
        # 0.6 s of caller audio after the reply starts, the caller starts talking.
        stt.say("Stop please", after_bytes=8000 * 6 // 10, speech_started=True)
        result = await gateway.api.call("voicecall.speak", {"callId": record.call_id, "message": long_text})
        assert result.get("interrupted") is True
        assert stream.clear_positions, "the gateway never sent clear"
        await eventually(lambda: any(t.speaker == "user" for t in record.transcript), 5)
        after_clear = len(stream.received_audio) - stream.clear_positions[0]
        assert after_clear <= 160, f"{after_clear} bytes of audio after the clear"
        played = [t.text for t in record.transcript if t.speaker == "bot"][-1]
        assert played and played != long_text and long_text.startswith(played)
        assert stream.clear_positions[0] / 8000 < 3.0  # the long text would take ~3 s (TTS caps at 3 s)
