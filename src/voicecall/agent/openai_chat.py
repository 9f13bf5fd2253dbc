"""The OpenAI chat-completions API shape (OpenAI and every OpenAI-compatible provider), streamed,
with function calling."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import openai
from openai import AsyncOpenAI

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
from voicecall.agent.sdk_clients import SdkClients
from voicecall.agent.turn import ResponderError, excerpt, safe_url, seconds


def parse_arguments(raw: str) -> dict[str, Any] | str:
    """The model's argument text as an object; the raw text if it is not a JSON object."""
    if not raw.strip():
        return {}
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        return raw
    return parsed if isinstance(parsed, dict) else raw


def openai_messages(system: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation as chat-completions messages."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for m in messages:
        if isinstance(m, UserMessage):
            out.append({"role": "user", "content": m.text})
        elif isinstance(m, AssistantMessage):
            item: dict[str, Any] = {"role": "assistant", "content": m.text or None}
            if m.tool_calls:
                item["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                    "name": c.name,
                    "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments)}}
                    for c in m.tool_calls]
            out.append(item)
        elif isinstance(m, ToolResultMessage):
            out.append({"role": "tool", "tool_call_id": m.call_id, "content": m.content})
    return out


def openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]


class OpenAIChat:
    """Streams chat completions; one client per base URL, key and event loop."""

    def __init__(self) -> None:
        self._clients = SdkClients(AsyncOpenAI)

    async def aclose(self) -> None:
        await self._clients.aclose()

    async def stream(self, resolved: ResolvedModel, system: str, messages: Sequence[Message],
                     tools: Sequence[ToolSpec], *, allow_tools: bool,
                     timeout_s: float) -> AsyncIterator[ChatEvent]:
        client = self._clients.get(resolved)
        wire: Any = openai_messages(system, messages)
        tool_list: Any = openai_tools(tools) if tools else openai.NOT_GIVEN
        choice: Any = ("auto" if allow_tools else "none") if tools else openai.NOT_GIVEN
        calls: dict[int, dict[str, str]] = {}
        try:
            stream = await client.chat.completions.create(
                model=resolved.model, messages=wire, stream=True, timeout=timeout_s, tools=tool_list,
                tool_choice=choice)
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        delta = choice.delta
                        if choice.index != 0 or delta is None:
                            continue
                        if delta.content:
                            yield TextDelta(delta.content)
                        for part in delta.tool_calls or ():
                            slot = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                            slot["id"] = part.id or slot["id"]
                            if part.function is not None:
                                slot["name"] += part.function.name or ""
                                slot["arguments"] += part.function.arguments or ""
        except openai.APIStatusError as exc:
            raise ResponderError(
                f"model error: {exc.status_code} {excerpt(_error_message(exc), resolved.api_key)}") from None
        except openai.APITimeoutError:
            raise ResponderError(f"model timed out after {seconds(timeout_s)}") from None
        except openai.APIConnectionError as exc:
            raise ResponderError(f"model unreachable at {safe_url(resolved.base_url)}: "
                                 f"{excerpt(str(exc), resolved.api_key)}") from None
        except openai.APIError as exc:  # an error event in the middle of the stream
            raise ResponderError(f"model error: {excerpt(_error_message(exc), resolved.api_key)}") from None
        for index in sorted(calls):
            slot = calls[index]
            if slot["name"]:
                yield ToolCall(slot["id"] or f"call_{index}", slot["name"],
                               parse_arguments(slot["arguments"]))


def _error_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return exc.message
