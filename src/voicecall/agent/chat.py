"""A model conversation in a shape neither API owns, and what a streamed model round yields.

Each API adapter (`openai_chat`, `anthropic_chat`) turns these messages and tool specs into its
own request, and its stream into `TextDelta`s followed by the round's complete `ToolCall`s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from voicecall.agent.models import ResolvedModel


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: its name, what it does, and its arguments' JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class TextDelta:
    """A piece of the model's text, as it streams."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """A complete tool call of the model (`arguments` is the parsed object, or the raw text when
    it is not valid JSON, so the tool can say so)."""

    id: str
    name: str
    arguments: dict[str, Any] | str


ChatEvent = TextDelta | ToolCall


@dataclass(frozen=True)
class UserMessage:
    text: str


@dataclass(frozen=True)
class AssistantMessage:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class ToolResultMessage:
    call_id: str
    name: str
    content: str
    is_error: bool = False


Message = UserMessage | AssistantMessage | ToolResultMessage


class ChatApi(Protocol):
    """One API shape: streams a model round."""

    def stream(self, resolved: ResolvedModel, system: str, messages: Sequence[Message],
               tools: Sequence[ToolSpec], *, allow_tools: bool, timeout_s: float) -> AsyncIterator[ChatEvent]:
        """Text deltas as they come, then the round's tool calls; `ResponderError` on failure."""
        ...

    async def aclose(self) -> None: ...
