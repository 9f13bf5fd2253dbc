"""Abuse of the control API (loopback, bearer token): bodies over the cap are refused before
they are read, and every parameter is validated with -32602 naming the field."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from tests.adversarial.conftest import RawConnection
from voicecall.gateway.runtime import Runtime
from voicecall.service import CallError


async def rpc(gateway: Runtime, body: bytes | dict[str, Any]) -> dict[str, Any]:
    assert gateway.control_url is not None
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        response = await http.post(f"{gateway.control_url}/rpc", content=content, headers={
            "authorization": f"Bearer {gateway.token}", "content-type": "application/json"})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def call(method: str, params: dict[str, Any], request_id: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


async def test_a_body_declared_over_1_mib_is_refused_before_it_is_sent(mock_gateway: Runtime) -> None:
    assert mock_gateway.control_url is not None
    conn = await RawConnection.open(mock_gateway.control_url)
    try:
        await conn.send((f"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                         f"{mock_gateway.token}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {50 * 1024 * 1024}\r\n\r\n").encode())
        await conn.send(b'{"jsonrpc": "2.0", ')  # and nothing more
        started = time.monotonic()
        assert await conn.status(5) == 413
        assert time.monotonic() - started < 2
    finally:
        await conn.close()


async def test_a_chunked_body_is_cut_off_at_1_mib(mock_gateway: Runtime) -> None:
    assert mock_gateway.control_url is not None
    sent = 0

    async def chunks() -> Any:
        nonlocal sent
        yield b'{"jsonrpc": "2.0", "id": 1, "method": "voicecall.status", "pad": "'
        for _ in range(1024):  # 64 MiB in all, unless the server stops reading
            sent += 65536
            yield b"x" * 65536
            await asyncio.sleep(0)
        yield b'"}'

    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        try:
            response = await http.post(f"{mock_gateway.control_url}/rpc", content=chunks(),
                                       headers={"authorization": f"Bearer {mock_gateway.token}"})
            assert response.status_code == 413
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server answered 413 and closed while the client was still sending
    assert sent < 16 * 1024 * 1024  # what the socket buffers took after the server stopped


@pytest.mark.parametrize("request_id", ["NaN", "Infinity"])
async def test_a_non_finite_id_is_a_parse_error_not_a_500(mock_gateway: Runtime,
                                                          request_id: str) -> None:
    body = ('{"jsonrpc": "2.0", "id": ' + request_id + ', "method": "voicecall.status"}').encode()
    assert (await rpc(mock_gateway, body))["error"]["code"] == -32700


async def test_an_id_that_is_not_a_string_number_or_null_is_an_invalid_request(
        mock_gateway: Runtime) -> None:
    answer = await rpc(mock_gateway, call("voicecall.status", {}, request_id={"a": 1}))
    assert answer["error"]["code"] == -32600 and answer["id"] is None


BAD_PARAMS = [
    ("voicecall.initiate", {"to": "+15555550123", "message": "hi", "mode": "party"}, "mode"),
    ("voicecall.initiate", {"to": "+15555550123", "message": "hi", "mode": 3}, "mode"),
    ("voicecall.tail", {"afterSeq": float("nan")}, "afterSeq"),
    ("voicecall.tail", {"afterSeq": 0, "waitMs": float("inf")}, "waitMs"),
    ("voicecall.tail", {"since": "ten"}, "since"),
    ("voicecall.latency", {"last": float("nan")}, "last"),
    ("voicecall.continue.result", {"operationId": "x", "waitMs": float("-inf")}, "waitMs"),
    ("mock.inject", {"callId": "c1", "speech": 123}, "speech"),
    ("mock.inject", {"callId": "c1", "digits": ["1"]}, "digits"),
    ("mock.inject", {"callId": "c1", "hangup": "yes"}, "hangup"),
]


@pytest.mark.parametrize(("method", "params", "field"), BAD_PARAMS)
async def test_every_bad_parameter_is_minus_32602_naming_the_field(
        mock_gateway: Runtime, method: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(CallError) as raised:
        await mock_gateway.api.call(method, params)
    assert raised.value.code == -32602
    assert field in str(raised.value)
    if all(isinstance(v, str | int) or v is None for v in params.values()):
        answer = await rpc(mock_gateway, call(method, params))
        assert answer["error"]["code"] == -32602 and field in answer["error"]["message"]
    assert mock_gateway.service.active_calls() == []
