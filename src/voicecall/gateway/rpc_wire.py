"""The control API's JSON-RPC wire format and errors, shared by the async and blocking clients.

Standard library only: the blocking client behind the CLI's read commands imports this and
nothing heavier."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


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


def rpc_request(request_id: int, method: str, params: Mapping[str, Any] | None) -> bytes:
    """The body of one JSON-RPC request."""
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                       "params": dict(params or {})}).encode()


def rpc_result(status: int, body: bytes) -> dict[str, Any]:
    """The result of one JSON-RPC answer, or the `RpcError` it carries."""
    if status == 401:
        raise Unauthorized
    if status != 200:
        raise RpcError(status, f"HTTP {status}: {body.decode(errors='replace')}")
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise RpcError(-32700, f"the gateway answered something that is not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise RpcError(-32700, "the gateway answered JSON that is not a JSON-RPC response")
    if "error" in answer:
        err = answer["error"] if isinstance(answer["error"], dict) else {}
        raise RpcError(int(err.get("code", -32000)), str(err.get("message")), err.get("data"))
    result = answer.get("result")
    if not isinstance(result, dict):
        raise RpcError(-32700, "the gateway's answer has no result object")
    return result


def health_body(status: int, body: bytes) -> dict[str, Any] | None:
    """The health answer (`ok`, `activeCalls`, `configFingerprint`); None unless it is a 200."""
    if status != 200:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
