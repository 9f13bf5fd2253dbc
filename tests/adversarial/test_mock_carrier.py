"""The mock carrier takes unsigned webhooks (for development): they cannot create calls the
gateway did not place, and `setup` says so when the mock is exposed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adversarial.conftest import mock_body
from voicecall.config import load_config_dict
from voicecall.gateway.setup import run_checks
from voicecall.testing.gateway import running_gateway


def outbound(pcid: str) -> dict[str, Any]:
    return {"type": "call.answered", "callId": pcid, "providerCallId": pcid,
            "direction": "outbound", "from": "+15550000000", "to": "+15555550123"}


async def test_unsigned_outbound_events_for_unknown_calls_are_refused_and_take_no_capacity(
        tmp_path: Path) -> None:
    async with running_gateway(tmp_path, {"maxConcurrentCalls": 3}) as gateway, \
            httpx.AsyncClient(trust_env=False, timeout=10) as http:
        for i in range(3):
            response = await http.post(gateway.webhook_url, content=mock_body(outbound(f"pc-{i}")))
            assert response.status_code == 400
            assert "not a call this gateway placed" in response.text
        assert gateway.service.active_calls() == []
        placed = await gateway.api.call("voicecall.initiate", {"to": "+15555550123",
                                                              "message": "hi", "mode": "notify"})
        assert gateway.service.live(placed["callId"]) is not None


@pytest.mark.parametrize("exposure", [
    {"publicUrl": "https://voice.example.com/voice/webhook"},
    {"tunnel": {"provider": "ngrok"}},
    {"serve": {"bind": "0.0.0.0"}},
])
def test_setup_warns_when_the_mock_carrier_is_reachable_from_outside(
        tmp_path: Path, exposure: dict[str, Any]) -> None:
    loaded = load_config_dict({"provider": "mock", **exposure},
                              env={"OPENCLAW_STATE_DIR": str(tmp_path), "HOME": str(tmp_path)})
    check = next(c for c in run_checks(loaded) if c.id == "webhook-exposure")
    assert not check.ok
    assert "unsigned" in check.message


def test_setup_is_content_with_a_local_mock_carrier(tmp_path: Path) -> None:
    loaded = load_config_dict({"provider": "mock"},
                              env={"OPENCLAW_STATE_DIR": str(tmp_path), "HOME": str(tmp_path)})
    check = next(c for c in run_checks(loaded) if c.id == "webhook-exposure")
    assert check.ok
