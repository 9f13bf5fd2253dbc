"""How the realtime provider clients read their providers' messages (docs/decisions.md D120,
D121): audio per answer, voice activity, transcripts, function calls."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from voicecall.audio.g711 import ulaw_encode
from voicecall.speech.realtime.base import RealtimeEvents, RealtimeSetup
from voicecall.speech.realtime.google import GeminiLive, GeminiSettings
from voicecall.speech.realtime.openai import OpenAIRealtime
from voicecall.testing.fakes.realtime import FakeOpenAIRealtime


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def events(self) -> RealtimeEvents:
        def note(name: str) -> Any:
            return lambda *args: self.seen.append((name, *args))
        return RealtimeEvents(on_audio=note("audio"), on_audio_done=note("done"),
                              on_speech_started=note("started"), on_speech_stopped=note("stopped"),
                              on_user_transcript=note("user"), on_model_transcript=note("model"),
                              on_function_call=note("call"), on_closed=note("closed"))


def test_openai_messages_become_events_with_the_answer_decoded_to_pcm() -> None:
    rec = Recorder()
    model = OpenAIRealtime(RealtimeSetup("x"), rec.events(), api_key="k")
    pcm = (np.sin(np.arange(160) / 5) * 8000).astype("<i2")
    delta = base64.b64encode(ulaw_encode(pcm)).decode()
    for message in [
        {"type": "input_audio_buffer.speech_started"},
        {"type": "input_audio_buffer.speech_stopped"},
        {"type": "conversation.item.input_audio_transcription.completed", "transcript": " Hi there "},
        {"type": "response.audio.delta", "item_id": "it1", "delta": delta},
        {"type": "response.audio.done", "item_id": "it1"},
        {"type": "response.audio_transcript.done", "item_id": "it1", "transcript": "Hello."},
        {"type": "response.output_item.done", "item": {"type": "function_call", "call_id": "c1",
                                                        "name": "end_call", "arguments": "{}"}},
        {"type": "response.output_item.done", "item": {"type": "message"}},
    ]:
        model._handle(message)
    names = [s[0] for s in rec.seen]
    assert names == ["started", "stopped", "user", "audio", "done", "model", "call"]
    _, item, rate, audio = rec.seen[3]
    assert (item, rate, len(audio)) == ("it1", 8000, 320)
    assert np.corrcoef(np.frombuffer(audio, "<i2"), pcm)[0, 1] > 0.99
    assert rec.seen[2] == ("user", "Hi there") and rec.seen[6] == ("call", "c1", "end_call", "{}")


def test_openai_caller_audio_goes_out_two_frames_per_message_and_truncation_names_the_offset() -> None:
    model = OpenAIRealtime(RealtimeSetup("x"), RealtimeEvents(), api_key="k")
    sent: list[dict[str, Any]] = []
    model.socket.send = sent.append  # type: ignore[method-assign]
    for _ in range(3):
        model.send_audio(b"\x7f" * 160)
    assert len(sent) == 1 and len(base64.b64decode(sent[0]["audio"])) == 320
    model.truncate("it1", 1234)
    assert sent[-1] == {"type": "conversation.item.truncate", "item_id": "it1", "content_index": 0,
                        "audio_end_ms": 1234}


def test_gemini_turns_become_answers_and_the_first_caller_words_barge_in() -> None:
    rec = Recorder()
    model = GeminiLive(RealtimeSetup("x"), rec.events(), GeminiSettings(api_key="k"))
    audio = base64.b64encode(b"\x01\x00" * 480).decode()
    for message in [
        {"serverContent": {"inputTranscription": {"text": "When are"}}},
        {"serverContent": {"inputTranscription": {"text": " you open?"}}},
        {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000",
                                                                     "data": audio}}]}}},
        {"serverContent": {"outputTranscription": {"text": "At nine."}}},
        {"toolCall": {"functionCalls": [{"id": "f1", "name": "call_info", "args": {"a": 1}}]}},
        {"serverContent": {"turnComplete": True}},
        {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}},
    ]:
        model._handle(message)
    assert rec.seen[0] == ("started",)
    assert rec.seen[1] == ("user", "When are you open?")
    assert rec.seen[2][:3] == ("audio", "turn-1", 24000)
    assert rec.seen[3] == ("call", "f1", "call_info", json.dumps({"a": 1}))
    assert rec.seen[4:] == [("done", "turn-1"), ("model", "turn-1", "At nine.")]
    assert model.resumption_handle == "h1"


async def test_the_model_socket_offers_no_compression_and_a_load_test_fake_only_counts_audio() -> None:
    async with FakeOpenAIRealtime(api_key="k", keep_audio=False) as fake:
        model = OpenAIRealtime(RealtimeSetup("x"), RealtimeEvents(), api_key="k", base_url=fake.base_url)
        await model.connect()
        for size in (160, 160, 161, 161):  # two messages: 320 bytes, then 322 (odd base64 padding)
            model.send_audio(bytes(size))
        await fake.wait_until(lambda: fake.audio_bytes >= 642)
        assert "sec-websocket-extensions" not in fake.request_headers[0]
        assert fake.audio_bytes == 642 and fake.audio == bytearray()
        assert [e["type"] for e in fake.events] == ["session.update"]
        await model.close()
