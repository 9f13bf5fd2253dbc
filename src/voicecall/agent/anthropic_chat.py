"""Anthropic's native Messages API, streamed, with tool use (the official `anthropic` SDK)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anthropic
from anthropic import AsyncAnthropic, types

from voicecall.agent.chat import (
    AssistantMessage,
    ChatEvent,
    Message,
    TextDelta,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    UserMessage,
)
from voicecall.agent.models import ResolvedModel
from voicecall.agent.openai_chat import parse_arguments
from voicecall.agent.sdk_clients import SdkClients
from voicecall.agent.turn import ResponderError, excerpt, safe_url, seconds

MAX_TOKENS = 1024  # a spoken turn is a few sentences; the API requires a limit


def anthropic_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation as Messages-API turns, strictly alternating and starting with the user:
    tool calls are `tool_use` blocks of the assistant, their results `tool_result` blocks of the
    next user turn; consecutive messages of one role (a remembered question that got no answer)
    share a turn."""
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks or (role == "assistant" and not out):
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for m in messages:
        if isinstance(m, UserMessage):
            add("user", [{"type": "text", "text": m.text}])
        elif isinstance(m, AssistantMessage):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m.text}] if m.text else []
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name,
                        "input": c.arguments if isinstance(c.arguments, dict) else {}} for c in m.tool_calls]
            add("assistant", blocks)
        elif isinstance(m, ToolResultMessage):
            add("user", [{"type": "tool_result", "tool_use_id": m.call_id, "content": m.content,
                          "is_error": m.is_error}])
    return out


def anthropic_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]


class AnthropicChat:
    """Streams Messages-API replies; one client per base URL, key and event loop."""

    def __init__(self) -> None:
        self._clients = SdkClients(AsyncAnthropic)

    async def aclose(self) -> None:
        await self._clients.aclose()

    async def stream(self, resolved: ResolvedModel, system: str, messages: Sequence[Message],
                     tools: Sequence[ToolSpec], *, allow_tools: bool,
                     timeout_s: float) -> AsyncIterator[ChatEvent]:
        client = self._clients.get(resolved)
        wire: Any = anthropic_messages(messages)
        tool_list: Any = anthropic_tools(tools) if tools else anthropic.NOT_GIVEN
        choice: Any = {"type": "auto" if allow_tools else "none"} if tools else anthropic.NOT_GIVEN
        uses: dict[int, dict[str, str]] = {}
        try:
            stream = await client.messages.create(
                model=resolved.model, system=system, messages=wire, max_tokens=MAX_TOKENS, stream=True,
                timeout=timeout_s, tools=tool_list, tool_choice=choice)
            async with stream:
                async for event in stream:
                    if isinstance(event, types.RawContentBlockStartEvent):
                        block = event.content_block
                        if isinstance(block, types.ToolUseBlock):
                            uses[event.index] = {"id": block.id, "name": block.name, "json": ""}
                    elif isinstance(event, types.RawContentBlockDeltaEvent):
                        delta = event.delta
                        if isinstance(delta, types.TextDelta) and delta.text:
                            yield TextDelta(delta.text)
                        elif isinstance(delta, types.InputJSONDelta) and event.index in uses:
                            uses[event.index]["json"] += delta.partial_json
        except anthropic.APIStatusError as exc:
            raise ResponderError(
                f"model error: {exc.status_code} {excerpt(_error_message(exc), resolved.api_key)}") from None
        except anthropic.APITimeoutError:
            raise ResponderError(f"model timed out after {seconds(timeout_s)}") from None
        except anthropic.APIConnectionError as exc:
            raise ResponderError(f"model unreachable at {safe_url(resolved.base_url)}: "
                                 f"{excerpt(str(exc), resolved.api_key)}") from None
        except anthropic.APIError as exc:  # an `error` event in the middle of the stream
            raise ResponderError(f"model error: {excerpt(_error_message(exc), resolved.api_key)}") from None
        for index in sorted(uses):
            use = uses[index]
            yield ToolCall(use["id"], use["name"], parse_arguments(use["json"]))


def _error_message(exc: anthropic.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return exc.message or json.dumps(body)[:200]
