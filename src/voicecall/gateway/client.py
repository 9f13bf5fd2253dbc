"""Async Python client for the control API (JSON-RPC over HTTP, SSE events)."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from voicecall.gateway.rpc_wire import (
    GatewayUnavailable,
    RpcError,
    Unauthorized,
    health_body,
    rpc_request,
    rpc_result,
)


class ControlClient:
    """Talks to a running `voicecall serve`.

    >>> async with ControlClient("http://127.0.0.1:3335", token) as client:
    ...     await client.call("voicecall.status", {})
    """

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers={"authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout_s, connect=2.0), transport=transport, trust_env=False)

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ping(self) -> bool:
        """True when a gateway answers the health check."""
        return await self.health() is not None

    async def health(self) -> dict[str, Any] | None:
        """The gateway's health answer (`ok`, `activeCalls`, `configFingerprint`), or None when
        no gateway answers."""
        try:
            response = await self._http.get("/health", timeout=2.0)
        except httpx.TransportError:
            return None
        return health_body(response.status_code, response.content)

    async def call(self, method: str, params: Mapping[str, Any] | None = None, *,
                   timeout_s: float | None = None) -> dict[str, Any]:
        """Invoke one method; returns its result or raises `RpcError` / `GatewayUnavailable`."""
        body = rpc_request(next(self._ids), method, params)
        timeout = httpx.Timeout(timeout_s or self._timeout_s, connect=2.0)
        try:
            response = await self._http.post("/rpc", content=body, timeout=timeout,
                                             headers={"content-type": "application/json"})
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise GatewayUnavailable(f"no gateway at {self.base_url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise RpcError(-32099, f"the gateway did not answer {method} in time") from exc
        return rpc_result(response.status_code, response.content)

    async def events(self, after: int = -1) -> AsyncIterator[dict[str, Any]]:
        """Log entries as they are persisted (snapshots, events, turns), from `after` on."""
        try:
            async with self._http.stream("GET", "/events", params={"after": after},
                                         timeout=httpx.Timeout(None, connect=2.0)) as response:
                if response.status_code == 401:
                    raise Unauthorized
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        yield json.loads(line[6:])
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise GatewayUnavailable(f"no gateway at {self.base_url}: {exc}") from exc


__all__ = ["ControlClient", "GatewayUnavailable", "RpcError", "Unauthorized"]
