"""Carrier lookup: built-in adapters plus third-party ones from the `voicecall.providers`
entry-point group. An entry point is a callable `factory(config) -> Provider`."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from voicecall.providers.base import Provider
from voicecall.providers.mock import MockBehaviour, MockProvider
from voicecall.security.public_url import ForwardingPolicy
from voicecall.speech.realtime import selected_provider

if TYPE_CHECKING:
    from voicecall.config import VoiceCallConfig

ProviderFactory = Callable[["VoiceCallConfig"], Provider]


def mock_from_config(config: VoiceCallConfig) -> Provider:
    m = config.mock
    return MockProvider(MockBehaviour(
        answer_after_ms=m.answer_after_ms, ring_ms=m.ring_ms, outcome=m.outcome,
        caller_replies=tuple(m.caller_replies), speak_ms_per_char=m.speak_ms_per_char,
        transfer_outcome=m.transfer_outcome, transfer_talk_ms=m.transfer_talk_ms))


BUILTIN: dict[str, ProviderFactory] = {"mock": mock_from_config}


def available_providers() -> list[str]:
    names = set(BUILTIN)
    names.update(ep.name for ep in entry_points(group="voicecall.providers"))
    return sorted(names)


def build_provider(config: VoiceCallConfig) -> Provider:
    """The adapter for `config.provider`."""
    name = config.provider or "mock"
    factory = BUILTIN.get(name)
    if factory is None:
        for ep in entry_points(group="voicecall.providers", name=name):
            factory = ep.load()
            break
    if factory is None:
        raise ValueError(f"provider {name!r} is not available (available: "
                         f"{', '.join(available_providers())})")
    return factory(config)


def _forwarding_policy(config: VoiceCallConfig) -> ForwardingPolicy:
    security = config.webhook_security
    return ForwardingPolicy(allowed_hosts=tuple(security.allowed_hosts),
                            trust_forwarding_headers=security.trust_forwarding_headers,
                            trusted_proxy_ips=tuple(security.trusted_proxy_ips))


def _media_streams_on(config: VoiceCallConfig) -> bool:
    """Calls get a media stream: for speech-to-text streaming, or bridged to a realtime model
    (docs/decisions.md D126); the same rule for every carrier."""
    return config.streaming.enabled or selected_provider(config.realtime) is not None


def _configured_voice(config: VoiceCallConfig) -> str | None:
    """The voice of the selected TTS provider's settings (`voice` or `voiceId`); carriers with
    native speech map it."""
    tts = config.tts
    provider_cfg = tts.providers.get(tts.provider or "") if tts.provider else None
    return (provider_cfg.voice or provider_cfg.voice_id) if provider_cfg else None


def twilio_from_config(config: VoiceCallConfig) -> Provider:
    from voicecall.providers.twilio.provider import API_HOSTS, TwilioProvider, TwilioSettings
    from voicecall.providers.twilio.twiml import polly_voice
    t = config.twilio
    if not t.account_sid or t.auth_token is None:
        raise ValueError("twilio.accountSid and twilio.authToken are required")
    loopback_bind = config.serve.bind in ("127.0.0.1", "::1", "localhost")
    return TwilioProvider(TwilioSettings(
        account_sid=t.account_sid,
        auth_token=t.auth_token.get_secret_value(),
        api_base_url=t.api_base_url or API_HOSTS[t.region],
        public_url=config.public_url,
        policy=_forwarding_policy(config),
        ngrok_loopback_bypass=(config.tunnel.provider == "ngrok" and loopback_bind
                               and config.tunnel.allow_ngrok_free_tier_loopback_bypass),
        skip_signature_verification=config.skip_signature_verification,
        voice=polly_voice(_configured_voice(config)),
        machine_detection=config.outbound.machine_detection,
        streaming=_media_streams_on(config),
    ))


BUILTIN["twilio"] = twilio_from_config


def plivo_from_config(config: VoiceCallConfig) -> Provider:
    from voicecall.providers.plivo.provider import API_BASE_URL, PlivoProvider, PlivoSettings
    from voicecall.providers.plivo.xml import plivo_voice

    p = config.plivo
    if not p.auth_id or p.auth_token is None:
        raise ValueError("plivo.authId and plivo.authToken are required")
    return PlivoProvider(PlivoSettings(
        auth_id=p.auth_id,
        auth_token=p.auth_token.get_secret_value(),
        api_base_url=p.api_base_url or API_BASE_URL,
        public_url=config.public_url,
        policy=_forwarding_policy(config),
        skip_signature_verification=config.skip_signature_verification,
        voice=plivo_voice(_configured_voice(config)),
        machine_detection=config.outbound.machine_detection,
        streaming=_media_streams_on(config),
    ))


BUILTIN["plivo"] = plivo_from_config


def telnyx_from_config(config: VoiceCallConfig) -> Provider:
    from voicecall.providers.telnyx.provider import (
        API_BASE_URL,
        TelnyxProvider,
        TelnyxSettings,
        telnyx_voice,
    )
    from voicecall.providers.telnyx.signature import load_public_key

    t = config.telnyx
    if t.api_key is None or not t.connection_id:
        raise ValueError("telnyx.apiKey and telnyx.connectionId are required")
    public_key = load_public_key(t.public_key.get_secret_value()) if t.public_key else None
    if public_key is None and not config.skip_signature_verification:
        raise ValueError("telnyx.publicKey is required unless skipSignatureVerification is true")
    return TelnyxProvider(TelnyxSettings(
        api_key=t.api_key.get_secret_value(),
        connection_id=t.connection_id,
        public_key=public_key,
        api_base_url=str(t.api_base_url).rstrip("/") if t.api_base_url else API_BASE_URL,
        skip_signature_verification=config.skip_signature_verification,
        voice=telnyx_voice(_configured_voice(config)),
        machine_detection=config.outbound.machine_detection,
        streaming=_media_streams_on(config),
        stream_codec=t.stream_codec,
    ))


BUILTIN["telnyx"] = telnyx_from_config
