"""SecretRef credentials through the real `voicecall` entry point: a gateway that resolves its
control token from an exec provider, and three resolution failures that stop `serve` with exit
code 2 and the key named, before anything listens."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_cli_gateway import VOICECALL, Gateway

pytestmark = pytest.mark.slow
SECRET = "resolved-secret-value-0123456789"


def script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\nimport json, sys, time\n{body}\n")
    path.chmod(0o700)
    return path


def failed_start(tmp_path: Path, config: dict[str, Any]) -> str:
    """Run `voicecall serve`; assert it exits 2 without serving and hands back its stderr."""
    gw = Gateway(tmp_path, config)
    started = time.monotonic()
    result = subprocess.run([*VOICECALL, "serve"], env=gw.env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 20
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{gw.control_port}/health")
    assert SECRET not in result.stdout + result.stderr
    return result.stderr


def test_serve_refuses_to_start_when_an_env_secret_is_missing(tmp_path: Path) -> None:
    stderr = failed_start(tmp_path, {"control": {"token": {"source": "env", "id": "VOICECALL_E2E_NO_SUCH"}}})
    assert ('control.token: cannot resolve the secret: env provider "default": environment variable '
            "VOICECALL_E2E_NO_SUCH is not set") in stderr
    assert f"invalid config in {tmp_path / 'voicecall.json'}:" in stderr


def test_serve_refuses_a_world_readable_secrets_file(tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"openai": SECRET}))
    secrets_file.chmod(0o644)
    ref = {"source": "file", "provider": "local", "id": "/openai"}
    stderr = failed_start(tmp_path, {
        "tts": {"providers": {"openai": {"apiKey": ref}}},
        "secrets": {"providers": {"local": {"source": "file", "path": str(secrets_file)}}}})
    assert 'tts.providers.openai.apiKey: cannot resolve the secret: file provider "local"' in stderr
    assert f"(mode 0644); run chmod 600 {secrets_file}" in stderr


def test_serve_refuses_to_start_when_the_exec_provider_times_out(tmp_path: Path) -> None:
    command = script(tmp_path / "resolver", "time.sleep(10)")
    stderr = failed_start(tmp_path, {
        "tunnel": {"ngrokAuthToken": {"source": "exec", "id": "ngrok/token"}},
        "secrets": {"providers": {"vault": {"source": "exec", "command": str(command), "timeoutMs": 500}},
                    "defaults": {"exec": "vault"}}})
    assert (f'tunnel.ngrokAuthToken: cannot resolve the secret: exec provider "vault": {command} did not '
            "finish within timeoutMs (500 ms)") in stderr


def test_gateway_and_cli_both_resolve_the_control_token_from_an_exec_provider(tmp_path: Path) -> None:
    command = script(tmp_path / "resolver", f"""
request = json.load(sys.stdin)
print(json.dumps({{"protocolVersion": 1, "values": {{i: {SECRET!r} for i in request["ids"]}}}}))
""")
    gw = Gateway(tmp_path, {"secrets": {"providers": {"vault": {"source": "exec", "command": str(command)}}}})
    config = json.loads((tmp_path / "voicecall.json").read_text())
    config["control"]["token"] = {"source": "exec", "provider": "vault", "id": "voicecall/control"}
    (tmp_path / "voicecall.json").write_text(json.dumps(config))
    gw.start()
    try:
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "voicecall.status", "params": {}}
        url = f"http://127.0.0.1:{gw.control_port}/rpc"
        assert httpx.post(url, json=rpc, headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
        assert httpx.post(url, json=rpc, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert gw.cli("token").stdout.strip() == SECRET
        shown = gw.cli("config", "show").stdout
        assert SECRET not in shown and json.loads(shown)["control"]["token"] == "***"
    finally:
        gw.kill()
