"""The responder's tools: where they come from (`ToolSource`) and how one call of them runs
(`Toolbox`: bounded in time, errors as data, logged on the call's transcript, docs/decisions.md
D101)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from voicecall.agent.chat import ToolCall, ToolSpec
from voicecall.agent.spoken import collapse_whitespace

if TYPE_CHECKING:
    from voicecall.agent.turn import TurnContext

log = logging.getLogger(__name__)

LOG_EXCERPT_CHARS = 300


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool call gave back to the model, and what it asks of the turn."""

    content: str
    is_error: bool = False
    ends_call: bool = False
    """The call hangs up once this turn has been spoken (`end_call`)."""
    last_words: str | None = None
    """Said before the hang-up."""
    ends_turn: bool = False
    """No more model rounds this turn: the call is being handed on (`transfer_call`)."""


class ToolSource(Protocol):
    """A set of tools (built-ins, one MCP server, the HTTP tools)."""

    label: str

    def specs(self, ctx: TurnContext) -> list[ToolSpec]:
        """The tools offered for this turn."""
        ...

    async def call(self, name: str, arguments: dict[str, Any], ctx: TurnContext) -> ToolOutcome:
        """Run one of them; may raise (the toolbox turns any failure into an error result)."""
        ...


class Toolbox:
    """Every tool source of a responder; the first source offering a name owns it."""

    def __init__(self, sources: Sequence[ToolSource], *, timeout_s: float) -> None:
        self.sources = list(sources)
        self.timeout_s = timeout_s
        self._warned: set[tuple[str, str]] = set()

    def specs(self, ctx: TurnContext) -> tuple[list[ToolSpec], dict[str, ToolSource]]:
        """The tools offered this turn and who runs each (a name already taken is left out)."""
        specs: list[ToolSpec] = []
        owners: dict[str, ToolSource] = {}
        for source in self.sources:
            for spec in source.specs(ctx):
                if spec.name in owners:
                    if (source.label, spec.name) not in self._warned:
                        self._warned.add((source.label, spec.name))
                        log.warning("tool %r of %s is hidden by the one of %s", spec.name, source.label,
                                    owners[spec.name].label)
                    continue
                owners[spec.name] = source
                specs.append(spec)
        return specs, owners

    async def run(self, call: ToolCall, owners: dict[str, ToolSource], ctx: TurnContext) -> ToolOutcome:
        """Run `call` under the time limit; any failure is an error result the model can explain."""
        source = owners.get(call.name)
        if source is None:
            outcome = ToolOutcome(f"no tool named {call.name!r}", is_error=True)
        elif not isinstance(call.arguments, dict):
            outcome = ToolOutcome(f"arguments are not a JSON object: {call.arguments[:200]}", is_error=True)
        else:
            try:
                async with asyncio.timeout(self.timeout_s):
                    outcome = await source.call(call.name, call.arguments, ctx)
            except TimeoutError:
                outcome = ToolOutcome(f"{call.name} timed out after {self.timeout_s:g} s", is_error=True)
            except Exception as exc:
                log.debug("tool %s failed", call.name, exc_info=True)
                outcome = ToolOutcome(f"{call.name} failed: {str(exc) or type(exc).__name__}", is_error=True)
        if ctx.controls is not None:
            try:
                await ctx.controls.log_tool(tool_entry(call, outcome))
            except Exception as exc:  # the call may have ended meanwhile
                log.info("call %s: tool %s not logged: %s", ctx.call_id, call.name, exc)
        return outcome


def tool_entry(call: ToolCall, outcome: ToolOutcome) -> str:
    """The transcript text of one tool call: name, arguments and (an excerpt of) the result."""
    args = call.arguments
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False)
    result = collapse_whitespace(outcome.content)
    if len(result) > LOG_EXCERPT_CHARS:
        result = result[:LOG_EXCERPT_CHARS - 3] + "..."
    return f"{call.name} {args} -> {'error: ' if outcome.is_error else ''}{result}"
