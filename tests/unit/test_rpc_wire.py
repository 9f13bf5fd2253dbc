"""The control API's JSON-RPC answers decoded the same way by the async and blocking clients:
results, the gateway's errors with their codes, and answers that are not JSON-RPC at all."""

from __future__ import annotations

import json
import socket

import pytest

from voicecall.gateway.blocking_client import BlockingControlClient
from voicecall.gateway.rpc_wire import (
    GatewayUnavailable,
    RpcError,
    Unauthorized,
    health_body,
    rpc_request,
    rpc_result,
)


def test_a_request_body_is_json_rpc_2_with_the_params_as_an_object() -> None:
    assert json.loads(rpc_request(7, "voicecall.status", None)) == {
        "jsonrpc": "2.0", "id": 7, "method": "voicecall.status", "params": {}}


def test_a_result_is_returned_and_an_error_raised_with_its_code_and_data() -> None:
    assert rpc_result(200, b'{"jsonrpc":"2.0","id":1,"result":{"ok":true}}') == {"ok": True}
    with pytest.raises(RpcError) as caught:
        rpc_result(200, b'{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad callId",'
                        b'"data":{"field":"callId"}}}')
    assert (caught.value.code, str(caught.value), caught.value.data) == (
        -32602, "bad callId", {"field": "callId"})


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b"[1, 2]", b'{"jsonrpc":"2.0"}'])
def test_an_answer_that_is_not_json_rpc_is_an_rpc_error_not_a_crash(body: bytes) -> None:
    with pytest.raises(RpcError) as caught:
        rpc_result(200, body)
    assert caught.value.code == -32700


def test_http_statuses_name_themselves() -> None:
    with pytest.raises(Unauthorized):
        rpc_result(401, b"")
    with pytest.raises(RpcError, match="HTTP 503: busy"):
        rpc_result(503, b"busy")


def test_health_is_none_unless_200_and_empty_when_the_body_is_not_an_object() -> None:
    assert health_body(503, b"{}") is None
    assert health_body(200, b"not json") == {}
    assert health_body(200, b'{"ok": true}') == {"ok": True}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_blocking_client_finds_no_gateway_on_a_closed_port() -> None:
    client = BlockingControlClient(f"http://127.0.0.1:{_closed_port()}", "t")
    assert client.health() is None
    with pytest.raises(GatewayUnavailable, match="no gateway at"):
        client.call("voicecall.status")


def test_the_blocking_client_refuses_a_control_url_it_cannot_use() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        BlockingControlClient("https://example.invalid", "t")
