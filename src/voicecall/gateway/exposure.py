"""How carriers reach the webhook: `publicUrl`, else a tunnel (ngrok or Tailscale serve/funnel),
else the legacy `tailscale.mode` (docs/decisions.md D35), plus the check for local-only URLs."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from voicecall.gateway.tunnel import (
    TAILSCALE_LEGACY_TIMEOUT_S,
    TailscaleMode,
    Tunnel,
    TunnelError,
    start_ngrok,
    start_tailscale,
)

if TYPE_CHECKING:
    from voicecall.config.schema import VoiceCallConfig
    from voicecall.providers.base import Provider

log = logging.getLogger(__name__)


def is_local_only(url: str) -> bool:
    """True for loopback, unspecified, private, link-local and unique-local hosts, and localhost."""
    host = (urlsplit(url).hostname or "").lower()
    if not host or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


def exposure_configured(config: VoiceCallConfig) -> str | None:
    """What would give the gateway a public URL (`publicUrl`, a tunnel or legacy Tailscale), in
    priority order; None when nothing is configured."""
    if config.public_url:
        return "publicUrl"
    if config.tunnel.provider != "none":
        return f"tunnel.provider {config.tunnel.provider}"
    if config.tailscale.mode != "off":
        return f"tailscale.mode {config.tailscale.mode}"
    return None


@dataclass(eq=False)
class Exposure:
    """The resolved public webhook URL (None: only the local URL) and the tunnel behind it."""

    public_url: str | None = None
    source: str = "none"
    """"publicUrl", "ngrok", "tailscale-serve", "tailscale-funnel", "tailscale.mode" or "none"."""
    tunnel: Tunnel | None = field(default=None, repr=False)

    async def stop(self) -> None:
        """Idempotent: stops the tunnel (or turns the Tailscale routes off)."""
        if self.tunnel is not None:
            await self.tunnel.stop()


def _stream_paths(config: VoiceCallConfig) -> tuple[str, ...]:
    # The media-stream URL is the public URL's host + streaming.streamPath, so a path-scoped
    # proxy (Tailscale --set-path) has to route the stream path too.
    paths: tuple[str, ...] = (config.streaming.stream_path,) if config.streaming.enabled else ()
    if config.realtime.enabled and config.realtime.stream_path:
        paths += (config.realtime.stream_path,)
    return paths


async def start_tunnel(config: VoiceCallConfig, port: int,
                       env: Mapping[str, str] | None = None) -> Tunnel:
    """The `tunnel.provider` tunnel to the webhook listener on `port` (TunnelError on failure)."""
    t, path = config.tunnel, config.serve.path
    if t.provider == "ngrok":
        token = t.ngrok_auth_token.get_secret_value() if t.ngrok_auth_token else None
        return await start_ngrok(port, path, auth_token=token, domain=t.ngrok_domain, env=env)
    if t.provider in ("tailscale-serve", "tailscale-funnel"):
        mode: TailscaleMode = "serve" if t.provider == "tailscale-serve" else "funnel"
        return await start_tailscale(mode, port, path, extra_paths=_stream_paths(config), env=env,
                                     provider=t.provider, https_port=config.tailscale.port)
    raise TunnelError(f"unknown tunnel provider {t.provider!r}")


async def setup_legacy_tailscale(config: VoiceCallConfig, port: int,
                                 env: Mapping[str, str] | None = None) -> Tunnel | None:
    """Legacy `tailscale.mode`: `tailscale.path` → `http://127.0.0.1:<port><serve.path>`; None
    (with a warning) when Tailscale is missing, not running or refuses."""
    mode = config.tailscale.mode
    if mode == "off":
        return None
    try:
        return await start_tailscale(mode, port, config.tailscale.path,
                                     local_path=config.serve.path,
                                     extra_paths=_stream_paths(config), env=env,
                                     timeout_s=TAILSCALE_LEGACY_TIMEOUT_S,
                                     provider=f"tailscale {mode}",
                                     https_port=config.tailscale.port)
    except TunnelError as exc:
        log.warning("tailscale %s exposure failed: %s", mode, exc)
        return None


async def resolve_exposure(config: VoiceCallConfig, port: int,
                           env: Mapping[str, str] | None = None) -> Exposure:
    """`publicUrl` > `tunnel.provider` > legacy `tailscale.mode`. A failing tunnel is logged and
    the next option tried; with none working the result has no public URL."""
    if config.public_url:
        return Exposure(config.public_url, "publicUrl")
    if config.tunnel.provider != "none":
        try:
            tunnel = await start_tunnel(config, port, env)
        except Exception as exc:  # logged, then the next option
            log.error("tunnel %s failed: %s", config.tunnel.provider, exc)
        else:
            return Exposure(tunnel.public_url, tunnel.provider, tunnel)
    if config.tailscale.mode != "off":
        legacy = await setup_legacy_tailscale(config, port, env)
        if legacy is not None:
            return Exposure(legacy.public_url, "tailscale.mode", legacy)
    return Exposure()


def use_public_url(provider: Provider, public_url: str) -> None:
    """Tell the carrier adapter the public URL a tunnel gave us: carriers sign that URL, so the
    adapter checks signatures against it as it would against a configured `publicUrl`."""
    provider.set_public_url(public_url)


async def expose(mode: str, path: str, port: int, *, https_port: int = 443,
                 stream_path: str | None = None, env: Mapping[str, str] | None = None
                 ) -> tuple[dict[str, Any], str | None]:
    """`voicecall expose`: turn a Tailscale serve/funnel route for the webhook port on or off.

    `mode` is "off", "serve" or (anything else) "funnel"; `https_port` is `tailscale.port` (the
    caller checks it suits funnel). With `stream_path` (media streaming on), that path gets its
    own route to the same path locally, since the stream URL is the public URL's host + it.
    Returns the exposure result object (`{ok, mode, path, localUrl, publicUrl, streamUrl?,
    hint?}`, or `{ok, mode:"off", path}`) and, on failure, the reason for humans.
    """
    from voicecall.gateway.tunnel import (
        ENABLE_HINT_NOTE,
        NO_DNS_NAME,
        tailscale_off,
        tailscale_self,
    )

    routes = [path] if stream_path is None else [path, stream_path]
    if mode == "off":
        both: tuple[TailscaleMode, ...] = ("serve", "funnel")
        for each in both:
            for route in routes:
                await tailscale_off(each, route, env=env, timeout_s=TAILSCALE_LEGACY_TIMEOUT_S,
                                    https_port=https_port)
        return {"ok": True, "mode": "off", "path": path}, None
    ts_mode: TailscaleMode = "serve" if mode == "serve" else "funnel"
    local_url = f"http://127.0.0.1:{port}"
    me = await tailscale_self(env=env)
    dns = str(me.get("DNSName") or "").strip().rstrip(".") if me else ""
    host = dns if https_port == 443 else f"{dns}:{https_port}"
    # The webhook route targets the bare local URL, as the original's does; the stream route
    # keeps its path.
    targets = {path: local_url} if stream_path is None else {
        path: local_url, stream_path: f"{local_url}{stream_path}"}
    error = await _add_routes(ts_mode, targets, env=env, https_port=https_port) if dns \
        else NO_DNS_NAME
    public_url = f"https://{host}{path}" if error is None else None
    report: dict[str, Any] = {"ok": public_url is not None, "mode": ts_mode, "path": path,
                              "localUrl": local_url, "publicUrl": public_url}
    if public_url is not None and stream_path is not None:
        report["streamUrl"] = f"wss://{host}{stream_path}"
    if public_url is None:
        node_id = me.get("ID") if me else None
        report["hint"] = {"note": ENABLE_HINT_NOTE,
                          "enableUrl": f"https://login.tailscale.com/f/{ts_mode}?node={node_id}"
                          if node_id else None}
    return report, error


async def _add_routes(ts_mode: TailscaleMode, targets: Mapping[str, str], *,
                      env: Mapping[str, str] | None, https_port: int) -> str | None:
    """Route each public path to its local target; the first failure's reason, else None."""
    from voicecall.gateway.tunnel import tailscale_route

    for route, target in targets.items():
        try:
            result = await tailscale_route(ts_mode, route, target, env=env, https_port=https_port)
        except TunnelError as exc:
            return str(exc)
        if not result.ok:
            detail = " ".join((result.stderr or result.stdout).split())[:300]
            return f"tailscale {ts_mode} failed (exit {result.returncode})" + (
                f": {detail}" if detail else "")
    return None
