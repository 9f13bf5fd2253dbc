"""Find, parse and resolve the configuration file into a validated `VoiceCallConfig`.

Steps: discover the file → JSON5 → pick the voice-call object (bare or inside an OpenClaw
config) → expand `${ENV}` → migrate legacy keys → apply the `enabled` rule (docs/decisions.md
D36) → deep-merge `tts` over core `messages.tts` → env fallbacks for the selected provider →
validate, resolving SecretRef credentials through the `secrets` providers (D90). Validation
errors raise `ConfigError`; provider-level issues are returned on `LoadedConfig` for `setup`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import json5
from pydantic import BaseModel, ValidationError

from voicecall.config.migrate import migrate_voice_call
from voicecall.config.paths import expand_user, home_dir
from voicecall.config.schema import (
    ConfigError,
    ConfigIssue,
    FieldPathError,
    TtsConfig,
    VoiceCallConfig,
    format_path,
    issue_from_error,
    normalize_tts_shape,
    validate_provider_config,
)
from voicecall.config.secret_refs import SECRETS_CONTEXT_KEY, SecretsConfig
from voicecall.config.secret_sources import SecretResolver

__all__ = [
    "ENTRY_ID",
    "LoadedConfig",
    "deep_merge",
    "discover_config_path",
    "expand_env_refs",
    "load_config",
    "load_config_dict",
]

ENTRY_ID = "voice-call"
"""The plugin entry id under `plugins.entries` in an OpenClaw config."""

Shape = Literal["none", "bare", "openclaw"]

_BLOCKED_KEYS = frozenset({"__proto__", "prototype", "constructor"})
_ENV_REF = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")
_JSON5_POS = re.compile(r"^<string>:(\d+)\s*(.*)$", re.DOTALL)

# Credentials filled from the environment, only for the selected carrier.
_CARRIER_ENV: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "twilio": (
        (("twilio", "accountSid"), "TWILIO_ACCOUNT_SID"),
        (("twilio", "authToken"), "TWILIO_AUTH_TOKEN"),
        (("fromNumber",), "TWILIO_FROM_NUMBER"),
    ),
    "telnyx": (
        (("telnyx", "apiKey"), "TELNYX_API_KEY"),
        (("telnyx", "connectionId"), "TELNYX_CONNECTION_ID"),
        (("telnyx", "publicKey"), "TELNYX_PUBLIC_KEY"),
    ),
    "plivo": (
        (("plivo", "authId"), "PLIVO_AUTH_ID"),
        (("plivo", "authToken"), "PLIVO_AUTH_TOKEN"),
    ),
}
_NGROK_ENV: tuple[tuple[tuple[str, ...], str], ...] = (
    (("tunnel", "ngrokAuthToken"), "NGROK_AUTHTOKEN"),
    (("tunnel", "ngrokDomain"), "NGROK_DOMAIN"),
)
_TTS_ENV: tuple[tuple[str, str], ...] = (
    ("openai", "OPENAI_API_KEY"),
    ("elevenlabs", "ELEVENLABS_API_KEY"),
)


@dataclass
class LoadedConfig:
    """A validated config plus where it came from and what the loader noticed.

    `issues` are provider-level problems (missing credentials, features not built yet); they do
    not stop loading so `setup` can report them, but the runtime must call `raise_for_issues()`.
    """

    config: VoiceCallConfig
    source: Path | None
    warnings: list[str] = field(default_factory=list)
    issues: list[ConfigIssue] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    shape: Shape = "none"

    @property
    def ok(self) -> bool:
        """True when the runtime may start with this config."""
        return not self.issues

    def raise_for_issues(self) -> None:
        """Raise ConfigError listing every issue, if there are any."""
        if self.issues:
            raise ConfigError(self.issues, source=self.source)


# --- discovery and parsing --------------------------------------------------------------------


def discover_config_path(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path | None, bool]:
    """Find the config file. Returns `(path or None, is_openclaw_location)`.

    Order: the argument, `VOICECALL_CONFIG`, `OPENCLAW_CONFIG_PATH` (each must exist when given),
    then `$OPENCLAW_STATE_DIR/openclaw.json` and `~/.openclaw/openclaw.json` (skipped if missing).
    Files found at OpenClaw locations are always read as whole OpenClaw configs.
    """
    environ = os.environ if env is None else env
    explicit: list[tuple[str, str | os.PathLike[str] | None, bool]] = [
        ("--config", path, False),
        ("VOICECALL_CONFIG", environ.get("VOICECALL_CONFIG") or None, False),
        ("OPENCLAW_CONFIG_PATH", environ.get("OPENCLAW_CONFIG_PATH") or None, True),
    ]
    for origin, candidate, openclaw in explicit:
        if candidate is None:
            continue
        resolved = expand_user(candidate, environ)
        if not resolved.is_file():
            what = "is not a file" if resolved.exists() else "does not exist"
            raise ConfigError([ConfigIssue(str(resolved), f"config file {what} (from {origin})")])
        return resolved, openclaw
    implicit: list[Path] = []
    state = environ.get("OPENCLAW_STATE_DIR")
    if state:
        implicit.append(expand_user(state, environ) / "openclaw.json")
    implicit.append(home_dir(environ) / ".openclaw" / "openclaw.json")
    for candidate_path in implicit:
        if candidate_path.is_file():
            return candidate_path, True
    return None, False


def _parse_json5(source: Path) -> Any:
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [ConfigIssue(str(source), f"cannot read config file: {exc.__class__.__name__}")],
            source=source,
        ) from None
    try:
        return json5.loads(text, allow_duplicate_keys=False)
    except ValueError as exc:
        message = str(exc)
        match = _JSON5_POS.match(message)
        where = str(source)
        if match:
            where = f"{source}:{match.group(1)}"
            message = f"invalid JSON5: {match.group(2)}"
        else:
            message = f"invalid JSON5: {message}"
        raise ConfigError([ConfigIssue(where, message)], source=source) from None


# --- raw-dict transforms ----------------------------------------------------------------------


def expand_env_refs(
    value: Any, env: Mapping[str, str], path: tuple[str | int, ...], issues: list[ConfigIssue]
) -> Any:
    """Replace `${VAR}` in every string (`$${VAR}` keeps a literal `${VAR}`).

    An unset or empty variable adds an issue naming the key path and the variable.
    """
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(2)
            if match.group(1):
                return "${" + name + "}"
            resolved = env.get(name)
            if not resolved:
                issues.append(
                    ConfigIssue(
                        format_path(path) or "(root)",
                        f"environment variable {name} is not set (referenced as ${{{name}}})",
                    )
                )
                return ""
            return resolved

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {key: expand_env_refs(item, env, (*path, key), issues) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_env_refs(item, env, (*path, index), issues) for index, item in enumerate(value)]
    return value


def _strip_blocked(value: Any, path: str, dropped: list[str]) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if key in _BLOCKED_KEYS:
                dropped.append(child)
                continue
            out[key] = _strip_blocked(item, child, dropped)
        return out
    if isinstance(value, list):
        return [_strip_blocked(item, f"{path}[{index}]", dropped) for index, item in enumerate(value)]
    return value


def deep_merge(
    base: Mapping[str, Any],
    override: Mapping[str, Any],
    *,
    dropped: list[str] | None = None,
    path: str = "",
) -> dict[str, Any]:
    """Prototype-safe deep merge (docs/decisions.md D38).

    Objects merge recursively; None values in `override` are skipped; lists and scalars replace;
    keys `__proto__`, `prototype` and `constructor` are dropped (their paths go to `dropped`).
    """
    sink: list[str] = [] if dropped is None else dropped
    out: dict[str, Any] = _strip_blocked(base, path, sink)
    for key, value in override.items():
        child = f"{path}.{key}" if path else str(key)
        if key in _BLOCKED_KEYS:
            sink.append(child)
            continue
        if value is None:
            continue
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = deep_merge(current, value, dropped=sink, path=child)
        else:
            out[key] = _strip_blocked(value, child, sink)
    return out


def _get_in(raw: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    current: Any = raw
    for key in keys:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _set_default_in(raw: dict[str, Any], keys: tuple[str, ...], value: str) -> bool:
    """Set `keys` to `value` when it is absent/None, creating parents; False if blocked."""
    current: dict[str, Any] = raw
    for key in keys[:-1]:
        child = current.get(key)
        if child is None:
            child = current[key] = {}
        if not isinstance(child, dict):
            return False
        current = child
    if current.get(keys[-1]) is not None:
        return False
    current[keys[-1]] = value
    return True


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return value is True


def _apply_env_fallbacks(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Fill missing credentials from env for the selected provider only; returns path → var."""
    sources: dict[str, str] = {}

    def fill(keys: tuple[str, ...], var: str) -> None:
        value = env.get(var)
        if value and _set_default_in(raw, keys, value):
            sources[format_path(keys)] = var

    for keys, var in _CARRIER_ENV.get(str(raw.get("provider")), ()):
        fill(keys, var)
    if _get_in(raw, ("tunnel", "provider")) == "ngrok":
        for keys, var in _NGROK_ENV:
            fill(keys, var)
    for block in ("streaming", "realtime"):
        if _truthy(_get_in(raw, (block, "enabled"))) and _get_in(raw, (block, "provider")) in (
            None,
            "openai",
        ):
            fill((block, "providers", "openai", "apiKey"), "OPENAI_API_KEY")
    tts = raw.get("tts")
    if isinstance(tts, dict):
        providers = tts.get("providers")
        for provider_id, var in _TTS_ENV:
            configured = isinstance(providers, Mapping) and provider_id in providers
            if configured or tts.get("provider") == provider_id:
                fill(("tts", "providers", provider_id, "apiKey"), var)
    return sources


# --- loading ----------------------------------------------------------------------------------


def _require_object(value: Any, path: str, source: Path | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError([ConfigIssue(path, "must be an object")], source=source)
    return value


def _validation_issues(
    err: ValidationError, root: type[BaseModel], prefix: str, env_sources: Mapping[str, str]
) -> list[ConfigIssue]:
    seen: dict[ConfigIssue, None] = {}
    for error in err.errors():
        issue = issue_from_error(error, root)
        path = f"{prefix}.{issue.path}" if prefix else issue.path
        message = issue.message
        if issue.path in env_sources:
            message = f"{message} (value from env {env_sources[issue.path]})"
        seen.setdefault(ConfigIssue(path, message), None)
    return list(seen)


def _split_document(
    doc: dict[str, Any], openclaw: bool, source: Path | None
) -> tuple[dict[str, Any], Any, bool, list[str]]:
    """Return (voice-call object, core tts or None, entry_enabled, warnings)."""
    if not openclaw:
        return doc, None, True, []
    warnings: list[str] = []
    plugins = _require_object(doc.get("plugins"), "plugins", source)
    entries = _require_object(plugins.get("entries"), "plugins.entries", source)
    entry_path = f"plugins.entries.{ENTRY_ID}"
    if ENTRY_ID in entries:
        entry = _require_object(entries.get(ENTRY_ID), entry_path, source)
        vc = _require_object(entry.get("config"), f"{entry_path}.config", source)
        entry_enabled = entry.get("enabled", True)
        if entry_enabled is None:
            entry_enabled = True
        if not isinstance(entry_enabled, bool):
            raise ConfigError([ConfigIssue(f"{entry_path}.enabled", "must be true or false")], source=source)
    else:
        vc, entry_enabled = {}, False
    messages = doc.get("messages")
    core_tts: Any = None
    if isinstance(messages, dict) and messages.get("tts") is not None:
        core_tts = messages["tts"]
        if doc.get("tts") is not None:
            warnings.append("both messages.tts and top-level tts are set; using messages.tts")
    elif doc.get("tts") is not None:
        core_tts = doc["tts"]
    return vc, core_tts, entry_enabled, warnings


def _hoist_openclaw_secrets(vc: dict[str, Any], raw_doc: Mapping[str, Any], is_openclaw: bool) -> None:
    """An OpenClaw config keeps the secret providers at its top level (D90): copy them in."""
    if is_openclaw and vc.get("secrets") is None and isinstance(raw_doc.get("secrets"), dict):
        vc["secrets"] = {k: v for k, v in raw_doc["secrets"].items() if k in ("providers", "defaults")}


def _expand_env(
    vc: dict[str, Any], core_tts: Any, core_tts_path: str, environ: Mapping[str, str], source: Path | None
) -> tuple[dict[str, Any], Any]:
    """`${ENV}` expansion, before migration so errors name the keys as written."""
    env_issues: list[ConfigIssue] = []
    vc = expand_env_refs(vc, environ, (), env_issues)
    if core_tts is not None:
        core_tts = expand_env_refs(core_tts, environ, tuple(core_tts_path.split(".")), env_issues)
    if env_issues:
        raise ConfigError(env_issues, source=source)
    return vc, core_tts


def _migrate(vc: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """Rewrite legacy keys, warning about each and about the inert `stt` block."""
    vc, migration_warnings = migrate_voice_call(vc)
    warnings.extend(migration_warnings)
    if "stt" in vc:
        warnings.append(
            "stt.* has no effect: speech-to-text is configured with streaming.provider and "
            "streaming.providers"
        )
    return vc


def _apply_defaults(vc: dict[str, Any], entry_enabled: bool) -> None:
    """`enabled` defaults to true only when the file has a voice-call entry at all (D36)."""
    config_enabled = vc.get("enabled")
    if not entry_enabled:
        vc["enabled"] = False
    elif config_enabled is None:
        vc["enabled"] = True
    if vc.get("provider") is None:
        vc["provider"] = "mock"


def _secrets_context(
    vc: Mapping[str, Any], environ: Mapping[str, str], issues: list[ConfigIssue]
) -> dict[str, Any]:
    """The validation context that resolves SecretRefs while their keys are validated (D90).

    A bad `secrets` block is reported with every other bad key; refs then cannot resolve.
    """
    secrets: SecretsConfig | None
    try:
        secrets = SecretsConfig.model_validate(vc.get("secrets") or {}, by_alias=True, by_name=False)
    except ValidationError as exc:
        issues.extend(_validation_issues(exc, SecretsConfig, "secrets", {}))
        secrets = None
    return {SECRETS_CONTEXT_KEY: SecretResolver(secrets, environ)}


def _normalized_core_tts(
    core_tts: Any,
    core_tts_path: str,
    context: dict[str, Any],
    dropped: list[str],
    issues: list[ConfigIssue],
) -> dict[str, Any]:
    """Core `messages.tts` in the current shape, or `{}` when absent or invalid."""
    if core_tts is None:
        return {}
    if not isinstance(core_tts, Mapping):
        issues.append(ConfigIssue(core_tts_path, "must be an object"))
        return {}
    problems: list[FieldPathError] = []
    core_norm = normalize_tts_shape(_strip_blocked(core_tts, core_tts_path, dropped), problems)
    issues.extend(ConfigIssue(f"{core_tts_path}.{p.path}", p.message) for p in problems)
    try:
        TtsConfig.model_validate(core_norm, by_alias=True, by_name=False, context=context)
    except ValidationError as exc:
        issues.extend(_validation_issues(exc, TtsConfig, core_tts_path, {}))
        return {}
    return core_norm


def _merge_tts(
    vc: dict[str, Any],
    core_tts: Any,
    core_tts_path: str,
    context: dict[str, Any],
    issues: list[ConfigIssue],
    warnings: list[str],
) -> None:
    """Normalise both `tts` shapes, then deep-merge the plugin's `tts` over core `messages.tts`."""
    dropped: list[str] = []
    core_norm = _normalized_core_tts(core_tts, core_tts_path, context, dropped, issues)
    override = vc.get("tts")
    if isinstance(override, Mapping) or (override is None and core_norm):
        problems: list[FieldPathError] = []
        over_norm = normalize_tts_shape(_strip_blocked(override or {}, "tts", dropped), problems)
        issues.extend(ConfigIssue(f"tts.{p.path}", p.message) for p in problems)
        vc["tts"] = deep_merge(core_norm, over_norm)
    for path in dict.fromkeys(dropped):
        warnings.append(f"{path} was ignored (reserved key name)")


def _expand_store(vc: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Expand a leading `~` in `store` against the given environment's home."""
    store = vc.get("store")
    if isinstance(store, str) and store.startswith("~"):
        vc["store"] = str(expand_user(store, environ))


def _validate(
    vc: dict[str, Any],
    environ: Mapping[str, str],
    context: dict[str, Any],
    issues: list[ConfigIssue],
    source: Path | None,
) -> VoiceCallConfig:
    """Fill env fallbacks and validate; raise ConfigError with every issue found so far."""
    env_sources = _apply_env_fallbacks(vc, environ)
    config: VoiceCallConfig | None = None
    try:
        config = VoiceCallConfig.model_validate(vc, by_alias=True, by_name=False, context=context)
    except ValidationError as exc:
        issues.extend(_validation_issues(exc, VoiceCallConfig, "", env_sources))
    if issues or config is None:
        raise ConfigError(list(dict.fromkeys(issues)), source=source)
    return config


def load_config_dict(
    doc: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    source: Path | None = None,
    openclaw: bool | None = None,
) -> LoadedConfig:
    """Resolve an already-parsed document (bare voice-call object or OpenClaw config).

    `openclaw=None` detects the shape: a `plugins` key means a whole OpenClaw config.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    raw_doc = dict(doc)
    is_openclaw = ("plugins" in raw_doc) if openclaw is None else openclaw
    vc, core_tts, entry_enabled, warnings = _split_document(raw_doc, is_openclaw, source)
    core_tts_path = "messages.tts" if isinstance(raw_doc.get("messages"), dict) else "tts"
    _hoist_openclaw_secrets(vc, raw_doc, is_openclaw)
    vc, core_tts = _expand_env(vc, core_tts, core_tts_path, environ, source)
    vc = _migrate(vc, warnings)
    _apply_defaults(vc, entry_enabled)
    issues: list[ConfigIssue] = []
    context = _secrets_context(vc, environ, issues)
    _merge_tts(vc, core_tts, core_tts_path, context, issues, warnings)
    _expand_store(vc, environ)
    config = _validate(vc, environ, context, issues, source)
    if config.skip_signature_verification and config.enabled:
        warnings.append(
            "skipSignatureVerification is true: webhooks are not authenticated (development only)"
        )
    return LoadedConfig(
        config=config,
        source=source,
        warnings=warnings,
        issues=validate_provider_config(config),
        env=environ,
        shape="openclaw" if is_openclaw else "bare",
    )


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Discover, parse and validate the configuration.

    With no file at all the result is the defaults: enabled, `mock` carrier (docs/decisions.md D36).
    Raises ConfigError for a missing explicit file, bad JSON5, unset `${VAR}` or invalid keys.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    source, openclaw_location = discover_config_path(path, environ)
    if source is None:
        loaded = load_config_dict({}, env=environ, source=None, openclaw=False)
        loaded.shape = "none"
        return loaded
    doc = _parse_json5(source)
    if not isinstance(doc, dict):
        raise ConfigError(
            [ConfigIssue(str(source), "the config file must contain a JSON5 object")],
            source=source,
        )
    openclaw = True if openclaw_location else None
    return load_config_dict(doc, env=environ, source=source, openclaw=openclaw)
