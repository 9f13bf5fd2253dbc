"""A blocking control-API client on the standard library (`http.client`).

The CLI's read commands (`status`, `calls`, `latency`) and every command's first look for a
running gateway use it: they start without importing httpx or running an event loop."""

from __future__ import annotations

import http.client
import itertools
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from voicecall.gateway.rpc_wire import GatewayUnavailable, RpcError, health_body, rpc_request, rpc_result

HEALTH_TIMEOUT_S = 2.0


class BlockingControlClient:
    """Talks to a running `voicecall serve`, one request at a time.

    >>> client = BlockingControlClient("http://127.0.0.1:3335", token)
    >>> client.call("voicecall.status", {})
    """

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the control URL must be http://host:port, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or 80
        self.token = token
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)

    def _request(self, method: str, path: str, body: bytes | None,
                 timeout_s: float) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)
        headers = {"authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["content-type"] = "application/json"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def health(self) -> dict[str, Any] | None:
        """The gateway's health answer, or None when no gateway answers."""
        try:
            status, body = self._request("GET", "/health", None, HEALTH_TIMEOUT_S)
        except (OSError, http.client.HTTPException):
            return None
        return health_body(status, body)

    def call(self, method: str, params: Mapping[str, Any] | None = None, *,
             timeout_s: float | None = None) -> dict[str, Any]:
        """Invoke one method; returns its result or raises `RpcError` / `GatewayUnavailable`."""
        body = rpc_request(next(self._ids), method, params)
        try:
            status, answer = self._request("POST", "/rpc", body, timeout_s or self._timeout_s)
        except (ConnectionRefusedError, socket.gaierror) as exc:
            raise GatewayUnavailable(f"no gateway at {self.base_url}: {exc}") from exc
        except TimeoutError as exc:
            raise RpcError(-32099, f"the gateway did not answer {method} in time") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise GatewayUnavailable(f"the gateway at {self.base_url} dropped the request "
                                     f"({exc or type(exc).__name__})") from exc
        return rpc_result(status, answer)
