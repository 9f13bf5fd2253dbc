"""The OpenAI chat-completions API shape (OpenAI and every OpenAI-compatible provider), streamed,
with function calling."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

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


class _ToolCallSlots:
    """Tool calls assembled from streamed fragments, keyed by their index in the reply."""

    def __init__(self) -> None:
        self._slots: dict[int, dict[str, str]] = {}

    def add(self, part: ChoiceDeltaToolCall) -> None:
        """Merge one fragment: the id when it comes, name and arguments text appended."""
        slot = self._slots.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
        slot["id"] = part.id or slot["id"]
        if part.function is not None:
            slot["name"] += part.function.name or ""
            slot["arguments"] += part.function.arguments or ""

    def calls(self) -> list[ToolCall]:
        """The named calls in reply order (an id made up from the index when none came)."""
        return [ToolCall(slot["id"] or f"call_{index}", slot["name"], parse_arguments(slot["arguments"]))
                for index, slot in sorted(self._slots.items()) if slot["name"]]


def _chunk_texts(chunk: ChatCompletionChunk, calls: _ToolCallSlots) -> list[str]:
    """The first choice's text in one streamed chunk; its tool-call fragments go to `calls`."""
    texts: list[str] = []
    for choice in chunk.choices:
        delta = choice.delta
        if choice.index != 0 or delta is None:
            continue
        if delta.content:
            texts.append(delta.content)
        for part in delta.tool_calls or ():
            calls.add(part)
    return texts


def _responder_error(exc: openai.APIError, resolved: ResolvedModel, timeout_s: float) -> ResponderError:
    """The SDK's failure as the ResponderError a turn reports, without the API key."""
    if isinstance(exc, openai.APIStatusError):
        return ResponderError(
            f"model error: {exc.status_code} {excerpt(_error_message(exc), resolved.api_key)}")
    if isinstance(exc, openai.APITimeoutError):
        return ResponderError(f"model timed out after {seconds(timeout_s)}")
    if isinstance(exc, openai.APIConnectionError):
        return ResponderError(f"model unreachable at {safe_url(resolved.base_url)}: "
                              f"{excerpt(str(exc), resolved.api_key)}")
    # an error event in the middle of the stream
    return ResponderError(f"model error: {excerpt(_error_message(exc), resolved.api_key)}")


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
        calls = _ToolCallSlots()
        try:
            stream = await client.chat.completions.create(
                model=resolved.model, messages=wire, stream=True, timeout=timeout_s, tools=tool_list,
                tool_choice=choice)
            async with stream:
                async for chunk in stream:
                    for text in _chunk_texts(chunk, calls):
                        yield TextDelta(text)
        except openai.APIError as exc:
            raise _responder_error(exc, resolved, timeout_s) from None
        for call in calls.calls():
            yield call


def _error_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return exc.message
