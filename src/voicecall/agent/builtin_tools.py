"""The tools every LLM responder has on a call: `end_call`, `send_dtmf` and `call_info`
(docs/decisions.md D101). They act through the turn's `CallControls`."""

from __future__ import annotations

import json
from typing import Any

from voicecall.agent.chat import ToolSpec
from voicecall.agent.tools import ToolOutcome
from voicecall.agent.turn import TurnContext
from voicecall.service.errors import CallError

END_CALL = ToolSpec("end_call", "Hang up the call. Use it when the conversation is over or the caller asks "
                    "to end it. Your last words are said before the line is closed.", {
                        "type": "object",
                        "properties": {"last_words": {
                            "type": "string",
                            "description": "What to say before hanging up, e.g. a short goodbye."}},
                    })
SEND_DTMF = ToolSpec("send_dtmf", "Press phone keys on the call (to navigate a phone menu).", {
    "type": "object",
    "properties": {"digits": {"type": "string",
                              "description": "Keys: 0-9 * # and w for a half-second pause."}},
    "required": ["digits"],
})
TRANSFER_CALL_DESCRIPTION = ("Put the caller through to a person, after what you say now. Only these "
                             "numbers are allowed: {numbers}.")
CALL_INFO = ToolSpec("call_info", "What is known about this call: numbers, direction, state, how long it "
                     "has lasted.", {"type": "object", "properties": {}})


def transfer_spec(targets: tuple[str, ...]) -> ToolSpec:
    """`transfer_call`, naming the numbers the operator allowed (`transfer.allowedNumbers`)."""
    return ToolSpec("transfer_call", TRANSFER_CALL_DESCRIPTION.format(numbers=", ".join(targets)), {
        "type": "object",
        "properties": {
            "to": {"type": "string", "enum": list(targets), "description": "Who to put the call through to."},
            "message": {"type": "string",
                        "description": "Said to the caller first, e.g. 'Let me put you through.'"}},
        "required": ["to"],
    })


class BuiltinTools:
    """`end_call`, `send_dtmf` and `call_info`, offered whenever the turn is on a live call."""

    label = "built-in tools"

    def specs(self, ctx: TurnContext) -> list[ToolSpec]:
        if ctx.controls is None:
            return []
        specs = [END_CALL, SEND_DTMF, CALL_INFO]
        targets = ctx.controls.transfer_targets()
        if targets:  # offered only when the operator allowed some numbers
            specs.append(transfer_spec(targets))
        return specs

    async def call(self, name: str, arguments: dict[str, Any], ctx: TurnContext) -> ToolOutcome:
        controls = ctx.controls
        if controls is None:
            return ToolOutcome("not on a call", is_error=True)
        if name == "end_call":
            words = arguments.get("last_words")
            words = words.strip() if isinstance(words, str) else ""
            controls.end_after_reply("ended by the agent")
            return ToolOutcome("The call ends after your last words.", ends_call=True,
                               last_words=words or None)
        if name == "send_dtmf":
            digits = arguments.get("digits")
            if not isinstance(digits, str) or not digits.strip():
                return ToolOutcome("digits required", is_error=True)
            await controls.send_dtmf(digits.strip())
            return ToolOutcome(f"sent {digits.strip()}")
        if name == "transfer_call":
            to = arguments.get("to")
            message = arguments.get("message")
            if not isinstance(to, str) or not to.strip():
                return ToolOutcome("to required", is_error=True)
            try:
                number = controls.transfer(to, message.strip() if isinstance(message, str) and
                                           message.strip() else None)
            except CallError as exc:
                return ToolOutcome(str(exc), is_error=True)
            return ToolOutcome(f"Transferring the caller to {number} after your words; if "
                               "nobody answers, the call comes back to you.", ends_turn=True)
        if name == "call_info":
            return ToolOutcome(json.dumps(controls.info(), ensure_ascii=False))
        return ToolOutcome(f"no built-in tool {name!r}", is_error=True)
