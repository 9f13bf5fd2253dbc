"""The system prompt for an auto-response turn (docs/decisions.md D26)."""

from __future__ import annotations

from collections.abc import Iterable

from voicecall.agent.spoken import SPOKEN_CONTRACT
from voicecall.calls.model import TranscriptEntry


def default_system_prompt(agent_name: str, caller_number: str) -> str:
    """The default prompt (used when `responseSystemPrompt` is not set)."""
    return (
        f"You are {agent_name}, a helpful voice assistant on a phone call. Keep responses brief and "
        "conversational (1-2 sentences max). Be natural and friendly. "
        f"The caller's phone number is {caller_number}. You have access to tools - use them when helpful."
    )


def transcript_lines(transcript: Iterable[TranscriptEntry]) -> list[str]:
    """`You: ...` for what the bot said, `Caller: ...` for the caller, `Tool: ...` for a tool call;
    partial results left out."""
    lines: list[str] = []
    for entry in transcript:
        if not entry.is_final or not entry.text.strip():
            continue
        who = {"bot": "You", "tool": "Tool"}.get(entry.speaker, "Caller")
        lines.append(f"{who}: {' '.join(entry.text.split())}")
    return lines


def build_system_prompt(base: str | None, *, agent_name: str, caller_number: str,
                        transcript: Iterable[TranscriptEntry]) -> str:
    """`base` (or the default prompt), the conversation so far, then the spoken-output contract."""
    prompt = base.strip() if base and base.strip() else default_system_prompt(agent_name, caller_number)
    lines = transcript_lines(transcript)
    if lines:
        prompt += "\n\nConversation so far:\n" + "\n".join(lines)
    return f"{prompt}\n\n{SPOKEN_CONTRACT}"
