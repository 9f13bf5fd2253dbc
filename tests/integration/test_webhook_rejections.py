"""Refused webhooks, through the real Twilio simulator and gateway: a call whose webhooks fail
verification says so (status, log, the end detail of a timeout), and an unauthenticated request
never changes a call."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.helpers import eventually, free_port
from voicecall.calls.model import CallRecord
from voicecall.gateway.runtime import Runtime
from voicecall.providers.base import Verification, WebhookRequest
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator
from voicecall.testing.twilio.signing import SIGNATURE_HEADER, sign

OUR_NUMBER = "+15550000000"
CALLEE = "+15555550123"


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as simulator:
        simulator.script(CALLEE, Callee(answer_after_s=0.1))
        yield simulator


def readme_recipe(sim: TwilioSimulator, **extra: Any) -> dict[str, Any]:
    """The old README recipe: apiBaseUrl and credentials only, no publicUrl, so the gateway
    checks signatures against `https://<Host>/...` while the simulator signs `http://...:port`."""
    return {"provider": "twilio", "fromNumber": OUR_NUMBER,
            "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                       "apiBaseUrl": sim.base_url},
            "outbound": {"notifyHangupDelaySec": 0}, **extra}


async def place(runtime: Runtime, mode: str = "notify") -> CallRecord:
    result = await runtime.api.call("voicecall.initiate", {"to": CALLEE, "message": "Hello",
                                                           "mode": mode})
    record = await runtime.service.get_call(result["callId"])
    assert record is not None and record.provider_call_id
    return record


async def call_status(runtime: Runtime, call_id: str) -> dict[str, Any]:
    result = await runtime.api.call("voicecall.status", {"callId": call_id})
    call: dict[str, Any] = result["call"]
    return call


async def test_rejected_webhooks_show_in_status_with_the_url_verified_against(
        tmp_path: Path, sim: TwilioSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with running_gateway(tmp_path, readme_recipe(sim)) as gateway:
        record = await place(gateway)
        sim_call = sim.call(record.provider_call_id or "")
        await sim_call.wait_ended()  # every webhook of the call was refused, then it hung up

        async def refused() -> dict[str, Any] | None:
            rejections = (await call_status(gateway, record.call_id)).get("webhookRejections")
            return rejections if rejections and rejections["count"] >= len(sim_call.webhooks) else None

        rejections = await eventually(refused, 5)
        assert all(r.status_code == 401 for r in sim_call.webhooks)
        assert rejections["count"] == len(sim_call.webhooks) >= 2
        reason = rejections["lastReason"]
        assert reason.startswith("Invalid signature for URL: https://127.0.0.1/voice/webhook?")
        assert f"callId={record.call_id}" in reason
        listed = (await gateway.api.call("voicecall.status", {}))["calls"]
        assert [c["webhookRejections"]["count"] for c in listed] == [rejections["count"]]
        live = gateway.service.live(record.call_id)
        assert live is not None and live.answered_at is None and live.state.value == "initiated"

        warnings = [r.getMessage() for r in caplog.records
                    if r.name == "voicecall.server.webhook" and r.levelno == logging.WARNING]
        assert len(warnings) == rejections["count"]
        assert f"webhook rejected for call {record.call_id} ({rejections['count']} rejected so far): " \
               "Invalid signature for URL: https://127.0.0.1/voice/webhook?" in warnings[-1]
        assert not any(sim.auth_token in r.getMessage() for r in caplog.records)
        await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_ring_timeout_after_rejected_webhooks_names_them_in_the_end_detail(
        tmp_path: Path, sim: TwilioSimulator) -> None:
    async with running_gateway(tmp_path, readme_recipe(sim, ringTimeoutMs=500)) as gateway:
        record = await place(gateway)

        async def ended() -> CallRecord | None:
            final = await gateway.service.get_call(record.call_id)
            return final if final is not None and final.is_terminal else None

        final: CallRecord = await eventually(ended, 15)
        assert final.end_reason == "no-answer"
        detail = str(final.metadata["endDetail"])
        assert detail.startswith("not answered within 500 ms; ")
        assert " webhooks were rejected (last: Invalid signature for URL: " \
               "https://127.0.0.1/voice/webhook?" in detail
        assert sim.auth_token not in detail
        shown = (await gateway.api.call("voicecall.status", {"callId": record.call_id}))["call"]
        assert shown["metadata"]["endDetail"] == detail


async def test_forged_completed_status_callback_changes_nothing_but_the_rejection_counter(
        tmp_path: Path, sim: TwilioSimulator) -> None:
    port = free_port()
    config = readme_recipe(sim, serve={"port": port},
                           publicUrl=f"http://127.0.0.1:{port}/voice/webhook")
    async with running_gateway(tmp_path, config) as gateway:
        record = await place(gateway, "conversation")
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
        store = gateway.service.store
        before = (record.to_json_dict(), (await store.get(record.call_id)),
                  await store.state_history(record.call_id), await store.last_log(1000))
        assert "webhookRejections" not in await call_status(gateway, record.call_id)

        url = f"{gateway.webhook_url}?{urlencode({'callId': record.call_id, 'type': 'status'})}"
        params = {"CallSid": record.provider_call_id or "", "AccountSid": sim.account_sid,
                  "CallStatus": "completed", "CallDuration": "3", "Direction": "outbound-api",
                  "From": OUR_NUMBER, "To": CALLEE}
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            response = await http.post(url, data=params,
                                       headers={SIGNATURE_HEADER: sign("not-the-token", url, params)})
        assert response.status_code == 401

        after = (record.to_json_dict(), (await store.get(record.call_id)),
                 await store.state_history(record.call_id), await store.last_log(1000))
        assert after[0] == before[0] and after[2] == before[2]
        assert after[1] is not None and before[1] is not None
        assert after[1].to_json_dict() == before[1].to_json_dict()
        assert [e.to_json_dict() for e in after[3]] == [e.to_json_dict() for e in before[3]]
        assert gateway.service.live(record.call_id) is not None
        assert sim.call(record.provider_call_id or "").status == "in-progress"
        rejections = (await call_status(gateway, record.call_id))["webhookRejections"]
        assert rejections["count"] == 1
        assert rejections["lastReason"] == f"Invalid signature for URL: {url}"
        # The genuine carrier still drives the call.
        await gateway.api.call("voicecall.end", {"callId": record.call_id})
        assert await sim.call(record.provider_call_id or "").wait_ended() == "completed"


async def test_any_carriers_refused_webhook_is_counted_against_the_call_it_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_gateway(tmp_path, {"mock": {"answerAfterMs": 50}}) as gateway:
        result = await gateway.api.call("voicecall.initiate", {
            "to": CALLEE, "message": "Hello", "mode": "conversation"})
        call_id = result["callId"]
        record = await eventually(lambda: gateway.service.live(call_id))

        def refuse(request: WebhookRequest) -> Verification:
            return Verification(False, reason="bad signature", call_id=record.provider_call_id)

        monkeypatch.setattr(gateway.provider, "verify_webhook", refuse)
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            response = await http.post(gateway.webhook_url, content=b'{"events": []}')
        assert response.status_code == 401
        rejections = (await call_status(gateway, call_id))["webhookRejections"]
        assert (rejections["count"], rejections["lastReason"]) == (1, "bad signature")
        await gateway.api.call("voicecall.end", {"callId": call_id})
