"""Who writes the bot's side of a conversation turn: an LLM, the user's HTTP endpoint, or Python code.

Every responder turns one caller utterance (a `TurnContext`) into an async stream of complete
spoken sentences. A sentence is yielded as soon as it is complete, so the first one can be
synthesised while the rest is still being written; a partial sentence is never yielded, and the
last one only once the source finished normally. Any failure (an error, a bad reply, the turn's
time limit, which covers the whole reply) raises `ResponderError` saying what failed.

* `LlmResponder`: a chat model by provider prefix (`agent/models.py`: OpenAI-compatible APIs and
  Anthropic's Messages API), streamed, with tools and the spoken-output contract.
* `HttpResponder`: POSTs the turn as JSON to the user's endpoint; plain text, JSON or SSE back.
* `PythonResponder`: calls `module:function` (or an entry point in group `voicecall.responders`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from voicecall.agent.http_responder import HttpResponder, turn_payload
from voicecall.agent.llm_responder import LlmResponder
from voicecall.agent.models import PROVIDERS, ProviderInfo, ResolvedModel, resolve_model, split_model
from voicecall.agent.python_responder import PythonResponder, TurnFunction, load_target
from voicecall.agent.tools import ToolSource
from voicecall.agent.turn import (
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT_S,
    ENTRY_POINT_GROUP,
    Responder,
    ResponderError,
    ResponderUnavailable,
    TurnContext,
    close_responder,
)

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_TIMEOUT_S", "ENTRY_POINT_GROUP", "PROVIDERS", "HttpResponder",
    "LlmResponder", "ProviderInfo", "PythonResponder", "ResolvedModel", "Responder",
    "ResponderError", "ResponderKind", "ResponderUnavailable", "TurnContext", "TurnFunction",
    "build_responder", "close_responder", "load_target", "resolve_model", "split_model", "turn_payload",
]


# -- factory ---------------------------------------------------------------------------------------
ResponderKind = Literal["llm", "http", "python"]


def build_responder(kind: ResponderKind, *, model: str | None = None, base_url: str | None = None,
                    api_key: str | None = None, url: str | None = None, target: str | None = None,
                    headers: Mapping[str, str] | None = None, timeout_s: float | None = None,
                    env: Mapping[str, str], tools: Sequence[ToolSource] = (), max_tool_rounds: int = 4,
                    tool_timeout_s: float = 10.0, filler: str = "", filler_after_s: float = 0.0) -> Responder:
    """The responder for config `responder.kind` (`llm` default model: `openai/gpt-4o-mini`)."""
    if kind == "llm":
        return LlmResponder(model or DEFAULT_MODEL, base_url=base_url, api_key=api_key, env=env, tools=tools,
                            max_tool_rounds=max_tool_rounds, tool_timeout_s=tool_timeout_s, filler=filler,
                            filler_after_s=filler_after_s)
    if kind == "http":
        if not url:
            raise ResponderError("responder.url is required for responder kind 'http'")
        return HttpResponder(url, headers=headers, timeout_s=timeout_s)
    if kind == "python":
        if not target:
            raise ResponderError("responder.target is required for responder kind 'python'")
        return PythonResponder(target)
    raise ResponderError(f"unknown responder kind {kind!r}: expected llm, http or python")
