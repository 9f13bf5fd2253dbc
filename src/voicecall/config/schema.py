"""Pydantic models for the voice-call configuration: every key, its default and its validation.

Python attributes are snake_case; the JSON keys (aliases) are the camelCase names OpenClaw's
config uses (docs/decisions.md D42).
Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

__all__ = [
    "AVAILABLE_PROVIDERS",
    "DEFAULT_REALTIME_INSTRUCTIONS",
    "E164_PATTERN",
    "NOT_BUILT_YET",
    "SEED_TTS_PROVIDER_KEYS",
    "ConfigError",
    "ConfigIssue",
    "ControlConfig",
    "ElevenLabsVoiceSettings",
    "FieldPathError",
    "MockConfig",
    "NotBuiltRule",
    "NumberRoute",
    "OutboundConfig",
    "PlivoConfig",
    "RealtimeAgentContext",
    "RealtimeConfig",
    "RealtimeFastContext",
    "RealtimeTool",
    "RealtimeToolParameters",
    "ServeConfig",
    "StreamingConfig",
    "SttConfig",
    "TailscaleConfig",
    "TelnyxConfig",
    "TtsConfig",
    "TtsModelOverrides",
    "TtsProviderConfig",
    "TunnelConfig",
    "TwilioConfig",
    "VoiceCallConfig",
    "WebhookSecurityConfig",
    "WrongTypeError",
    "derive_realtime_stream_path",
    "format_path",
    "is_secret_key",
    "issue_from_error",
    "issues_from_validation_error",
    "normalize_tts_shape",
    "validate_provider_config",
]

E164_PATTERN = r"^\+[1-9]\d{1,14}$"
"""E.164: a `+`, a non-zero country-code digit, then at most 14 more digits."""

DEFAULT_REALTIME_INSTRUCTIONS = (
    "You are OpenClaw's phone-call realtime voice interface. Keep spoken replies brief and "
    "natural. When a question needs deeper reasoning, current information, or tools, call "
    "openclaw_agent_consult before answering."
)

SEED_TTS_PROVIDER_KEYS: frozenset[str] = frozenset({"openai", "elevenlabs", "edge", "microsoft"})
"""Provider blocks the seed shape puts directly under `tts` (`tts.openai`, `tts.elevenlabs` ...)."""

_SECRET_KEY_RE = re.compile(r"(api_?key|token|secret|password|passwd|credential|private_?key)$")


class FieldPathError(ValueError):
    """A validation failure that knows which key (relative dotted path) it is about.

    Model-level validators raise it so the loader can name the exact key instead of the model.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class WrongTypeError(ValueError):
    """Raised by the strictness guards below; reported like a type mismatch for the field."""


def is_secret_key(name: str) -> bool:
    """True for key names that hold credentials in free-form provider dicts (apiKey, token ...)."""
    return bool(_SECRET_KEY_RE.search(name.replace("-", "_").lower()))


# --- reusable field types ---------------------------------------------------------------------


def _reject_bool(value: Any) -> Any:
    # pydantic's lax mode turns true/false into 1/0; a boolean in a numeric key is a mistake.
    if isinstance(value, bool):
        raise WrongTypeError("boolean given for a number")
    return value


def _check_path(value: str) -> str:
    """Normalise an HTTP path the way request paths are (leading `/`, no trailing `/`)."""
    path = value.strip()
    if not path:
        raise ValueError("must be a non-empty path such as /voice/webhook")
    if any(ch.isspace() for ch in path) or "?" in path or "#" in path:
        raise ValueError("must be a URL path without spaces, query or fragment")
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return path


def _check_http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL such as https://voice.example.com/path")
    return value.strip()


def _check_ip(value: str) -> str:
    try:
        ip_address(value.strip())
    except ValueError:
        raise ValueError("must be an IP address such as 100.64.0.1") from None
    return value.strip()


Int = Annotated[int, BeforeValidator(_reject_bool)]
PositiveInt = Annotated[int, BeforeValidator(_reject_bool), Field(ge=1)]
NonNegativeInt = Annotated[int, BeforeValidator(_reject_bool), Field(ge=0)]
# Port 0 asks the OS for a free port (tests, side-by-side gateways).
Port = Annotated[int, BeforeValidator(_reject_bool), Field(ge=0, le=65535)]
Float = Annotated[float, BeforeValidator(_reject_bool)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
Secret = Annotated[SecretStr, Field(min_length=1)]
E164 = Annotated[str, StringConstraints(pattern=E164_PATTERN)]
UrlPath = Annotated[str, AfterValidator(_check_path)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
IpAddress = Annotated[str, AfterValidator(_check_ip)]

InboundPolicy = Literal["disabled", "allowlist", "pairing", "open"]
ProviderName = Literal["telnyx", "twilio", "plivo", "mock"]
CallMode = Literal["notify", "conversation"]
SessionScope = Literal["per-phone", "per-call", "main"]


def _secretize(value: Any) -> Any:
    """Wrap string values under secret-like keys of a free-form dict in SecretStr (recursively)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if is_secret_key(str(key)) and isinstance(item, str):
                out[str(key)] = SecretStr(item)
            else:
                out[str(key)] = _secretize(item)
        return out
    if isinstance(value, list):
        return [_secretize(item) for item in value]
    return value


ProviderDicts = Annotated[dict[str, dict[str, Any]], AfterValidator(_secretize)]
"""Provider-owned raw settings keyed by provider id; credential-like values become SecretStr."""


class _Model(BaseModel):
    """Base: camelCase aliases, snake_case attributes, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        protected_namespaces=(),
    )


# --- carriers ---------------------------------------------------------------------------------


class TwilioConfig(_Model):
    """Twilio credentials (env fallback TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN) and REST region."""

    account_sid: NonEmptyStr | None = None
    auth_token: Secret | None = None
    region: Literal["us1", "ie1", "au1"] = "us1"
    api_base_url: HttpUrl | None = None
    """Override the REST base URL (a local simulator); a warning is logged when it is not Twilio's."""


class TelnyxConfig(_Model):
    """Telnyx Call Control credentials; the public key verifies Ed25519 webhook signatures."""

    api_key: Secret | None = None
    connection_id: NonEmptyStr | None = None
    public_key: Secret | None = None


class PlivoConfig(_Model):
    """Plivo credentials (env fallback PLIVO_AUTH_ID / PLIVO_AUTH_TOKEN)."""

    auth_id: NonEmptyStr | None = None
    auth_token: Secret | None = None


# --- server, exposure, security ---------------------------------------------------------------


class OutboundConfig(_Model):
    """Outbound call defaults: the mode every surface uses when none is given (docs/decisions.md D19)."""

    default_mode: CallMode = "notify"
    notify_hangup_delay_sec: NonNegativeInt = 3
    machine_detection: bool = False
    """Ask the carrier to detect answering machines; a machine ends a notify call as `voicemail`."""


class ServeConfig(_Model):
    """The webhook server (the port tunnels expose to carriers)."""

    port: Port = 3334
    bind: NonEmptyStr = "127.0.0.1"
    path: UrlPath = "/voice/webhook"


class ControlConfig(_Model):
    """The control RPC listener: loopback, own port, bearer token (generated when unset)."""

    bind: NonEmptyStr = "127.0.0.1"
    port: Port = 3335
    token: Annotated[SecretStr, Field(min_length=16)] | None = None


class TailscaleConfig(_Model):
    """Legacy Tailscale serve/funnel exposure."""

    mode: Literal["off", "serve", "funnel"] = "off"
    path: UrlPath = "/voice/webhook"
    port: Literal[443, 8443, 10000] = 443


class TunnelConfig(_Model):
    """Tunnel exposure (ngrok or Tailscale); env fallback NGROK_AUTHTOKEN / NGROK_DOMAIN."""

    provider: Literal["none", "ngrok", "tailscale-serve", "tailscale-funnel"] = "none"
    ngrok_auth_token: Secret | None = None
    ngrok_domain: NonEmptyStr | None = None
    allow_ngrok_free_tier_loopback_bypass: bool = False


class WebhookSecurityConfig(_Model):
    """Which forwarding headers are trusted when rebuilding the public URL for signatures."""

    allowed_hosts: list[NonEmptyStr] = Field(default_factory=list)
    trust_forwarding_headers: bool = False
    trusted_proxy_ips: list[IpAddress] = Field(default_factory=list, alias="trustedProxyIPs")


# --- media streaming, realtime, stt -----------------------------------------------------------


class StreamingConfig(_Model):
    """Twilio Media Streams: WebSocket path, pre-auth caps and the transcription provider."""

    enabled: bool = False
    provider: NonEmptyStr | None = None
    providers: ProviderDicts = Field(default_factory=dict)
    stream_path: UrlPath = "/voice/stream"
    pre_start_timeout_ms: PositiveInt = 5000
    max_pending_connections: PositiveInt = 32
    max_pending_connections_per_ip: PositiveInt = 4
    max_connections: PositiveInt = 128


class RealtimeToolParameters(_Model):
    """JSON-Schema object describing a realtime function tool's arguments."""

    type: Literal["object"] = "object"
    properties: dict[str, Any] = Field(default_factory=dict)
    required: list[str] | None = None


class RealtimeTool(_Model):
    """A function tool offered to the realtime voice model."""

    type: Literal["function"] = "function"
    name: NonEmptyStr
    description: str | None = None
    parameters: RealtimeToolParameters = Field(default_factory=RealtimeToolParameters)


class RealtimeAgentContext(_Model):
    """Agent context injected into the realtime session."""

    enabled: bool = False
    max_chars: PositiveInt | None = None
    include_identity: bool | None = None
    include_workspace_files: bool | None = None
    files: list[NonEmptyStr] = Field(default_factory=list)


class RealtimeFastContext(_Model):
    """Fast context lookup before falling back to a full consult."""

    enabled: bool = False
    timeout_ms: PositiveInt | None = None
    fallback_to_consult: bool | None = None


class RealtimeConfig(_Model):
    """Realtime voice (speech-to-speech) bridge. `stream_path` is derived from serve.path."""

    enabled: bool = False
    provider: NonEmptyStr | None = None
    stream_path: UrlPath | None = None
    instructions: str = DEFAULT_REALTIME_INSTRUCTIONS
    tool_policy: Literal["safe-read-only", "owner", "none"] = "safe-read-only"
    tools: list[RealtimeTool] = Field(default_factory=list)
    providers: ProviderDicts = Field(default_factory=dict)
    consult_policy: Literal["auto", "substantive", "always"] = "auto"
    agent_context: RealtimeAgentContext | None = None
    fast_context: RealtimeFastContext | None = None
    consult_thinking_level: NonEmptyStr | None = None
    consult_fast_mode: bool | None = None


class SttConfig(_Model):
    """Kept for compatibility with the original schema; speech-to-text lives under streaming."""

    provider: Literal["openai"] = "openai"
    model: NonEmptyStr = "whisper-1"


# --- tts --------------------------------------------------------------------------------------


class ElevenLabsVoiceSettings(_Model):
    """ElevenLabs voice settings."""

    stability: Annotated[Float, Field(ge=0, le=1)] | None = None
    similarity_boost: Annotated[Float, Field(ge=0, le=1)] | None = None
    style: Annotated[Float, Field(ge=0, le=1)] | None = None
    use_speaker_boost: bool | None = None
    speed: Annotated[Float, Field(ge=0.5, le=2)] | None = None


class TtsProviderConfig(_Model):
    """One TTS provider block (`tts.providers.<id>`): the union of the known providers' keys."""

    api_key: Secret | None = None
    base_url: HttpUrl | None = None
    model: NonEmptyStr | None = None
    voice: NonEmptyStr | None = None
    voice_id: NonEmptyStr | None = None
    model_id: NonEmptyStr | None = None
    speaker_voice: NonEmptyStr | None = None
    speaker_voice_id: NonEmptyStr | None = None
    speed: Annotated[Float, Field(ge=0.25, le=4)] | None = None
    instructions: str | None = None
    seed: Annotated[Int, Field(ge=0, le=4294967295)] | None = None
    apply_text_normalization: Literal["auto", "on", "off"] | None = None
    language_code: NonEmptyStr | None = None
    voice_settings: ElevenLabsVoiceSettings | None = None
    # Edge / Microsoft keys (accepted because core `messages.tts` may carry them).
    enabled: bool | None = None
    lang: NonEmptyStr | None = None
    output_format: NonEmptyStr | None = None
    pitch: str | None = None
    rate: str | None = None
    volume: str | None = None
    save_subtitles: bool | None = None
    proxy: str | None = None
    timeout_ms: PositiveInt | None = None


class TtsModelOverrides(_Model):
    """Which TTS settings the model may override inline."""

    enabled: bool | None = None
    allow_text: bool | None = None
    allow_provider: bool | None = None
    allow_voice: bool | None = None
    allow_model_id: bool | None = None
    allow_voice_settings: bool | None = None
    allow_normalization: bool | None = None
    allow_seed: bool | None = None


def normalize_tts_shape(
    raw: Mapping[str, Any], problems: list[FieldPathError] | None = None
) -> dict[str, Any]:
    """Move seed-shape provider blocks (`tts.openai`) under `tts.providers.<id>`.

    Values already under `providers` win over the seed-shape block for the same provider.
    A non-object seed block raises FieldPathError naming it, or, when `problems` is given, is
    dropped and recorded there so the caller can report it with every other bad key.
    """
    out = {key: copy.deepcopy(value) for key, value in raw.items()}
    moved = [key for key in SEED_TTS_PROVIDER_KEYS if key in out]
    if not moved:
        return out
    providers = out.get("providers")
    if providers is None:
        providers = {}
    if not isinstance(providers, Mapping):
        return out  # leave it for the field validation to report
    providers = dict(providers)
    for key in sorted(moved):
        block = out.pop(key)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            problem = FieldPathError(key, "must be an object")
            if problems is None:
                raise problem
            problems.append(problem)
            continue
        current = providers.get(key)
        if isinstance(current, Mapping):
            providers[key] = {**dict(block), **dict(current)}
        elif current is None:
            providers[key] = dict(block)
    out["providers"] = providers
    return out


class TtsConfig(_Model):
    """Core TTS settings (same shape as OpenClaw `messages.tts`), normalised to `providers`."""

    auto: Literal["off", "always", "inbound", "tagged"] | None = None
    enabled: bool | None = None
    mode: Literal["final", "all"] | None = None
    provider: NonEmptyStr | None = None
    summary_model: NonEmptyStr | None = None
    model_overrides: TtsModelOverrides | None = None
    providers: dict[str, TtsProviderConfig] = Field(default_factory=dict)
    prefs_path: NonEmptyStr | None = None
    max_text_length: PositiveInt | None = None
    timeout_ms: Annotated[Int, Field(ge=1000, le=120000)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return normalize_tts_shape(data)
        return data

    def merged(self, override: TtsConfig | None) -> TtsConfig:
        """This config with the keys explicitly set in `override` deep-merged on top."""
        if override is None:
            return self
        base = self.model_dump(exclude_unset=True)
        over = override.model_dump(exclude_unset=True)
        return TtsConfig.model_validate(_merge_plain(base, over))


def _merge_plain(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_plain(out[key], value)
        else:
            out[key] = value
    return out


# --- routes, mock, root -----------------------------------------------------------------------


class NumberRoute(_Model):
    """Per-dialed-number overrides for inbound calls (`numbers["+1555..."]`)."""

    inbound_greeting: str | None = None
    tts: TtsConfig | None = None
    agent_id: NonEmptyStr | None = None
    response_model: NonEmptyStr | None = None
    response_system_prompt: str | None = None
    response_timeout_ms: PositiveInt | None = None


class MockConfig(_Model):
    """Behaviour of the offline `mock` carrier.

    Speech takes `max(200, len(text) * speak_ms_per_char)` ms; `ring_ms` is the time from
    initiated to ringing and `answer_after_ms` the time from ringing to the outcome.
    """

    answer_after_ms: NonNegativeInt = 300
    outcome: Literal["answer", "busy", "no-answer", "failed"] = "answer"
    caller_replies: list[str] = Field(default_factory=list)
    speak_ms_per_char: NonNegativeInt = 40
    ring_ms: NonNegativeInt = 100


def derive_realtime_stream_path(serve_path: str) -> str:
    """Default realtime stream path from serve.path (docs/decisions.md D38).

    `/voice/webhook` → `/voice/stream/realtime`; `/` → `/voice/stream/realtime`;
    anything else gets `/stream/realtime` appended.
    """
    if serve_path in ("", "/"):
        return "/voice/stream/realtime"
    if serve_path.endswith("/webhook"):
        return serve_path[: -len("/webhook")] + "/stream/realtime"
    return serve_path.rstrip("/") + "/stream/realtime"


class ResponderConfig(_Model):
    """Automatic replies to caller turns (inbound calls and outbound conversation calls).

    Off by default: outbound conversations are then driven by `continue`. `type` chooses the
    backend: `llm` (an OpenAI-compatible chat API; model from `responseModel`), `http` (POST the
    turn to `url`, speak what it returns) or `python` (`target` is `module:function` or an entry
    point in `voicecall.responders`).
    """

    enabled: bool = False
    type: Literal["llm", "http", "python"] = "llm"
    base_url: HttpUrl | None = None
    url: HttpUrl | None = None
    target: NonEmptyStr | None = None
    headers: dict[str, Secret] = Field(default_factory=dict)
    history_turns: Annotated[Int, Field(ge=0, le=200)] = 20


class IdleConfig(_Model):
    """What to do when the caller goes quiet while the bot waits (both off by default)."""

    prompt_after_sec: PositiveInt | None = None
    prompt: NonEmptyStr = "Are you still there?"
    hangup_after_sec: PositiveInt | None = None
    goodbye: NonEmptyStr = "It seems you've stepped away. Goodbye!"


class VoiceCallConfig(_Model):
    """The whole voice-call configuration (`plugins.entries.voice-call.config`).

    Defaults describe a bare voice-call object: enabled, `mock` carrier (docs/decisions.md D36).
    """

    enabled: bool = True
    provider: ProviderName = "mock"
    telnyx: TelnyxConfig = Field(default_factory=TelnyxConfig)
    twilio: TwilioConfig = Field(default_factory=TwilioConfig)
    plivo: PlivoConfig = Field(default_factory=PlivoConfig)
    from_number: E164 | None = None
    to_number: E164 | None = None
    inbound_policy: InboundPolicy = "disabled"
    allow_from: list[E164] = Field(default_factory=list)
    inbound_greeting: str | None = None
    outbound: OutboundConfig = Field(default_factory=OutboundConfig)
    max_duration_seconds: PositiveInt = 300
    stale_call_reaper_seconds: NonNegativeInt = 120
    silence_timeout_ms: PositiveInt = 800
    transcript_timeout_ms: PositiveInt = 180000
    ring_timeout_ms: PositiveInt = 30000
    max_concurrent_calls: PositiveInt = 1
    serve: ServeConfig = Field(default_factory=ServeConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    tailscale: TailscaleConfig = Field(default_factory=TailscaleConfig)
    tunnel: TunnelConfig = Field(default_factory=TunnelConfig)
    webhook_security: WebhookSecurityConfig = Field(default_factory=WebhookSecurityConfig)
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    realtime: RealtimeConfig = Field(default_factory=RealtimeConfig)
    public_url: HttpUrl | None = None
    skip_signature_verification: bool = False
    stt: SttConfig = Field(default_factory=SttConfig)
    tts: TtsConfig = Field(default_factory=TtsConfig)
    store: NonEmptyStr | None = None
    agent_id: NonEmptyStr = "main"
    session_scope: SessionScope = "per-phone"
    numbers: dict[E164, NumberRoute] = Field(default_factory=dict)
    response_model: NonEmptyStr | None = None
    response_system_prompt: str | None = None
    response_timeout_ms: PositiveInt = 30000
    responder: ResponderConfig = Field(default_factory=ResponderConfig)
    idle: IdleConfig = Field(default_factory=IdleConfig)
    mock: MockConfig = Field(default_factory=MockConfig)

    @field_validator("tts", mode="before")
    @classmethod
    def _tts_none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        if self.realtime.stream_path is None:
            self.realtime.stream_path = derive_realtime_stream_path(self.serve.path)
        if self.control.port == self.serve.port != 0:  # 0 = two distinct ephemeral ports
            raise FieldPathError(
                "control.port",
                f"must differ from serve.port ({self.serve.port}): the control API is never "
                "served on the webhook port",
            )
        if self.streaming.stream_path == self.serve.path:
            raise FieldPathError("streaming.streamPath", "must differ from serve.path")
        if self.responder.enabled and self.responder.type == "http" and not self.responder.url:
            raise FieldPathError("responder.url", "is required when responder.type is http")
        if self.responder.enabled and self.responder.type == "python" and not self.responder.target:
            raise FieldPathError("responder.target", "is required when responder.type is python "
                                 "(module:function or an entry-point name)")
        idle = self.idle
        if idle.prompt_after_sec and idle.hangup_after_sec and idle.hangup_after_sec <= idle.prompt_after_sec:
            raise FieldPathError("idle.hangupAfterSec", "must be greater than idle.promptAfterSec")
        return self

    def route_for(self, dialed: str | None) -> NumberRoute | None:
        """The `numbers` route for a dialed E.164 number, if one is configured."""
        if not dialed:
            return None
        return self.numbers.get(dialed)


# --- issues, errors and provider validation ---------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    """One problem with the configuration: the camelCase dotted key path and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; `issues` names every bad key."""

    def __init__(self, issues: Iterable[ConfigIssue], *, source: Path | None = None) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        self.source = source
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


@dataclass(frozen=True)
class NotBuiltRule:
    """A setting whose feature does not exist in this build yet, so it is refused (docs/decisions.md D39)."""

    path: str
    applies: Callable[[VoiceCallConfig], bool]
    message: Callable[[VoiceCallConfig], str]


AVAILABLE_PROVIDERS: tuple[str, ...] = ("mock", "twilio")
"""Carriers this build can actually drive."""

NOT_BUILT_YET: list[NotBuiltRule] = [
    NotBuiltRule(
        "provider",
        lambda c: c.provider not in AVAILABLE_PROVIDERS,
        lambda c: (
            f'"{c.provider}" is not available in this build yet (available: {", ".join(AVAILABLE_PROVIDERS)})'
        ),
    ),
    NotBuiltRule(
        "realtime.enabled",
        lambda c: c.realtime.enabled,
        lambda c: "realtime voice is not available in this build yet; set it to false",
    ),
]
"""Refusals for features not built yet; delete a row when its feature lands."""


def _required(path: str, env_var: str | None = None) -> ConfigIssue:
    hint = f" (or set {env_var} env)" if env_var else ""
    return ConfigIssue(path, f"is required{hint}")


def validate_provider_config(cfg: VoiceCallConfig) -> list[ConfigIssue]:
    """Cross-key checks that need the selected provider (docs/decisions.md D39) plus not-built refusals.

    A disabled config is valid. These are reported, not raised, so `setup` can list them all.
    """
    if not cfg.enabled:
        return []
    issues: list[ConfigIssue] = []
    if cfg.provider != "mock" and not cfg.from_number:
        issues.append(_required("fromNumber", "TWILIO_FROM_NUMBER" if cfg.provider == "twilio" else None))
    if cfg.provider == "telnyx":
        if cfg.telnyx.api_key is None:
            issues.append(_required("telnyx.apiKey", "TELNYX_API_KEY"))
        if not cfg.telnyx.connection_id:
            issues.append(_required("telnyx.connectionId", "TELNYX_CONNECTION_ID"))
        if cfg.telnyx.public_key is None and not cfg.skip_signature_verification:
            issues.append(
                ConfigIssue(
                    "telnyx.publicKey",
                    "is required unless skipSignatureVerification is true (or set TELNYX_PUBLIC_KEY env)",
                )
            )
    elif cfg.provider == "twilio":
        if not cfg.twilio.account_sid:
            issues.append(_required("twilio.accountSid", "TWILIO_ACCOUNT_SID"))
        if cfg.twilio.auth_token is None:
            issues.append(_required("twilio.authToken", "TWILIO_AUTH_TOKEN"))
    elif cfg.provider == "plivo":
        if not cfg.plivo.auth_id:
            issues.append(_required("plivo.authId", "PLIVO_AUTH_ID"))
        if cfg.plivo.auth_token is None:
            issues.append(_required("plivo.authToken", "PLIVO_AUTH_TOKEN"))
    if cfg.realtime.enabled:
        if cfg.inbound_policy == "disabled":
            issues.append(
                ConfigIssue("inboundPolicy", 'must not be "disabled" when realtime.enabled is true')
            )
        if cfg.streaming.enabled:
            issues.append(
                ConfigIssue("realtime.enabled", "realtime.enabled and streaming.enabled cannot both be true")
            )
        if cfg.provider not in ("twilio", "telnyx"):
            issues.append(
                ConfigIssue("provider", 'must be "twilio" or "telnyx" when realtime.enabled is true')
            )
    if (
        cfg.tunnel.provider == "ngrok"
        and cfg.tunnel.allow_ngrok_free_tier_loopback_bypass
        and cfg.serve.bind not in ("127.0.0.1", "::1", "localhost")
    ):
        issues.append(
            ConfigIssue(
                "tunnel.allowNgrokFreeTierLoopbackBypass",
                "only applies when serve.bind is a loopback address (127.0.0.1, ::1 or localhost)",
            )
        )
    for rule in NOT_BUILT_YET:
        if rule.applies(cfg):
            issues.append(ConfigIssue(rule.path, rule.message(cfg)))
    return issues


# --- pydantic errors → issues -----------------------------------------------------------------


def format_path(parts: Iterable[str | int]) -> str:
    """`("allowFrom", 1)` → `allowFrom[1]`; `("serve", "port")` → `serve.port`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass
class _Resolved:
    """What the walker learned about the type at an error location."""

    annotation: Any = None
    metadata: list[Any] = field(default_factory=list)
    parent_model: type[BaseModel] | None = None


def _unwrap(annotation: Any, metadata: list[Any]) -> Any:
    """Strip Annotated (collecting its metadata) and Optional from a type."""
    while True:
        if get_origin(annotation) is Annotated:
            args = get_args(annotation)
            for item in args[1:]:
                # Field(...) inside Annotated carries its constraints in its own metadata.
                metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
            annotation = args[0]
            continue
        if get_origin(annotation) in (UnionType, Union):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _field_by_key(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _resolve(root: type[BaseModel], loc: tuple[str | int, ...]) -> _Resolved:
    current: Any = root
    resolved = _Resolved()
    for part in loc:
        metadata: list[Any] = []
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = _field_by_key(current, str(part))
            resolved.parent_model = current
            if info is None:
                return _Resolved(parent_model=current)
            metadata.extend(info.metadata)
            current = _unwrap(info.annotation, metadata)
        elif get_origin(current) is dict:
            current = _unwrap(get_args(current)[1], metadata)
            resolved.parent_model = None
        elif get_origin(current) is list:
            current = _unwrap(get_args(current)[0], metadata)
            resolved.parent_model = None
        else:
            return _Resolved()
        resolved.annotation = current
        resolved.metadata = metadata
    return resolved


def _bounds(metadata: list[Any]) -> str:
    parts: list[str] = []
    for item in metadata:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return " and ".join(parts)


def _number_message(resolved: _Resolved, ctx: Mapping[str, Any]) -> str:
    kind = "an integer" if resolved.annotation is int else "a number"
    bounds = _bounds(resolved.metadata)
    if not bounds:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if attr in ctx:
                bounds = f"{symbol} {ctx[attr]}"
    return f"must be {kind} {bounds}".rstrip()


def _choices(values: Iterable[Any]) -> str:
    return ", ".join(str(value) for value in values)


_NUMBER_ERRORS = frozenset(
    {
        "int_type",
        "int_parsing",
        "int_parsing_size",
        "int_from_float",
        "float_type",
        "float_parsing",
        "finite_number",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "multiple_of",
    }
)


def _unknown_key_message(parent: type[BaseModel] | None, key: str) -> str:
    if parent is None:
        return "unknown key"
    names = [info.alias or name for name, info in parent.model_fields.items()]
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return f'unknown key (did you mean "{close[0]}"?)'
    if len(names) <= 12:
        return f"unknown key (allowed: {', '.join(names)})"
    return "unknown key"


def issue_from_error(error: Mapping[str, Any], root: type[BaseModel] = VoiceCallConfig) -> ConfigIssue:
    """Turn one pydantic error into an issue naming the camelCase path and what is allowed.

    Input values are never echoed, so secrets cannot leak into messages.
    """
    loc: tuple[str | int, ...] = tuple(error.get("loc", ()))
    etype: str = error.get("type", "")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if loc and loc[-1] == "[key]":
        path = format_path(loc[:-1])
        if etype == "string_pattern_mismatch" and ctx.get("pattern") == E164_PATTERN:
            return ConfigIssue(path, "key must be an E.164 phone number like +15550001234")
        return ConfigIssue(path, "invalid key")
    path = format_path(loc) or "(root)"
    if etype == "extra_forbidden":
        parent = _resolve(root, loc[:-1]).annotation if len(loc) > 1 else root
        parent_model = parent if isinstance(parent, type) and issubclass(parent, BaseModel) else None
        return ConfigIssue(path, _unknown_key_message(parent_model, str(loc[-1])))
    resolved = _resolve(root, loc)
    original = ctx.get("error")
    if isinstance(original, FieldPathError):
        full = format_path([*loc, *original.path.split(".")]) if original.path else path
        return ConfigIssue(full, original.message)
    if etype in _NUMBER_ERRORS or isinstance(original, WrongTypeError):
        return ConfigIssue(path, _number_message(resolved, ctx))
    if etype == "missing":
        return ConfigIssue(path, "is required")
    if etype == "literal_error":
        annotation = resolved.annotation
        if get_origin(annotation) is Literal:
            return ConfigIssue(path, f"must be one of {_choices(get_args(annotation))}")
        return ConfigIssue(path, f"must be one of {ctx.get('expected', '?')}")
    if etype in ("bool_type", "bool_parsing"):
        return ConfigIssue(path, "must be true or false")
    if etype == "string_pattern_mismatch" and ctx.get("pattern") == E164_PATTERN:
        return ConfigIssue(path, "must be an E.164 phone number like +15550001234")
    if etype in ("string_too_short", "too_short"):
        minimum = int(ctx.get("min_length", 1))
        if minimum <= 1:
            return ConfigIssue(path, "must not be empty")
        return ConfigIssue(path, f"must be at least {minimum} characters")
    if etype in ("string_too_long", "too_long"):
        return ConfigIssue(path, f"must be at most {ctx.get('max_length')} characters")
    if etype in ("string_type", "string_sub_type", "string_unicode"):
        return ConfigIssue(path, "must be a string")
    if etype in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return ConfigIssue(path, "must be an object")
    if etype in ("list_type", "tuple_type", "iterable_type"):
        return ConfigIssue(path, "must be a list")
    if etype == "value_error" and isinstance(original, ValueError):
        return ConfigIssue(path, str(original))
    return ConfigIssue(path, str(error.get("msg", "is invalid")))


def issues_from_validation_error(
    err: ValidationError, root: type[BaseModel] = VoiceCallConfig
) -> list[ConfigIssue]:
    """Every pydantic error as a ConfigIssue, duplicates removed, order kept."""
    seen: dict[ConfigIssue, None] = {}
    for error in err.errors():
        seen.setdefault(issue_from_error(error, root), None)
    return list(seen)
