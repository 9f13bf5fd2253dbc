"""Plain HTTP tools (`responder.tools[]`): the model's arguments are POSTed as JSON to the tool's
URL, with the call's id in `X-Voicecall-Call-Id`; the reply body goes back to the model
(docs/decisions.md D101)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from voicecall.agent.chat import ToolSpec
from voicecall.agent.tools import ToolOutcome
from voicecall.agent.turn import PerLoop, TurnContext, excerpt, safe_url

MAX_RESULT_CHARS = 8000


@dataclass(frozen=True)
class HttpTool:
    """One HTTP tool: what the model sees (name, description, JSON Schema) and where it goes."""

    spec: ToolSpec
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class HttpTools:
    """The HTTP tools of a responder, for its toolbox."""

    label = "HTTP tools"

    def __init__(self, tools: Sequence[HttpTool]) -> None:
        self.tools = {t.spec.name: t for t in tools}
        self._clients: PerLoop[httpx.AsyncClient] = PerLoop()

    def specs(self, ctx: TurnContext) -> list[ToolSpec]:
        return [t.spec for t in self.tools.values()]

    async def aclose(self) -> None:
        for client in self._clients.take_current():
            await client.aclose()

    async def call(self, name: str, arguments: dict[str, Any], ctx: TurnContext) -> ToolOutcome:
        tool = self.tools[name]
        client = self._clients.get(None, lambda: httpx.AsyncClient(follow_redirects=False))
        headers = {"accept": "application/json, text/plain", "x-voicecall-call-id": ctx.call_id,
                   **tool.headers}
        try:
            response = await client.post(tool.url, json=arguments, headers=headers)
        except httpx.HTTPError as exc:
            return ToolOutcome(f"{name}: {safe_url(tool.url)} failed: {type(exc).__name__}: {exc}",
                               is_error=True)
        text = response.text
        if not 200 <= response.status_code < 300:
            return ToolOutcome(f"{name}: HTTP {response.status_code} {excerpt(text)}".rstrip(), is_error=True)
        if response.headers.get("content-type", "").startswith("application/json"):
            try:
                text = json.dumps(response.json(), ensure_ascii=False)
            except ValueError:
                return ToolOutcome(f"{name}: the reply is not valid JSON", is_error=True)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + "..."
        return ToolOutcome(text or "(empty reply)")
