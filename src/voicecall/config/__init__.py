"""Voice-call configuration: schema, loading, legacy migration, paths and safe output.

`load_config()` is the entry point; `redacted_config()` is the only way a config should be
printed (status, setup, logs), because it replaces every secret with "***".
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import SecretStr

from voicecall.config.json_schema import config_json_schema
from voicecall.config.loader import (
    LoadedConfig,
    deep_merge,
    discover_config_path,
    expand_env_refs,
    load_config,
    load_config_dict,
)
from voicecall.config.migrate import migrate_raw
from voicecall.config.paths import resolve_control_token, state_dir, store_dir
from voicecall.config.schema import (
    AVAILABLE_PROVIDERS,
    NOT_BUILT_YET,
    ConfigError,
    ConfigIssue,
    ControlConfig,
    MockConfig,
    NumberRoute,
    TtsConfig,
    TtsProviderConfig,
    VoiceCallConfig,
    derive_realtime_stream_path,
    is_secret_key,
    issues_from_validation_error,
    validate_provider_config,
)

__all__ = [
    "AVAILABLE_PROVIDERS",
    "NOT_BUILT_YET",
    "REDACTED",
    "ConfigError",
    "ConfigIssue",
    "ControlConfig",
    "LoadedConfig",
    "MockConfig",
    "NumberRoute",
    "TtsConfig",
    "TtsProviderConfig",
    "VoiceCallConfig",
    "config_fingerprint",
    "config_json_schema",
    "deep_merge",
    "derive_realtime_stream_path",
    "discover_config_path",
    "expand_env_refs",
    "issues_from_validation_error",
    "load_config",
    "load_config_dict",
    "migrate_raw",
    "redact",
    "redacted_config",
    "resolve_control_token",
    "state_dir",
    "store_dir",
    "validate_provider_config",
]

REDACTED = "***"


def redact(value: Any) -> Any:
    """A JSON-able copy of `value` with every secret replaced by "***".

    SecretStr values are secrets wherever they are; in plain dicts, string values under
    credential-like keys (apiKey, authToken, token, secret, password ...) are too.
    """
    if isinstance(value, SecretStr):
        return REDACTED if value.get_secret_value() else ""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if is_secret_key(str(key)) and isinstance(item, str) and item:
                out[str(key)] = REDACTED
            else:
                out[str(key)] = redact(item)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def redacted_config(cfg: VoiceCallConfig) -> dict[str, Any]:
    """The config as a camelCase JSON-able dict with every set secret shown as "***"."""
    result = redact(cfg.model_dump(mode="python", by_alias=True))
    if not isinstance(result, dict):  # pragma: no cover - a model always dumps to a dict
        raise TypeError("config did not dump to an object")
    return result


def config_fingerprint(cfg: VoiceCallConfig) -> str:
    """A short sha256 of the redacted effective config, without the control token, so a CLI
    command can tell whether the running gateway loaded the same settings it did."""
    doc = redacted_config(cfg)
    control = doc.get("control")
    if isinstance(control, dict):
        control.pop("token", None)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
