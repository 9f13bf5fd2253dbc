"""Public exposure end to end: the gateway starting ngrok and Tailscale as child processes.

The `ngrok` and `tailscale` on PATH here are small scripts that speak like the real CLIs (ngrok's
JSON log lines, `tailscale status --json`, serve/funnel exit codes) and record every argv, so the
tests assert the exact commands, the URL the gateway ends up with, and that every process is
stopped again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port
from voicecall.config import ConfigError, load_config_dict
from voicecall.gateway import exposure, tunnel
from voicecall.gateway.runtime import Runtime
from voicecall.gateway.setup import run_checks
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import TwilioSimulator
from voicecall.testing.twilio.signing import sign

OUR_NUMBER = "+15550000000"
FRIEND = "+15557770001"
NGROK_URL = "https://abc.ngrok-free.app"
TS_HOST = "host.tail1234.ts.net"
TS_NODE = "nTAIL1234CNTRL"
LOCAL_ONLY = "is local-only; set publicUrl (or a tunnel)"

FAKE_NGROK = r'''
import json, os, signal, sys, time

args = sys.argv[1:]
with open(LOG + ".pids", "a") as f:
    f.write(f"{os.getpid()}\n")
def record(entry):
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")

record(args)
if args[:2] == ["config", "add-authtoken"]:
    if BEHAVIOR == "bad-token":
        print("ERROR:  The authtoken you specified is not valid. " + args[2], file=sys.stderr)
        sys.exit(1)
    print("Authtoken saved to configuration file: /tmp/ngrok.yml")
    sys.exit(0)

def on_term(*_):
    record("SIGTERM")
    if BEHAVIOR != "stubborn":
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)

def log(**fields):
    print(json.dumps({"lvl": "info", "t": "2026-01-01T00:00:00Z", **fields}), flush=True)

log(msg="no configuration paths supplied")
log(msg="open config file", path="/tmp/ngrok.yml", err=None)
log(obj="web", msg="starting web service", addr="127.0.0.1:4040")  # addr, but no url
if BEHAVIOR in ("ok", "stubborn"):
    log(obj="tunnels.session", msg="client session established")
    log(obj="tunnels", name="command_line", msg="started tunnel",
        addr="http://localhost:" + args[1], url=URL)
elif BEHAVIOR == "addr-url":
    log(obj="tunnels", name="command_line", addr="http://localhost:" + args[1], url=URL)
elif BEHAVIOR == "err":
    print("ERROR:  authentication failed: Your account is limited to 1 simultaneous ngrok agent "
          "sessions.\nERROR:  ERR_NGROK_108", file=sys.stderr, flush=True)
elif BEHAVIOR == "exit":
    print("ERROR:  unknown flag --frobnicate", file=sys.stderr, flush=True)
    sys.exit(3)
while True:
    time.sleep(0.05)
'''

FAKE_TAILSCALE = r'''
import json, os, sys, time

args = sys.argv[1:]
with open(LOG + ".pids", "a") as f:
    f.write(f"{os.getpid()}\n")
with open(LOG, "a") as f:
    f.write(json.dumps(args) + "\n")
if args[:2] == ["status", "--json"]:
    if BEHAVIOR == "down":
        print("failed to connect to local tailscaled; it doesn't appear to be running",
              file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"Version": "1.80.0", "BackendState": "Running",
                      "Self": {"ID": NODE, "HostName": "host", "DNSName": DNS,
                               "TailscaleIPs": ["100.64.0.1"]}}))
    sys.exit(0)
if args and args[0] in ("serve", "funnel"):
    if "off" in args:
        sys.exit(0)
    if BEHAVIOR == "hang":
        time.sleep(60)
    if BEHAVIOR == "disabled":
        print("Funnel is not enabled on your tailnet.\nTo enable, visit:\n\n"
              "         https://login.tailscale.com/f/funnel?node=" + NODE, file=sys.stderr)
        sys.exit(1)
    print("Available on the internet:\n\nhttps://" + DNS.rstrip(".") + args[args.index("--set-path") + 1]
          + "\n|-- proxy " + args[-1] + "\n\nServe started and running in the background.")
    sys.exit(0)
print("unexpected command", args, file=sys.stderr)
sys.exit(2)
'''


class FakeClis:
    """A bin directory with fake `ngrok` and `tailscale`; `argv()` is what each was run with."""

    def __init__(self, root: Path, *, ngrok: str | None = "ok", tailscale: str | None = "ok") -> None:
        self.bin = root / "fakebin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.ngrok_log = root / "ngrok.argv"
        self.tailscale_log = root / "tailscale.argv"
        if ngrok is not None:
            self._write("ngrok", FAKE_NGROK, LOG=str(self.ngrok_log), BEHAVIOR=ngrok, URL=NGROK_URL)
        if tailscale is not None:
            self._write("tailscale", FAKE_TAILSCALE, LOG=str(self.tailscale_log), BEHAVIOR=tailscale,
                        NODE=TS_NODE, DNS=TS_HOST + ".")
        # Only the fakes and the basics: a real ngrok/tailscale elsewhere on PATH must not answer.
        self.path = os.pathsep.join([str(self.bin), "/usr/bin", "/bin"])

    def _write(self, name: str, body: str, **consts: str) -> None:
        header = "".join(f"{key} = {value!r}\n" for key, value in consts.items())
        script = self.bin / name
        script.write_text(f"#!{sys.executable}\n{header}{textwrap.dedent(body)}")
        script.chmod(0o755)

    @staticmethod
    def _read(path: Path) -> list[Any]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def alive(self) -> list[int]:
        """Pids of fake processes that are still running."""
        pids = []
        for log in (self.ngrok_log, self.tailscale_log):
            pidfile = Path(f"{log}.pids")
            for pid in (int(x) for x in pidfile.read_text().split()) if pidfile.exists() else ():
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    continue
                pids.append(pid)
        return pids

    def ngrok(self) -> list[Any]:
        return self._read(self.ngrok_log)

    def tailscale(self) -> list[Any]:
        return self._read(self.tailscale_log)

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": self.path}


def twilio(port: int, **extra: Any) -> dict[str, Any]:
    """Twilio against its real API host: it must reach the webhook from the internet (nothing is
    sent to Twilio while the gateway only starts and stops)."""
    return {"provider": "twilio", "fromNumber": OUR_NUMBER,
            "twilio": {"accountSid": "AC" + "0" * 32, "authToken": "test-auth-token"},
            "serve": {"port": port}, **extra}


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- ngrok -------------------------------------------------------------------------------------
async def test_ngrok_tunnel_gives_the_gateway_its_public_url_and_is_sigtermed_on_stop(
        tmp_path: Path) -> None:
    clis = FakeClis(tmp_path)
    port = free_port()
    async with running_gateway(tmp_path, twilio(port, tunnel={"provider": "ngrok"}),
                               env=clis.env) as gateway:
        assert gateway.webhook_url == f"{NGROK_URL}/voice/webhook"
        assert gateway.service.webhook_url == gateway.webhook_url
        assert gateway.exposure.source == "ngrok"
        assert clis.ngrok() == [["http", str(port), "--log", "stdout", "--log-format", "json"]]
    assert clis.ngrok()[-1] == "SIGTERM"
    assert clis.alive() == []


async def test_ngrok_auth_token_and_domain_and_signatures_for_the_tunnel_url(tmp_path: Path) -> None:
    clis = FakeClis(tmp_path)
    port = free_port()
    async with TwilioSimulator(time_scale=0.05) as sim:
        config = {"provider": "twilio", "fromNumber": OUR_NUMBER, "serve": {"port": port},
                  "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                             "apiBaseUrl": sim.base_url},
                  "inboundPolicy": "allowlist", "allowFrom": [FRIEND],
                  "tunnel": {"provider": "ngrok", "ngrokAuthToken": "ng-secret-token",
                             "ngrokDomain": "voice.example.ngrok.app"}}
        async with running_gateway(tmp_path, config, env=clis.env) as gateway:
            public = f"{NGROK_URL}/voice/webhook"
            assert gateway.webhook_url == public
            assert clis.ngrok() == [
                ["config", "add-authtoken", "ng-secret-token"],
                ["http", str(port), "--log", "stdout", "--log-format", "json",
                 "--domain", "voice.example.ngrok.app"]]
            # Twilio signs the tunnel URL; the gateway checks against it (as if publicUrl were set).
            params = {"CallSid": "CA" + "1" * 32, "From": FRIEND, "To": OUR_NUMBER,
                      "CallStatus": "ringing", "Direction": "inbound", "AccountSid": sim.account_sid}
            local = f"http://127.0.0.1:{port}/voice/webhook"
            async with httpx.AsyncClient() as client:
                signed_public = await client.post(local, data=params, headers={
                    "x-twilio-signature": sign(sim.auth_token, public, params)})
                signed_local = await client.post(local, data=params, headers={
                    "x-twilio-signature": sign(sim.auth_token, local, params)})
            assert signed_public.status_code == 200
            assert signed_local.status_code == 401


async def test_a_line_with_addr_and_url_is_enough(tmp_path: Path) -> None:
    clis = FakeClis(tmp_path, ngrok="addr-url")
    started = await tunnel.start_ngrok(4321, "/hook", env=clis.env)
    try:
        assert started.public_url == f"{NGROK_URL}/hook"
    finally:
        await started.stop()
        await started.stop()  # idempotent
    assert clis.ngrok().count("SIGTERM") == 1


@pytest.mark.parametrize("behavior,reason", [
    ("err", "ERR_NGROK_108"),
    ("exit", "ngrok exited (code 3) before reporting a URL"),
    ("hang", "ngrok did not report a public URL within 0.5s"),
    ("bad-token", "ngrok config add-authtoken failed (exit 1)"),
    (None, "ngrok not found on PATH"),
])
async def test_each_ngrok_failure_falls_through_to_the_clear_config_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        behavior: str | None, reason: str) -> None:
    monkeypatch.setattr(tunnel, "NGROK_STARTUP_TIMEOUT_S", 0.5)
    clis = FakeClis(tmp_path, ngrok=behavior)
    port = free_port()
    config = twilio(port, tunnel={"provider": "ngrok", "ngrokAuthToken": "ng-secret-token"})
    with caplog.at_level(logging.INFO), pytest.raises(ConfigError) as raised:
        async with running_gateway(tmp_path, config, env=clis.env):
            pass
    assert LOCAL_ONLY in str(raised.value)
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("tunnel ngrok failed" in m and reason in m for m in failures), failures
    assert "ng-secret-token" not in caplog.text
    if behavior in ("err", "hang"):  # still running when it failed: stopped with SIGTERM
        assert clis.ngrok()[-1] == "SIGTERM"
    assert clis.alive() == []
    assert port_is_free(port)


async def test_ngrok_that_ignores_sigterm_is_killed_after_the_grace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tunnel, "NGROK_STOP_TIMEOUT_S", 0.3)
    clis = FakeClis(tmp_path, ngrok="stubborn")
    started = await tunnel.start_ngrok(4321, "/voice/webhook", env=clis.env)
    loop = asyncio.get_running_loop()
    begun = loop.time()
    await started.stop()
    assert loop.time() - begun < 2.0
    assert clis.ngrok()[-1] == "SIGTERM"
    assert clis.alive() == []


async def test_a_failing_tunnel_falls_through_to_legacy_tailscale(tmp_path: Path) -> None:
    clis = FakeClis(tmp_path, ngrok="exit")
    port = free_port()
    config = twilio(port, tunnel={"provider": "ngrok"}, tailscale={"mode": "funnel"})
    async with running_gateway(tmp_path, config, env=clis.env) as gateway:
        assert gateway.webhook_url == f"https://{TS_HOST}/voice/webhook"
        assert gateway.exposure.source == "tailscale.mode"


async def test_public_url_wins_over_tunnels(tmp_path: Path) -> None:
    clis = FakeClis(tmp_path)
    config = twilio(free_port(), publicUrl="https://voice.example.com/voice/webhook",
                    tunnel={"provider": "ngrok"}, tailscale={"mode": "serve"})
    async with running_gateway(tmp_path, config, env=clis.env) as gateway:
        assert gateway.webhook_url == "https://voice.example.com/voice/webhook"
    assert clis.ngrok() == [] and clis.tailscale() == []


async def test_tunnel_is_stopped_when_start_fails_after_it_started(tmp_path: Path) -> None:
    clis = FakeClis(tmp_path)
    port = free_port()
    # Media streaming without any TTS key fails after the tunnel is up.
    config = twilio(port, tunnel={"provider": "ngrok"},
                    streaming={"enabled": True, "provider": "none"})
    loaded = load_config_dict({**config, "control": {"port": 0}},
                              env={"OPENCLAW_STATE_DIR": str(tmp_path), "HOME": str(tmp_path),
                                   **clis.env})
    runtime = Runtime(loaded)
    with pytest.raises(ConfigError, match="tts"):
        await runtime.start()
    assert clis.ngrok()[-1] == "SIGTERM"
    assert port_is_free(port)
    await runtime.stop()  # idempotent after a failed start
    assert clis.ngrok().count("SIGTERM") == 1


# -- Tailscale ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["serve", "funnel"])
async def test_tailscale_tunnel_commands_url_and_cleanup(tmp_path: Path, mode: str) -> None:
    clis = FakeClis(tmp_path)
    port = free_port()
    async with running_gateway(tmp_path, twilio(port, tunnel={"provider": f"tailscale-{mode}"}),
                               env=clis.env) as gateway:
        assert gateway.webhook_url == f"https://{TS_HOST}/voice/webhook"
        assert clis.tailscale() == [
            ["status", "--json"],
            [mode, "--bg", "--yes", "--set-path", "/voice/webhook",
             f"http://127.0.0.1:{port}/voice/webhook"]]
    assert clis.tailscale()[-1] == [mode, "off", "/voice/webhook"]


async def test_tailscale_port_selects_the_https_port_of_the_routes_and_the_url(tmp_path: Path) -> None:
    clis = FakeClis(tmp_path)
    port = free_port()
    config = twilio(port, tunnel={"provider": "tailscale-funnel"}, tailscale={"port": 8443})
    async with running_gateway(tmp_path, config, env=clis.env) as gateway:
        assert gateway.webhook_url == f"https://{TS_HOST}:8443/voice/webhook"
        assert clis.tailscale()[1] == ["funnel", "--bg", "--yes", "--https=8443", "--set-path",
                                       "/voice/webhook", f"http://127.0.0.1:{port}/voice/webhook"]
    assert clis.tailscale()[-1] == ["funnel", "--https=8443", "off", "/voice/webhook"]


async def test_tailscale_tunnel_also_routes_the_media_stream_path(tmp_path: Path) -> None:
    clis = FakeClis(tmp_path)
    port = free_port()
    async with FakeSpeech() as speech:
        config = twilio(port, tunnel={"provider": "tailscale-funnel"},
                        streaming={"enabled": True, "provider": "none", "streamPath": "/voice/stream"},
                        tts={"provider": "openai", "providers": {"openai": {
                            "apiKey": "sk-test", "baseUrl": speech.openai_base_url}}})
        async with running_gateway(tmp_path, config, env=clis.env) as gateway:
            assert gateway.service.stream_url == f"wss://{TS_HOST}/voice/stream"
            assert clis.tailscale()[1:] == [
                ["funnel", "--bg", "--yes", "--set-path", "/voice/webhook",
                 f"http://127.0.0.1:{port}/voice/webhook"],
                ["funnel", "--bg", "--yes", "--set-path", "/voice/stream",
                 f"http://127.0.0.1:{port}/voice/stream"]]
    assert clis.tailscale()[-2:] == [["funnel", "off", "/voice/stream"],
                                     ["funnel", "off", "/voice/webhook"]]


@pytest.mark.parametrize("behavior,reason", [
    ("down", "Could not get Tailscale DNS name. Is Tailscale running?"),
    ("disabled", "tailscale funnel --set-path /voice/webhook failed (exit 1)"),
])
async def test_tailscale_tunnel_failures_fall_through_to_the_config_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, behavior: str, reason: str) -> None:
    clis = FakeClis(tmp_path, tailscale=behavior)
    with caplog.at_level(logging.INFO), pytest.raises(ConfigError, match="local-only"):
        async with running_gateway(tmp_path, twilio(free_port(),
                                                    tunnel={"provider": "tailscale-funnel"}),
                                   env=clis.env):
            pass
    assert any(reason in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_legacy_tailscale_mode_maps_its_path_to_the_serve_path_and_cleans_up(
        tmp_path: Path) -> None:
    clis = FakeClis(tmp_path)
    port = free_port()
    config = twilio(port, tailscale={"mode": "serve", "path": "/hook"})
    async with running_gateway(tmp_path, config, env=clis.env) as gateway:
        assert gateway.webhook_url == f"https://{TS_HOST}/hook"
        assert clis.tailscale()[1] == ["serve", "--bg", "--yes", "--set-path", "/hook",
                                       f"http://127.0.0.1:{port}/voice/webhook"]
    assert clis.tailscale()[-1] == ["serve", "off", "/hook"]


async def test_legacy_tailscale_that_hangs_is_killed_after_its_timeout_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exposure, "TAILSCALE_LEGACY_TIMEOUT_S", 0.5)
    clis = FakeClis(tmp_path, tailscale="hang")
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError, match="local-only"):
        async with running_gateway(tmp_path, twilio(free_port(), tailscale={"mode": "funnel"}),
                                   env=clis.env):
            pass
    assert any("tailscale funnel exposure failed" in r.getMessage() and "timed out after 0.5s"
               in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert clis.alive() == []


def test_setup_accepts_a_configured_tunnel_or_tailscale() -> None:
    def exposure_check(raw: dict[str, Any]) -> tuple[bool, str]:
        loaded = load_config_dict(twilio(3334, **raw), env={})
        check = next(c for c in run_checks(loaded) if c.id == "webhook-exposure")
        return check.ok, check.message

    assert exposure_check({"tunnel": {"provider": "ngrok"}})[0]
    assert exposure_check({"tunnel": {"provider": "tailscale-serve"}})[0]
    assert exposure_check({"tailscale": {"mode": "funnel"}})[0]
    ok, message = exposure_check({})
    assert not ok and "publicUrl" in message and "tunnel.provider" in message


# -- voicecall expose ------------------------------------------------------------------------
@pytest.fixture
async def cli_env(tmp_path: Path) -> AsyncIterator[tuple[Path, dict[str, str]]]:
    (tmp_path / "voicecall.json").write_text(json.dumps({"serve": {"port": 4555}}))
    yield tmp_path, {"OPENCLAW_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path),
                     "VOICECALL_CONFIG": str(tmp_path / "voicecall.json")}


async def test_expose_command_serve_funnel_off_and_the_failure_hint(
        cli_env: tuple[Path, dict[str, str]]) -> None:
    root, base_env = cli_env
    cases: dict[str, tuple[str, list[str]]] = {
        "serve": ("ok", ["--mode", "serve", "--json"]),
        "funnel": ("ok", ["--path", "/hook", "--port", "4666", "--json"]),
        "off": ("ok", ["--mode", "off", "--json"]),
        "disabled": ("disabled", ["--mode", "whatever", "--json"]),
        "human": ("ok", ["--mode", "serve"]),
    }
    clis = {name: FakeClis(root / name, ngrok=None, tailscale=behavior)
            for name, (behavior, _args) in cases.items()}

    async def run(name: str) -> tuple[int, str, str]:
        env = {**os.environ, **base_env, "PATH": clis[name].path}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicecall", "expose", *cases[name][1], env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode or 0, out.decode(), err.decode()

    results = dict(zip(cases, await asyncio.gather(*(run(name) for name in cases)), strict=True))

    code, out, err = results["serve"]
    assert code == 0, err
    assert json.loads(out) == {"ok": True, "mode": "serve", "path": "/voice/webhook",
                               "localUrl": "http://127.0.0.1:4555",
                               "publicUrl": f"https://{TS_HOST}/voice/webhook"}
    assert clis["serve"].tailscale() == [
        ["status", "--json"],
        ["serve", "--bg", "--yes", "--set-path", "/voice/webhook", "http://127.0.0.1:4555"]]

    code, out, err = results["funnel"]
    assert code == 0, err
    assert json.loads(out)["publicUrl"] == f"https://{TS_HOST}/hook"
    assert clis["funnel"].tailscale()[-1] == ["funnel", "--bg", "--yes", "--set-path", "/hook",
                                              "http://127.0.0.1:4666"]

    code, out, err = results["off"]
    assert code == 0, err
    assert json.loads(out) == {"ok": True, "mode": "off", "path": "/voice/webhook"}
    assert clis["off"].tailscale() == [["serve", "off", "/voice/webhook"],
                                       ["funnel", "off", "/voice/webhook"]]

    code, out, err = results["disabled"]
    assert code == 1
    assert json.loads(out) == {
        "ok": False, "mode": "funnel", "path": "/voice/webhook", "localUrl": "http://127.0.0.1:4555",
        "publicUrl": None,
        "hint": {"note": "Tailscale serve/funnel may be disabled on this tailnet (or require admin "
                         "enable).",
                 "enableUrl": f"https://login.tailscale.com/f/funnel?node={TS_NODE}"}}
    assert "Funnel is not enabled" in err

    code, out, err = results["human"]
    assert code == 0, err
    assert f"https://{TS_HOST}/voice/webhook" in out and not out.lstrip().startswith("{")


async def _expose(root: Path, config: dict[str, Any], *args: str,
                  tailscale: str = "ok") -> tuple[int, str, str, FakeClis]:
    """`voicecall expose ARGS` with `config` and the fake CLIs; (exit code, stdout, stderr, clis)."""
    (root / "voicecall.json").write_text(json.dumps(config))
    clis = FakeClis(root, ngrok=None, tailscale=tailscale)
    env = {**os.environ, "OPENCLAW_STATE_DIR": str(root / "state"), "HOME": str(root),
           "VOICECALL_CONFIG": str(root / "voicecall.json"), "PATH": clis.path}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "expose", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode(), clis


async def test_expose_serves_on_tailscale_port_and_routes_the_stream_path(tmp_path: Path) -> None:
    config = {"serve": {"port": 4555}, "tailscale": {"port": 8080},
              "streaming": {"enabled": True, "streamPath": "/voice/stream"}}
    code, out, err, clis = await _expose(tmp_path, config, "--mode", "serve", "--json")
    assert code == 0, err
    assert json.loads(out) == {"ok": True, "mode": "serve", "path": "/voice/webhook",
                               "localUrl": "http://127.0.0.1:4555",
                               "publicUrl": f"https://{TS_HOST}:8080/voice/webhook",
                               "streamUrl": f"wss://{TS_HOST}:8080/voice/stream"}
    assert clis.tailscale()[1:] == [
        ["serve", "--bg", "--yes", "--https=8080", "--set-path", "/voice/webhook", "http://127.0.0.1:4555"],
        ["serve", "--bg", "--yes", "--https=8080", "--set-path", "/voice/stream",
         "http://127.0.0.1:4555/voice/stream"]]


@pytest.mark.parametrize("port", [443, 8443, 10000])
async def test_expose_funnel_takes_the_three_funnel_ports(tmp_path: Path, port: int) -> None:
    code, out, err, clis = await _expose(tmp_path, {"tailscale": {"port": port}}, "--json")
    assert code == 0, err
    suffix = "" if port == 443 else f":{port}"
    assert json.loads(out)["publicUrl"] == f"https://{TS_HOST}{suffix}/voice/webhook"
    assert ("--https=8443" in clis.tailscale()[-1]) == (port == 8443)


async def test_expose_funnel_refuses_any_other_port_before_running_tailscale(tmp_path: Path) -> None:
    code, out, err, clis = await _expose(tmp_path, {"tailscale": {"port": 8080}}, "--mode", "funnel")
    assert code == 2 and out == ""
    assert ("tailscale.port 8080 cannot be used with Tailscale Funnel, which serves only on 443, 8443 or "
            "10000") in " ".join(err.split())
    assert clis.tailscale() == []


def test_a_funnel_config_with_another_port_is_refused_by_name() -> None:
    for funnel in ({"tailscale": {"mode": "funnel", "port": 8080}},
                   {"tunnel": {"provider": "tailscale-funnel"}, "tailscale": {"port": 3000}}):
        with pytest.raises(ConfigError, match=r"tailscale\.port: \d+ cannot be used with Tailscale Funnel"):
            load_config_dict(funnel, env={})
    assert load_config_dict({"tunnel": {"provider": "tailscale-serve"}, "tailscale": {"port": 3000}},
                            env={}).config.tailscale.port == 3000


async def test_expose_off_also_turns_the_stream_route_off(tmp_path: Path) -> None:
    config = {"tailscale": {"port": 8443}, "streaming": {"enabled": True}}
    code, _out, err, clis = await _expose(tmp_path, config, "--mode", "off", "--json")
    assert code == 0, err
    assert clis.tailscale() == [[mode, "--https=8443", "off", route] for mode in ("serve", "funnel")
                                for route in ("/voice/webhook", "/voice/stream")]
