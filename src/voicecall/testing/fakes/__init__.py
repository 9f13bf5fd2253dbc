"""Local stand-ins for third-party services (OpenAI-compatible APIs, Anthropic's Messages API,
the realtime voice models), loopback only, for tests."""

from voicecall.testing.fakes.anthropic_server import FakeAnthropic
from voicecall.testing.fakes.gemini_live import FakeGeminiLive
from voicecall.testing.fakes.openai_server import (
    FakeOpenAI,
    LoopbackServer,
    RecordedRequest,
    ScriptedReply,
    ScriptedToolCall,
    default_reply,
    openai_error,
)
from voicecall.testing.fakes.realtime import FakeOpenAIRealtime, ModelAnswer, model_audio

__all__ = [
    "FakeAnthropic",
    "FakeGeminiLive",
    "FakeOpenAI",
    "FakeOpenAIRealtime",
    "LoopbackServer",
    "ModelAnswer",
    "RecordedRequest",
    "ScriptedReply",
    "ScriptedToolCall",
    "default_reply",
    "model_audio",
    "openai_error",
]
