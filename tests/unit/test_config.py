"""Configuration: discovery, JSON5, ${ENV}, env fallbacks, migrations, tts merge, errors, paths."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from voicecall.config import (
    NOT_BUILT_YET,
    ConfigError,
    ConfigIssue,
    LoadedConfig,
    VoiceCallConfig,
    config_fingerprint,
    config_json_schema,
    deep_merge,
    load_config,
    load_config_dict,
    migrate_raw,
    redacted_config,
    resolve_control_token,
    state_dir,
    store_dir,
    validate_provider_config,
)
from voicecall.config.schema import TtsConfig, derive_realtime_stream_path

# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An isolated environment: HOME in a temp dir and nothing else."""
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home)}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    return write(path, json.dumps(doc))


def openclaw(config: dict[str, Any], **entry: Any) -> dict[str, Any]:
    """A whole OpenClaw config holding `config` as the voice-call entry's config."""
    return {"plugins": {"entries": {"voice-call": {**entry, "config": config}}}}


def load(doc: dict[str, Any], env: dict[str, str]) -> LoadedConfig:
    return load_config_dict(doc, env=env)


def issues_of(doc: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(doc, env)
    return {issue.path: issue.message for issue in info.value.issues}


# --- defaults and discovery -------------------------------------------------------------------


def test_no_config_file_starts_enabled_with_mock_carrier_and_documented_defaults(
    env: dict[str, str],
) -> None:
    loaded = load_config(env=env)
    cfg = loaded.config
    assert loaded.source is None
    assert loaded.issues == []
    assert cfg.enabled is True
    assert cfg.provider == "mock"
    assert cfg.from_number is None and cfg.to_number is None
    assert cfg.inbound_policy == "disabled" and cfg.allow_from == []
    assert cfg.outbound.default_mode == "notify"
    assert cfg.outbound.notify_hangup_delay_sec == 3
    assert cfg.max_duration_seconds == 300
    assert cfg.stale_call_reaper_seconds == 120
    assert cfg.silence_timeout_ms == 800
    assert cfg.transcript_timeout_ms == 180000
    assert cfg.ring_timeout_ms == 30000
    assert cfg.max_concurrent_calls == 1
    assert (cfg.serve.port, cfg.serve.bind, cfg.serve.path) == (3334, "127.0.0.1", "/voice/webhook")
    assert (cfg.control.bind, cfg.control.port, cfg.control.token) == ("127.0.0.1", 3335, None)
    assert cfg.tailscale.mode == "off" and cfg.tailscale.port == 443
    assert cfg.tunnel.provider == "none"
    assert cfg.twilio.region == "us1"
    assert cfg.streaming.enabled is False and cfg.streaming.stream_path == "/voice/stream"
    assert cfg.streaming.max_connections == 128
    assert cfg.realtime.enabled is False
    assert cfg.realtime.stream_path == "/voice/stream/realtime"
    assert cfg.realtime.tool_policy == "safe-read-only"
    assert cfg.realtime.instructions.startswith("You are OpenClaw's phone-call realtime voice")
    assert cfg.session_scope == "per-phone" and cfg.agent_id == "main"
    assert cfg.numbers == {}
    assert cfg.response_timeout_ms == 30000 and cfg.response_model is None
    assert cfg.mock.answer_after_ms == 300 and cfg.mock.outcome == "answer"
    assert cfg.mock.caller_replies == [] and cfg.mock.speak_ms_per_char == 40
    assert cfg.mock.ring_ms == 100
    assert cfg.store is None
    assert cfg.webhook_security.trusted_proxy_ips == []


def test_explicit_path_argument_is_loaded(env: dict[str, str], tmp_path: Path) -> None:
    path = write_json(tmp_path / "vc.json5", {"serve": {"port": 4100}})
    loaded = load_config(path, env=env)
    assert loaded.source == path
    assert loaded.config.serve.port == 4100


def test_discovery_prefers_voicecall_config_then_openclaw_config_path_then_state_dir_then_home(
    env: dict[str, str], tmp_path: Path
) -> None:
    home_file = write_json(Path(env["HOME"]) / ".openclaw" / "openclaw.json", openclaw({}))
    assert load_config(env=env).source == home_file

    state = tmp_path / "state"
    state_file = write_json(state / "openclaw.json", openclaw({}))
    env["OPENCLAW_STATE_DIR"] = str(state)
    assert load_config(env=env).source == state_file

    oc_file = write_json(tmp_path / "oc.json", openclaw({}))
    env["OPENCLAW_CONFIG_PATH"] = str(oc_file)
    assert load_config(env=env).source == oc_file

    vc_file = write_json(tmp_path / "vc.json", {})
    env["VOICECALL_CONFIG"] = str(vc_file)
    assert load_config(env=env).source == vc_file

    arg_file = write_json(tmp_path / "arg.json", {})
    assert load_config(arg_file, env=env).source == arg_file


def test_missing_state_dir_file_falls_back_to_home_openclaw_json(env: dict[str, str], tmp_path: Path) -> None:
    home_file = write_json(Path(env["HOME"]) / ".openclaw" / "openclaw.json", openclaw({}))
    env["OPENCLAW_STATE_DIR"] = str(tmp_path / "empty-state")
    assert load_config(env=env).source == home_file


@pytest.mark.parametrize("origin", ["argument", "VOICECALL_CONFIG", "OPENCLAW_CONFIG_PATH"])
def test_explicitly_named_config_file_that_does_not_exist_is_an_error(
    env: dict[str, str], tmp_path: Path, origin: str
) -> None:
    missing = tmp_path / "missing.json5"
    with pytest.raises(ConfigError) as info:
        if origin == "argument":
            load_config(missing, env=env)
        else:
            load_config(env={**env, origin: str(missing)})
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)


def test_tilde_in_config_path_uses_env_home(env: dict[str, str]) -> None:
    write_json(Path(env["HOME"]) / "vc.json", {"toNumber": "+15550001111"})
    loaded = load_config("~/vc.json", env=env)
    assert loaded.config.to_number == "+15550001111"


# --- shapes and the `enabled` rule (docs/decisions.md D36) ------------------------------------


def test_bare_voice_call_object_counts_as_an_entry_and_is_enabled(env: dict[str, str]) -> None:
    loaded = load({"toNumber": "+15550001111"}, env)
    assert loaded.shape == "bare"
    assert loaded.config.enabled is True
    assert loaded.config.provider == "mock"


def test_openclaw_shape_reads_the_plugin_entry_config(env: dict[str, str]) -> None:
    loaded = load(openclaw({"toNumber": "+15550001111", "serve": {"port": 4000}}), env)
    assert loaded.shape == "openclaw"
    assert loaded.config.enabled is True
    assert loaded.config.to_number == "+15550001111"
    assert loaded.config.serve.port == 4000


def test_openclaw_shape_without_voice_call_entry_is_disabled(env: dict[str, str]) -> None:
    loaded = load({"plugins": {"entries": {"other": {"enabled": True}}}}, env)
    assert loaded.config.enabled is False
    assert loaded.issues == []


def test_openclaw_file_at_default_location_without_plugins_is_disabled_not_an_error(
    env: dict[str, str],
) -> None:
    write_json(
        Path(env["HOME"]) / ".openclaw" / "openclaw.json",
        {"agents": {"defaults": {}}, "messages": {"tts": {"provider": "openai"}}},
    )
    loaded = load_config(env=env)
    assert loaded.shape == "openclaw"
    assert loaded.config.enabled is False


@pytest.mark.parametrize(
    ("entry_enabled", "config_enabled", "expected"),
    [
        (None, None, True),
        (True, None, True),
        (False, None, False),
        (None, False, False),
        (True, False, False),
        (False, True, False),
    ],
)
def test_entry_level_and_config_level_enabled_both_must_allow(
    env: dict[str, str], entry_enabled: bool | None, config_enabled: bool | None, expected: bool
) -> None:
    config: dict[str, Any] = {} if config_enabled is None else {"enabled": config_enabled}
    entry: dict[str, Any] = {} if entry_enabled is None else {"enabled": entry_enabled}
    assert load(openclaw(config, **entry), env).config.enabled is expected


def test_non_boolean_entry_enabled_is_an_error(env: dict[str, str]) -> None:
    issues = issues_of(openclaw({}, enabled="yes"), env)
    assert issues == {"plugins.entries.voice-call.enabled": "must be true or false"}


def test_disabled_config_reports_no_provider_issues(env: dict[str, str]) -> None:
    loaded = load({"enabled": False, "provider": "twilio"}, env)
    assert loaded.issues == []


# --- JSON5 and ${ENV} -------------------------------------------------------------------------


def test_json5_comments_trailing_commas_and_unquoted_keys_are_accepted(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write(
        tmp_path / "vc.json5",
        """
        // voice-call settings
        {
          provider: 'mock', /* block comment */
          allowFrom: ["+15550001111", "+15550002222",],
          serve: { port: 4000, },
        }
        """,
    )
    cfg = load_config(path, env=env).config
    assert cfg.allow_from == ["+15550001111", "+15550002222"]
    assert cfg.serve.port == 4000


def test_json5_syntax_error_names_the_file_and_line(env: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json5", "{\n  serve: {port: 1},\n  oops: ]\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    (issue,) = info.value.issues
    assert issue.path == f"{path}:3"
    assert issue.message.startswith("invalid JSON5")


def test_duplicate_keys_in_file_are_an_error(env: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path / "dup.json5", '{toNumber: "+15550001111", toNumber: "+15550002222"}')
    with pytest.raises(ConfigError, match="invalid JSON5"):
        load_config(path, env=env)


def test_file_that_is_not_an_object_is_an_error(env: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path / "list.json5", "[1, 2]")
    with pytest.raises(ConfigError, match="must contain a JSON5 object"):
        load_config(path, env=env)


def test_env_references_are_expanded_in_nested_strings_and_lists(env: dict[str, str]) -> None:
    env.update(TO="+15550001111", HOST="voice.example.com", PORT="4400")
    cfg = load(
        {
            "toNumber": "${TO}",
            "serve": {"port": "${PORT}"},
            "publicUrl": "https://${HOST}/voice/webhook",
            "webhookSecurity": {"allowedHosts": ["${HOST}"]},
            "inboundGreeting": "literal $${HOST} stays",
        },
        env,
    ).config
    assert cfg.to_number == "+15550001111"
    assert cfg.serve.port == 4400
    assert cfg.public_url == "https://voice.example.com/voice/webhook"
    assert cfg.webhook_security.allowed_hosts == ["voice.example.com"]
    assert cfg.inbound_greeting == "literal ${HOST} stays"


def test_unset_env_reference_names_every_key_path_and_variable(env: dict[str, str]) -> None:
    issues = issues_of(
        {"toNumber": "${NOPE_TO}", "webhookSecurity": {"allowedHosts": ["a", "${NOPE_HOST}"]}},
        env,
    )
    assert "NOPE_TO" in issues["toNumber"]
    assert "NOPE_HOST" in issues["webhookSecurity.allowedHosts[1]"]


# --- env fallbacks ----------------------------------------------------------------------------

ALL_CARRIER_ENV = {
    "TWILIO_ACCOUNT_SID": "AC123",
    "TWILIO_AUTH_TOKEN": "tw-secret",
    "TWILIO_FROM_NUMBER": "+15550009999",
    "TELNYX_API_KEY": "tx-key",
    "TELNYX_CONNECTION_ID": "conn-1",
    "TELNYX_PUBLIC_KEY": "tx-pub",
    "PLIVO_AUTH_ID": "MA123",
    "PLIVO_AUTH_TOKEN": "pl-secret",
}


def test_env_fallbacks_fill_twilio_credentials_only_when_twilio_is_selected(
    env: dict[str, str],
) -> None:
    env.update(ALL_CARRIER_ENV)
    cfg = load({"provider": "twilio"}, env).config
    assert cfg.twilio.account_sid == "AC123"
    assert cfg.twilio.auth_token is not None
    assert cfg.twilio.auth_token.get_secret_value() == "tw-secret"
    assert cfg.from_number == "+15550009999"
    assert cfg.telnyx.api_key is None and cfg.plivo.auth_id is None


def test_env_fallbacks_fill_telnyx_credentials_only_when_telnyx_is_selected(
    env: dict[str, str],
) -> None:
    env.update(ALL_CARRIER_ENV)
    cfg = load({"provider": "telnyx"}, env).config
    assert cfg.telnyx.api_key is not None and cfg.telnyx.api_key.get_secret_value() == "tx-key"
    assert cfg.telnyx.connection_id == "conn-1"
    assert cfg.telnyx.public_key is not None
    assert cfg.twilio.account_sid is None and cfg.plivo.auth_id is None
    assert cfg.from_number is None  # TWILIO_FROM_NUMBER is for twilio only


def test_env_fallbacks_fill_plivo_credentials_only_when_plivo_is_selected(
    env: dict[str, str],
) -> None:
    env.update(ALL_CARRIER_ENV)
    cfg = load({"provider": "plivo"}, env).config
    assert cfg.plivo.auth_id == "MA123"
    assert cfg.plivo.auth_token is not None
    assert cfg.twilio.account_sid is None and cfg.telnyx.api_key is None


def test_mock_provider_takes_no_carrier_credentials_from_env(env: dict[str, str]) -> None:
    env.update(ALL_CARRIER_ENV)
    cfg = load({}, env).config
    assert cfg.twilio.account_sid is None and cfg.telnyx.api_key is None
    assert cfg.plivo.auth_id is None and cfg.from_number is None


def test_configured_credentials_win_over_env(env: dict[str, str]) -> None:
    env.update(ALL_CARRIER_ENV)
    cfg = load(
        {"provider": "twilio", "fromNumber": "+15550001111", "twilio": {"accountSid": "ACfile"}},
        env,
    ).config
    assert cfg.twilio.account_sid == "ACfile"
    assert cfg.from_number == "+15550001111"


def test_invalid_env_fallback_value_names_the_env_var(env: dict[str, str]) -> None:
    env["TWILIO_FROM_NUMBER"] = "555-0100"
    issues = issues_of({"provider": "twilio"}, env)
    assert "E.164" in issues["fromNumber"]
    assert "TWILIO_FROM_NUMBER" in issues["fromNumber"]


def test_ngrok_env_fills_tunnel_settings_only_for_the_ngrok_tunnel(env: dict[str, str]) -> None:
    env.update(NGROK_AUTHTOKEN="ng-secret", NGROK_DOMAIN="x.ngrok.app")
    assert load({}, env).config.tunnel.ngrok_auth_token is None
    tunnel = load({"tunnel": {"provider": "ngrok"}}, env).config.tunnel
    assert tunnel.ngrok_auth_token is not None
    assert tunnel.ngrok_auth_token.get_secret_value() == "ng-secret"
    assert tunnel.ngrok_domain == "x.ngrok.app"


def test_openai_key_fills_streaming_openai_provider_only_when_streaming_is_enabled(
    env: dict[str, str],
) -> None:
    env["OPENAI_API_KEY"] = "sk-env"
    assert load({}, env).config.streaming.providers == {}
    streaming = load({"streaming": {"enabled": True}}, env).config.streaming
    api_key = streaming.providers["openai"]["apiKey"]
    assert isinstance(api_key, SecretStr) and api_key.get_secret_value() == "sk-env"


def test_tts_api_keys_come_from_env_for_configured_tts_providers(env: dict[str, str]) -> None:
    env.update(OPENAI_API_KEY="sk-env", ELEVENLABS_API_KEY="el-env")
    tts = load({"tts": {"provider": "elevenlabs", "openai": {"voice": "alloy"}}}, env).config.tts
    eleven, openai = tts.providers["elevenlabs"].api_key, tts.providers["openai"].api_key
    assert eleven is not None and eleven.get_secret_value() == "el-env"
    assert openai is not None and openai.get_secret_value() == "sk-env"
    assert load({}, env).config.tts.providers == {}


# --- legacy migrations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("legacy", "check", "warning"),
    [
        (
            {"provider": "log"},
            lambda c: c.provider == "mock",
            'provider "log" is deprecated; use "mock"',
        ),
        (
            {"twilio": {"from": "+15550001111"}},
            lambda c: c.from_number == "+15550001111",
            "twilio.from is deprecated; use fromNumber",
        ),
        (
            {"streaming": {"sttProvider": "openai-realtime"}},
            lambda c: c.streaming.provider == "openai",
            "streaming.sttProvider is deprecated; use streaming.provider",
        ),
        (
            {"streaming": {"openaiApiKey": "sk-legacy"}},
            lambda c: c.streaming.providers["openai"]["apiKey"].get_secret_value() == "sk-legacy",
            "streaming.openaiApiKey is deprecated; use streaming.providers.openai.apiKey",
        ),
        (
            {"streaming": {"sttModel": "gpt-4o-transcribe"}},
            lambda c: c.streaming.providers["openai"]["model"] == "gpt-4o-transcribe",
            "streaming.sttModel is deprecated; use streaming.providers.openai.model",
        ),
        (
            {"streaming": {"silenceDurationMs": 650}},
            lambda c: c.streaming.providers["openai"]["silenceDurationMs"] == 650,
            "streaming.silenceDurationMs is deprecated; use streaming.providers.openai.silenceDurationMs",
        ),
        (
            {"streaming": {"vadThreshold": 0}},
            lambda c: c.streaming.providers["openai"]["vadThreshold"] == 0,
            "streaming.vadThreshold is deprecated; use streaming.providers.openai.vadThreshold",
        ),
        (
            {"realtime": {"agentContext": {"includeSystemPrompt": True}}},
            lambda c: c.realtime.agent_context is not None,
            "realtime.agentContext.includeSystemPrompt was removed",
        ),
    ],
)
def test_legacy_key_is_migrated_with_a_warning(
    env: dict[str, str], legacy: dict[str, Any], check: Any, warning: str
) -> None:
    loaded = load(legacy, env)
    assert check(loaded.config)
    assert len(loaded.warnings) == 1
    assert loaded.warnings[0].startswith(warning)
    assert "voicecall doctor --fix" in loaded.warnings[0]


def test_legacy_value_only_fills_a_missing_current_field(env: dict[str, str]) -> None:
    loaded = load(
        {
            "fromNumber": "+15550002222",
            "twilio": {"from": "+15550001111"},
            "streaming": {"sttModel": "old", "providers": {"openai": {"model": "new"}}},
        },
        env,
    )
    assert loaded.config.from_number == "+15550002222"
    assert loaded.config.streaming.providers["openai"]["model"] == "new"
    assert any("twilio.from" in w and "ignored" in w for w in loaded.warnings)
    assert any("streaming.sttModel" in w and "ignored" in w for w in loaded.warnings)


def test_migrate_raw_is_pure_and_rewrites_inside_an_openclaw_config() -> None:
    doc = {"gateway": {"port": 1}, **openclaw({"provider": "log", "twilio": {"from": "+1555"}})}
    before = json.dumps(doc, sort_keys=True)
    migrated, warnings = migrate_raw(doc)
    assert json.dumps(doc, sort_keys=True) == before
    config = migrated["plugins"]["entries"]["voice-call"]["config"]
    assert config == {"provider": "mock", "twilio": {}, "fromNumber": "+1555"}
    assert migrated["gateway"] == {"port": 1}
    assert len(warnings) == 2


def test_migrate_raw_on_current_config_changes_nothing() -> None:
    raw = {"provider": "mock", "streaming": {"provider": "openai"}}
    assert migrate_raw(raw) == (raw, [])


def test_stt_block_is_accepted_with_a_no_effect_warning(env: dict[str, str]) -> None:
    loaded = load({"stt": {"model": "whisper-1"}}, env)
    assert any(w.startswith("stt.* has no effect") for w in loaded.warnings)


def test_realtime_keys_this_build_cannot_honour_load_with_a_warning_each(env: dict[str, str]) -> None:
    loaded = load({"realtime": {
        "tools": [{"type": "function", "name": "lookup"}], "fastContext": {"enabled": True},
        "consultThinkingLevel": "high", "consultFastMode": True,
        "agentContext": {"enabled": True, "includeIdentity": True, "includeWorkspaceFiles": True}}}, env)
    flagged = sorted(w.split(" has no effect")[0] for w in loaded.warnings if "has no effect" in w)
    assert flagged == sorted(f"realtime.{key}" for key in (
        "tools", "fastContext", "consultThinkingLevel", "consultFastMode",
        "agentContext.includeIdentity", "agentContext.includeWorkspaceFiles"))


def test_realtime_keys_left_off_or_disabled_give_no_warning(env: dict[str, str]) -> None:
    loaded = load({"realtime": {"tools": [], "fastContext": {"enabled": False}, "consultFastMode": False,
                                "agentContext": {"enabled": True, "files": ["/etc/hostname"]}}}, env)
    assert not [w for w in loaded.warnings if "has no effect" in w]


# --- tts --------------------------------------------------------------------------------------


def test_tts_override_is_deep_merged_over_core_messages_tts(env: dict[str, str]) -> None:
    doc = {
        "messages": {
            "tts": {
                "provider": "openai",
                "openai": {"model": "gpt-4o-mini-tts", "voice": "alloy", "speed": 1.5},
                "elevenlabs": {"voiceId": "core-voice"},
                "maxTextLength": 4096,
            }
        },
        **openclaw({"tts": {"openai": {"voice": "marin", "speed": None}, "timeoutMs": 5000}}),
    }
    tts = load(doc, env).config.tts
    assert tts.provider == "openai"
    assert tts.providers["openai"].model == "gpt-4o-mini-tts"
    assert tts.providers["openai"].voice == "marin"
    assert tts.providers["openai"].speed == 1.5  # None in the override is skipped
    assert tts.providers["elevenlabs"].voice_id == "core-voice"
    assert tts.max_text_length == 4096 and tts.timeout_ms == 5000


def test_tts_merge_drops_proto_prototype_and_constructor_keys(env: dict[str, str]) -> None:
    doc = {
        "messages": {"tts": {"prototype": {"x": 1}, "openai": {"voice": "alloy"}}},
        **openclaw(
            {
                "tts": {
                    "__proto__": {"polluted": True},
                    "constructor": {"prototype": {"polluted": True}},
                    "openai": {"__proto__": {"polluted": True}, "model": "m"},
                }
            }
        ),
    }
    loaded = load(doc, env)
    tts = loaded.config.tts
    assert tts.providers["openai"].voice == "alloy" and tts.providers["openai"].model == "m"
    dumped = json.dumps(redacted_config(loaded.config))
    assert "polluted" not in dumped
    assert {"tts.__proto__", "tts.constructor", "messages.tts.prototype", "tts.openai.__proto__"} <= {
        w.split(" ")[0] for w in loaded.warnings
    }


def test_deep_merge_merges_objects_replaces_lists_and_skips_none() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1, "__proto__": {"x": 1}}
    override = {"a": {"c": [3], "e": None}, "d": None, "constructor": 1, "f": {"prototype": 2}}
    dropped: list[str] = []
    assert deep_merge(base, override, dropped=dropped) == {"a": {"b": 1, "c": [3]}, "d": 1, "f": {}}
    assert sorted(dropped) == ["__proto__", "constructor", "f.prototype"]


def test_both_tts_shapes_are_normalized_to_providers(env: dict[str, str]) -> None:
    seed = load(
        {"tts": {"openai": {"model": "gpt-4o-mini-tts", "voice": "alloy", "baseUrl": "https://x.test/v1"}}},
        env,
    ).config.tts
    later = load(
        {
            "tts": {
                "providers": {
                    "openai": {"model": "gpt-4o-mini-tts", "voice": "alloy", "baseUrl": "https://x.test/v1"}
                }
            }
        },
        env,
    ).config.tts
    assert seed == later
    assert seed.providers["openai"].base_url == "https://x.test/v1"


def test_tts_providers_shape_wins_over_seed_shape_for_the_same_provider(
    env: dict[str, str],
) -> None:
    tts = load(
        {
            "tts": {
                "elevenlabs": {"voiceId": "seed", "modelId": "eleven_multilingual_v2"},
                "providers": {"elevenlabs": {"voiceId": "new", "speakerVoiceId": "spk"}},
            }
        },
        env,
    ).config.tts
    provider = tts.providers["elevenlabs"]
    assert (provider.voice_id, provider.model_id) == ("new", "eleven_multilingual_v2")
    assert provider.speaker_voice_id == "spk"


def test_tts_model_normalizes_seed_shape_when_constructed_directly() -> None:
    tts = TtsConfig.model_validate({"openai": {"voice": "alloy"}})
    assert tts.providers["openai"].voice == "alloy"


def test_top_level_tts_in_openclaw_config_is_used_as_core_tts(env: dict[str, str]) -> None:
    doc = {"tts": {"openai": {"voice": "alloy"}}, **openclaw({})}
    assert load(doc, env).config.tts.providers["openai"].voice == "alloy"


def test_bad_core_tts_key_is_named_under_messages_tts(env: dict[str, str]) -> None:
    doc = {"messages": {"tts": {"openai": {"speed": 9}, "auto": "sometimes"}}, **openclaw({})}
    issues = issues_of(doc, env)
    assert issues["messages.tts.providers.openai.speed"] == "must be a number >= 0.25 and <= 4"
    assert issues["messages.tts.auto"] == "must be one of off, always, inbound, tagged"


def test_tts_merged_applies_only_keys_set_in_the_override() -> None:
    base = TtsConfig.model_validate({"provider": "openai", "openai": {"voice": "alloy", "model": "m"}})
    route = TtsConfig.model_validate({"openai": {"voice": "marin"}})
    merged = base.merged(route)
    assert merged.provider == "openai"
    assert (merged.providers["openai"].voice, merged.providers["openai"].model) == ("marin", "m")


# --- validation errors ------------------------------------------------------------------------


def test_every_bad_key_is_named_by_its_full_camelcase_path(env: dict[str, str]) -> None:
    issues = issues_of(
        {
            "serve": {"port": 70000, "prot": 1},
            "outbound": {"defaultMode": "shout"},
            "numbers": {"+15550001111": {"responseTimeoutMs": "soon"}},
            "allowFrom": ["+15550001111", "5550002222"],
            "maxConcurrentCalls": 0,
            "tailscale": {"port": 0},
            "mock": {"outcome": "maybe"},
            "realtime": {"tools": [{"name": ""}]},
            "sessionScope": "global",
            "bogus": True,
        },
        env,
    )
    assert issues == {
        "serve.port": "must be an integer >= 0 and <= 65535",
        "serve.prot": 'unknown key (did you mean "port"?)',
        "outbound.defaultMode": "must be one of notify, conversation",
        "numbers.+15550001111.responseTimeoutMs": "must be an integer >= 1",
        "allowFrom[1]": "must be an E.164 phone number like +15550001234",
        "maxConcurrentCalls": "must be an integer >= 1",
        "tailscale.port": "must be an integer >= 1 and <= 65535",
        "mock.outcome": "must be one of answer, busy, no-answer, failed",
        "realtime.tools[0].name": "must not be empty",
        "sessionScope": "must be one of per-phone, per-call, main",
        "bogus": "unknown key",
    }


def test_config_error_str_lists_one_issue_per_line(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load({"serve": {"port": "x"}, "ringTimeoutMs": -1}, env)
    lines = str(info.value).splitlines()
    assert sorted(lines) == [
        "ringTimeoutMs: must be an integer >= 1",
        "serve.port: must be an integer >= 0 and <= 65535",
    ]


def test_snake_case_keys_in_a_file_are_unknown_with_a_suggestion(env: dict[str, str]) -> None:
    issues = issues_of({"from_number": "+15550001111"}, env)
    assert issues == {"from_number": 'unknown key (did you mean "fromNumber"?)'}


def test_python_code_may_construct_the_model_by_attribute_name() -> None:
    cfg = VoiceCallConfig(from_number="+15550001111", max_concurrent_calls=2)
    assert cfg.from_number == "+15550001111" and cfg.max_concurrent_calls == 2


def test_boolean_in_a_numeric_key_is_rejected(env: dict[str, str]) -> None:
    assert issues_of({"maxDurationSeconds": True}, env) == {"maxDurationSeconds": "must be an integer >= 1"}


def test_wrong_types_are_named_and_described(env: dict[str, str]) -> None:
    issues = issues_of(
        {"serve": "3334", "allowFrom": "+15550001111", "skipSignatureVerification": "maybe"}, env
    )
    assert issues == {
        "serve": "must be an object",
        "allowFrom": "must be a list",
        "skipSignatureVerification": "must be true or false",
    }


def test_control_port_must_differ_from_serve_port(env: dict[str, str]) -> None:
    issues = issues_of({"serve": {"port": 4000}, "control": {"port": 4000}}, env)
    assert "must differ from serve.port" in issues["control.port"]


def test_port_zero_means_any_free_port_for_both_listeners(env: dict[str, str]) -> None:
    cfg = load({"serve": {"port": 0}, "control": {"port": 0}}, env).config
    assert (cfg.serve.port, cfg.control.port) == (0, 0)


def test_short_control_token_is_refused(env: dict[str, str]) -> None:
    assert issues_of({"control": {"token": "short"}}, env) == {
        "control.token": "must be at least 16 characters"
    }


def test_error_messages_never_echo_secret_values(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load({"twilio": {"authToken": 987654321, "sekrit": "hunter2-value"}}, env)
    text = str(info.value)
    assert "twilio.authToken: must be a string" in text
    assert "987654321" not in text and "hunter2-value" not in text


@pytest.mark.parametrize("number", ["+15550001111", "+442071838750", "+12"])
def test_valid_e164_numbers_are_accepted(env: dict[str, str], number: str) -> None:
    cfg = load(
        {"fromNumber": number, "toNumber": number, "allowFrom": [number], "numbers": {number: {}}},
        env,
    ).config
    assert cfg.from_number == number and cfg.allow_from == [number] and number in cfg.numbers


@pytest.mark.parametrize(
    "number", ["15550001111", "+05550001111", "+1 555 000 1111", "+1234567890123456", "+1", ""]
)
def test_invalid_e164_numbers_are_rejected_everywhere(env: dict[str, str], number: str) -> None:
    issues = issues_of(
        {"fromNumber": number, "toNumber": number, "allowFrom": [number], "numbers": {number: {}}},
        env,
    )
    for path in ("fromNumber", "toNumber", "allowFrom[0]"):
        assert issues[path] == "must be an E.164 phone number like +15550001234"
    assert issues[f"numbers.{number}"] == "key must be an E.164 phone number like +15550001234"


def test_number_routes_hold_per_number_overrides(env: dict[str, str]) -> None:
    route = load(
        {
            "numbers": {
                "+15550001111": {
                    "inboundGreeting": "Sales, hello!",
                    "agentId": "sales",
                    "responseModel": "openai/gpt-4o-mini",
                    "responseSystemPrompt": "Be brief.",
                    "responseTimeoutMs": 10000,
                    "tts": {"openai": {"voice": "marin"}},
                }
            }
        },
        env,
    ).config.route_for("+15550001111")
    assert route is not None
    assert (route.inbound_greeting, route.agent_id) == ("Sales, hello!", "sales")
    assert route.response_timeout_ms == 10000
    assert route.tts is not None and route.tts.providers["openai"].voice == "marin"


@pytest.mark.parametrize(
    ("serve_path", "expected"),
    [
        ("/voice/webhook", "/voice/stream/realtime"),
        ("/", "/voice/stream/realtime"),
        ("/hooks/twilio", "/hooks/twilio/stream/realtime"),
        ("/a/webhook", "/a/stream/realtime"),
    ],
)
def test_realtime_stream_path_is_derived_from_serve_path(
    env: dict[str, str], serve_path: str, expected: str
) -> None:
    assert derive_realtime_stream_path(serve_path) == expected
    cfg = load({"serve": {"path": serve_path}, "streaming": {"streamPath": "/s"}}, env).config
    assert cfg.realtime.stream_path == expected


def test_explicit_realtime_stream_path_is_kept(env: dict[str, str]) -> None:
    cfg = load({"realtime": {"streamPath": "/rt"}}, env).config
    assert cfg.realtime.stream_path == "/rt"


def test_paths_are_normalized_like_request_paths(env: dict[str, str]) -> None:
    cfg = load({"serve": {"path": "voice/hook/"}}, env).config
    assert cfg.serve.path == "/voice/hook"


def test_store_path_tilde_is_expanded_with_env_home(env: dict[str, str]) -> None:
    cfg = load({"store": "~/calls"}, env).config
    assert cfg.store == str(Path(env["HOME"]) / "calls")


def test_free_form_provider_secrets_are_typed_as_secretstr(env: dict[str, str]) -> None:
    cfg = load({"realtime": {"providers": {"openai": {"apiKey": "sk-rt", "voice": "alloy"}}}}, env)
    provider = cfg.config.realtime.providers["openai"]
    assert isinstance(provider["apiKey"], SecretStr) and provider["voice"] == "alloy"


# --- validate_provider_config -----------------------------------------------------------------


def issue_map(cfg: VoiceCallConfig) -> dict[str, str]:
    return {issue.path: issue.message for issue in validate_provider_config(cfg)}


def test_mock_config_has_no_provider_issues() -> None:
    assert validate_provider_config(VoiceCallConfig()) == []


def test_twilio_without_credentials_names_each_key_and_env_var() -> None:
    issues = issue_map(VoiceCallConfig(provider="twilio"))
    assert issues["fromNumber"] == "is required (or set TWILIO_FROM_NUMBER env)"
    assert issues["twilio.accountSid"] == "is required (or set TWILIO_ACCOUNT_SID env)"
    assert issues["twilio.authToken"] == "is required (or set TWILIO_AUTH_TOKEN env)"


def test_telnyx_public_key_is_required_unless_signature_checks_are_skipped() -> None:
    issues = issue_map(VoiceCallConfig(provider="telnyx"))
    assert issues["fromNumber"] == "is required"
    assert "TELNYX_API_KEY" in issues["telnyx.apiKey"]
    assert "TELNYX_CONNECTION_ID" in issues["telnyx.connectionId"]
    assert "TELNYX_PUBLIC_KEY" in issues["telnyx.publicKey"]
    skipped = issue_map(VoiceCallConfig(provider="telnyx", skip_signature_verification=True))
    assert "telnyx.publicKey" not in skipped


def test_plivo_without_credentials_names_each_key_and_env_var() -> None:
    issues = issue_map(VoiceCallConfig(provider="plivo"))
    assert "PLIVO_AUTH_ID" in issues["plivo.authId"]
    assert "PLIVO_AUTH_TOKEN" in issues["plivo.authToken"]


def test_plivo_is_available_and_its_api_base_url_is_an_http_url() -> None:
    cfg = VoiceCallConfig.model_validate({"provider": "plivo", "plivo": {
        "authId": "MAXXXXXXXXXXXXXXXXXX", "authToken": "t", "apiBaseUrl": "http://127.0.0.1:9"}})
    assert "provider" not in issue_map(cfg)
    assert cfg.plivo.api_base_url == "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="apiBaseUrl"):
        VoiceCallConfig.model_validate({"plivo": {"apiBaseUrl": "ftp://x"}})


def test_telnyx_is_available_once_its_credentials_are_set() -> None:
    telnyx = {"apiKey": "KEY", "connectionId": "c1",
              "publicKey": "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
              "apiBaseUrl": "http://127.0.0.1:9/v2", "streamCodec": "PCMA"}
    cfg = VoiceCallConfig.model_validate({"provider": "telnyx", "fromNumber": "+15550000000",
                                          "telnyx": telnyx})
    assert issue_map(cfg) == {}
    assert cfg.telnyx.stream_codec == "PCMA" and str(cfg.telnyx.api_base_url) == "http://127.0.0.1:9/v2"


def test_twilio_is_available_once_its_credentials_are_set() -> None:
    cfg = VoiceCallConfig.model_validate({"provider": "twilio", "fromNumber": "+15550000000",
                                          "twilio": {"accountSid": "AC1", "authToken": "t"}})
    assert "provider" not in issue_map(cfg)


def test_realtime_voice_is_accepted_now_that_it_is_built() -> None:
    cfg = VoiceCallConfig.model_validate({"provider": "twilio", "fromNumber": "+15550000000",
                                          "twilio": {"accountSid": "AC1", "authToken": "t"},
                                          "realtime": {"enabled": True}, "inboundPolicy": "open"})
    assert issue_map(cfg) == {}


@pytest.mark.parametrize(
    "raw",
    [
        {"tunnel": {"provider": "ngrok"}},
        {"tunnel": {"provider": "tailscale-serve"}},
        {"tunnel": {"provider": "tailscale-funnel"}},
        {"tailscale": {"mode": "serve"}},
        {"tailscale": {"mode": "funnel"}},
    ],
)
def test_tunnels_and_tailscale_exposure_are_accepted_now_that_they_are_built(raw: dict[str, Any]) -> None:
    issues = issue_map(VoiceCallConfig.model_validate(raw))
    assert "tunnel.provider" not in issues and "tailscale.mode" not in issues


def test_not_built_table_is_one_module_level_list_keyed_by_path() -> None:
    assert {rule.path for rule in NOT_BUILT_YET} == {"provider"}


def test_realtime_cross_key_rules_are_checked() -> None:
    cfg = VoiceCallConfig.model_validate(
        {"provider": "mock", "realtime": {"enabled": True}, "streaming": {"enabled": True}}
    )
    issues = validate_provider_config(cfg)
    messages = [str(issue) for issue in issues]
    assert 'inboundPolicy: must not be "disabled" when realtime.enabled is true' in messages
    assert "realtime.enabled: realtime.enabled and streaming.enabled cannot both be true" in messages
    assert ('provider: must be a carrier with media streams ("twilio", "telnyx" or "plivo") when '
            "realtime.enabled is true") in messages


def test_loading_reports_provider_issues_without_raising_until_asked(env: dict[str, str]) -> None:
    loaded = load({"provider": "twilio"}, env)
    assert ConfigIssue("twilio.accountSid", "is required (or set TWILIO_ACCOUNT_SID env)") in (loaded.issues)
    assert not loaded.ok
    with pytest.raises(ConfigError) as info:
        loaded.raise_for_issues()
    assert "twilio.accountSid: is required" in str(info.value)
    load({}, env).raise_for_issues()  # a clean config does not raise


# --- paths and the control token --------------------------------------------------------------


def test_state_dir_is_openclaw_state_dir_else_home_dot_openclaw(env: dict[str, str], tmp_path: Path) -> None:
    assert state_dir(env) == Path(env["HOME"]) / ".openclaw"
    assert state_dir({**env, "OPENCLAW_STATE_DIR": str(tmp_path / "s")}) == tmp_path / "s"


def test_store_dir_defaults_under_state_dir_and_expands_tilde(env: dict[str, str]) -> None:
    assert store_dir(VoiceCallConfig(), env) == Path(env["HOME"]) / ".openclaw" / "voice-calls"
    assert store_dir(VoiceCallConfig(store="~/calls"), env) == Path(env["HOME"]) / "calls"


def test_control_token_is_generated_once_with_mode_0600_and_reused(
    env: dict[str, str], tmp_path: Path
) -> None:
    env["OPENCLAW_STATE_DIR"] = str(tmp_path / "state")
    cfg = VoiceCallConfig()
    first = resolve_control_token(cfg, env)
    token_file = tmp_path / "state" / "gateway.token"
    assert len(first) >= 32
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert resolve_control_token(cfg, env) == first
    assert token_file.read_text().strip() == first
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["gateway.token"]


def test_configured_control_token_wins_and_writes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    env["OPENCLAW_STATE_DIR"] = str(tmp_path / "state")
    cfg = VoiceCallConfig.model_validate({"control": {"token": "configured-token-123456"}})
    assert resolve_control_token(cfg, env) == "configured-token-123456"
    assert not (tmp_path / "state").exists()


def test_existing_token_file_is_read_and_an_empty_one_is_replaced(
    env: dict[str, str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    env["OPENCLAW_STATE_DIR"] = str(state)
    token_file = write(state / "gateway.token", "existing-token\n")
    os.chmod(token_file, 0o600)
    assert resolve_control_token(VoiceCallConfig(), env) == "existing-token"
    token_file.write_text("")
    fresh = resolve_control_token(VoiceCallConfig(), env)
    assert fresh and token_file.read_text().strip() == fresh


# --- output -----------------------------------------------------------------------------------


SECRETS = {
    "tw-auth-secret-1",
    "tx-api-secret-2",
    "tx-public-key-3",
    "pl-auth-secret-4",
    "ngrok-secret-5",
    "control-token-secret-6",
    "tts-openai-secret-7",
    "stream-openai-secret-8",
    "realtime-secret-9",
    "route-tts-secret-10",
    "nested-token-secret-11",
}


def test_redacted_config_contains_no_secret_value(env: dict[str, str]) -> None:
    cfg = load(
        {
            "provider": "twilio",
            "fromNumber": "+15550001111",
            "twilio": {"accountSid": "AC1", "authToken": "tw-auth-secret-1"},
            "telnyx": {"apiKey": "tx-api-secret-2", "publicKey": "tx-public-key-3"},
            "plivo": {"authId": "MA1", "authToken": "pl-auth-secret-4"},
            "tunnel": {"ngrokAuthToken": "ngrok-secret-5"},
            "control": {"token": "control-token-secret-6"},
            "tts": {"openai": {"apiKey": "tts-openai-secret-7"}},
            "streaming": {
                "providers": {
                    "openai": {
                        "apiKey": "stream-openai-secret-8",
                        "extra": {"accessToken": "nested-token-secret-11"},
                    }
                }
            },
            "realtime": {"providers": {"x": {"api_key": "realtime-secret-9"}}},
            "numbers": {"+15550002222": {"tts": {"openai": {"apiKey": "route-tts-secret-10"}}}},
        },
        env,
    ).config
    out = redacted_config(cfg)
    dumped = json.dumps(out)
    for secret in SECRETS:
        assert secret not in dumped
        assert secret not in repr(cfg)
    assert out["twilio"]["authToken"] == "***"
    assert out["twilio"]["accountSid"] == "AC1"
    assert out["streaming"]["providers"]["openai"]["apiKey"] == "***"
    assert out["tts"]["providers"]["openai"]["apiKey"] == "***"
    assert out["control"]["token"] == "***"
    assert out["telnyx"]["connectionId"] is None  # unset secrets and fields stay null


def test_redacted_config_uses_camelcase_keys() -> None:
    out = redacted_config(VoiceCallConfig())
    assert "fromNumber" in out and "from_number" not in out
    assert "trustedProxyIPs" in out["webhookSecurity"]
    assert out["mock"]["speakMsPerChar"] == 40


def test_json_schema_lists_camelcase_properties() -> None:
    schema = config_json_schema()
    props = schema["properties"]
    for key in ("fromNumber", "maxConcurrentCalls", "sessionScope", "numbers", "control", "mock"):
        assert key in props
    assert "from_number" not in props
    defs = schema["$defs"]
    assert "trustedProxyIPs" in defs["WebhookSecurityConfig"]["properties"]
    assert defs["ControlConfig"]["properties"]["port"]["default"] == 3335


def test_config_fingerprint_ignores_the_control_token_and_follows_every_other_setting() -> None:
    base = {"provider": "mock", "mock": {"callerReplies": ["Fine"]}}
    one = config_fingerprint(load_config_dict(base, env={}).config)
    token = {**base, "control": {"token": "a-control-token-of-32-characters!"}}
    assert config_fingerprint(load_config_dict(token, env={}).config) == one
    other = {**base, "mock": {"callerReplies": ["Something else"]}}
    assert config_fingerprint(load_config_dict(other, env={}).config) != one
    assert len(one) == 12 and int(one, 16) >= 0
