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
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo

from voicecall.config.secret_refs import (
    SECRETS_CONTEXT_KEY,
    SecretRef,
    SecretResolving,
    SecretsConfig,
    looks_like_ref,
)

__all__ = [
    "AVAILABLE_PROVIDERS",
    "DEFAULT_REALTIME_INSTRUCTIONS",
    "E164_PATTERN",
    "FUNNEL_PORTS",
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
    "Secret",
    "SecretsConfig",
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
    "funnel_port_message",
    "is_secret_key",
    "issue_from_error",
    "issues_from_validation_error",
    "normalize_tts_shape",
    "validate_provider_config",
]

FUNNEL_PORTS: tuple[int, ...] = (443, 8443, 10000)
"""The HTTPS ports Tailscale Funnel can serve on (serve takes any)."""

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


def _secret_input(value: Any, info: ValidationInfo) -> Any:
    """A credential key's value: a string as it is, or a SecretRef resolved by the loader (D90)."""
    if not looks_like_ref(value):
        return value
    try:
        ref = SecretRef.model_validate(value)
    except ValidationError as exc:
        first = issues_from_validation_error(exc, SecretRef)[0]
        raise FieldPathError("" if first.path == "(root)" else first.path, first.message) from None
    resolver: SecretResolving | None = (info.context or {}).get(SECRETS_CONTEXT_KEY)
    if resolver is None:
        raise ValueError("a SecretRef is resolved only when the config file is loaded (load_config)")
    try:
        return SecretStr(resolver.resolve(ref))
    except ValueError as exc:
        raise ValueError(f"cannot resolve the secret: {exc}") from None


# The input a credential accepts, as the published schema shows it.
_WRITE_ONLY: JsonDict = {"format": "password", "writeOnly": True}
_SECRET_INPUT = BeforeValidator(_secret_input, json_schema_input_type=(
    Annotated[str, Field(min_length=1, json_schema_extra=_WRITE_ONLY)] | SecretRef))
_TOKEN_INPUT = BeforeValidator(_secret_input, json_schema_input_type=(
    Annotated[str, Field(min_length=16, json_schema_extra=_WRITE_ONLY)] | SecretRef))

# Bounds go before the BeforeValidator: after it, pydantic checks them in a separate validator
# and writes them into the JSON schema as its own `ge`/`le` keys instead of `minimum`/`maximum`.
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_reject_bool)]
NonNegativeInt = Annotated[int, Field(ge=0), BeforeValidator(_reject_bool)]
# Port 0 asks the OS for a free port (tests, side-by-side gateways).
Port = Annotated[int, Field(ge=0, le=65535), BeforeValidator(_reject_bool)]
UnitFloat = Annotated[float, Field(ge=0, le=1), BeforeValidator(_reject_bool)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
Secret = Annotated[SecretStr, Field(min_length=1), _SECRET_INPUT]
"""Every credential key has this type (or `ControlToken`): a plain string or a SecretRef (D90)."""
ControlToken = Annotated[SecretStr, Field(min_length=16), _TOKEN_INPUT]
E164 = Annotated[str, StringConstraints(pattern=E164_PATTERN)]
UrlPath = Annotated[str, AfterValidator(_check_path)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
IpAddress = Annotated[str, AfterValidator(_check_ip)]

InboundPolicy = Literal["disabled", "allowlist", "pairing", "open"]
ProviderName = Literal["telnyx", "twilio", "plivo", "mock"]
CallMode = Literal["notify", "conversation"]
SessionScope = Literal["per-phone", "per-call", "main"]


def _secretize(value: Any, info: ValidationInfo, path: tuple[str, ...]) -> Any:
    """Wrap string values under secret-like keys of a free-form dict in SecretStr (recursively);
    a SecretRef under such a key is resolved (D90)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            here = (*path, str(key))
            if is_secret_key(str(key)) and isinstance(item, str):
                out[str(key)] = SecretStr(item)
            elif is_secret_key(str(key)) and looks_like_ref(item):
                try:
                    out[str(key)] = _secret_input(item, info)
                except FieldPathError as exc:
                    raise FieldPathError(".".join(filter(None, (*here, exc.path))), exc.message) from None
                except ValueError as exc:
                    raise FieldPathError(".".join(here), str(exc)) from None
            else:
                out[str(key)] = _secretize(item, info, here)
        return out
    if isinstance(value, list):
        return [_secretize(item, info, path) for item in value]
    return value


def _secretize_dicts(value: Any, info: ValidationInfo) -> Any:
    return _secretize(value, info, ())


ProviderDicts = Annotated[dict[str, dict[str, Any]], AfterValidator(_secretize_dicts)]
"""Provider-owned raw settings keyed by provider id; credential-like values become SecretStr, and
credential-like keys may hold a SecretRef."""


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

    account_sid: NonEmptyStr | None = Field(
        None, description="Twilio account SID; TWILIO_ACCOUNT_SID fills it when unset.")
    auth_token: Secret | None = Field(
        None, description="Twilio auth token, for the REST API and to verify webhook signatures; "
        "TWILIO_AUTH_TOKEN fills it when unset.")
    region: Literal["us1", "ie1", "au1"] = Field(
        "us1", description="Twilio REST API region: `us1` (United States), `ie1` (Ireland) or `au1` "
        "(Australia).")
    api_base_url: HttpUrl | None = Field(
        None, description="REST API base URL to use instead of the region's, e.g. a local Twilio simulator; "
        "a warning is logged when it is not Twilio's.")


class TelnyxConfig(_Model):
    """Telnyx Call Control credentials; the public key verifies Ed25519 webhook signatures."""

    api_key: Secret | None = Field(
        None, description="Telnyx API key; TELNYX_API_KEY fills it when unset.")
    connection_id: NonEmptyStr | None = Field(
        None, description="Telnyx Call Control connection id; TELNYX_CONNECTION_ID fills it when unset.")
    public_key: Secret | None = Field(
        None, description="Telnyx public key that verifies Ed25519 webhook signatures, required unless "
        "skipSignatureVerification is true; TELNYX_PUBLIC_KEY fills it when unset. PEM, base64 of the "
        "32-byte key (as the Telnyx portal shows it) or base64 DER.")
    api_base_url: HttpUrl | None = Field(
        None, description="Call Control API base URL to use instead of `https://api.telnyx.com/v2`, e.g. a "
        "local Telnyx simulator; a warning is logged when it is not Telnyx's.")
    stream_codec: Literal["PCMU", "PCMA"] = Field(
        "PCMU", description="G.711 codec asked for on streamed calls (`PCMU` μ-law or `PCMA` A-law); each "
        "stream's `start` message says the codec it really uses.")


class PlivoConfig(_Model):
    """Plivo credentials (env fallback PLIVO_AUTH_ID / PLIVO_AUTH_TOKEN) and REST base URL."""

    auth_id: NonEmptyStr | None = Field(
        None, description="Plivo auth id; PLIVO_AUTH_ID fills it when unset.")
    auth_token: Secret | None = Field(
        None, description="Plivo auth token, for the REST API and to verify webhook signatures; "
        "PLIVO_AUTH_TOKEN fills it when unset.")
    api_base_url: HttpUrl | None = Field(
        None, description="REST API base URL to use instead of `https://api.plivo.com`, e.g. a local Plivo "
        "simulator; a warning is logged when it is not Plivo's.")


# --- server, exposure, security ---------------------------------------------------------------


class OutboundConfig(_Model):
    """Outbound call defaults: the mode every surface uses when none is given (docs/decisions.md D19)."""

    default_mode: CallMode = Field(
        "notify", description="Mode of an outbound call that names none: `notify` speaks the message and "
        "hangs up, `conversation` stays on the line for more turns.")
    notify_hangup_delay_sec: NonNegativeInt = Field(
        3, description="Seconds from the end of a notify call's message (once the carrier confirms it "
        "played) to the hang-up.")
    machine_detection: bool = Field(
        False, description="Ask the carrier to detect answering machines; a machine ends a notify call "
        "as `voicemail`.")


class ServeConfig(_Model):
    """The webhook server (the port tunnels expose to carriers)."""

    port: Port = Field(
        3334, description="Port of the webhook server (carrier webhooks and media streams); 0 picks a "
        "free port.")
    bind: NonEmptyStr = Field("127.0.0.1", description="Address the webhook server listens on.")
    path: UrlPath = Field(
        "/voice/webhook", description="URL path of the carrier webhook; a missing leading `/` is added and a "
        "trailing `/` removed.")


class ControlConfig(_Model):
    """The control RPC listener: loopback, own port, bearer token (generated when unset)."""

    bind: NonEmptyStr = Field(
        "127.0.0.1", description="Address the control API listens on; keep it a loopback address.")
    port: Port = Field(3335, description="Port of the control API; must differ from serve.port.")
    token: ControlToken | None = Field(
        None, description="Bearer token of the control API, at least 16 characters. When unset, a token is "
        "generated and kept in `gateway.token` in the state directory (`voicecall token` prints it).")
    metrics_public: bool = Field(
        False, description="Serve `/metrics` (Prometheus) on the control listener without the bearer "
        "token, for a scraper that cannot send one.")


class TailscaleConfig(_Model):
    """Legacy Tailscale serve/funnel exposure."""

    mode: Literal["off", "serve", "funnel"] = Field(
        "off", description="`serve` exposes the webhook on your tailnet, `funnel` on the internet, `off` "
        "not at all.")
    path: UrlPath = Field(
        "/voice/webhook", description="Path Tailscale exposes; requests to it go to serve.path.")
    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_reject_bool)] = Field(
        443, description="HTTPS port Tailscale serves on (the URL gets `:<port>` unless it is 443): any "
        "port for serve; 443, 8443 or 10000 for funnel, the only ones Funnel offers.")


class TunnelConfig(_Model):
    """Tunnel exposure (ngrok or Tailscale); env fallback NGROK_AUTHTOKEN / NGROK_DOMAIN."""

    provider: Literal["none", "ngrok", "tailscale-serve", "tailscale-funnel"] = Field(
        "none", description="Tunnel started with the gateway: `ngrok` (the ngrok command on PATH), "
        "`tailscale-serve` (tailnet only), `tailscale-funnel` (internet) or `none`. Its URL becomes the "
        "webhook URL; it stops with the gateway.")
    ngrok_auth_token: Secret | None = Field(
        None, description="ngrok auth token; NGROK_AUTHTOKEN fills it when unset.")
    ngrok_domain: NonEmptyStr | None = Field(
        None, description="Reserved ngrok domain, for a URL that stays the same; NGROK_DOMAIN fills it when "
        "unset.")
    allow_ngrok_free_tier_loopback_bypass: bool = Field(
        False, description="With an ngrok tunnel and a loopback serve.bind, trust forwarding headers on "
        "requests from loopback when rebuilding the signed webhook URL. Signatures are still checked.")


class WebhookSecurityConfig(_Model):
    """Which forwarding headers are trusted when rebuilding the public URL for signatures."""

    allowed_hosts: list[NonEmptyStr] = Field(
        default_factory=list, description="Host names accepted from forwarding headers (X-Forwarded-Host "
        "and the like); setting any turns forwarding headers on.")
    trust_forwarding_headers: bool = Field(
        False, description="Use X-Forwarded-Proto and X-Forwarded-Host to rebuild the URL the carrier "
        "signed, behind a reverse proxy without publicUrl.")
    trusted_proxy_ips: list[IpAddress] = Field(
        default_factory=list, alias="trustedProxyIPs", description="When set, forwarding headers count only "
        "on requests from these proxy IP addresses.")


# --- media streaming, realtime, stt -----------------------------------------------------------


class StreamingConfig(_Model):
    """Twilio Media Streams: WebSocket path, pre-auth caps and the transcription provider."""

    enabled: bool = Field(
        False, description="Connect answered calls to a media stream: speech goes out as streamed TTS audio "
        "(needs a tts provider with an API key), the caller is heard by streaming speech-to-text, and "
        "caller speech interrupts playback.")
    provider: NonEmptyStr | None = Field(
        None, description="Speech-to-text provider: `openai`, `deepgram`, or `none` for speak-only calls. "
        "Unset: the first provider under providers, else `openai`.")
    providers: ProviderDicts = Field(
        default_factory=dict, description="Settings per speech-to-text provider id: `apiKey` (a string or a "
        "SecretRef; else OPENAI_API_KEY or DEEPGRAM_API_KEY), `baseUrl`, `model`; for openai also "
        "`silenceDurationMs`, `vadThreshold`, `prefixPaddingMs`; for deepgram also `endpointingMs`, "
        "`language`.")
    stream_path: UrlPath = Field(
        "/voice/stream", description="WebSocket path of media streams on the webhook port; must differ "
        "from serve.path.")
    pre_start_timeout_ms: PositiveInt = Field(
        5000, description="Milliseconds a new stream socket has to send its `start` message before it is "
        "closed.")
    max_pending_connections: PositiveInt = Field(
        32, description="Stream sockets allowed to wait for their `start` message at the same time.")
    max_pending_connections_per_ip: PositiveInt = Field(
        4, description="Stream sockets allowed to wait for their `start` message at the same time, per "
        "client IP address.")
    max_connections: PositiveInt = Field(
        128, description="Stream sockets allowed at the same time; more get HTTP 503 instead of degrading "
        "every call.")


class RealtimeToolParameters(_Model):
    """JSON-Schema object describing a realtime function tool's arguments."""

    type: Literal["object"] = Field("object", description="Always `object`.")
    properties: dict[str, Any] = Field(
        default_factory=dict, description="JSON Schema of each argument, by argument name.")
    required: list[str] | None = Field(None, description="Names of the arguments that must be given.")


class RealtimeTool(_Model):
    """A function tool offered to the realtime voice model."""

    type: Literal["function"] = Field("function", description="Always `function`.")
    name: NonEmptyStr = Field(description="Function name the model calls.")
    description: str | None = Field(None, description="What the function does, for the model.")
    parameters: RealtimeToolParameters = Field(
        default_factory=RealtimeToolParameters, description="The function's arguments, as a JSON Schema "
        "object.")


class RealtimeAgentContext(_Model):
    """Agent context injected into the realtime session."""

    enabled: bool = Field(False, description="Add the text of `files` to the realtime model's instructions.")
    max_chars: PositiveInt | None = Field(
        None, description="Most characters of context to add (8000 when unset).")
    include_identity: bool | None = Field(
        None, description="No effect (a warning says so): there is no agent identity to add.")
    include_workspace_files: bool | None = Field(
        None, description="No effect (a warning says so): there is no agent workspace; list files instead.")
    files: list[NonEmptyStr] = Field(
        default_factory=list, description="Text files added to the instructions, read at start (a file "
        "that cannot be read fails the start).")


class RealtimeFastContext(_Model):
    """Fast context lookup before falling back to a full consult."""

    enabled: bool = Field(
        False, description="No effect (a warning says so): there is no quick lookup; the model consults "
        "the agent directly.")
    timeout_ms: PositiveInt | None = Field(None, description="No effect (see enabled).")
    fallback_to_consult: bool | None = Field(None, description="No effect (see enabled).")


class RealtimeConfig(_Model):
    """Realtime voice (speech-to-speech) bridge. `stream_path` is derived from serve.path."""

    enabled: bool = Field(
        False, description="Bridge answered calls' media streams to a realtime speech-to-speech model "
        "(`provider`) instead of speech-to-text, the responder and TTS.")
    provider: NonEmptyStr | None = Field(
        None, description="Realtime voice provider: `openai` or `google`. Unset: the first one under "
        "providers, else `openai`. An unknown one is a warning and calls take the classic path.")
    stream_path: UrlPath | None = Field(
        None, description="WebSocket path of the realtime stream. Unset: derived from serve.path "
        "(`/voice/webhook` gives `/voice/stream/realtime`).")
    instructions: str = Field(
        DEFAULT_REALTIME_INSTRUCTIONS, description="Instructions for the realtime voice model.")
    tool_policy: Literal["safe-read-only", "owner", "none"] = Field(
        "safe-read-only", description="Which tools the realtime model may use: `none` only end_call; "
        "otherwise the responder's tools and the consult of the agent (openclaw_agent_consult).")
    tools: list[RealtimeTool] = Field(
        default_factory=list, description="No effect (a warning says so): declarations without an "
        "implementation; give the model tools with responder.tools or responder.mcpServers.")
    providers: ProviderDicts = Field(
        default_factory=dict, description="Settings per realtime provider id. openai: `apiKey` (else "
        "OPENAI_API_KEY), `model`, `voice`, `baseUrl` (else OPENAI_BASE_URL), `audioFormat` (`g711`, "
        "the default, or `pcm16`: 24 kHz PCM for servers without G.711). google: `apiKey` (else "
        "GEMINI_API_KEY or GOOGLE_API_KEY), `model`, `speakerVoice`, `silenceDurationMs`, "
        "`startSensitivity`, `endSensitivity` (`high` or `low`), `baseUrl`.")
    consult_policy: Literal["auto", "substantive", "always"] = Field(
        "auto", description="When the realtime model is told to consult the agent (the responder, with "
        "the call's transcript and the user's tools): `auto` when it needs to, `substantive` for every "
        "substantive question, `always` before every answer.")
    agent_context: RealtimeAgentContext | None = Field(
        None, description="Files whose text is added to the realtime model's instructions.")
    fast_context: RealtimeFastContext | None = Field(
        None, description="No effect (a warning says so).")
    consult_thinking_level: NonEmptyStr | None = Field(
        None, description="No effect (a warning says so): the consult uses the responder as configured.")
    consult_fast_mode: bool | None = Field(
        None, description="No effect (a warning says so): the consult uses the responder as configured.")


class SttConfig(_Model):
    """Kept for compatibility with the original schema; speech-to-text lives under streaming."""

    provider: Literal["openai"] = Field(
        "openai", description="No effect (a warning says so); set streaming.provider instead.")
    model: NonEmptyStr = Field(
        "whisper-1", description="No effect (a warning says so); set `streaming.providers.<id>.model` "
        "instead.")


# --- tts --------------------------------------------------------------------------------------


class ElevenLabsVoiceSettings(_Model):
    """ElevenLabs voice settings."""

    stability: UnitFloat | None = Field(None, description="Voice stability, from 0 to 1.")
    similarity_boost: UnitFloat | None = Field(
        None, description="How closely to keep to the original voice, from 0 to 1.")
    style: UnitFloat | None = Field(None, description="Style exaggeration, from 0 to 1.")
    use_speaker_boost: bool | None = Field(
        None, description="Boost the similarity to the original speaker.")
    speed: Annotated[float, Field(ge=0.5, le=2), BeforeValidator(_reject_bool)] | None = Field(
        None, description="Speaking speed, from 0.5 to 2.")


_NO_CALL_SPEECH = "; accepted, but Edge and Microsoft cannot speak on calls."


class TtsProviderConfig(_Model):
    """One TTS provider block (`tts.providers.<id>`): the union of the known providers' keys."""

    api_key: Secret | None = Field(
        None, description="API key of this provider; else OPENAI_API_KEY (openai) or ELEVENLABS_API_KEY / "
        "XI_API_KEY (elevenlabs). A provider without a key is skipped.")
    base_url: HttpUrl | None = Field(
        None, description="API base URL to use instead of the provider's, e.g. a compatible server.")
    model: NonEmptyStr | None = Field(
        None, description="OpenAI: speech model (`gpt-4o-mini-tts` when unset).")
    voice: NonEmptyStr | None = Field(
        None, description="OpenAI: voice (`alloy` when unset). Twilio's and Plivo's own speech map it "
        "onto a similar Amazon Polly voice.")
    voice_id: NonEmptyStr | None = Field(
        None, description="ElevenLabs: voice id (a default voice when unset).")
    model_id: NonEmptyStr | None = Field(
        None, description="ElevenLabs: model id (`eleven_multilingual_v2` when unset).")
    speaker_voice: NonEmptyStr | None = Field(
        None, description="Accepted so shared OpenClaw configs load; no effect on calls.")
    speaker_voice_id: NonEmptyStr | None = Field(
        None, description="Accepted so shared OpenClaw configs load; no effect on calls.")
    speed: Annotated[float, Field(ge=0.25, le=4), BeforeValidator(_reject_bool)] | None = Field(
        None, description="OpenAI: speaking speed, from 0.25 to 4.")
    instructions: str | None = Field(
        None, description="OpenAI: how to speak (tone, accent, pace); used by gpt-4o-mini-tts models only.")
    seed: Annotated[int, Field(ge=0, le=4294967295), BeforeValidator(_reject_bool)] | None = Field(
        None, description="ElevenLabs: seed for repeatable output.")
    apply_text_normalization: Literal["auto", "on", "off"] | None = Field(
        None, description="ElevenLabs: whether numbers, dates and the like are spelled out before speaking.")
    language_code: NonEmptyStr | None = Field(
        None, description="ElevenLabs: language of the text, as an ISO 639-1 code such as `en`.")
    voice_settings: ElevenLabsVoiceSettings | None = Field(
        None, description="ElevenLabs: voice settings.")
    enabled: bool | None = Field(None, description="Edge / Microsoft: provider on or off" + _NO_CALL_SPEECH)
    lang: NonEmptyStr | None = Field(None, description="Edge / Microsoft: language" + _NO_CALL_SPEECH)
    output_format: NonEmptyStr | None = Field(
        None, description="Edge / Microsoft: audio output format" + _NO_CALL_SPEECH)
    pitch: str | None = Field(None, description="Edge / Microsoft: voice pitch" + _NO_CALL_SPEECH)
    rate: str | None = Field(None, description="Edge / Microsoft: speaking rate" + _NO_CALL_SPEECH)
    volume: str | None = Field(None, description="Edge / Microsoft: volume" + _NO_CALL_SPEECH)
    save_subtitles: bool | None = Field(
        None, description="Edge / Microsoft: save subtitles next to the audio" + _NO_CALL_SPEECH)
    proxy: str | None = Field(None, description="Edge / Microsoft: HTTP proxy" + _NO_CALL_SPEECH)
    timeout_ms: PositiveInt | None = Field(
        None, description="Edge / Microsoft: request time limit in milliseconds" + _NO_CALL_SPEECH)


class TtsModelOverrides(_Model):
    """Which TTS settings the model may override inline."""

    enabled: bool | None = Field(None, description="Let the model override TTS settings inline.")
    allow_text: bool | None = Field(None, description="The model may change the spoken text.")
    allow_provider: bool | None = Field(None, description="The model may choose the provider.")
    allow_voice: bool | None = Field(None, description="The model may choose the voice.")
    allow_model_id: bool | None = Field(None, description="The model may choose the speech model.")
    allow_voice_settings: bool | None = Field(None, description="The model may change voice settings.")
    allow_normalization: bool | None = Field(None, description="The model may change text normalization.")
    allow_seed: bool | None = Field(None, description="The model may set the seed.")


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


_NO_CALL_EFFECT = "Accepted so shared OpenClaw configs load; no effect on calls."


def _seed_shape_schema(schema: JsonDict) -> None:
    """JSON Schema of `TtsConfig`: also the seed-shape blocks the validator moves under `providers`."""
    properties = schema.get("properties")
    providers = properties.get("providers") if isinstance(properties, dict) else None
    block = providers.get("additionalProperties") if isinstance(providers, dict) else None
    if not isinstance(properties, dict) or not isinstance(block, dict):  # pragma: no cover - always there
        return
    for key in sorted(SEED_TTS_PROVIDER_KEYS):
        properties[key] = {
            "anyOf": [dict(block), {"type": "null"}],  # the provider block's schema, or null (ignored)
            "default": None,
            "description": f"The same as providers.{key} (the older shape); merged into it, and keys set "
            f"under providers.{key} win.",
        }


class TtsConfig(_Model):
    """Core TTS settings (same shape as OpenClaw `messages.tts`), normalised to `providers`."""

    model_config = ConfigDict(json_schema_extra=_seed_shape_schema)

    auto: Literal["off", "always", "inbound", "tagged"] | None = Field(None, description=_NO_CALL_EFFECT)
    enabled: bool | None = Field(None, description=_NO_CALL_EFFECT)
    mode: Literal["final", "all"] | None = Field(None, description=_NO_CALL_EFFECT)
    provider: NonEmptyStr | None = Field(
        None, description="Preferred provider on calls, `openai` or `elevenlabs`; the other one, if it has "
        "an API key, takes over when it fails before speaking. Unset: openai first.")
    summary_model: NonEmptyStr | None = Field(None, description=_NO_CALL_EFFECT)
    model_overrides: TtsModelOverrides | None = Field(
        None, description="Which TTS settings a model may override inline. " + _NO_CALL_EFFECT)
    providers: dict[str, TtsProviderConfig] = Field(
        default_factory=dict, description="Settings per provider id: `openai` and `elevenlabs` speak on "
        "calls; `edge` and `microsoft` are accepted but cannot.")
    prefs_path: NonEmptyStr | None = Field(None, description=_NO_CALL_EFFECT)
    max_text_length: PositiveInt | None = Field(
        None, description="Longest text spoken in one piece, in characters (4096 when unset); longer "
        "speech fails.")
    timeout_ms: Annotated[int, Field(ge=1000, le=120000), BeforeValidator(_reject_bool)] | None = Field(
        None, description="Time limit of one synthesis in milliseconds (8000 when unset), not counting "
        "time spent waiting for playback.")

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

    inbound_greeting: str | None = Field(None, description="Greeting for inbound calls to this number.")
    tts: TtsConfig | None = Field(
        None, description="Speech settings for calls on this number (another voice, say), merged over the "
        "top-level tts.")
    agent_id: NonEmptyStr | None = Field(None, description="Agent id for inbound calls to this number.")
    response_model: NonEmptyStr | None = Field(
        None, description="Model for automatic replies on inbound calls to this number.")
    response_system_prompt: str | None = Field(
        None, description="System prompt for automatic replies on inbound calls to this number.")
    response_timeout_ms: PositiveInt | None = Field(
        None, description="Time limit of an automatic reply on inbound calls to this number, in "
        "milliseconds.")


class MockConfig(_Model):
    """Behaviour of the offline `mock` carrier.

    Speech takes `max(200, len(text) * speak_ms_per_char)` ms; `ring_ms` is the time from
    initiated to ringing and `answer_after_ms` the time from ringing to the outcome.
    """

    answer_after_ms: NonNegativeInt = Field(
        300, description="Milliseconds from ringing to the outcome.")
    outcome: Literal["answer", "busy", "no-answer", "failed"] = Field(
        "answer", description="How every mock call turns out.")
    caller_replies: list[str] = Field(
        default_factory=list, description="What the mock callee says, one entry each time the call "
        "listens; after the last one it stays silent (`voicecall mock inject` speaks for it).")
    speak_ms_per_char: NonNegativeInt = Field(
        40, description="Milliseconds of speech per character (at least 200 ms per utterance).")
    ring_ms: NonNegativeInt = Field(100, description="Milliseconds from dialing to ringing.")
    transfer_outcome: Literal["answer", "busy", "no-answer", "failed"] = Field(
        "answer", description="How the person a mock call is transferred to answers.")
    transfer_talk_ms: NonNegativeInt = Field(
        1000, description="Milliseconds a transferred mock call talks with that person before "
        "they hang up.")


class TransferConfig(_Model):
    """Putting a call through to a person (`voicecall transfer`, the `transfer_call` tool)."""

    allowed_numbers: list[str] = Field(
        default_factory=list, description="Numbers (E.164) the agent's model may transfer calls "
        "to; empty: the model cannot transfer. Operators (CLI, control API) may transfer anywhere.")
    caller_id: Literal["ours", "caller"] = Field(
        "ours", description="The number the person sees: ours (`fromNumber`) or the caller's.")
    timeout_sec: int = Field(
        30, ge=5, le=120, description="Seconds the person's phone rings before the transfer "
        "counts as unanswered.")
    unavailable_message: str = Field(
        "Sorry, nobody could take the call right now. I'm still here to help.",
        description="Said when the person does not answer; the agent then listens again.")


def funnel_port_message(port: int) -> str:
    """Why `port` cannot be a Funnel port (the config check and `voicecall expose` say the same)."""
    return (f"{port} cannot be used with Tailscale Funnel, which serves only on 443, 8443 or 10000; "
            "pick one of those, or use serve (any port)")


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


ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]


class McpServerConfig(_Model):
    """An MCP server whose tools the responder's model may call: a command (stdio) or a URL
    (streamable HTTP)."""

    command: NonEmptyStr | None = Field(
        None, description="stdio: the program to start (no shell); its tools are listed at start.")
    args: list[str] = Field(default_factory=list, description="stdio: the program's arguments.")
    env: dict[str, Secret] = Field(
        default_factory=dict, description="stdio: extra environment variables for the program; the values "
        "are secrets.")
    url: HttpUrl | None = Field(None, description="Streamable HTTP: the server's MCP endpoint URL.")
    headers: dict[str, Secret] = Field(
        default_factory=dict, description="Streamable HTTP: headers sent with each request; the values are "
        "secrets.")


class HttpToolConfig(_Model):
    """A plain HTTP tool: the model's arguments are POSTed as JSON to `url`; the reply goes back
    to the model."""

    name: ToolName = Field(description="Function name the model calls.")
    description: NonEmptyStr = Field(description="What the tool does, for the model.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="The arguments, as a JSON Schema object.")
    url: HttpUrl = Field(description="Where the arguments are POSTed as JSON.")
    headers: dict[str, Secret] = Field(
        default_factory=dict, description="Headers sent with each request; the values are secrets.")


class ResponderConfig(_Model):
    """Automatic replies to caller turns (inbound calls and outbound conversation calls).

    On by default (docs/decisions.md D100). `type` chooses the backend: `llm` (a chat model with
    tools; model from `responseModel`), `http` (POST the turn to `url`, speak what it returns) or
    `python` (`target` is `module:function` or an entry point in `voicecall.responders`).
    """

    enabled: bool = Field(
        True, description="Answer caller turns on inbound calls and outbound conversation calls "
        "automatically; when off, conversations are driven by `continue`.")
    type: Literal["llm", "http", "python"] = Field(
        "llm", description="`llm`: a chat model with tools (responseModel). `http`: each turn is "
        "POSTed to url and the answer is spoken. `python`: a function named by target.")
    base_url: HttpUrl | None = Field(
        None, description="`llm`: base URL of the model's API, instead of the provider's (and of "
        "`<PROVIDER>_BASE_URL`).")
    url: HttpUrl | None = Field(
        None, description="`http` (required): where each turn and the call context are POSTed as JSON; "
        'the answer may be plain text, `{"text": ...}` or a streamed body.')
    target: NonEmptyStr | None = Field(
        None, description="`python` (required): `module:function`, or the name of an entry point in the "
        "`voicecall.responders` group.")
    headers: dict[str, Secret] = Field(
        default_factory=dict, description="`http`: headers sent with each request, e.g. Authorization; "
        "the values are secrets.")
    history_turns: Annotated[int, Field(ge=0, le=200), BeforeValidator(_reject_bool)] = Field(
        20, description="Earlier turns of the conversation (caller and reply) sent with each turn; 0 sends "
        "none.")
    fallback_message: NonEmptyStr = Field(
        "Sorry, I can't take your call right now. Please try again later. Goodbye.",
        description="Said to an inbound caller when no reply can be made (no model credentials); the call "
        "then ends `failed`.")
    max_tool_rounds: Annotated[int, Field(ge=0, le=20), BeforeValidator(_reject_bool)] = Field(
        4, description="`llm`: tool-call rounds the model may take in one turn before it must answer.")
    tool_timeout_ms: PositiveInt = Field(
        10000, description="`llm`: time limit of one tool call, in milliseconds; its result is then an "
        "error.")
    filler_after_ms: NonNegativeInt = Field(
        1200, description="`llm`: a tool call still running after this many milliseconds gets `filler` "
        "said meanwhile; 0: never.")
    filler: NonEmptyStr = Field(
        "One moment, please.", description="What is said while a slow tool call runs.")
    mcp_servers: dict[ToolName, McpServerConfig] = Field(
        default_factory=dict, description="`llm`: MCP servers whose tools the model may call, by name.")
    tools: list[HttpToolConfig] = Field(
        default_factory=list, description="`llm`: plain HTTP tools the model may call.")


class IdleConfig(_Model):
    """What to do when the caller goes quiet while the bot waits (both off by default)."""

    prompt_after_sec: PositiveInt | None = Field(
        None, description="Seconds of caller silence, from when the call starts listening, before "
        "`prompt` is said; unset: never.")
    prompt: NonEmptyStr = Field(
        "Are you still there?", description="What is said after promptAfterSec seconds of silence.")
    hangup_after_sec: PositiveInt | None = Field(
        None, description="Seconds of caller silence, from when the call starts listening, before "
        "`goodbye` is said and the call ends; must be greater than promptAfterSec; unset: never.")
    goodbye: NonEmptyStr = Field(
        "It seems you've stepped away. Goodbye!", description="What is said before the idle hang-up.")


class VoiceCallConfig(_Model):
    """The whole voice-call configuration (`plugins.entries.voice-call.config`).

    Defaults describe a bare voice-call object: enabled, `mock` carrier (docs/decisions.md D36).
    """

    enabled: bool = Field(
        True, description="Voice calls on or off. In an OpenClaw config, "
        "`plugins.entries.voice-call.enabled: false` turns them off too, and a config without that "
        "entry has them off.")
    provider: ProviderName = Field(
        "mock", description="Carrier that places and receives calls. This build drives `mock` (built in, "
        "offline), `twilio`, `telnyx` and `plivo`.")
    telnyx: TelnyxConfig = Field(
        default_factory=TelnyxConfig, description="Telnyx Call Control credentials and webhook key.")
    twilio: TwilioConfig = Field(
        default_factory=TwilioConfig, description="Twilio credentials and REST region.")
    plivo: PlivoConfig = Field(
        default_factory=PlivoConfig, description="Plivo credentials and REST base URL.")
    from_number: E164 | None = Field(
        None, description="Our phone number in E.164 form (+15550001234), the caller ID of outbound calls. "
        "Required for real carriers; TWILIO_FROM_NUMBER fills it for twilio.")
    to_number: E164 | None = Field(
        None, description="Number to call when a call request names none (E.164).")
    inbound_policy: InboundPolicy = Field(
        "disabled", description="Which inbound callers are answered: `disabled` none, `open` all, "
        "`allowlist` the numbers in allowFrom (`pairing` behaves like `allowlist` for now).")
    allow_from: list[E164] = Field(
        default_factory=list, description="Caller numbers answered under the `allowlist` policy (E.164).")
    inbound_greeting: str | None = Field(
        None, description="What inbound callers hear first; the greeting of the dialed number's route in "
        "numbers wins, and a built-in greeting is used when neither is set.")
    outbound: OutboundConfig = Field(
        default_factory=OutboundConfig, description="Defaults for outbound calls.")
    max_duration_seconds: PositiveInt = Field(
        300, description="Longest an answered call may last, in seconds; it then ends as `timeout`.")
    stale_call_reaper_seconds: NonNegativeInt = Field(
        120, description="Calls never answered and older than this many seconds end as `timeout`; 0 turns "
        "this off.")
    silence_timeout_ms: PositiveInt = Field(
        800, description="Accepted so shared OpenClaw configs load; no effect in this build.")
    transcript_timeout_ms: PositiveInt = Field(
        180000, description="How long `continue` waits for the caller's answer, in milliseconds; the call "
        "stays usable after a timeout.")
    ring_timeout_ms: PositiveInt = Field(
        30000, description="How long an outbound call may ring, in milliseconds, before it ends as "
        "`no-answer`.")
    max_concurrent_calls: PositiveInt = Field(
        1, description="Live calls allowed at the same time, inbound and outbound together; more are "
        "refused.")
    serve: ServeConfig = Field(
        default_factory=ServeConfig, description="The webhook server that carriers call.")
    control: ControlConfig = Field(
        default_factory=ControlConfig, description="The control API used by the CLI, the agent tool and "
        "your own programs.")
    tailscale: TailscaleConfig = Field(
        default_factory=TailscaleConfig, description="Older Tailscale exposure, used when neither publicUrl "
        "nor tunnel.provider is set.")
    tunnel: TunnelConfig = Field(
        default_factory=TunnelConfig, description="A tunnel started with the gateway to expose the webhook, "
        "used when publicUrl is not set.")
    webhook_security: WebhookSecurityConfig = Field(
        default_factory=WebhookSecurityConfig, description="Which forwarding headers are trusted when the "
        "webhook URL a carrier signed is rebuilt from a request (only without publicUrl).")
    streaming: StreamingConfig = Field(
        default_factory=StreamingConfig, description="Media streams (Twilio, Telnyx, Plivo): streamed speech "
        "out, streaming speech-to-text in, interruptions.")
    realtime: RealtimeConfig = Field(
        default_factory=RealtimeConfig, description="Realtime speech-to-speech voice on media streams "
        "(OpenAI Realtime, Gemini Live).")
    public_url: HttpUrl | None = Field(
        None, description="Public URL of the webhook as carriers call (and sign) it, e.g. "
        "https://voice.example.com/voice/webhook; takes precedence over tunnels.")
    skip_signature_verification: bool = Field(
        False, description="Accept webhooks without checking the carrier's signature. For local tests "
        "only; a security warning is logged at start.")
    stt: SttConfig = Field(
        default_factory=SttConfig, description="No effect (a warning says so): speech-to-text is set under "
        "streaming.")
    tts: TtsConfig = Field(
        default_factory=TtsConfig, description="Text-to-speech: the voice of calls. Merged over "
        "`messages.tts` of an OpenClaw config.")
    store: NonEmptyStr | None = Field(
        None, description="Directory of the SQLite call store (`~` is expanded). Unset: `voice-calls` in "
        "the state directory (`$OPENCLAW_STATE_DIR`, else `~/.openclaw`).")
    agent_id: NonEmptyStr = Field(
        "main", description="Agent id used in conversation session keys (`agent:<agentId>:...`).")
    session_scope: SessionScope = Field(
        "per-phone", description="Which calls share conversation memory: `per-phone` those with the same "
        "remote number, `per-call` none, `main` all.")
    numbers: dict[E164, NumberRoute] = Field(
        default_factory=dict, description="Settings per phone number of ours, keyed by the E.164 number: "
        "greeting, voice, agent and replies for inbound calls to that number.")
    response_model: NonEmptyStr | None = Field(
        None, description="Model of automatic replies, as `provider/model` (openai, anthropic, google, "
        "groq, openrouter, mistral, xai, deepseek, together, ollama, lmstudio, vllm); "
        "`openai/gpt-4o-mini` when unset.")
    response_system_prompt: str | None = Field(
        None, description="System prompt of automatic replies; unset: a built-in prompt asking for brief, "
        "natural phone replies.")
    response_timeout_ms: PositiveInt = Field(
        30000, description="Time limit of one whole automatic reply, in milliseconds; after it nothing is "
        "said and the call listens again.")
    responder: ResponderConfig = Field(
        default_factory=ResponderConfig, description="Automatic replies to what the caller says.")
    idle: IdleConfig = Field(
        default_factory=IdleConfig, description="Prompt and hang up when the caller stays silent.")
    mock: MockConfig = Field(
        default_factory=MockConfig, description="Behaviour of the built-in offline `mock` carrier.")
    transfer: TransferConfig = Field(
        default_factory=TransferConfig, description="Putting a call through to a person.")
    secrets: SecretsConfig = Field(
        default_factory=SecretsConfig, description="Providers of SecretRef credentials: any credential key "
        'may hold `{"source": "env"|"file"|"exec", "provider": name, "id": ...}` instead of the value, read '
        "once at start. In an OpenClaw config, its top-level `secrets` block.")

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
        funnel = self.tunnel.provider == "tailscale-funnel" or self.tailscale.mode == "funnel"
        if funnel and self.tailscale.port not in FUNNEL_PORTS:
            raise FieldPathError("tailscale.port", funnel_port_message(self.tailscale.port))
        if self.responder.enabled and self.responder.type == "http" and not self.responder.url:
            raise FieldPathError("responder.url", "is required when responder.type is http")
        if self.responder.enabled and self.responder.type == "python" and not self.responder.target:
            raise FieldPathError("responder.target", "is required when responder.type is python "
                                 "(module:function or an entry-point name)")
        for name, server in self.responder.mcp_servers.items():
            if (server.command is None) == (server.url is None):
                raise FieldPathError(f"responder.mcpServers.{name}",
                                     "set exactly one of command (stdio) or url (streamable HTTP)")
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


AVAILABLE_PROVIDERS: tuple[str, ...] = ("mock", "telnyx", "twilio", "plivo")
"""Carriers this build can actually drive."""

NOT_BUILT_YET: list[NotBuiltRule] = [
    NotBuiltRule(
        "provider",
        lambda c: c.provider not in AVAILABLE_PROVIDERS,
        lambda c: (
            f'"{c.provider}" is not available in this build yet (available: {", ".join(AVAILABLE_PROVIDERS)})'
        ),
    ),
]
"""Refusals for features not built yet; delete a row when its feature lands."""


def _required(path: str, env_var: str | None = None) -> ConfigIssue:
    hint = f" (or set {env_var} env)" if env_var else ""
    return ConfigIssue(path, f"is required{hint}")


@dataclass(frozen=True)
class _Missing:
    """A credential of the selected carrier that is not set: the issue and when it applies."""

    issue: ConfigIssue
    applies: Callable[[VoiceCallConfig], bool]


_CARRIER_CREDENTIALS: dict[str, tuple[_Missing, ...]] = {
    "telnyx": (
        _Missing(_required("telnyx.apiKey", "TELNYX_API_KEY"), lambda c: c.telnyx.api_key is None),
        _Missing(_required("telnyx.connectionId", "TELNYX_CONNECTION_ID"),
                 lambda c: not c.telnyx.connection_id),
        _Missing(
            ConfigIssue(
                "telnyx.publicKey",
                "is required unless skipSignatureVerification is true (or set TELNYX_PUBLIC_KEY env)",
            ),
            lambda c: c.telnyx.public_key is None and not c.skip_signature_verification,
        ),
    ),
    "twilio": (
        _Missing(_required("twilio.accountSid", "TWILIO_ACCOUNT_SID"), lambda c: not c.twilio.account_sid),
        _Missing(_required("twilio.authToken", "TWILIO_AUTH_TOKEN"), lambda c: c.twilio.auth_token is None),
    ),
    "plivo": (
        _Missing(_required("plivo.authId", "PLIVO_AUTH_ID"), lambda c: not c.plivo.auth_id),
        _Missing(_required("plivo.authToken", "PLIVO_AUTH_TOKEN"), lambda c: c.plivo.auth_token is None),
    ),
}
"""Each carrier's credentials that must be set, by `provider`, in the order they are reported."""


def _carrier_issues(cfg: VoiceCallConfig) -> list[ConfigIssue]:
    """A caller ID for every real carrier, then the selected carrier's credentials."""
    issues: list[ConfigIssue] = []
    if cfg.provider != "mock" and not cfg.from_number:
        issues.append(_required("fromNumber", "TWILIO_FROM_NUMBER" if cfg.provider == "twilio" else None))
    issues.extend(rule.issue for rule in _CARRIER_CREDENTIALS.get(cfg.provider, ()) if rule.applies(cfg))
    return issues


def _realtime_issues(cfg: VoiceCallConfig) -> list[ConfigIssue]:
    """Speech-to-speech needs inbound calls, excludes `streaming` and needs a media-stream carrier."""
    if not cfg.realtime.enabled:
        return []
    issues: list[ConfigIssue] = []
    if cfg.inbound_policy == "disabled":
        issues.append(
            ConfigIssue("inboundPolicy", 'must not be "disabled" when realtime.enabled is true')
        )
    if cfg.streaming.enabled:
        issues.append(
            ConfigIssue("realtime.enabled", "realtime.enabled and streaming.enabled cannot both be true")
        )
    if cfg.provider not in ("twilio", "telnyx", "plivo"):
        issues.append(ConfigIssue(
            "provider", 'must be a carrier with media streams ("twilio", "telnyx" or "plivo") when '
            "realtime.enabled is true"))
    return issues


def _tunnel_issues(cfg: VoiceCallConfig) -> list[ConfigIssue]:
    """The ngrok free-tier loopback bypass only makes sense on a loopback bind."""
    if (
        cfg.tunnel.provider == "ngrok"
        and cfg.tunnel.allow_ngrok_free_tier_loopback_bypass
        and cfg.serve.bind not in ("127.0.0.1", "::1", "localhost")
    ):
        return [
            ConfigIssue(
                "tunnel.allowNgrokFreeTierLoopbackBypass",
                "only applies when serve.bind is a loopback address (127.0.0.1, ::1 or localhost)",
            )
        ]
    return []


def validate_provider_config(cfg: VoiceCallConfig) -> list[ConfigIssue]:
    """Cross-key checks that need the selected provider (docs/decisions.md D39) plus not-built refusals.

    A disabled config is valid. These are reported, not raised, so `setup` can list them all.
    """
    if not cfg.enabled:
        return []
    return [
        *_carrier_issues(cfg),
        *_realtime_issues(cfg),
        *_tunnel_issues(cfg),
        *(ConfigIssue(rule.path, rule.message(cfg)) for rule in NOT_BUILT_YET if rule.applies(cfg)),
    ]


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


_FIXED_MESSAGES: dict[str, str] = {
    "missing": "is required",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_sub_type": "must be a string",
    "string_unicode": "must be a string",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "mapping_type": "must be an object",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "iterable_type": "must be a list",
}
"""Pydantic error types whose message does not depend on the field or the error's context."""

_E164_MESSAGE = "must be an E.164 phone number like +15550001234"


def _key_issue(loc: tuple[str | int, ...], etype: str, ctx: Mapping[str, Any]) -> ConfigIssue:
    """A bad key of a mapping (e.g. a `numbers` entry), reported at the mapping's path."""
    path = format_path(loc[:-1])
    if etype == "string_pattern_mismatch" and ctx.get("pattern") == E164_PATTERN:
        return ConfigIssue(path, f"key {_E164_MESSAGE}")
    return ConfigIssue(path, "invalid key")


def _extra_key_message(root: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    """An unknown key, with the closest allowed name (or all of them) when the parent is a model."""
    parent = _resolve(root, loc[:-1]).annotation if len(loc) > 1 else root
    parent_model = parent if isinstance(parent, type) and issubclass(parent, BaseModel) else None
    return _unknown_key_message(parent_model, str(loc[-1]))


def _literal_message(annotation: Any, ctx: Mapping[str, Any]) -> str:
    if get_origin(annotation) is Literal:
        return f"must be one of {_choices(get_args(annotation))}"
    return f"must be one of {ctx.get('expected', '?')}"


def _too_short_message(ctx: Mapping[str, Any]) -> str:
    minimum = int(ctx.get("min_length", 1))
    if minimum <= 1:
        return "must not be empty"
    return f"must be at least {minimum} characters"


def _value_message(error: Mapping[str, Any], etype: str, ctx: Mapping[str, Any], resolved: _Resolved) -> str:
    """What is wrong with a value, in the words of the config file rather than pydantic's."""
    original = ctx.get("error")
    if etype in _NUMBER_ERRORS or isinstance(original, WrongTypeError):
        return _number_message(resolved, ctx)
    fixed = _FIXED_MESSAGES.get(etype)
    if fixed is not None:
        return fixed
    if etype == "literal_error":
        return _literal_message(resolved.annotation, ctx)
    if etype == "string_pattern_mismatch" and ctx.get("pattern") == E164_PATTERN:
        return _E164_MESSAGE
    if etype in ("string_too_short", "too_short"):
        return _too_short_message(ctx)
    if etype in ("string_too_long", "too_long"):
        return f"must be at most {ctx.get('max_length')} characters"
    if etype == "value_error" and isinstance(original, ValueError):
        return str(original)
    return str(error.get("msg", "is invalid"))


def issue_from_error(error: Mapping[str, Any], root: type[BaseModel] = VoiceCallConfig) -> ConfigIssue:
    """Turn one pydantic error into an issue naming the camelCase path and what is allowed.

    Input values are never echoed, so secrets cannot leak into messages.
    """
    loc: tuple[str | int, ...] = tuple(error.get("loc", ()))
    etype: str = error.get("type", "")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if loc and loc[-1] == "[key]":
        return _key_issue(loc, etype, ctx)
    path = format_path(loc) or "(root)"
    if etype == "extra_forbidden":
        return ConfigIssue(path, _extra_key_message(root, loc))
    resolved = _resolve(root, loc)
    original = ctx.get("error")
    if isinstance(original, FieldPathError):
        full = format_path([*loc, *original.path.split(".")]) if original.path else path
        return ConfigIssue(full, original.message)
    return ConfigIssue(path, _value_message(error, etype, ctx, resolved))


def issues_from_validation_error(
    err: ValidationError, root: type[BaseModel] = VoiceCallConfig
) -> list[ConfigIssue]:
    """Every pydantic error as a ConfigIssue, duplicates removed, order kept."""
    seen: dict[ConfigIssue, None] = {}
    for error in err.errors():
        seen.setdefault(issue_from_error(error, root), None)
    return list(seen)
