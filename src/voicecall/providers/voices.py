"""The TTS voice a call asks for, read the same way for every carrier with native speech."""

from __future__ import annotations

from typing import Any

from voicecall.calls.model import CallRecord


def route_voice(call: CallRecord) -> str | None:
    """The voice of the call's `numbers` route TTS settings (its selected provider's, else the
    first one's `voice` or `voiceId`); None when the route sets none."""
    tts = (call.metadata.get("route") or {}).get("tts") or {}
    providers: dict[str, Any] = tts.get("providers") or {}
    chosen: Any = providers.get(tts.get("provider") or "") or next(iter(providers.values()), {})
    voice = chosen.get("voice") or chosen.get("voiceId") if isinstance(chosen, dict) else None
    return str(voice) if voice else None
