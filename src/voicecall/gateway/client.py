"""Async Python client for the control API (JSON-RPC over HTTP, SSE events)."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import httpx


class RpcError(Exception):
    """The gateway refused or failed a request; `code` is the JSON-RPC error code."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class GatewayUnavailable(Exception):
    """No gateway answers at the control address."""


class Unauthorized(RpcError):
    def __init__(self) -> None:
        super().__init__(401, "the gateway refused the control token (401 Unauthorized)")


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
        if response.status_code != 200:
            return None
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    async def call(self, method: str, params: Mapping[str, Any] | None = None, *,
                   timeout_s: float | None = None) -> dict[str, Any]:
        """Invoke one method; returns its result or raises `RpcError` / `GatewayUnavailable`."""
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                   "params": dict(params or {})}
        timeout = httpx.Timeout(timeout_s or self._timeout_s, connect=2.0)
        try:
            response = await self._http.post("/rpc", json=payload, timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise GatewayUnavailable(f"no gateway at {self.base_url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise RpcError(-32099, f"the gateway did not answer {method} in time") from exc
        if response.status_code == 401:
            raise Unauthorized
        if response.status_code != 200:
            raise RpcError(response.status_code, f"HTTP {response.status_code}: {response.text}")
        body = response.json()
        if "error" in body:
            err = body["error"]
            raise RpcError(int(err.get("code", -32000)), str(err.get("message")), err.get("data"))
        result: dict[str, Any] = body["result"]
        return result

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
