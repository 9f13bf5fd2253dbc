"""How CLI commands reach calls: the running gateway over the control API, or, with none
reachable, a standalone runtime in this process (never a second server on a busy port)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from voicecall.config import LoadedConfig
    from voicecall.gateway.blocking_client import BlockingControlClient
    from voicecall.gateway.client import ControlClient
    from voicecall.gateway.runtime import Runtime

# The standalone paths import the gateway itself only when they run: a command that finds a
# running gateway (the usual case) starts without loading the server stack.


class Api(Protocol):
    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        ...


@dataclass
class RemoteApi:
    """The control API of a running gateway."""

    client: ControlClient
    long_timeout_s: float

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.client.call(method, params, timeout_s=self.long_timeout_s)


def control_url(loaded: LoadedConfig) -> str:
    c = loaded.config.control
    host = "127.0.0.1" if c.bind in ("0.0.0.0", "") else c.bind
    host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
    return f"http://{host}:{c.port}"


def probe_gateway(loaded: LoadedConfig) -> BlockingControlClient | None:
    """A blocking client for the running gateway, or None when no gateway answers. Says so in
    one line when that gateway loaded another configuration than this command."""
    from voicecall.config import resolve_control_token
    from voicecall.gateway.blocking_client import BlockingControlClient

    token = resolve_control_token(loaded.config, loaded.env)
    client = BlockingControlClient(control_url(loaded), token, timeout_s=_long_timeout_s(loaded))
    health = client.health()
    if health is None:
        return None
    _warn_if_config_differs(loaded, client, health)
    return client


def _long_timeout_s(loaded: LoadedConfig) -> float:
    return loaded.config.transcript_timeout_ms / 1000 + 60


@contextlib.asynccontextmanager
async def gateway_client(loaded: LoadedConfig) -> AsyncIterator[ControlClient | None]:
    """An async client for the running gateway, or None when no gateway answers."""
    probe = probe_gateway(loaded)
    if probe is None:
        yield None
        return
    from voicecall.gateway.client import ControlClient

    client = ControlClient(probe.base_url, probe.token, timeout_s=_long_timeout_s(loaded))
    try:
        yield client
    finally:
        await client.aclose()


def _warn_if_config_differs(loaded: LoadedConfig, client: BlockingControlClient,
                            health: Mapping[str, Any]) -> None:
    """One line on stderr when the running gateway loaded other settings than this command: a
    client with its own `--config` would otherwise wait for things the gateway never had."""
    from voicecall.config import config_fingerprint

    theirs = health.get("configFingerprint")
    if not isinstance(theirs, str) or theirs == config_fingerprint(loaded.config):
        return
    defaults = "no config file (defaults)"
    theirs_path = "config file unknown"
    with contextlib.suppress(Exception):
        info = client.call("voicecall.status", {}, timeout_s=5).get("gateway")
        if isinstance(info, dict):
            theirs_path = str(info.get("configPath") or defaults)
    ours = str(loaded.source) if loaded.source else defaults
    hint = ("the same file, read with other environment variables; restart it from this shell"
            if theirs_path == ours else "start it with the same --config")
    sys.stderr.write(
        f"warning: the running gateway uses a different configuration (gateway: {theirs_path}; "
        f"this command: {ours}); {hint}\n")


def read_call(loaded: LoadedConfig, method: str,
              params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One read-only request: to the running gateway when one answers (blocking, no event
    loop), else to the store read directly (binds no port)."""
    from voicecall.cli.common import reported, run_coro

    client = probe_gateway(loaded)
    if client is not None:
        with reported():
            return client.call(method, params)

    async def standalone() -> dict[str, Any]:
        async with _store_api(loaded) as api:
            return await api.call(method, params)

    return run_coro(standalone())


@contextlib.asynccontextmanager
async def live_api(loaded: LoadedConfig) -> AsyncIterator[tuple[Api, Runtime | None]]:
    """An API that can act on live calls: the gateway's, or a standalone runtime's."""
    async with gateway_client(loaded) as client:
        if client is not None:
            yield RemoteApi(client, _long_timeout_s(loaded)), None
            return
    from voicecall.gateway.runtime import Runtime

    runtime = Runtime(loaded, host_pid=os.getpid())  # its calls end if this process dies
    await runtime.start()
    try:
        yield runtime.api, runtime
    finally:
        await runtime.stop()


@contextlib.asynccontextmanager
async def _store_api(loaded: LoadedConfig) -> AsyncIterator[Api]:
    """The control API over the store read directly, with no gateway and no port."""
    from voicecall.config import store_dir
    from voicecall.providers.registry import build_provider
    from voicecall.server.rpc import ControlApi
    from voicecall.service import CallService, ServiceSettings
    from voicecall.store import SQLiteCallStore

    store = SQLiteCallStore(store_dir(loaded.config, loaded.env))
    async with store:
        service = CallService(ServiceSettings(), build_provider(loaded.config), store,
                              webhook_url="")
        yield ControlApi(service)


__all__ = ["Api", "control_url", "gateway_client", "live_api", "probe_gateway", "read_call"]
