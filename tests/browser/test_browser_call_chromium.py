"""A browser call in real headless Chromium with a fake microphone (a WAV the test writes):
the agent (fake STT, fake model, fake TTS) hears the caller, its reply plays in the page (read
from the page's AnalyserNode and its played-sample count), and barge-in stops playback."""

from __future__ import annotations

import asyncio
import json
import math
import struct
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import launch
from tests.helpers import eventually
from tests.integration.test_browser_call import REPLY, browser_config, tone_frequency
from voicecall.gateway.runtime import Runtime
from voicecall.testing.fakes import FakeOpenAI
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import TwilioSimulator

pytestmark = pytest.mark.slow
TIMEOUT_MS = 15_000


def write_tone(path: Path, seconds: float = 2.0, rate: int = 48_000) -> Path:
    """A 440 Hz tone as 16-bit mono WAV: what the fake microphone says, looped."""
    frames = b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * i / rate)))
                      for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return path


@pytest.fixture
async def mic_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    wav = write_tone(tmp_path / "caller.wav")
    async for browser in launch("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                                f"--use-file-for-fake-audio-capture={wav}",
                                "--autoplay-policy=no-user-gesture-required"):
        yield browser


async def talk_stats(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = await page.evaluate(
        "() => { const t = window.voicecallTalk; return t ? {...t.stats, level: t.level(),"
        " playing: t.playing, callId: t.callId || null} : null }")
    return stats


async def peak_level(page: Page, within_s: float, *, until: Any = None) -> float:
    """The highest output level seen while polling for `within_s` (or until `until()`)."""

    peak, deadline = 0.0, time.monotonic() + within_s
    while time.monotonic() < deadline:
        stats = await talk_stats(page)
        peak = max(peak, stats["level"])
        if until is not None and until(stats):
            break
        await asyncio.sleep(0.02)
    return peak


async def test_talk_to_the_agent_from_chromium_with_barge_in(
        tmp_path: Path, mic_browser: Browser, speech: FakeSpeech,
        stt: FakeRealtimeTranscription) -> None:
    async with TwilioSimulator() as sim, FakeOpenAI() as llm, running_gateway(
            tmp_path, browser_config(sim, speech, stt, llm),
            env={"OPENAI_API_KEY": "sk-test"}) as runtime:
        llm.script(json.dumps({"spoken": REPLY}))
        llm.script(json.dumps({"spoken": "Sure."}), first_token_delay_s=4.0)  # after the checks below
        page = await signed_in_page(runtime, mic_browser)
        await page.click("nav >> text=Talk to the agent")
        await page.click("#start-talk")
        await expect(page.locator("#talk-status")).to_have_text("In a call.", timeout=TIMEOUT_MS)
        call_id = await eventually(lambda: _call_id(page), 10)
        record = runtime.service.live(call_id)
        assert record is not None and (record.direction, record.provider) == ("inbound", "browser")

        # the greeting plays in the page
        greeting_peak = await peak_level(page, 5, until=lambda s: s["samplesPlayed"] > 1600)
        assert greeting_peak > 0.01
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 10)

        # the agent hears the microphone (the fake STT got its audio, and it is the tone)
        await stt.wait_for_audio(8000, within_s=10)
        assert 400 < tone_frequency(stt.audio) < 480  # the microphone's 440 Hz tone, resampled
        stt.say("When are you open?", after_bytes=3200)
        await eventually(lambda: any(t.speaker == "user" for t in record.transcript), 10)
        before = (await talk_stats(page))["samplesPlayed"]
        reply_peak = await peak_level(page, 10, until=lambda s: s["samplesPlayed"] > before + 2400)
        assert reply_peak > 0.01
        assert (await talk_stats(page))["samplesPlayed"] > before + 2400  # 0.3 s of it played

        # barge-in: the caller talks over the reply and the page stops playing it
        stt.say("Stop please", after_bytes=1600, speech_started=True)
        await eventually(lambda: _cleared(page), 10)
        stats = await talk_stats(page)
        assert stats["playing"] is False  # every scheduled buffer was stopped
        received = stats["samplesReceived"]
        await asyncio.sleep(0.1)  # the analyser's window (32 ms) moves past the last audio
        assert await peak_level(page, 0.5) < 0.005  # silence until the (slow) next answer
        assert (await talk_stats(page))["samplesReceived"] - received <= 160
        await eventually(lambda: len([t for t in record.transcript if t.speaker == "bot"]) >= 2, 5)
        played = [t.text for t in record.transcript if t.speaker == "bot"][1]
        assert played and REPLY.startswith(played) and played != REPLY

        await expect(page.locator("#talk-transcript")).to_contain_text("When are you open?",
                                                                        timeout=TIMEOUT_MS)
        await page.click("#hang-up")
        await eventually(lambda: record.is_terminal, 5)
        assert record.end_reason == "hangup-user"
        await page.close()


async def _call_id(page: Page) -> str | None:
    stats = await talk_stats(page)
    return stats["callId"] if stats else None


async def _cleared(page: Page) -> bool:
    return bool((await talk_stats(page))["clears"] >= 1)


async def signed_in_page(runtime: Runtime, browser: Browser) -> Page:
    context = await browser.new_context(permissions=["microphone"])
    page = await context.new_page()
    code = (await runtime.api.call("console.loginCode", {}))["code"]
    await page.goto(f"{runtime.control_url}/login?code={code}")
    await expect(page.locator("h1")).to_have_text("Live calls", timeout=TIMEOUT_MS)
    return page
