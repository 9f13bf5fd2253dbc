"""Local stand-ins for third-party services (OpenAI-compatible APIs, Anthropic's Messages API),
loopback only, for tests."""

from voicecall.testing.fakes.anthropic_server import FakeAnthropic
from voicecall.testing.fakes.openai_server import (
    FakeOpenAI,
    LoopbackServer,
    RecordedRequest,
    ScriptedReply,
    ScriptedToolCall,
    default_reply,
    openai_error,
)

__all__ = [
    "FakeAnthropic",
    "FakeOpenAI",
    "LoopbackServer",
    "RecordedRequest",
    "ScriptedReply",
    "ScriptedToolCall",
    "default_reply",
    "openai_error",
]
