"""The realtime voice model asks the full agent (docs/decisions.md D125).

A speech-to-speech model answers fast but thinks little; `openclaw_agent_consult` (the name the
original's instructions use) lets it hand a question to the call's responder, the text model
with the user's tools, and say what comes back. The responder gets the call's transcript and
the question as the caller's turn; its call-control tools stay with the realtime model, which
has them itself. `realtime.consultPolicy` says in the instructions when to ask, and
`realtime.agentContext.files` add what the model should know to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from voicecall.agent.chat import ToolSpec
from voicecall.agent.turn import Responder, ResponderError, TurnContext
from voicecall.calls.model import CallRecord
from voicecall.config.schema import DEFAULT_REALTIME_INSTRUCTIONS

__all__ = ["CONSULT_TOOL", "DEFAULT_CONTEXT_CHARS", "AgentConsult", "read_context", "session_instructions"]

CONSULT_TOOL = "openclaw_agent_consult"
CONSULT_SENTENCE = (" When a question needs deeper reasoning, current information, or tools, call "
                    "openclaw_agent_consult before answering.")
POLICY_SENTENCES = {
    "auto": "",
    "substantive": "Call openclaw_agent_consult before answering any substantive question "
                   "(anything beyond greetings, small talk and confirmations), and say what it returns.",
    "always": "Call openclaw_agent_consult before every answer, and say what it returns.",
}
CONSULTED_PROMPT = (
    "The realtime voice model that is talking with the caller on the phone asks you the question "
    "below. Answer with what it should tell the caller: briefly, in plain spoken sentences.")
DEFAULT_CONTEXT_CHARS = 8000

SPEC = ToolSpec(
    CONSULT_TOOL,
    "Ask the full agent, a text model with more tools and time, a question that needs deeper "
    "reasoning, current information or tools; it returns what to tell the caller.",
    {"type": "object", "properties": {"question": {
        "type": "string", "description": "The question, with what the caller said that it is about."}},
     "required": ["question"]},
)


class AgentConsult:
    """Runs one consult: the responder answers `question` with the call's transcript."""

    spec = SPEC

    def __init__(self, responder: Responder, *, agent_id: str = "main", model: str | None = None,
                 system_prompt: str | None = None, timeout_s: float = 30.0) -> None:
        self.responder = responder
        self.agent_id = agent_id
        self.model = model
        self.system_prompt = system_prompt
        self.timeout_s = timeout_s

    async def ask(self, call: CallRecord, question: str) -> str:
        """The responder's answer; `ResponderError` when it gives none in `timeout_s`."""
        if not question.strip():
            raise ResponderError("the consult has no question")
        prompt = f"{self.system_prompt}\n\n{CONSULTED_PROMPT}" if self.system_prompt else CONSULTED_PROMPT
        ctx = TurnContext(call_id=call.call_id, direction=call.direction, from_=call.from_, to=call.to,
                          session_key=call.session_key or "", agent_id=self.agent_id, user_text=question,
                          transcript=tuple(call.transcript), model=self.model, system_prompt=prompt,
                          timeout_s=self.timeout_s)
        sentences = [sentence async for sentence in self.responder.reply(ctx)]
        answer = " ".join(s.strip() for s in sentences if s.strip())
        if not answer:
            raise ResponderError("the agent gave no answer")
        return answer


def session_instructions(base: str, *, consult: bool, policy: str, context: str = "") -> str:
    """The realtime model's instructions: `base`, when to consult (only if it can), the context.

    Without a consult, the default instructions lose their sentence about it (a model told to call
    a tool it does not have would try anyway)."""
    text = base
    if not consult and base == DEFAULT_REALTIME_INSTRUCTIONS:
        text = base.replace(CONSULT_SENTENCE, "")
    if consult and POLICY_SENTENCES.get(policy):
        text = f"{text}\n\n{POLICY_SENTENCES[policy]}"
    if context:
        text = f"{text}\n\nWhat you know:\n{context}"
    return text


def read_context(files: Sequence[str], max_chars: int = DEFAULT_CONTEXT_CHARS) -> str:
    """The text of `files` (each under its name), cut at `max_chars`; OSError/UnicodeError from
    an unreadable file propagate for the caller to name it."""
    parts = []
    for name in files:
        text = Path(name).expanduser().read_text(encoding="utf-8").strip()
        if text:
            parts.append(f"## {Path(name).name}\n{text}")
    joined = "\n\n".join(parts)
    return joined[:max_chars]
