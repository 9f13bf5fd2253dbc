"""The responder's tools, offered to a realtime voice model (docs/decisions.md D122): the same
built-ins acting through the same `TurnControls`, the same user tools (MCP, HTTP), the same time
limit and `tool` transcript entries, plus the consult of the full agent when a responder can
answer (D125). `realtime.toolPolicy: none` leaves only `end_call`."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

from voicecall.agent.chat import ToolCall, ToolSpec
from voicecall.agent.consult import CONSULT_TOOL, AgentConsult
from voicecall.agent.conversation import TurnControls
from voicecall.agent.tools import Toolbox, ToolOutcome, ToolSource, tool_entry
from voicecall.agent.turn import ResponderError, TurnContext
from voicecall.calls.model import CallRecord
from voicecall.media.realtime import ToolResult
from voicecall.service import CallService
from voicecall.speech.realtime.base import FunctionTool

__all__ = ["RealtimeAgentTools"]

log = logging.getLogger(__name__)


class RealtimeAgentTools:
    """`media.realtime.RealtimeTools` over a `Toolbox`."""

    def __init__(self, service: CallService, toolbox: Toolbox, *, policy: str = "safe-read-only",
                 agent_id: str = "main", instructions: str | None = None,
                 consult: AgentConsult | None = None) -> None:
        self.service = service
        self.toolbox = toolbox
        self.policy = policy
        self.agent_id = agent_id
        self.instructions = instructions
        self.consult = consult if policy != "none" else None

    def _context(self, call: CallRecord, controls: TurnControls) -> TurnContext:
        return TurnContext(call_id=call.call_id, direction=call.direction, from_=call.from_, to=call.to,
                           session_key=call.session_key or "", agent_id=self.agent_id, user_text="",
                           transcript=tuple(call.transcript), system_prompt=self.instructions,
                           timeout_s=self.toolbox.timeout_s, controls=controls)

    def _offered(self, ctx: TurnContext) -> tuple[list[ToolSpec], dict[str, ToolSource]]:
        specs, owners = self.toolbox.specs(ctx)
        if self.policy == "none":
            specs = [s for s in specs if s.name == "end_call"]
            owners = {name: owner for name, owner in owners.items() if name == "end_call"}
        return specs, owners

    def specs(self, call: CallRecord) -> list[FunctionTool]:
        specs, _ = self._offered(self._context(call, TurnControls(self.service, call.call_id)))
        if self.consult is not None and all(s.name != CONSULT_TOOL for s in specs):
            specs.append(self.consult.spec)
        return [FunctionTool(s.name, s.description, s.parameters) for s in specs]

    async def run(self, call: CallRecord, name: str, arguments: str) -> ToolResult:
        controls = TurnControls(self.service, call.call_id)
        ctx = self._context(call, controls)
        _, owners = self._offered(ctx)
        try:
            parsed: dict[str, object] | str = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            parsed = arguments
        tool_call = ToolCall(uuid.uuid4().hex, name, parsed)
        if name == CONSULT_TOOL and name not in owners and self.consult is not None:
            outcome = await self._consult(self.consult, call, tool_call, controls)
            return ToolResult(outcome.content, is_error=outcome.is_error)
        outcome = await self.toolbox.run(tool_call, owners, ctx)
        return ToolResult(outcome.content, is_error=outcome.is_error, ends_call=outcome.ends_call,
                          last_words=outcome.last_words,
                          end_detail=controls.end_detail or "ended by the agent")

    async def _consult(self, consult: AgentConsult, call: CallRecord, tool_call: ToolCall,
                       controls: TurnControls) -> ToolOutcome:
        """Ask the full agent, under the responder's time limit (not a tool's: it may use tools)."""
        args = tool_call.arguments
        question = str(args.get("question", "")) if isinstance(args, dict) else args
        try:
            async with asyncio.timeout(consult.timeout_s + 1):
                outcome = ToolOutcome(await consult.ask(call, question))
        except TimeoutError:
            outcome = ToolOutcome(f"the agent did not answer within {consult.timeout_s:g} s", is_error=True)
        except ResponderError as exc:
            outcome = ToolOutcome(f"the agent could not answer: {exc}", is_error=True)
        try:
            await controls.log_tool(tool_entry(tool_call, outcome))
        except Exception as exc:  # the call may have ended meanwhile
            log.info("call %s: consult not logged: %s", call.call_id, exc)
        return outcome
