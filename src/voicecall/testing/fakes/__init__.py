"""Local stand-ins for third-party services (OpenAI-compatible APIs), loopback only, for tests."""

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
    "FakeOpenAI",
    "LoopbackServer",
    "RecordedRequest",
    "ScriptedReply",
    "ScriptedToolCall",
    "default_reply",
    "openai_error",
]
