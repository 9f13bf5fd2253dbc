"""Stream playback: pacing hooks, marks, barge-in, failures; and the Twilio stream serializer."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest

from voicecall.audio.g711 import ULAW_SILENCE, ulaw_decode
from voicecall.media import playback as playback_module
from voicecall.media.cache import CachedSpeech
from voicecall.media.playback import PlaybackError, StreamPlayback, split_sentences
from voicecall.providers.streams import (
    StreamAudio,
    StreamDtmf,
    StreamMark,
    StreamStart,
    StreamStop,
    played_prefix,
)
from voicecall.providers.twilio.stream import TwilioStreamSerializer

RATE = 24000


def tone(seconds: float, rate: int = RATE) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


class FakeSpeech:
    """Yields `seconds` of tone per sentence in 20 ms chunks; `gate` holds the first chunk back."""

    def __init__(self, seconds: float = 0.2, *, fail: str | None = None) -> None:
        self.seconds = seconds
        self.fail = fail
        self.requests: list[str] = []
        self.gate: asyncio.Event | None = None

    async def stream(self, text: str) -> AsyncIterator[tuple[int, bytes]]:
        self.requests.append(text)
        if self.fail and self.fail in text:
            raise RuntimeError("tts exploded")
        if self.gate is not None:
            await self.gate.wait()
        pcm = tone(self.seconds)
        step = RATE * 2 // 50
        for i in range(0, len(pcm), step):
            yield RATE, pcm[i:i + step]
            await asyncio.sleep(0)


class Wire:
    """What the playback sent, decoded."""

    def __init__(self) -> None:
        self.messages: list[dict[str, object]] = []

    def send(self, text: str) -> bool:
        self.messages.append(json.loads(text))
        return True

    def events(self) -> list[str]:
        return [str(m["event"]) for m in self.messages]

    def audio(self) -> bytes:
        return b"".join(base64.b64decode(str(m["media"]["payload"]))  # type: ignore[index]
                        for m in self.messages if m["event"] == "media")


def make(speech: FakeSpeech) -> tuple[StreamPlayback, Wire]:
    wire = Wire()
    return StreamPlayback(stream_id="MZ1", serializer=TwilioStreamSerializer(), speech=speech,
                          send=wire.send), wire


async def drain(playback: StreamPlayback, ticks: int = 200) -> None:
    """Run pacer ticks by hand until nothing is left to send."""
    for _ in range(ticks):
        await asyncio.sleep(0)
        frame = playback.next_frame()
        if frame is None:
            return
        playback.send_frame(frame)


async def test_first_audio_frame_goes_out_when_it_exists_not_at_the_next_tick() -> None:
    speech = FakeSpeech()
    speech.gate = asyncio.Event()
    playback, wire = make(speech)
    utt = playback.play("Hello there.")
    # Synthesis pending: ticks send keep-alive silence.
    frame = playback.next_frame()
    assert frame is not None
    playback.send_frame(frame)
    assert wire.audio() == ULAW_SILENCE * 160
    speech.gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert utt.first_frame_at is not None, "first frame waited for a tick"
    assert wire.audio()[160:] != ULAW_SILENCE * (len(wire.audio()) - 160)


class StallingSpeech:
    """0.1 s of audio, then nothing until `more` is set, then 0.1 s more."""

    def __init__(self) -> None:
        self.more = asyncio.Event()

    async def stream(self, text: str) -> AsyncIterator[tuple[int, bytes]]:
        yield RATE, tone(0.1)
        await self.more.wait()
        yield RATE, tone(0.1)


async def test_silence_inside_an_utterance_counts_as_an_underrun_and_silence_before_it_does_not(
        ) -> None:
    speech = StallingSpeech()
    wire = Wire()
    playback = StreamPlayback(stream_id="MZ1", serializer=TwilioStreamSerializer(), speech=speech,
                              send=wire.send)
    utt = playback.play("Hello.")
    playback.send_frame(playback.next_frame() or "")  # before any audio: waiting, not an underrun
    assert (playback.silence_sent, playback.underrun_frames) == (1, 0)
    for _ in range(20):
        await asyncio.sleep(0)
    assert utt.first_frame_at is not None
    for _ in range(10):  # plays what came (five frames at most), then starves
        playback.send_frame(playback.next_frame() or "")
    assert playback.underrun_frames >= 5
    assert playback.silence_sent == 1 + playback.underrun_frames
    speech.more.set()
    await drain(playback)
    assert wire.events()[-1] == "mark"


async def test_result_resolves_only_when_the_mark_comes_back() -> None:
    playback, wire = make(FakeSpeech(0.1))
    utt = playback.play("Short.")
    await drain(playback)
    assert wire.events()[-1] == "mark"
    assert not utt.result.done()
    playback.on_mark(str(wire.messages[-1]["mark"]["name"]))  # type: ignore[index]
    result = await asyncio.wait_for(utt.result, 1)
    assert result.played_text == "Short." and not result.interrupted
    # 0.1 s at 8 kHz is five 20 ms frames; keep-alive silence went out while it was synthesized.
    assert utt.frames_made == 5 and utt.frames_sent == 5
    assert wire.events().count("media") == 5 + playback.silence_sent
    assert len(ulaw_decode(wire.audio())) == 160 * (5 + playback.silence_sent)


async def test_barge_in_keeps_the_played_part_and_skips_queued_utterances() -> None:
    playback, wire = make(FakeSpeech(1.0))
    first = playback.play("one two three four five six seven eight nine ten")
    second = playback.play("Never heard.")
    for _ in range(30):  # let synthesis run ahead, then play about a quarter
        await asyncio.sleep(0)
    for _ in range(12):
        frame = playback.next_frame()
        assert frame is not None
        playback.send_frame(frame)
    assert playback.clear()
    assert wire.events()[-1] == "clear"
    one, two = await asyncio.wait_for(asyncio.gather(first.result, second.result), 1)
    assert one.interrupted and one.played_text and "ten" not in one.played_text
    assert two.skipped and two.played_text == ""
    assert playback.next_frame() is None  # nothing more goes out after the clear


async def test_failed_synthesis_fails_that_utterance_and_the_next_one_plays() -> None:
    playback, wire = make(FakeSpeech(0.1, fail="broken"))
    bad = playback.play("This is broken.")
    good = playback.play("Fine.")
    with pytest.raises(PlaybackError, match="tts exploded"):
        await asyncio.wait_for(bad.result, 1)
    await drain(playback)
    playback.on_mark(str(wire.messages[-1]["mark"]["name"]))  # type: ignore[index]
    assert (await asyncio.wait_for(good.result, 1)).played_text == "Fine."


async def test_a_mark_that_never_comes_back_fails_the_utterance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(playback_module, "MARK_GRACE_S", 0.05)
    playback, _wire = make(FakeSpeech(0.05))
    utt = playback.play("Lost.")
    await drain(playback)
    with pytest.raises(PlaybackError, match="completion mark not delivered"):
        await asyncio.wait_for(utt.result, 1)


async def test_a_carrier_that_drops_awaited_marks_on_clear_ends_them_as_interrupted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(playback_module, "MARK_GRACE_S", 5.0)
    playback, wire = make(FakeSpeech(0.05))
    sent = playback.play("All sent.")
    await drain(playback)
    assert wire.events()[-1] == "mark"  # all its audio is out; its mark is awaited
    assert playback.clear()
    playback.on_cleared()  # e.g. Plivo's clearedAudio: that mark will never come back
    result = await asyncio.wait_for(sent.result, 0.5)  # not after the 5 s mark grace
    assert result.interrupted and result.played_text == "All sent."


async def test_closing_the_stream_fails_everything_pending() -> None:
    playback, _wire = make(FakeSpeech(1.0))
    a, b = playback.play("A."), playback.play("B.")
    playback.close()
    for utt in (a, b):
        with pytest.raises(PlaybackError):
            await asyncio.wait_for(utt.result, 1)
    with pytest.raises(PlaybackError):
        playback.play("C.")


async def test_next_utterance_is_synthesized_while_the_current_one_plays() -> None:
    speech = FakeSpeech(0.5)
    playback, _wire = make(speech)
    playback.play("First.")
    playback.play("Second.")
    for _ in range(60):
        await asyncio.sleep(0)
    assert speech.requests == ["First.", "Second."]


async def test_cached_phrases_are_synthesized_once() -> None:
    speech = FakeSpeech(0.1)
    cache = CachedSpeech(speech)
    assert await cache.warm(["Hello! How are you?"]) == 2
    assert sorted(speech.requests) == ["Hello!", "How are you?"]
    chunks = [c async for c in cache.stream("Hello!")]
    assert len(chunks) == 1 and chunks[0][0] == RATE and cache.hits == 1
    assert sorted(speech.requests) == ["Hello!", "How are you?"]


def test_played_prefix_and_sentence_split() -> None:
    assert played_prefix("one two three four", 0.5) == "one two"
    assert played_prefix("one two", 1.0) == "one two"
    assert played_prefix("one two", 0.0) == ""
    assert split_sentences("Hi. How are you? Fine") == ["Hi.", "How are you?", "Fine"]


# -- Twilio wire format ------------------------------------------------------------------------
SER = TwilioStreamSerializer()


def test_media_frames_take_the_fast_path_and_decode() -> None:
    payload = base64.b64encode(bytes(range(160))).decode()
    msg = json.dumps({"event": "media", "sequenceNumber": "3",
                      "media": {"track": "inbound", "chunk": "2", "timestamp": "40", "payload": payload},
                      "streamSid": "MZ1"}, separators=(",", ":"))
    assert SER.parse(msg) == StreamAudio(bytes(range(160)))
    spaced = json.dumps({"event": "media", "media": {"payload": payload}})  # slow path
    assert SER.parse(spaced) == StreamAudio(bytes(range(160)))


@pytest.mark.parametrize("bad", ["not json", "[1,2]", '{"event":"media","media":{"payload":"***"}}',
                                 '{"event":"media","media":{}}', '{"event":"media","payload":"abc'])
def test_malformed_messages_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        SER.parse(bad)


def test_control_events_parse() -> None:
    start = SER.parse(json.dumps({"event": "start", "streamSid": "MZ9", "start": {
        "streamSid": "MZ9", "callSid": "CA1", "accountSid": "AC1", "tracks": ["inbound"],
        "customParameters": {"token": "tok"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
    assert start == StreamStart(call_sid="CA1", stream_id="MZ9", token="tok",
                                custom_parameters={"token": "tok"})
    assert SER.parse('{"event":"mark","mark":{"name":"tts-1"}}') == StreamMark("tts-1")
    assert SER.parse('{"event":"dtmf","dtmf":{"digit":"5"}}') == StreamDtmf("5")
    assert SER.parse('{"event":"stop"}') == StreamStop()
    assert SER.parse('{"event":"connected","protocol":"Call"}') is None


def test_outbound_messages_are_twilio_json() -> None:
    media = json.loads(SER.audio('MZ"1', b"\x00\xff"))
    assert media == {"event": "media", "streamSid": 'MZ"1', "media": {"payload": "AP8="}}
    assert json.loads(SER.mark("MZ1", "tts-1")) == {"event": "mark", "streamSid": "MZ1",
                                                    "mark": {"name": "tts-1"}}
    assert json.loads(SER.clear("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


class BurstThenPause:
    """0.96 s of audio in 20 ms chunks at once (less than the read-ahead cap), a long pause, the rest."""

    def __init__(self) -> None:
        self.resume = asyncio.Event()

    async def stream(self, text: str) -> AsyncIterator[tuple[int, bytes]]:
        pcm = tone(0.96)
        step = RATE * 2 // 50
        for i in range(0, len(pcm), step):
            yield RATE, pcm[i:i + step]
        await self.resume.wait()
        yield RATE, tone(0.1)


BATCH_FRAMES = int(playback_module.BATCH_S / 0.02)


async def test_audio_held_for_a_batch_is_converted_before_the_queue_runs_low() -> None:
    assert playback_module.READ_AHEAD_FRAMES > 48  # the burst must not hit the cap
    speech = BurstThenPause()
    wire = Wire()
    playback = StreamPlayback(stream_id="MZ1", serializer=TwilioStreamSerializer(),
                              speech=speech, send=wire.send)
    utt = playback.play("Hello.")
    for _ in range(100):
        await asyncio.sleep(0)
    # 48 frames of audio arrived: ~16 converted one by one, then a half-second batch; the tail
    # (less than a batch) waits.
    before = utt.frames_made
    assert before <= playback_module.EAGER_AHEAD_FRAMES + BATCH_FRAMES + 3, before
    await asyncio.sleep(1.2)  # the TTS stream is paused; the batch timer must not wait for it
    # the tail was converted (all but the resampler's filter delay, flushed at the end)
    assert utt.frames_made >= before + 3 and utt.frames_made >= 43, (before, utt.frames_made)
    speech.resume.set()
    for _ in range(50):
        await asyncio.sleep(0)
    assert utt.done_synth


async def test_synthesis_stops_a_second_ahead_of_playback_and_resumes_as_it_plays() -> None:
    cap, resume = playback_module.READ_AHEAD_FRAMES, playback_module.RESUME_AHEAD_FRAMES
    playback, _wire = make(FakeSpeech(10.0))
    utt = playback.play("A very long answer.")
    for _ in range(600):
        await asyncio.sleep(0)
    held = utt.frames_made
    assert cap <= held <= cap + BATCH_FRAMES + 1, held  # 1 s queued (+ at most one batch)
    while len(utt.frames) > resume + 5:  # not yet down to the resume mark: still paused
        playback.send_frame(playback.next_frame() or "")
    for _ in range(200):
        await asyncio.sleep(0)
    assert utt.frames_made == held
    for _ in range(10):  # now below it
        playback.send_frame(playback.next_frame() or "")
    for _ in range(600):
        await asyncio.sleep(0)
    assert utt.frames_made > held  # reading resumed once playback caught up
    assert len(utt.frames) <= cap + BATCH_FRAMES + 1


async def test_a_stream_session_hands_a_cleared_message_to_its_playback() -> None:
    from typing import Any

    from voicecall.media.session import StreamSession
    from voicecall.providers.plivo.stream import PlivoStreamSerializer
    from voicecall.providers.streams import StreamCleared

    wire = Wire()

    class Connection:
        client_ip = "127.0.0.1"

        def send_text(self, text: str) -> bool:
            return wire.send(text)

        def close(self, code: int, reason: str) -> None:
            pass

    owner: Any = object()
    session = StreamSession(call_id="c1", start=StreamStart(call_sid="u1", stream_id="s1"),
                            connection=Connection(), serializer=PlivoStreamSerializer(),
                            speech=FakeSpeech(0.05), owner=owner)
    sent = session.playback.play("Out already.")
    await drain(session.playback)
    assert wire.events()[-1] == "checkpoint"
    session.handle(StreamCleared())
    assert (await asyncio.wait_for(sent.result, 0.5)).interrupted
