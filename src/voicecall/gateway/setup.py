"""Readiness checks (`voicecall setup`): what is missing before real calls can work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voicecall.config import LoadedConfig
from voicecall.gateway.exposure import is_local_only


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    ok: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ok": self.ok, "message": self.message}


def run_checks(loaded: LoadedConfig) -> list[Check]:
    """The setup checks (docs/decisions.md D39): enabled, provider, provider config, exposure, mode."""
    c = loaded.config
    enabled_msg = "voice calls are enabled" if c.enabled else "set enabled: true (or add a voice-call entry)"
    checks = [Check("plugin-enabled", c.enabled, enabled_msg)]
    checks.append(Check("provider", True, f"carrier: {c.provider}"))
    problems = [f"{i.path}: {i.message}" for i in loaded.issues]
    checks.append(Check("provider-config", not problems,
                        "configuration is complete" if not problems else "; ".join(problems)))
    if c.provider == "mock":
        checks.append(_mock_exposure(loaded))
    elif c.public_url and not is_local_only(c.public_url):
        checks.append(Check("webhook-exposure", True, f"carriers reach {c.public_url}"))
    elif c.public_url:
        checks.append(Check("webhook-exposure", False,
                            f"publicUrl {c.public_url} is local-only; carriers cannot reach it"))
    elif c.tunnel.provider != "none":
        checks.append(Check("webhook-exposure", True,
                            f"a {c.tunnel.provider} tunnel gives the webhook its public URL at start"))
    elif c.tailscale.mode != "off":
        checks.append(Check("webhook-exposure", True,
                            f"tailscale {c.tailscale.mode} exposes {c.tailscale.path} at start"))
    else:
        checks.append(Check("webhook-exposure", False,
                            "set publicUrl to the https URL carriers can reach, or tunnel.provider "
                            "(ngrok, tailscale-serve, tailscale-funnel)"))
    if c.streaming.enabled:
        checks.extend(_streaming_checks(loaded))
    if c.realtime.enabled:
        checks.append(_realtime_check(loaded))
    checks.append(_responder_check(loaded))
    both = c.streaming.enabled and c.realtime.enabled
    checks.append(Check("mode", not both, "streaming and realtime cannot both be on" if both
                        else ("realtime voice" if c.realtime.enabled else
                              "media streaming" if c.streaming.enabled else "carrier-native speech")))
    return checks


def _responder_check(loaded: LoadedConfig) -> Check:
    """Automatic replies (on by default) need the model's API key (docs/decisions.md D100)."""
    from voicecall.agent.models import resolve_model
    from voicecall.agent.turn import DEFAULT_MODEL, ResponderError

    c = loaded.config
    r = c.responder
    if not r.enabled:
        return Check("responder", True, "automatic replies are off (responder.enabled: false)")
    if r.type != "llm":
        return Check("responder", True, f"automatic replies by the {r.type} responder")
    problems: list[str] = []
    default = c.response_model or DEFAULT_MODEL
    routed = (route.response_model for route in c.numbers.values() if route.response_model)
    for model in dict.fromkeys([default, *routed]):
        try:
            resolve_model(model, env=loaded.env, base_url=r.base_url)
        except ResponderError as exc:
            problems.append(str(exc))
    if problems:
        return Check("responder", False, "; ".join(problems))
    return Check("responder", True, f"automatic replies by {default}")


def _mock_exposure(loaded: LoadedConfig) -> Check:
    """The mock carrier takes unsigned webhooks: fine on this machine, not on the internet (D66)."""
    c = loaded.config
    exposed = [name for name, on in (
        (f"publicUrl {c.public_url}", bool(c.public_url) and not is_local_only(c.public_url or "")),
        (f"a {c.tunnel.provider} tunnel", c.tunnel.provider != "none"),
        (f"tailscale {c.tailscale.mode}", c.tailscale.mode != "off"),
        (f"serve.bind {c.serve.bind}", c.serve.bind not in ("127.0.0.1", "::1", "localhost")),
    ) if on]
    if not exposed:
        return Check("webhook-exposure", True, "the mock carrier needs no public webhook")
    return Check("webhook-exposure", False,
                 f"the mock carrier takes unsigned webhooks, and {', '.join(exposed)} makes them "
                 "reachable from outside this machine: use it locally only (remove the exposure)")


def _realtime_check(loaded: LoadedConfig) -> Check:
    """Realtime voice needs a known provider and its key (docs/decisions.md D120)."""
    from voicecall.speech.realtime import RealtimeError, build_realtime_factory, selected_provider

    pid = selected_provider(loaded.config.realtime)
    if pid is None:
        return Check("realtime", False, "realtime.provider is unknown (openai, google): calls take the "
                     "classic path")
    try:
        build_realtime_factory(loaded.config.realtime, loaded.env)
    except RealtimeError as exc:
        return Check("realtime", False, str(exc))
    return Check("realtime", True, f"calls are bridged to the {pid} realtime model")


def _streaming_checks(loaded: LoadedConfig) -> list[Check]:
    """Media streaming speaks with a TTS provider and (unless `streaming.provider` is "none")
    listens with an STT provider: both need their API keys."""
    from voicecall.speech.stt import SttError, build_stt_session
    from voicecall.speech.tts import build_tts_chain

    c, env = loaded.config, loaded.env
    chain = build_tts_chain(c.tts, env)
    checks = [Check("streaming-tts", bool(chain.providers),
                    f"streamed speech via {', '.join(chain.names)}" if chain.providers else
                    "set tts.providers.openai.apiKey (or OPENAI_API_KEY) or tts.providers.elevenlabs.apiKey")]
    s = c.streaming
    if (s.provider or "").strip().lower() == "none":
        checks.append(Check("streaming-stt", True, "speech-to-text is off (streaming.provider: none)"))
        return checks
    try:
        build_stt_session(s.provider, s.providers, None, env)
    except SttError as exc:
        checks.append(Check("streaming-stt", False, str(exc)))
    else:
        checks.append(Check("streaming-stt", True, f"speech-to-text via {s.provider or 'openai'}"))
    return checks
