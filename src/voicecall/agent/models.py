"""Which API a `responseModel` goes to: the provider prefix table and its resolution
(docs/decisions.md D102).

`provider/model` is split at the first `/`; the provider names the API shape (OpenAI chat
completions, or Anthropic's native Messages API), the default base URL, and the environment
variables `<PROVIDER>_API_KEY` and `<PROVIDER>_BASE_URL`. No SDK is imported here, so `setup` can
check credentials cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from voicecall.agent.turn import DEFAULT_MODEL, ResponderError

ApiShape = Literal["openai", "anthropic"]
DEFAULT_PROVIDER = "openai"


@dataclass(frozen=True)
class ProviderInfo:
    """A model provider: its API shape, where it is, and which variables hold its key and URL."""

    name: str
    base_url: str
    api: ApiShape = "openai"
    key_required: bool = True
    placeholder_key: str = "EMPTY"  # sent when no key is needed and none is set
    extra_key_envs: tuple[str, ...] = ()

    @property
    def key_env(self) -> str:
        return f"{self.name.upper()}_API_KEY"

    @property
    def base_url_env(self) -> str:
        return f"{self.name.upper()}_BASE_URL"

    @property
    def key_envs(self) -> tuple[str, ...]:
        return (self.key_env, *self.extra_key_envs)


PROVIDERS: Mapping[str, ProviderInfo] = {
    p.name: p for p in (
        ProviderInfo("openai", "https://api.openai.com/v1"),
        ProviderInfo("anthropic", "https://api.anthropic.com", api="anthropic"),
        ProviderInfo("google", "https://generativelanguage.googleapis.com/v1beta/openai",
                     extra_key_envs=("GEMINI_API_KEY",)),
        ProviderInfo("groq", "https://api.groq.com/openai/v1"),
        ProviderInfo("openrouter", "https://openrouter.ai/api/v1"),
        ProviderInfo("mistral", "https://api.mistral.ai/v1"),
        ProviderInfo("xai", "https://api.x.ai/v1"),
        ProviderInfo("deepseek", "https://api.deepseek.com/v1"),
        ProviderInfo("together", "https://api.together.xyz/v1"),
        ProviderInfo("ollama", "http://127.0.0.1:11434/v1", key_required=False, placeholder_key="ollama"),
        ProviderInfo("lmstudio", "http://127.0.0.1:1234/v1", key_required=False, placeholder_key="lm-studio"),
        ProviderInfo("vllm", "http://127.0.0.1:8000/v1", key_required=False),
    )
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where one turn's model request goes."""

    provider: str
    model: str
    base_url: str
    api_key: str = field(repr=False)
    key_env: str | None = None
    api: ApiShape = "openai"


def split_model(spec: str) -> tuple[str, str]:
    """`provider/model` split at the first `/`; without one the provider is `openai`."""
    spec = spec.strip()
    if "/" not in spec:
        return DEFAULT_PROVIDER, spec
    provider, _, model = spec.partition("/")
    return provider.strip().lower(), model.strip()


def resolve_model(spec: str | None, *, env: Mapping[str, str], base_url: str | None = None,
                  api_key: str | None = None) -> ResolvedModel:
    """Provider, model name, base URL and key for `spec`; `ResponderError` names what is missing.

    `base_url` (`responder.baseUrl`) wins over `<PROVIDER>_BASE_URL`, which wins over the
    provider's URL; with `base_url`, an unknown prefix is kept as part of the model name (e.g.
    `meta-llama/Llama-3.1-8B` on a vLLM server). `api_key` wins over `<PROVIDER>_API_KEY`.
    """
    spec = (spec or DEFAULT_MODEL).strip()
    provider_name, name = split_model(spec)
    base = base_url.rstrip("/") if base_url else None
    provider = PROVIDERS.get(provider_name)
    if provider is None:
        if base is None:
            raise ResponderError(
                f"unknown model provider {provider_name!r} in {spec!r} (known: {', '.join(PROVIDERS)}); "
                "set responder.baseUrl to use another OpenAI-compatible server")
        return ResolvedModel("custom", spec, base, api_key or "EMPTY")
    if not name:
        raise ResponderError(f"no model name in {spec!r}: expected provider/model, e.g. {DEFAULT_MODEL}")
    if base is None:
        base = (env.get(provider.base_url_env) or "").strip().rstrip("/") or None
    key = api_key or next((v.strip() for n in provider.key_envs if (v := env.get(n, "")).strip()), "")
    if not key:
        if provider.key_required:
            raise ResponderError(
                f"no API key for model provider {provider.name!r}: set {provider.key_env}")
        key = provider.placeholder_key
    return ResolvedModel(provider.name, name, base or provider.base_url, key, provider.key_env, provider.api)
