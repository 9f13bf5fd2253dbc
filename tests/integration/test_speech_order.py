"""Speech on a call is one ordered queue (docs/decisions.md D21): the opening message first,
then each `continue` in arrival order, whether the `continue` comes before the answer, at the
answer or while the opening message plays. On every carrier path: the mock carrier, Twilio
`<Say>`/`<Gather>` (the Twilio simulator) and a Twilio media stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import eventually, free_port
from tests.integration.test_media_e2e import (
    best_correlation,
    heard_speech,
    streaming_config,
    telephone_version,
)
from voicecall.audio.dtmf import dtmf_pcm
from voicecall.calls.model import CallRecord, CallState
from voicecall.gateway.runtime import Runtime
from voicecall.service.live import LiveCall
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator

OUR_NUMBER = "+15550000000"
CALLEE = "+15555550123"
OPENING = "Hi, this is the clinic calling about your appointment tomorrow."
QUESTION = "How are you?"
REPLY = "I am well, thanks"
MOMENTS = ["before-answer", "at-answer", "during-opening"]
TURN_TIMEOUT_MS = 8_000
"""A `continue` that never hears its answer fails after this long, not 180 s."""


async def converse_at(runtime: Runtime, moment: str, opening_playing: Callable[[CallRecord], bool],
                      **placing: str) -> tuple[CallRecord, Any]:
    """Place a conversation call (with `placing` as extra `initiate` parameters) and send one
    `continue` at `moment`; the call and the `continue` task (not awaited)."""
    service = runtime.service
    asked: asyncio.Future[asyncio.Future[dict[str, Any]]] = (
        asyncio.get_running_loop().create_future())

    def ask(call_id: str) -> asyncio.Future[dict[str, Any]]:
        return asyncio.ensure_future(runtime.api.call(
            "voicecall.continue", {"callId": call_id, "message": QUESTION}))

    if moment == "at-answer":
        answered = service.on_answered

        def on_answered(call: LiveCall) -> None:
            asked.set_result(ask(call.call_id))  # the `continue` arrives first...
            answered(call)  # ...then the service starts the opening message

        service.on_answered = on_answered  # type: ignore[method-assign]
    placed = await runtime.api.call("voicecall.initiate", {
        "to": CALLEE, "message": OPENING, "mode": "conversation", **placing})
    record = service.live(placed["callId"])
    assert record is not None and record.provider_call_id
    if moment == "before-answer":
        assert record.answered_at is None
        asked.set_result(ask(record.call_id))
    elif moment == "during-opening":
        await eventually(lambda: opening_playing(record), 15)
        asked.set_result(ask(record.call_id))
    return record, await asyncio.wait_for(asked, 15)


def bot_then_user(record: CallRecord) -> list[tuple[str, str]]:
    return [(t.speaker, t.text) for t in record.transcript]


EXPECTED = [("bot", OPENING), ("bot", QUESTION), ("user", REPLY)]


# -- mock carrier ---------------------------------------------------------------------------------
def mock_opening_playing(record: CallRecord) -> bool:
    return record.state == CallState.SPEAKING and "initialMessage" in record.metadata


@pytest.mark.parametrize("moment", MOMENTS)
async def test_mock_carrier_speaks_the_opening_message_before_a_continue(
        tmp_path: Path, moment: str) -> None:
    config = {"mock": {"answerAfterMs": 300, "speakMsPerChar": 15, "callerReplies": [REPLY]},
              "transcriptTimeoutMs": TURN_TIMEOUT_MS}
    async with running_gateway(tmp_path, config) as runtime:
        record, asking = await converse_at(runtime, moment, mock_opening_playing)
        answer = await asyncio.wait_for(asking, 20)
        assert answer == {"success": True, "transcript": REPLY}
        heard = runtime.provider.heard(record.provider_call_id or "")  # type: ignore[attr-defined]
        assert heard == [OPENING, QUESTION]
        assert bot_then_user(record) == EXPECTED
        assert "initialMessage" not in record.metadata
        await runtime.api.call("voicecall.end", {"callId": record.call_id})


# -- Twilio <Say>/<Gather> --------------------------------------------------------------------------
@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    # Real time and 20 ms a character: the opening message takes 1.3 s, long enough to talk over.
    async with TwilioSimulator(time_scale=1.0, say_ms_per_char=20) as simulator:
        yield simulator


def twilio_config(sim: TwilioSimulator, port: int) -> dict[str, Any]:
    return {
        "provider": "twilio", "fromNumber": OUR_NUMBER,
        "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                   "apiBaseUrl": sim.base_url},
        "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
        "outbound": {"notifyHangupDelaySec": 0}, "maxConcurrentCalls": 5,
        "transcriptTimeoutMs": TURN_TIMEOUT_MS,
    }


@pytest.mark.parametrize("moment", MOMENTS)
async def test_twilio_say_speaks_the_opening_message_before_a_continue(
        tmp_path: Path, sim: TwilioSimulator, moment: str) -> None:
    sim.script(CALLEE, Callee(answer_after_s=0.3, replies=[REPLY], reply_delay_s=0.1))
    async with running_gateway(tmp_path, twilio_config(sim, free_port())) as runtime:

        def opening_playing(record: CallRecord) -> bool:
            call = sim.calls.get(record.provider_call_id or "")
            return call is not None and not call.said and any(
                OPENING in doc.text for doc in call.documents)

        record, asking = await converse_at(runtime, moment, opening_playing)
        answer = await asyncio.wait_for(asking, 20)
        assert answer == {"success": True, "transcript": REPLY}
        call = sim.call(record.provider_call_id or "")
        assert call.said == [OPENING, QUESTION]
        assert call.interrupted == []  # nothing was cut off by a later update
        assert bot_then_user(record) == EXPECTED
        await runtime.api.call("voicecall.end", {"callId": record.call_id})
        await call.wait_ended()


# -- Twilio media stream ----------------------------------------------------------------------------
def skip_silence(pcm: np.ndarray) -> np.ndarray:
    """`pcm` from its first audible sample on."""
    return pcm[int(np.argmax(np.abs(pcm) > 100)):]


@pytest.mark.parametrize("moment", MOMENTS)
async def test_media_stream_speaks_the_opening_message_before_a_continue(
        tmp_path: Path, speech: FakeSpeech, stt: FakeRealtimeTranscription, moment: str) -> None:
    async with TwilioSimulator() as sim:
        sim.script(CALLEE, Callee(answer_after_s=0.3))
        config = streaming_config(sim, speech, stt, free_port(),
                                  transcriptTimeoutMs=TURN_TIMEOUT_MS)
        async with running_gateway(tmp_path, config) as runtime:

            def opening_playing(record: CallRecord) -> bool:
                call = sim.calls.get(record.provider_call_id or "")
                stream = call.active_stream if call is not None else None
                return stream is not None and len(heard_speech(stream.received_audio)) > 800

            record, asking = await converse_at(runtime, moment, opening_playing)
            # The caller answers once the question has been put to them.
            await eventually(lambda: ("bot", QUESTION) in bot_then_user(record), 15)
            stt.say(REPLY, after_bytes=1600)
            answer = await asyncio.wait_for(asking, 20)
            assert answer == {"success": True, "transcript": REPLY}
            assert bot_then_user(record) == EXPECTED
            stream = sim.call(record.provider_call_id or "").active_stream
            assert stream is not None and stream.clear_positions == []
            heard = heard_speech(stream.received_audio)
            opening = telephone_version(OPENING)
            assert best_correlation(heard[:len(opening)], opening) > 0.95  # heard first, whole
            question = telephone_version(QUESTION)
            rest = skip_silence(heard[len(opening):])  # past any silence between the two
            assert best_correlation(rest, question) > 0.95  # then the question
            said = [r.body["input"] for r in speech.requests_for("openai")]
            assert [text for text in said if text in (OPENING, QUESTION)] == [OPENING, QUESTION]
            await runtime.api.call("voicecall.end", {"callId": record.call_id})


async def test_media_stream_sends_the_keys_then_the_opening_message_then_an_early_continue(
        tmp_path: Path, speech: FakeSpeech, stt: FakeRealtimeTranscription) -> None:
    async with TwilioSimulator() as sim:
        sim.script(CALLEE, Callee(answer_after_s=0.3))
        config = streaming_config(sim, speech, stt, free_port(),
                                  transcriptTimeoutMs=TURN_TIMEOUT_MS)
        async with running_gateway(tmp_path, config) as runtime:
            record, asking = await converse_at(runtime, "before-answer", lambda r: False,
                                               dtmfSequence="5")
            await eventually(lambda: ("bot", QUESTION) in bot_then_user(record), 15)
            stt.say(REPLY, after_bytes=1600)
            answer = await asyncio.wait_for(asking, 20)
            assert answer == {"success": True, "transcript": REPLY}
            assert bot_then_user(record) == EXPECTED
            assert record.metadata.get("dtmfSequenceSent") is True
            stream = sim.call(record.provider_call_id or "").active_stream
            assert stream is not None
            heard = heard_speech(stream.received_audio)
            keys = np.frombuffer(dtmf_pcm("5"), dtype="<i2").astype(np.float64)
            assert best_correlation(heard[:len(keys)], keys) > 0.9  # the keys come first
            opening = telephone_version(OPENING)
            rest = skip_silence(heard[len(keys):])
            assert best_correlation(rest[:len(opening)], opening) > 0.95  # then the opening
            assert best_correlation(skip_silence(rest[len(opening):]),
                                    telephone_version(QUESTION)) > 0.95  # then the question
            await runtime.api.call("voicecall.end", {"callId": record.call_id})
