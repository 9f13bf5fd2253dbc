"""`LlmResponder`: an OpenAI-compatible chat-completions API, streamed sentence by sentence.
"""

from __future__ import annotations

import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Mapping,
)
from dataclasses import dataclass, field

import openai
from openai import AsyncOpenAI
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from voicecall.agent.prompt import build_system_prompt
from voicecall.agent.turn import (
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT_S,
    PerLoop,
    ResponderError,
    TurnContext,
    excerpt,
    safe_url,
    seconds,
    sentence_stream,
)

log = logging.getLogger(__name__)


# -- LLM -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProviderInfo:
    """An OpenAI-compatible provider: where it is and which env var holds its API key."""

    name: str
    base_url: str
    key_env: str | None = None
    key_required: bool = True
    placeholder_key: str = "EMPTY"  # sent when no key is needed and none is set


PROVIDERS: Mapping[str, ProviderInfo] = {
    p.name: p for p in (
        ProviderInfo("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        ProviderInfo("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        ProviderInfo("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        ProviderInfo("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
        ProviderInfo("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
        ProviderInfo("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        ProviderInfo("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        ProviderInfo("ollama", "http://127.0.0.1:11434/v1", None, False, "ollama"),
        ProviderInfo("lmstudio", "http://127.0.0.1:1234/v1", None, False, "lm-studio"),
        ProviderInfo("vllm", "http://127.0.0.1:8000/v1", "VLLM_API_KEY", False, "EMPTY"),
    )
}
DEFAULT_PROVIDER = "openai"


@dataclass(frozen=True)
class ResolvedModel:
    """Where one turn's chat completion goes."""

    provider: str
    model: str
    base_url: str
    api_key: str = field(repr=False)
    key_env: str | None = None


def split_model(spec: str) -> tuple[str, str]:
    """`provider/model` split at the first `/`; without one the provider is `openai`."""
    spec = spec.strip()
    if "/" not in spec:
        return DEFAULT_PROVIDER, spec
    provider, _, model = spec.partition("/")
    return provider.strip().lower(), model.strip()


class LlmResponder:
    """Answers with an OpenAI-compatible chat model, streamed sentence by sentence.

    `model` is `provider/model` (`responseModel`; a turn's `ctx.model` overrides it). `base_url`
    (`responder.baseUrl`) overrides the provider's URL; with it, an unknown provider prefix is kept
    as part of the model name (e.g. `meta-llama/Llama-3.1-8B` on a vLLM server). `api_key` overrides
    the provider's key variable in `env`.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, base_url: str | None = None, api_key: str | None = None,
                 env: Mapping[str, str]) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/") if base_url else None
        self._api_key = api_key
        self._env = dict(env)
        self._clients: PerLoop[AsyncOpenAI] = PerLoop()

    def __repr__(self) -> str:
        return f"LlmResponder(model={self.model!r}, base_url={self.base_url!r})"

    def resolve(self, model: str | None = None) -> ResolvedModel:
        """Provider, model name, base URL and key for `model` (default: this responder's model)."""
        spec = (model or self.model or DEFAULT_MODEL).strip()
        provider_name, name = split_model(spec)
        provider = PROVIDERS.get(provider_name)
        if provider is None:
            if self.base_url is None:
                known = ", ".join(PROVIDERS)
                raise ResponderError(
                    f"unknown model provider {provider_name!r} in {spec!r} (known: {known}); "
                    "set responder.baseUrl to use another OpenAI-compatible server")
            return ResolvedModel("custom", spec, self.base_url, self._api_key or "EMPTY")
        if not name:
            raise ResponderError(f"no model name in {spec!r}: expected provider/model, e.g. {DEFAULT_MODEL}")
        base_url = self.base_url
        if base_url is None and provider.name == "openai":
            base_url = (self._env.get("OPENAI_BASE_URL") or "").strip().rstrip("/") or None
        key = self._api_key or (self._env.get(provider.key_env, "").strip() if provider.key_env else "")
        if not key:
            if provider.key_required:
                raise ResponderError(
                    f"no API key for model provider {provider.name!r}: set {provider.key_env}")
            key = provider.placeholder_key
        return ResolvedModel(provider.name, name, base_url or provider.base_url, key, provider.key_env)

    def messages(self, ctx: TurnContext) -> list[ChatCompletionMessageParam]:
        """System prompt (with the transcript and the spoken contract), the session history, the utterance."""
        system = build_system_prompt(ctx.system_prompt, agent_name=ctx.agent_id or "assistant",
                                     caller_number=ctx.remote_number, transcript=ctx.transcript)
        messages: list[ChatCompletionMessageParam] = [
            ChatCompletionSystemMessageParam(role="system", content=system)]
        for item in ctx.history:
            role, content = item.get("role"), item.get("content")
            if not isinstance(content, str) or not content.strip():
                continue
            if role == "assistant":
                messages.append(ChatCompletionAssistantMessageParam(role="assistant", content=content))
            elif role == "user":
                messages.append(ChatCompletionUserMessageParam(role="user", content=content))
        messages.append(ChatCompletionUserMessageParam(role="user", content=ctx.user_text))
        return messages

    async def reply(self, ctx: TurnContext) -> AsyncIterator[str]:
        resolved = self.resolve(ctx.model)
        messages = self.messages(ctx)
        log.debug("call %s: asking %s model %s at %s", ctx.call_id, resolved.provider, resolved.model,
                  safe_url(resolved.base_url))
        async for sentence in sentence_stream(lambda: self._deltas(resolved, messages, ctx.timeout_s),
                                              spoken=True, timeout_s=ctx.timeout_s, what="model"):
            yield sentence

    async def aclose(self) -> None:
        """Close the HTTP clients this responder opened on the running loop."""
        for client in self._clients.take_current():
            await client.close()

    def _client(self, resolved: ResolvedModel) -> AsyncOpenAI:
        return self._clients.get(
            (resolved.base_url, resolved.api_key),
            lambda: AsyncOpenAI(base_url=resolved.base_url, api_key=resolved.api_key, max_retries=0,
                                timeout=DEFAULT_TIMEOUT_S))

    async def _deltas(self, resolved: ResolvedModel, messages: list[ChatCompletionMessageParam],
                      timeout_s: float) -> AsyncGenerator[str, None]:
        client = self._client(resolved)
        where = safe_url(resolved.base_url)
        try:
            stream = await client.chat.completions.create(
                model=resolved.model, messages=messages, stream=True, timeout=timeout_s)
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.index == 0 and choice.delta is not None and choice.delta.content:
                            yield choice.delta.content
        except openai.APIStatusError as exc:
            raise ResponderError(
                f"model error: {exc.status_code} {excerpt(_error_message(exc), resolved.api_key)}") from None
        except openai.APITimeoutError:
            raise ResponderError(f"model timed out after {seconds(timeout_s)}") from None
        except openai.APIConnectionError as exc:
            raise ResponderError(
                f"model unreachable at {where}: {excerpt(str(exc), resolved.api_key)}") from None
        except openai.APIError as exc:  # an error event in the middle of the stream
            raise ResponderError(f"model error: {excerpt(_error_message(exc), resolved.api_key)}") from None


def _error_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return exc.message
