"""`voicecall serve` runs on uvloop: the media-stream endpoint must work on its transports too
(they are not `asyncio.Transport` subclasses). A plain test that drives its own uvloop loop."""

from __future__ import annotations

from pathlib import Path

import uvloop

from tests.helpers import eventually, free_port
from tests.integration.test_media_e2e import (
    CALLEE,
    best_correlation,
    heard_speech,
    place,
    streaming_config,
    telephone_version,
)
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator


def test_a_streamed_notify_call_works_on_uvloop(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with TwilioSimulator() as sim, FakeSpeech() as speech, FakeRealtimeTranscription() as stt, \
                running_gateway(tmp_path, streaming_config(sim, speech, stt, free_port())) as gateway:
            sim.script(CALLEE, Callee(answer_after_s=0.05))
            text = "Your order has shipped."
            record = await place(gateway, text, "notify")
            stream = await sim.call(record.provider_call_id or "").wait_stream(timeout=10)
            await eventually(lambda: record.is_terminal, 15)
            assert record.end_reason == "completed"
            assert best_correlation(heard_speech(stream.received_audio), telephone_version(text)) > 0.95

    uvloop.run(scenario())
