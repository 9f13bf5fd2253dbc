"""`LlmResponder`: a chat model answers the turn as an agent with tools, streamed sentence by
sentence (docs/decisions.md D101, D102).

Each round streams the model's text straight into the spoken-output pipeline; when the round ends
with tool calls, the tools run (a filler is said if one is slow), their results go back to the
model, and the next round follows, up to `max_tool_rounds` rounds with tools per turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence

from voicecall.agent.chat import (
    AssistantMessage,
    ChatApi,
    Message,
    TextDelta,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from voicecall.agent.models import (
    PROVIDERS,
    ApiShape,
    ProviderInfo,
    ResolvedModel,
    resolve_model,
    split_model,
)
from voicecall.agent.prompt import build_system_prompt
from voicecall.agent.tools import Toolbox, ToolOutcome, ToolSource
from voicecall.agent.turn import (
    DEFAULT_MODEL,
    Flush,
    ResponderError,
    ResponderUnavailable,
    TurnContext,
    safe_url,
    sentence_stream,
)

log = logging.getLogger(__name__)

__all__ = ["PROVIDERS", "LlmResponder", "ProviderInfo", "ResolvedModel", "split_model"]

DEFAULT_MAX_TOOL_ROUNDS = 4
DEFAULT_TOOL_TIMEOUT_S = 10.0


class LlmResponder:
    """Answers with a chat model (OpenAI-compatible or Anthropic), streamed, with tools.

    `model` is `provider/model` (`responseModel`; a turn's `ctx.model` overrides it). `base_url`
    (`responder.baseUrl`) overrides the provider's URL; `api_key` the provider's key variable in
    `env`. `tools` are the tool sources (built-ins, MCP servers, HTTP tools); `filler` is said while
    a tool call runs longer than `filler_after_s` (0: never).
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, base_url: str | None = None, api_key: str | None = None,
                 env: Mapping[str, str], tools: Sequence[ToolSource] = (),
                 max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
                 tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S, filler: str = "",
                 filler_after_s: float = 0.0) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/") if base_url else None
        self._api_key = api_key
        self._env = dict(env)
        self.toolbox = Toolbox(tools, timeout_s=tool_timeout_s)
        self.max_tool_rounds = max_tool_rounds
        self.filler = filler.strip()
        self.filler_after_s = filler_after_s
        self._apis: dict[ApiShape, ChatApi] = {}
        self._toolless: set[tuple[str, str]] = set()  # (base URL, model) that refused tools

    def __repr__(self) -> str:
        return f"LlmResponder(model={self.model!r}, base_url={self.base_url!r})"

    def resolve(self, model: str | None = None) -> ResolvedModel:
        """Provider, model name, base URL and key for `model` (default: this responder's model)."""
        try:
            return resolve_model(model or self.model, env=self._env, base_url=self.base_url,
                                 api_key=self._api_key)
        except ResponderError as exc:
            raise ResponderUnavailable(str(exc)) from None

    def problem(self, model: str | None = None) -> str | None:
        """Why turns with `model` cannot be answered (a missing key, say); None when they can."""
        try:
            self.resolve(model)
        except ResponderError as exc:
            return str(exc)
        return None

    def system_prompt(self, ctx: TurnContext) -> str:
        return build_system_prompt(ctx.system_prompt, agent_name=ctx.agent_id or "assistant",
                                   caller_number=ctx.remote_number, transcript=ctx.transcript)

    @staticmethod
    def messages(ctx: TurnContext) -> list[Message]:
        """The session history, then the utterance."""
        messages: list[Message] = []
        for item in ctx.history:
            role, content = item.get("role"), item.get("content")
            if not isinstance(content, str) or not content.strip():
                continue
            if role == "assistant":
                messages.append(AssistantMessage(content))
            elif role == "user":
                messages.append(UserMessage(content))
        messages.append(UserMessage(ctx.user_text))
        return messages

    async def reply(self, ctx: TurnContext) -> AsyncIterator[str]:
        resolved = self.resolve(ctx.model)
        log.debug("call %s: asking %s model %s at %s", ctx.call_id, resolved.provider, resolved.model,
                  safe_url(resolved.base_url))
        async for sentence in sentence_stream(lambda: self._rounds(resolved, ctx), spoken=True,
                                              timeout_s=ctx.timeout_s, what="model"):
            yield sentence

    async def aclose(self) -> None:
        """Close the HTTP clients this responder opened on the running loop."""
        for api in self._apis.values():
            await api.aclose()

    def _api(self, shape: ApiShape) -> ChatApi:
        api = self._apis.get(shape)
        if api is None:
            # Imported on first use: each SDK costs a noticeable import time.
            if shape == "anthropic":
                from voicecall.agent.anthropic_chat import AnthropicChat

                api = AnthropicChat()
            else:
                from voicecall.agent.openai_chat import OpenAIChat

                api = OpenAIChat()
            self._apis[shape] = api
        return api

    async def _rounds(self, resolved: ResolvedModel, ctx: TurnContext) -> AsyncGenerator[str | Flush, None]:
        api = self._api(resolved.api)
        system = self.system_prompt(ctx)
        messages = self.messages(ctx)
        specs, owners = self.toolbox.specs(ctx)
        if (resolved.base_url, resolved.model) in self._toolless:
            specs, owners = [], {}
        filler_said = False
        rounds = 0
        while True:
            allow_tools = bool(specs) and rounds < self.max_tool_rounds
            text: list[str] = []
            calls: list[ToolCall] = []
            try:
                async for event in api.stream(resolved, system, messages, specs, allow_tools=allow_tools,
                                              timeout_s=ctx.timeout_s):
                    if isinstance(event, TextDelta):
                        text.append(event.text)
                        yield event.text
                    else:
                        calls.append(event)
            except ResponderError as exc:
                if not (specs and rounds == 0 and not text and _refuses_tools(str(exc))):
                    raise
                log.warning("model %s refused tools (%s); it answers without them from now on",
                            resolved.model, exc)
                self._toolless.add((resolved.base_url, resolved.model))
                specs, owners = [], {}
                continue
            if not calls:
                return
            if not allow_tools:
                log.warning("call %s: the model asked for tools after its %d tool rounds; not run",
                            ctx.call_id, self.max_tool_rounds)
                return
            rounds += 1
            yield Flush()
            messages.append(AssistantMessage("".join(text), tuple(calls)))
            outcomes: list[ToolOutcome] = []
            async for filler in self._run_tools(calls, owners, ctx, outcomes, filler=not filler_said):
                filler_said = True
                yield filler
            messages += [ToolResultMessage(c.id, c.name, o.content, o.is_error)
                         for c, o in zip(calls, outcomes, strict=True)]
            ending = next((o for o in outcomes if o.ends_call or o.ends_turn), None)
            if ending is not None:
                if ending.last_words:
                    yield Flush(ending.last_words)
                return

    async def _run_tools(self, calls: list[ToolCall], owners: dict[str, ToolSource], ctx: TurnContext,
                         outcomes: list[ToolOutcome], *, filler: bool) -> AsyncGenerator[Flush, None]:
        """Run the round's tool calls in order, appending each outcome to `outcomes`; yields the
        filler (once, if `filler`) when a call is still running after `filler_after_s`."""
        for call in calls:
            task = asyncio.ensure_future(self.toolbox.run(call, owners, ctx))
            try:
                if filler and self.filler and self.filler_after_s > 0:
                    done, _ = await asyncio.wait({task}, timeout=self.filler_after_s)
                    if not done:
                        filler = False
                        yield Flush(self.filler)
                outcomes.append(await task)
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})


def _refuses_tools(error: str) -> bool:
    """A 400 saying the model does not do tools (local servers often say so for small models)."""
    lowered = error.lower()
    return "model error: 400" in lowered and "tool" in lowered
