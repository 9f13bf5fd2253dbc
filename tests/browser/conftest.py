"""Real headless Chromium (Debian's `chromium`) driven by playwright. Playwright's own browser
download cannot run here, so the system browser is launched by path; when it is missing the
tests fail, with the command that installs it (`.ci/run` runs it)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech

CHROMIUM = Path("/usr/bin/chromium")


def chromium_path() -> str:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: run `apt-get install -y chromium` (as .ci/run does)")
    return str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))


async def launch(*extra_args: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async for started in launch():
        yield started


@pytest.fixture
async def speech() -> AsyncIterator[FakeSpeech]:
    """A fake OpenAI-compatible TTS server on loopback."""
    async with FakeSpeech() as fake:
        yield fake


@pytest.fixture
async def stt() -> AsyncIterator[FakeRealtimeTranscription]:
    """A fake realtime transcription server on loopback."""
    async with FakeRealtimeTranscription() as fake:
        yield fake
