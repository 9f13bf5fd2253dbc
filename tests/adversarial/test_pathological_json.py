"""Pathological JSON on every surface that parses it: the mock carrier's webhook, the control
API and the media socket refuse it with their normal errors, never a 500 or a dropped socket."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.adversarial.conftest import mock_body
from tests.helpers import eventually
from tests.integration.test_media_guards import (
    TIMEOUT,
    GatewayFactory,
    hub_of,
    live_call,
    open_stream,
    start_message,
)
from voicecall.gateway.runtime import Runtime
from voicecall.testing.twilio import TwilioSimulator

DEEP_ARRAY = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000
DEEP_EVENT = b'{"events": [{"type": "call.initiated", "callId": "pc-deep", "x": ' \
    + b"[" * 3000 + b"]" * 3000 + b"}]}"


async def test_deeply_nested_json_to_the_mock_webhook_is_400(mock_gateway: Runtime) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        for body in (DEEP_ARRAY, DEEP_OBJECT, DEEP_EVENT):
            response = await http.post(mock_gateway.webhook_url, content=body,
                                       headers={"content-type": "application/json"})
            assert response.status_code == 400, response.text
            assert "nested" in response.text
        fine = await http.post(mock_gateway.webhook_url, content=mock_body(
            {"type": "call.initiated", "callId": "pc-ok", "providerCallId": "pc-ok",
             "direction": "inbound", "from": "+15557770001", "to": "+15550000000"}))
        assert fine.status_code == 200
    assert await mock_gateway.store.get("pc-deep") is None


async def test_deeply_nested_json_to_the_control_api_is_a_parse_error(mock_gateway: Runtime) -> None:
    assert mock_gateway.control_url is not None
    headers = {"authorization": f"Bearer {mock_gateway.token}", "content-type": "application/json"}
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        for body in (DEEP_ARRAY, DEEP_OBJECT,
                     b'{"jsonrpc": "2.0", "id": 1, "method": "voicecall.status", "params": '
                     + DEEP_OBJECT + b"}"):
            response = await http.post(f"{mock_gateway.control_url}/rpc", content=body,
                                       headers=headers)
            assert response.status_code == 200
            assert response.json()["error"]["code"] == -32700


async def test_deeply_nested_media_frames_are_ignored_before_and_after_start(
        make_gateway: GatewayFactory, sim: TwilioSimulator) -> None:
    runtime = await make_gateway()
    call = await live_call(runtime, sim)
    async with open_stream(runtime) as ws:
        await ws.send(DEEP_ARRAY.decode())
        await ws.send(DEEP_OBJECT.decode())
        await ws.send(start_message(call.call_sid, call.token))
        await eventually(lambda: hub_of(runtime).session_for(call.record.call_id), TIMEOUT)
        await ws.send(DEEP_ARRAY.decode())
        await ws.send(json.dumps({"event": "media", "x": [[[[]]]]}) + "[" * 2000)
        await asyncio.sleep(0.3)
        assert ws.close_code is None
        record = runtime.service.live(call.record.call_id)
        assert record is not None and not record.is_terminal
    await runtime.api.call("voicecall.end", {"callId": call.record.call_id})
