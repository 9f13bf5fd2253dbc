"""The TTS voice a call asks for, read the same way for every carrier with native speech, and
the Amazon Polly voice it stands for (carriers' own speech maps it onto their voices, D41)."""

from __future__ import annotations

from typing import Any

from voicecall.calls.model import CallRecord

OPENAI_TO_POLLY = {
    "alloy": "Polly.Joanna", "echo": "Polly.Matthew", "fable": "Polly.Amy",
    "onyx": "Polly.Brian", "nova": "Polly.Salli", "shimmer": "Polly.Kimberly",
}
"""OpenAI TTS voices as similar Amazon Polly voices, for carriers' own speech (D41)."""


def polly_voice(voice: str | None) -> str | None:
    """A TTS voice name as a Polly voice: `Polly.*` as it is, an OpenAI voice mapped; None
    for anything else (each carrier has its own default)."""
    if voice and voice.startswith("Polly."):
        return voice
    return OPENAI_TO_POLLY.get((voice or "").lower())


def route_voice(call: CallRecord) -> str | None:
    """The voice of the call's `numbers` route TTS settings (its selected provider's, else the
    first one's `voice` or `voiceId`); None when the route sets none."""
    tts = (call.metadata.get("route") or {}).get("tts") or {}
    providers: dict[str, Any] = tts.get("providers") or {}
    chosen: Any = providers.get(tts.get("provider") or "") or next(iter(providers.values()), {})
    voice = chosen.get("voice") or chosen.get("voiceId") if isinstance(chosen, dict) else None
    return str(voice) if voice else None
