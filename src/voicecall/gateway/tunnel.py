"""Public tunnels as child processes: ngrok and Tailscale serve/funnel (docs/decisions.md D35).

Every wait has a timeout and every timeout kills what it waited for. Auth tokens never reach
the log or an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

TailscaleMode = Literal["serve", "funnel"]

NGROK_STARTUP_TIMEOUT_S = 30.0
"""How long ngrok may take to report its public URL."""
NGROK_STOP_TIMEOUT_S = 2.0
"""How long ngrok may take to exit after SIGTERM before it is killed."""
NGROK_AUTHTOKEN_TIMEOUT_S = 10.0
TAILSCALE_TUNNEL_TIMEOUT_S = 10.0
"""`tailscale serve|funnel` as a tunnel provider (`startTailscaleTunnel`)."""
TAILSCALE_LEGACY_TIMEOUT_S = 2.5
"""Legacy `tailscale.mode` and the `expose` command (`tailscale.ts`)."""
TAILSCALE_STOP_TIMEOUT_S = 5.0

ENABLE_HINT_NOTE = "Tailscale serve/funnel may be disabled on this tailnet (or require admin enable)."
NO_DNS_NAME = "Could not get Tailscale DNS name. Is Tailscale running?"


class TunnelError(Exception):
    """A tunnel could not be started; the message says why (never with a secret in it)."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def subprocess_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The process environment, with PATH taken from the config's environment when it has one
    (so a gateway loaded with an explicit env finds the CLIs that env points at)."""
    merged = dict(os.environ)
    if env is not None and env.get("PATH"):
        merged["PATH"] = env["PATH"]
    return merged


def find_executable(name: str, env: Mapping[str, str] | None) -> str | None:
    return shutil.which(name, path=subprocess_env(env).get("PATH"))


async def _terminate(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM, wait at most `grace_s`, then SIGKILL (and reap)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 1.0)


async def run_command(argv: Sequence[str], *, timeout_s: float,
                      env: Mapping[str, str] | None = None, shown: str | None = None) -> CommandResult:
    """Run a short command; killed (and TunnelError) after `timeout_s`. `shown` replaces argv in
    messages when argv holds a secret."""
    what = shown or " ".join(argv)
    exe = find_executable(argv[0], env)
    if exe is None:
        raise TunnelError(f"{argv[0]} not found on PATH (needed for: {what})")
    try:
        proc = await asyncio.create_subprocess_exec(
            exe, *argv[1:], stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=subprocess_env(env))
    except OSError as exc:
        raise TunnelError(f"could not run {what}: {exc.strerror or exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 1.0)
        raise TunnelError(f"{what} timed out after {timeout_s:g}s") from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    return CommandResult(proc.returncode if proc.returncode is not None else -1,
                         out.decode(errors="replace"), err.decode(errors="replace"))


def _tail(text: str, limit: int = 300) -> str:
    text = " ".join(text.strip().split())
    return text if len(text) <= limit else "…" + text[-limit:]


@dataclass(eq=False)
class Tunnel:
    """A running exposure. `stop()` is idempotent and never raises."""

    provider: str
    public_url: str
    _stop: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)

    async def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is None:
            return
        try:
            await stop()
        except Exception as exc:  # teardown must go on
            log.warning("stopping the %s tunnel failed: %s", self.provider, exc)


# -- ngrok -------------------------------------------------------------------------------------
def ngrok_url_from_line(line: str) -> str | None:
    """The public URL from one of ngrok's JSON log lines: `url` of the "started tunnel" line, or
    of any line that has both `addr` and `url`."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    url = entry.get("url")
    if not isinstance(url, str) or not url:
        return None
    if entry.get("msg") == "started tunnel" or "addr" in entry:
        return url
    return None


def _ngrok_error_from_line(line: str) -> str | None:
    """An ERR_NGROK failure reported on ngrok's JSON log (stdout with `--log stdout`)."""
    if "ERR_NGROK" not in line:
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return _tail(line)
    if isinstance(entry, dict) and entry.get("lvl") in ("eror", "crit", "error"):
        return _tail(str(entry.get("err") or entry.get("msg") or line))
    return None


async def ngrok_add_authtoken(token: str, *, env: Mapping[str, str] | None = None) -> None:
    """`ngrok config add-authtoken <token>`; it must exit 0."""
    result = await run_command(["ngrok", "config", "add-authtoken", token],
                               timeout_s=NGROK_AUTHTOKEN_TIMEOUT_S, env=env,
                               shown="ngrok config add-authtoken ***")
    if not result.ok:
        detail = _tail((result.stderr or result.stdout).replace(token, "***"))
        raise TunnelError(f"ngrok config add-authtoken failed (exit {result.returncode})"
                          + (f": {detail}" if detail else ""))


async def start_ngrok(port: int, path: str, *, auth_token: str | None = None,
                      domain: str | None = None, env: Mapping[str, str] | None = None,
                      startup_timeout_s: float | None = None) -> Tunnel:
    """Start `ngrok http <port>` and wait for its public URL; the tunnel's URL is that + `path`."""
    timeout_s = NGROK_STARTUP_TIMEOUT_S if startup_timeout_s is None else startup_timeout_s
    exe = find_executable("ngrok", env)
    if exe is None:
        raise TunnelError("ngrok not found on PATH: install it (https://ngrok.com/download) or "
                          "set publicUrl")
    if auth_token:
        await ngrok_add_authtoken(auth_token, env=env)
    args = ["http", str(port), "--log", "stdout", "--log-format", "json"]
    if domain:
        args += ["--domain", domain]
    log.info("starting ngrok %s", " ".join(args))
    try:
        proc = await asyncio.create_subprocess_exec(
            exe, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=subprocess_env(env))
    except OSError as exc:
        raise TunnelError(f"could not run ngrok: {exc.strerror or exc}") from None
    assert proc.stdout is not None and proc.stderr is not None
    loop = asyncio.get_running_loop()
    found: asyncio.Future[str] = loop.create_future()
    stderr_seen: list[str] = []

    def settle(result: str | None = None, error: str | None = None) -> None:
        if found.done():
            return
        if error is not None:
            found.set_exception(TunnelError(error))
        elif result is not None:
            found.set_result(result)

    async def read_stdout(stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():  # keeps draining after the URL: ngrok never blocks
            text = line.decode(errors="replace").strip()
            if found.done() or not text:
                continue
            if (url := ngrok_url_from_line(text)) is not None:
                settle(url)
            elif (problem := _ngrok_error_from_line(text)) is not None:
                settle(error=f"ngrok failed: {problem}")

    async def read_stderr(stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").strip()
            if text:
                stderr_seen.append(text)
                del stderr_seen[:-20]
            if "ERR_NGROK" in text:
                settle(error=f"ngrok failed: {_tail(text)}")

    async def watch_exit() -> None:
        code = await proc.wait()
        if found.done():
            log.warning("ngrok exited (code %s): the public URL no longer reaches this gateway", code)
            return
        await asyncio.sleep(0.05)  # let the readers see the last lines first
        detail = _tail(" ".join(stderr_seen))
        settle(error=f"ngrok exited (code {code}) before reporting a URL"
                     + (f": {detail}" if detail else ""))

    tasks = [asyncio.create_task(read_stdout(proc.stdout), name="ngrok-stdout"),
             asyncio.create_task(read_stderr(proc.stderr), name="ngrok-stderr")]
    watcher = asyncio.create_task(watch_exit(), name="ngrok-exit")

    async def stop() -> None:
        watcher.cancel()
        await _terminate(proc, NGROK_STOP_TIMEOUT_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(watcher, *tasks, return_exceptions=True)

    try:
        url = await asyncio.wait_for(found, timeout_s)
    except TimeoutError:
        await stop()
        raise TunnelError(f"ngrok did not report a public URL within {timeout_s:g}s") from None
    except BaseException:
        await stop()
        raise
    public_url = url.rstrip("/") + path
    log.info("ngrok tunnel: %s", public_url)
    return Tunnel("ngrok", public_url, stop)


# -- Tailscale ---------------------------------------------------------------------------------
async def tailscale_self(*, env: Mapping[str, str] | None = None,
                         timeout_s: float = TAILSCALE_LEGACY_TIMEOUT_S) -> dict[str, Any] | None:
    """`Self` from `tailscale status --json`, or None when Tailscale does not answer."""
    try:
        result = await run_command(["tailscale", "status", "--json"], timeout_s=timeout_s, env=env)
    except TunnelError as exc:
        log.debug("tailscale status: %s", exc)
        return None
    if not result.ok:
        return None
    try:
        status = json.loads(result.stdout)
    except ValueError:
        return None
    me = status.get("Self") if isinstance(status, dict) else None
    return me if isinstance(me, dict) else None


async def tailscale_dns_name(*, env: Mapping[str, str] | None = None,
                             timeout_s: float = TAILSCALE_LEGACY_TIMEOUT_S) -> str | None:
    """This node's MagicDNS name without the trailing dot."""
    me = await tailscale_self(env=env, timeout_s=timeout_s)
    name = me.get("DNSName") if me else None
    if not isinstance(name, str) or not name.strip(". "):
        return None
    return name.strip().rstrip(".")


def _https_flag(https_port: int) -> list[str]:
    """`--https=<port>` for a port other than Tailscale's default 443 (`tailscale.port`)."""
    return [] if https_port == 443 else [f"--https={https_port}"]


async def tailscale_route(mode: TailscaleMode, path: str, local_url: str, *,
                          env: Mapping[str, str] | None = None,
                          timeout_s: float = TAILSCALE_LEGACY_TIMEOUT_S,
                          https_port: int = 443) -> CommandResult:
    """`tailscale <mode> --bg --yes [--https=<port>] --set-path <path> <local_url>` (TunnelError
    on no CLI or a timeout)."""
    return await run_command(["tailscale", mode, "--bg", "--yes", *_https_flag(https_port),
                              "--set-path", path, local_url], timeout_s=timeout_s, env=env)


async def tailscale_off(mode: TailscaleMode, path: str, *, env: Mapping[str, str] | None = None,
                        timeout_s: float = TAILSCALE_STOP_TIMEOUT_S, https_port: int = 443) -> bool:
    """`tailscale <mode> [--https=<port>] off <path>`; False (logged) when it fails."""
    try:
        result = await run_command(["tailscale", mode, *_https_flag(https_port), "off", path],
                                   timeout_s=timeout_s, env=env)
    except TunnelError as exc:
        log.warning("tailscale %s off %s: %s", mode, path, exc)
        return False
    if not result.ok:
        log.warning("tailscale %s off %s failed (exit %d): %s", mode, path, result.returncode,
                    _tail(result.stderr or result.stdout))
    return result.ok


async def start_tailscale(mode: TailscaleMode, port: int, path: str, *,
                          local_path: str | None = None, extra_paths: Sequence[str] = (),
                          env: Mapping[str, str] | None = None,
                          timeout_s: float = TAILSCALE_TUNNEL_TIMEOUT_S,
                          provider: str | None = None, https_port: int = 443) -> Tunnel:
    """Expose `http://127.0.0.1:<port><local_path>` (`local_path` defaults to `path`) at
    `https://<this node's DNS name>[:<https_port>]<path>` (`tailscale.port`: 443, 8443 or
    10000, the ports Funnel accepts).

    Each of `extra_paths` gets its own `--set-path` route to the same local port: the media
    stream URL is built from the public URL's host, so with media streaming on, the stream path
    (`streaming.streamPath`) must be proxied by Tailscale too, not just the webhook path.
    `stop()` turns every route it added off again.
    """
    dns = await tailscale_dns_name(env=env, timeout_s=timeout_s)
    if dns is None:
        raise TunnelError(NO_DNS_NAME)
    added: list[str] = []
    stop_timeout_s = min(timeout_s, TAILSCALE_STOP_TIMEOUT_S)

    async def stop() -> None:
        for route in reversed(added):
            await tailscale_off(mode, route, env=env, timeout_s=stop_timeout_s,
                                https_port=https_port)

    routes = {path: local_path or path}
    for extra in extra_paths:
        routes.setdefault(extra, extra)
    for route, target in routes.items():
        try:
            result = await tailscale_route(mode, route, f"http://127.0.0.1:{port}{target}", env=env,
                                           timeout_s=timeout_s, https_port=https_port)
        except BaseException:
            await stop()
            raise
        if not result.ok:
            await stop()
            detail = _tail(result.stderr or result.stdout)
            raise TunnelError(f"tailscale {mode} --set-path {route} failed (exit {result.returncode})"
                              + (f": {detail}" if detail else ""))
        added.append(route)
    host = dns if https_port == 443 else f"{dns}:{https_port}"
    public_url = f"https://{host}{path}"
    log.info("tailscale %s: %s", mode, public_url)
    return Tunnel(provider or f"tailscale-{mode}", public_url, stop)
