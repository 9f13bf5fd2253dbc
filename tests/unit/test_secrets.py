"""SecretRef credentials: env, file and exec providers, their refusals, and redaction."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from voicecall.config import (
    ConfigError,
    VoiceCallConfig,
    config_json_schema,
    load_config_dict,
    redacted_config,
)

SECRET = "s3cr3t-value-never-printed"
TWILIO = {"provider": "twilio", "fromNumber": "+15550001111"}


def twilio_ref(ref: dict[str, Any], secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {**TWILIO, "twilio": {"accountSid": "AC1", "authToken": ref}}
    if secrets is not None:
        doc["secrets"] = secrets
    return doc


def auth_token(doc: dict[str, Any], env: dict[str, str] | None = None) -> str:
    token = load_config_dict(doc, env=env or {}).config.twilio.auth_token
    assert token is not None
    return token.get_secret_value()


def failure(doc: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config_dict(doc, env=env or {})
    message = str(caught.value)
    assert SECRET not in message
    return message


def private_file(path: Path, content: str, mode: int = 0o600) -> Path:
    path.write_text(content)
    path.chmod(mode)
    return path


def script(path: Path, body: str) -> Path:
    """An executable Python script (the exec provider runs it directly, no shell)."""
    path.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n{body}\n")
    path.chmod(0o700)
    return path


# --- env -----------------------------------------------------------------------------------------


def test_env_ref_reads_the_variable_through_the_implicit_default_provider() -> None:
    assert auth_token(twilio_ref({"source": "env", "id": "TW_TOKEN"}), {"TW_TOKEN": SECRET}) == SECRET


def test_missing_env_variable_names_the_key_and_the_provider() -> None:
    message = failure(twilio_ref({"source": "env", "id": "TW_TOKEN"}))
    assert message == ('twilio.authToken: cannot resolve the secret: env provider "default": '
                       "environment variable TW_TOKEN is not set")


def test_env_provider_allowlist_refuses_other_variables() -> None:
    secrets = {"providers": {"ci": {"source": "env", "allowlist": ["ALLOWED"]}}}
    doc = twilio_ref({"source": "env", "provider": "ci", "id": "OTHER"}, secrets)
    assert "OTHER is not in its allowlist" in failure(doc, {"OTHER": SECRET})


def test_env_ref_id_must_be_a_variable_name() -> None:
    message = failure(twilio_ref({"source": "env", "id": "tw-token"}))
    assert message.startswith("twilio.authToken: id must be an environment variable name")


def test_secrets_defaults_choose_the_provider_of_refs_that_name_none() -> None:
    secrets = {"providers": {"ci": {"source": "env", "allowlist": ["TW"]}}, "defaults": {"env": "ci"}}
    assert auth_token(twilio_ref({"source": "env", "id": "TW"}, secrets), {"TW": SECRET}) == SECRET
    assert 'env provider "ci"' in failure(twilio_ref({"source": "env", "id": "NOPE"}, secrets))


def test_unknown_provider_and_wrong_source_are_refused_by_name() -> None:
    assert 'env provider "vault" is not in secrets.providers' in failure(
        twilio_ref({"source": "env", "provider": "vault", "id": "X"}))
    secrets = {"providers": {"vault": {"source": "exec", "command": "/bin/true"}}}
    assert 'provider "vault" is a exec provider, but the ref has source env' in failure(
        twilio_ref({"source": "env", "provider": "vault", "id": "X"}, secrets))


def test_provider_keys_of_another_source_are_refused() -> None:
    secrets = {"providers": {"ci": {"source": "env", "command": "/bin/true"}}}
    with pytest.raises(ConfigError, match=r"secrets\.providers\.ci\.command: applies to exec providers"):
        load_config_dict(twilio_ref({"source": "env", "id": "X"}, secrets), env={})


# --- file ----------------------------------------------------------------------------------------


def test_file_ref_follows_a_json_pointer(tmp_path: Path) -> None:
    path = private_file(tmp_path / "secrets.json", json.dumps({"twilio": {"auth/token": SECRET}}))
    secrets = {"providers": {"local": {"source": "file", "path": str(path)}}, "defaults": {"file": "local"}}
    assert auth_token(twilio_ref({"source": "file", "id": "/twilio/auth~1token"}, secrets)) == SECRET


def test_single_value_file_is_the_whole_file_without_its_newline(tmp_path: Path) -> None:
    path = private_file(tmp_path / "token", SECRET + "\n")
    secrets = {"providers": {"tok": {"source": "file", "path": str(path), "mode": "singleValue"}}}
    assert auth_token(twilio_ref({"source": "file", "provider": "tok", "id": "value"}, secrets)) == SECRET


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_secrets_file_others_can_read_or_change_is_refused(tmp_path: Path, mode: int) -> None:
    path = private_file(tmp_path / "secrets.json", json.dumps({"t": SECRET}), mode)
    secrets = {"providers": {"local": {"source": "file", "path": str(path)}}}
    message = failure(twilio_ref({"source": "file", "provider": "local", "id": "/t"}, secrets))
    assert message.startswith('twilio.authToken: cannot resolve the secret: file provider "local": ')
    assert f"readable or writable by group or others (mode {mode:04o}); run chmod 600 {path}" in message


def test_a_pointer_missing_from_the_file_names_the_pointer_not_the_content(tmp_path: Path) -> None:
    path = private_file(tmp_path / "secrets.json", json.dumps({"t": SECRET}))
    secrets = {"providers": {"local": {"source": "file", "path": str(path)}}}
    assert "/missing is not in the file" in failure(
        twilio_ref({"source": "file", "provider": "local", "id": "/missing"}, secrets))


def test_file_provider_path_must_be_absolute() -> None:
    secrets = {"providers": {"local": {"source": "file", "path": "secrets.json"}}}
    with pytest.raises(ConfigError, match=r"secrets\.providers\.local\.path: must be an absolute path"):
        load_config_dict(twilio_ref({"source": "file", "provider": "local", "id": "/t"}, secrets), env={})


# --- exec ----------------------------------------------------------------------------------------


def test_exec_ref_speaks_the_json_protocol(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    command = script(tmp_path / "resolver", f"""
request = json.load(sys.stdin)
with open({str(log)!r}, "a") as f:
    f.write(json.dumps(request) + "\\n")
print(json.dumps({{"protocolVersion": 1, "values": {{i: "{SECRET}:" + i for i in request["ids"]}}}}))
""")
    secrets = {"providers": {"vault": {"source": "exec", "command": str(command)}},
               "defaults": {"exec": "vault"}}
    doc = twilio_ref({"source": "exec", "id": "twilio/auth-token"}, secrets)
    doc["tunnel"] = {"ngrokAuthToken": {"source": "exec", "id": "twilio/auth-token"}}
    loaded = load_config_dict(doc, env={})
    assert loaded.config.twilio.auth_token is not None
    assert loaded.config.twilio.auth_token.get_secret_value() == f"{SECRET}:twilio/auth-token"
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    # The same (provider, id) is asked for once, however many keys use it.
    assert requests == [{"protocolVersion": 1, "provider": "vault", "ids": ["twilio/auth-token"]}]


def test_exec_reported_errors_are_passed_on_with_the_provider(tmp_path: Path) -> None:
    command = script(tmp_path / "resolver", """
json.load(sys.stdin)
print(json.dumps({"protocolVersion": 1, "errors": {"tw": {"message": "no such secret"}}}))
""")
    secrets = {"providers": {"vault": {"source": "exec", "command": str(command)}}}
    message = failure(twilio_ref({"source": "exec", "provider": "vault", "id": "tw"}, secrets))
    assert message == (f'twilio.authToken: cannot resolve the secret: exec provider "vault": {command} '
                       "reported for tw: no such secret")


def test_exec_without_json_takes_the_raw_output(tmp_path: Path) -> None:
    command = script(tmp_path / "resolver", f"print({SECRET!r})")
    secrets = {"providers": {"raw": {"source": "exec", "command": str(command), "jsonOnly": False}}}
    assert auth_token(twilio_ref({"source": "exec", "provider": "raw", "id": "tw"}, secrets)) == SECRET


def test_exec_command_gets_only_the_passed_environment(tmp_path: Path) -> None:
    command = script(tmp_path / "resolver", """
print(json.dumps(sorted(k for k in os.environ if k not in ("LC_CTYPE", "PWD", "SHLVL", "_"))))
""")
    secrets = {"providers": {"raw": {"source": "exec", "command": str(command), "jsonOnly": False,
                                     "passEnv": ["WANTED"]}}}
    seen = auth_token(twilio_ref({"source": "exec", "provider": "raw", "id": "tw"}, secrets),
                      {"WANTED": "1", "UNWANTED": "2"})
    assert json.loads(seen) == ["WANTED"]


def test_exec_that_overruns_its_timeout_is_killed_and_named(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    command = script(tmp_path / "resolver", f"time.sleep(2)\nopen({str(marker)!r}, 'w').close()")
    secrets = {"providers": {"vault": {"source": "exec", "command": str(command), "timeoutMs": 300}}}
    started = time.monotonic()
    message = failure(twilio_ref({"source": "exec", "provider": "vault", "id": "tw"}, secrets))
    assert time.monotonic() - started < 3
    assert message == (f'twilio.authToken: cannot resolve the secret: exec provider "vault": {command} '
                       "did not finish within timeoutMs (300 ms)")
    time.sleep(2.3)
    assert not marker.exists()  # killed, not left running


def test_exec_output_over_the_cap_is_refused(tmp_path: Path) -> None:
    command = script(tmp_path / "resolver", "sys.stdout.write('x' * 5000)")
    secrets = {"providers": {"vault": {"source": "exec", "command": str(command), "maxOutputBytes": 1000,
                                       "jsonOnly": False}}}
    assert "printed more than maxOutputBytes (1000)" in failure(
        twilio_ref({"source": "exec", "provider": "vault", "id": "tw"}, secrets))


def test_exec_runs_no_shell_and_needs_an_absolute_program(tmp_path: Path) -> None:
    secrets = {"providers": {"vault": {"source": "exec", "command": "resolver --flag"}}}
    with pytest.raises(ConfigError, match=r"secrets\.providers\.vault\.command: must be an absolute path"):
        load_config_dict(twilio_ref({"source": "exec", "provider": "vault", "id": "tw"}, secrets), env={})
    shell_line = {"source": "exec", "command": f"{sys.executable} -c print(1)"}
    assert "cannot run" in failure(twilio_ref({"source": "exec", "provider": "vault", "id": "tw"},
                                              {"providers": {"vault": shell_line}}))


def test_a_group_writable_exec_command_is_refused(tmp_path: Path) -> None:
    command = script(tmp_path / "resolver", "print('{}')")
    command.chmod(0o775)
    secrets = {"providers": {"vault": {"source": "exec", "command": str(command)}}}
    assert "is writable by group or others" in failure(
        twilio_ref({"source": "exec", "provider": "vault", "id": "tw"}, secrets))


def test_an_answer_without_the_protocol_version_is_refused_without_echoing_it(tmp_path: Path) -> None:
    command = script(tmp_path / "resolver", f"print(json.dumps({{'values': {{'tw': {SECRET!r}}}}}))")
    secrets = {"providers": {"vault": {"source": "exec", "command": str(command)}}}
    assert "did not answer with protocolVersion 1" in failure(
        twilio_ref({"source": "exec", "provider": "vault", "id": "tw"}, secrets))


# --- every credential key, redaction, schema -----------------------------------------------------


def test_every_kind_of_credential_key_takes_a_ref_and_config_show_redacts_it() -> None:
    ref = {"source": "env", "id": "KEY"}
    doc = {**twilio_ref(ref), "control": {"token": {"source": "env", "id": "LONG"}},
           "tunnel": {"ngrokAuthToken": ref},
           "tts": {"providers": {"openai": {"apiKey": ref}}},
           "streaming": {"providers": {"openai": {"apiKey": ref}}},
           "responder": {"headers": {"Authorization": ref}}}
    env = {"KEY": SECRET, "LONG": SECRET * 2}
    c = load_config_dict(doc, env=env).config
    assert c.control.token is not None and c.control.token.get_secret_value() == SECRET * 2
    assert c.tts.providers["openai"].api_key is not None
    assert c.tts.providers["openai"].api_key.get_secret_value() == SECRET
    assert c.streaming.providers["openai"]["apiKey"].get_secret_value() == SECRET
    assert c.responder.headers["Authorization"].get_secret_value() == SECRET
    shown = json.dumps(redacted_config(c))
    assert SECRET not in shown and shown.count('"***"') == 6


def test_a_resolved_value_still_meets_the_keys_rules() -> None:
    message = failure({"control": {"token": {"source": "env", "id": "SHORT"}}}, {"SHORT": "abc"})
    assert message == "control.token: must be at least 16 characters"


def test_stt_provider_key_failure_names_its_path() -> None:
    doc = {"streaming": {"providers": {"openai": {"apiKey": {"source": "env", "id": "NOPE"}}}}}
    assert failure(doc).startswith('streaming.providers.openai.apiKey: cannot resolve the secret: env '
                                   'provider "default"')


def test_openclaw_config_reads_the_top_level_secrets_block(tmp_path: Path) -> None:
    path = private_file(tmp_path / "s.json", json.dumps({"tw": SECRET}))
    doc = {"secrets": {"providers": {"local": {"source": "file", "path": str(path)}}},
           "plugins": {"entries": {"voice-call": {"config": twilio_ref(
               {"source": "file", "provider": "local", "id": "/tw"})}}}}
    assert auth_token(doc) == SECRET


def test_a_ref_outside_the_loader_is_an_error_not_a_silent_string() -> None:
    with pytest.raises(Exception, match="resolved only when the config file is loaded"):
        VoiceCallConfig.model_validate({"twilio": {"authToken": {"source": "env", "id": "X"}}})


def test_the_schema_accepts_a_ref_on_credential_keys_and_describes_the_providers() -> None:
    schema = config_json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    good = {"twilio": {"authToken": {"source": "exec", "provider": "vault", "id": "tw"}},
            "secrets": {"providers": {"vault": {"source": "exec", "command": "/usr/bin/vault-read",
                                                "timeoutMs": 2000}}, "defaults": {"exec": "vault"}}}
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors({"twilio": {"authToken": {"source": "vault", "id": "x"}}}))
    assert list(validator.iter_errors({"secrets": {"providers": {"Bad Name": {"source": "env"}}}}))


def test_values_are_resolved_at_load_not_kept_as_refs() -> None:
    env = {"TW": SECRET}
    loaded = load_config_dict(twilio_ref({"source": "env", "id": "TW"}), env=env)
    env["TW"] = "changed later"
    assert loaded.config.twilio.auth_token is not None
    assert loaded.config.twilio.auth_token.get_secret_value() == SECRET


def test_a_bad_secrets_block_is_reported_with_the_other_bad_keys() -> None:
    doc = {**twilio_ref({"source": "env", "id": "TW"}), "maxConcurrentCalls": 0,
           "secrets": {"providers": {"local": {"source": "file"}}}}
    message = failure(doc, {"TW": SECRET})
    assert "secrets.providers.local.path: is required when source is file" in message
    assert "maxConcurrentCalls: must be an integer >= 1" in message
