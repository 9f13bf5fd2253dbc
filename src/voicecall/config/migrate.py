"""Legacy-key migrations (docs/decisions.md D37): rewrite old keys to their current location.

Pure functions on raw (parsed, not yet validated) dicts, shared by the loader (which warns) and
`voicecall doctor --fix` (which rewrites the file). Legacy values only fill missing current fields.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["FIX_HINT", "migrate_raw", "migrate_voice_call"]

FIX_HINT = '(run "voicecall doctor --fix")'

_STREAMING_OPENAI_KEYS: tuple[tuple[str, str], ...] = (
    ("openaiApiKey", "apiKey"),
    ("sttModel", "model"),
    ("silenceDurationMs", "silenceDurationMs"),
    ("vadThreshold", "vadThreshold"),
)

# The 3.13 enum value of streaming.sttProvider and the provider id it became.
_STT_PROVIDER_IDS = {"openai-realtime": "openai"}


def _deprecated(old: str, new: str, *, ignored: bool) -> str:
    if ignored:
        return f"{old} is deprecated and ignored because {new} is already set; remove it {FIX_HINT}"
    return f"{old} is deprecated; use {new} {FIX_HINT}"


def migrate_voice_call(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Migrate a bare voice-call config object. Returns a new dict and one warning per change."""
    cfg = copy.deepcopy(raw)
    warnings: list[str] = []

    if cfg.get("provider") == "log":
        cfg["provider"] = "mock"
        warnings.append(f'provider "log" is deprecated; use "mock" {FIX_HINT}')

    twilio = cfg.get("twilio")
    if isinstance(twilio, dict) and "from" in twilio:
        legacy = twilio.pop("from")
        present = cfg.get("fromNumber") is not None
        if not present and legacy is not None:
            cfg["fromNumber"] = legacy
        warnings.append(_deprecated("twilio.from", "fromNumber", ignored=present))

    streaming = cfg.get("streaming")
    if isinstance(streaming, dict):
        if "sttProvider" in streaming:
            legacy = streaming.pop("sttProvider")
            present = streaming.get("provider") is not None
            if not present and legacy is not None:
                streaming["provider"] = (
                    _STT_PROVIDER_IDS.get(legacy, legacy) if isinstance(legacy, str) else legacy
                )
            warnings.append(_deprecated("streaming.sttProvider", "streaming.provider", ignored=present))
        for old_key, new_key in _STREAMING_OPENAI_KEYS:
            if old_key not in streaming:
                continue
            legacy = streaming.pop(old_key)
            providers = streaming.setdefault("providers", {})
            if not isinstance(providers, dict):
                # Leave the malformed providers value for validation to report.
                streaming[old_key] = legacy
                continue
            openai = providers.setdefault("openai", {})
            if not isinstance(openai, dict):
                streaming[old_key] = legacy
                continue
            present = openai.get(new_key) is not None
            if not present and legacy is not None:
                openai[new_key] = legacy
            warnings.append(
                _deprecated(f"streaming.{old_key}", f"streaming.providers.openai.{new_key}", ignored=present)
            )

    realtime = cfg.get("realtime")
    if isinstance(realtime, dict):
        context = realtime.get("agentContext")
        if isinstance(context, dict) and "includeSystemPrompt" in context:
            del context["includeSystemPrompt"]
            warnings.append(
                f"realtime.agentContext.includeSystemPrompt was removed and has no effect; "
                f"delete it {FIX_HINT}"
            )
        warnings.extend(_realtime_without_effect(realtime))

    return cfg, warnings


REALTIME_WITHOUT_EFFECT = {
    "tools": "declarations have no implementation here; give the realtime model tools with "
             "responder.tools (HTTP) or responder.mcpServers",
    "fastContext": "there is no quick context lookup; the model consults the agent directly",
    "consultThinkingLevel": "the consult uses the responder as configured",
    "consultFastMode": "the consult uses the responder as configured",
    "agentContext.includeIdentity": "there is no agent identity to add; list files under "
                                    "realtime.agentContext.files",
    "agentContext.includeWorkspaceFiles": "there is no agent workspace; list files under "
                                          "realtime.agentContext.files",
}
"""The original's realtime keys this gateway accepts (so shared configs load) but cannot honour
(docs/decisions.md D125), and why."""


def _realtime_without_effect(realtime: dict[str, Any]) -> list[str]:
    """A warning for each key of `REALTIME_WITHOUT_EFFECT` set to something that would act."""
    warnings = []
    for path, why in REALTIME_WITHOUT_EFFECT.items():
        node: Any = realtime
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        active = node.get("enabled") is True if isinstance(node, dict) else node not in (None, False, [])
        if active:
            warnings.append(f"realtime.{path} has no effect: {why}")
    return warnings


def migrate_raw(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Migrate legacy keys in a parsed config file (pure; the input is not modified).

    Accepts a bare voice-call object or a whole OpenClaw config (detected by a `plugins` key),
    in which case only `plugins.entries.voice-call.config` is rewritten and the rest is kept.
    """
    if "plugins" not in raw:
        return migrate_voice_call(raw)
    doc = copy.deepcopy(raw)
    plugins = doc.get("plugins")
    entries = plugins.get("entries") if isinstance(plugins, dict) else None
    entry = entries.get("voice-call") if isinstance(entries, dict) else None
    config = entry.get("config") if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not isinstance(config, dict):
        return doc, []
    entry["config"], warnings = migrate_voice_call(config)
    return doc, warnings
