"""Fakes of third-party speech APIs shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech


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
