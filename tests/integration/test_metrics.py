"""`/metrics`, `/health` and `/ready` on the control listener of a real gateway: the exposition
parses with prometheus_client's own parser, and each family moves when a mock call, a refused
webhook and a streamed call happen."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.helpers import eventually, free_port, openai_speech_settings
from voicecall.gateway.runtime import Runtime
from voicecall.server.metrics import LIVE_STATES
from voicecall.service import CallError
from voicecall.testing.fakes import FakeOpenAI
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import TwilioSimulator

CALLEE = "+15555550123"
OUR_NUMBER = "+15550000000"
FRIEND = "+15557770001"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(runtime: Runtime, *, token: str | None = None) -> Samples:
    """Every sample of `/metrics`, keyed by name and sorted labels, parsed by prometheus_client."""
    async with httpx.AsyncClient(base_url=runtime.control_url, trust_env=False, timeout=5) as http:
        reply = await http.get("/metrics", headers={"authorization": f"Bearer {token or runtime.token}"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_need_the_bearer_token_unless_public_and_health_and_ready_never_do(
        tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as runtime, httpx.AsyncClient(
            base_url=runtime.control_url, trust_env=False, timeout=5) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"authorization": "Bearer wrong-token-123456"})
        assert wrong.status_code == 401
        health = await http.get("/health")
        ready = await http.get("/ready")
        assert health.status_code == 200 and health.json()["ok"] is True
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "checks": {"store": True, "carrier": True,
                                                          "publicUrl": True}}
        assert str(tmp_path) not in ready.text and runtime.token not in ready.text
    async with running_gateway(tmp_path / "open", {"control": {"metricsPublic": True}}) as runtime, \
            httpx.AsyncClient(base_url=runtime.control_url, trust_env=False, timeout=5) as http:
        opened = await http.get("/metrics")
        assert opened.status_code == 200
        assert "voicecall_calls_started_total" in opened.text
        # the open metrics page does not open the API
        assert (await http.post("/rpc", json={"jsonrpc": "2.0", "id": 1,
                                              "method": "voicecall.status"})).status_code == 401


async def test_ready_is_503_without_details_when_the_store_directory_is_gone(
        tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as runtime, httpx.AsyncClient(
            base_url=runtime.control_url, trust_env=False, timeout=5) as http:
        real = runtime.store.directory
        runtime.store.directory = tmp_path / "removed"
        try:
            reply = await http.get("/ready")
        finally:
            runtime.store.directory = real
        assert reply.status_code == 503
        assert reply.json() == {"ready": False, "checks": {"store": False, "carrier": True,
                                                           "publicUrl": True}}
        assert (await http.get("/ready")).status_code == 200


async def test_a_mock_call_and_refused_and_replayed_webhooks_move_their_families(
        tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as runtime:
        before = await scrape(runtime)
        assert value(before, "voicecall_live_calls", state="ringing") == 0
        placed = await runtime.api.call("voicecall.initiate", {"to": CALLEE, "message": "Hi",
                                                               "mode": "conversation"})
        record = await eventually(lambda: runtime.service.live(placed["callId"]), 5)
        await eventually(lambda: record.answered_at, 5)
        during = await scrape(runtime)
        assert value(during, "voicecall_calls_started_total", carrier="mock",
                     direction="outbound") == 1
        assert sum(value(during, "voicecall_live_calls", state=s) for s in
                   ("answered", "active", "speaking", "listening")) == 1
        await runtime.api.call("voicecall.end", {"callId": placed["callId"]})

        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            assert (await http.post(runtime.webhook_url, content=b"not json")).status_code == 400
            body = json.dumps({"events": []}).encode()
            assert (await http.post(runtime.webhook_url, content=body)).status_code == 200
            assert (await http.post(runtime.webhook_url, content=body)).status_code == 200
        # a dial the carrier refuses counts as a carrier error
        errors_before = value(await scrape(runtime), "voicecall_errors_total", kind="carrier")
        runtime.provider.initiate_call = _refuse  # type: ignore[method-assign]
        with pytest.raises(Exception, match="refused"):
            await runtime.api.call("voicecall.initiate", {"to": CALLEE, "message": "Hi"})

        after = await scrape(runtime)
        assert value(after, "voicecall_calls_ended_total", carrier="mock", direction="outbound",
                     reason="hangup-bot") == 1
        assert value(after, "voicecall_calls_ended_total", carrier="mock", direction="outbound",
                     reason="failed") == 1
        assert value(after, "voicecall_live_calls", state="answered") == 0
        assert value(after, "voicecall_webhooks_total", outcome="rejected_malformed") == 1
        assert value(after, "voicecall_webhooks_total", outcome="replay") == 1
        assert value(after, "voicecall_webhooks_total", outcome="accepted") >= 1
        assert value(after, "voicecall_webhook_duration_seconds_count") == sum(
            v for (name, _), v in after.items() if name == "voicecall_webhooks_total")
        assert value(after, "voicecall_errors_total", kind="carrier") == errors_before + 1


async def _refuse(request: Any) -> str:
    raise RuntimeError("refused by the carrier")


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    async with TwilioSimulator() as simulator:
        yield simulator


async def test_a_streamed_call_moves_streams_frames_turn_stages_and_a_forged_webhook_is_rejected(
        tmp_path: Path, sim: TwilioSimulator, speech: FakeSpeech,
        stt: FakeRealtimeTranscription) -> None:
    port = free_port()
    async with FakeOpenAI() as llm:
        llm.script(json.dumps({"spoken": "We open at nine."}))
        config = {
            "provider": "twilio", "fromNumber": OUR_NUMBER,
            "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                       "apiBaseUrl": sim.base_url},
            "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
            "inboundPolicy": "allowlist", "allowFrom": [FRIEND], "inboundGreeting": "Hello.",
            "responder": {"enabled": True, "baseUrl": llm.base_url},
            "responseModel": "openai/gpt-4o-mini", **openai_speech_settings(speech, stt)}
        async with running_gateway(tmp_path, config, env={"OPENAI_API_KEY": "sk-test"}) as gateway:
            before = await scrape(gateway)
            call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
            await call.wait_stream(timeout=10)
            record = await eventually(lambda: gateway.service.live(call.sid), 5)
            await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
            stt.say("When are you open?", after_bytes=1600)
            await eventually(lambda: record.metadata.get("turnCount") == 1, 15)
            during = await scrape(gateway)
            assert value(during, "voicecall_media_streams_open") == 1
            assert value(during, "voicecall_media_streams_opened_total") == 1
            assert value(during, "voicecall_media_frames_sent_total") > value(
                before, "voicecall_media_frames_sent_total")
            assert "voicecall_media_underrun_frames_total" in {name for name, _ in during}
            for stage in ("speechToTranscript", "transcriptToReply", "replyToFirstTtsByte",
                          "ttsByteToFirstFrame", "speechToFirstFrame", "turn"):
                assert value(during, "voicecall_turn_stage_seconds_count", stage=stage) == 1, stage
            assert value(during, "voicecall_calls_started_total", carrier="twilio",
                         direction="inbound") == 1

            async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
                forged = await http.post(gateway.webhook_url, data={"CallSid": call.sid},
                                         headers={"x-twilio-signature": "forged"})
            assert forged.status_code == 401
            async with connect(f"ws://127.0.0.1:{port}/voice/stream", open_timeout=5) as ws:
                await ws.send(json.dumps({"event": "start", "streamSid": "MZ" + "0" * 32, "start": {
                    "streamSid": "MZ" + "0" * 32, "callSid": "CA" + "1" * 32,
                    "customParameters": {"token": "nope"}}}))
                await eventually(lambda: ws.close_code is not None, 5)
            after = await scrape(gateway)
            assert value(after, "voicecall_webhooks_total", outcome="rejected_signature") == 1
            assert value(after, "voicecall_media_streams_refused_total") == 1


async def test_model_tts_and_stt_failures_on_a_streamed_call_count_by_kind(
        tmp_path: Path, sim: TwilioSimulator, speech: FakeSpeech,
        stt: FakeRealtimeTranscription) -> None:
    port = free_port()
    async with FakeOpenAI() as llm:
        llm.script("", status=500)  # the model fails the caller's first turn
        config = {
            "provider": "twilio", "fromNumber": OUR_NUMBER,
            "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                       "apiBaseUrl": sim.base_url},
            "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
            "inboundPolicy": "allowlist", "allowFrom": [FRIEND], "inboundGreeting": "Hello.",
            "responder": {"enabled": True, "baseUrl": llm.base_url},
            "responseModel": "openai/gpt-4o-mini", **openai_speech_settings(speech, stt)}
        async with running_gateway(tmp_path, config, env={"OPENAI_API_KEY": "sk-test"}) as gateway:
            before = await scrape(gateway)
            call = await sim.place_inbound(FRIEND, OUR_NUMBER, gateway.webhook_url)
            record = await eventually(lambda: gateway.service.live(call.sid), 5)
            await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 15)
            await stt.send({"type": "error", "error": {"message": "audio buffer overflow"}})
            stt.say("When are you open?", after_bytes=1600)

            async def moved(kind: str) -> bool:
                return value(await scrape(gateway), "voicecall_errors_total", kind=kind) > value(
                    before, "voicecall_errors_total", kind=kind)

            await eventually(lambda: moved("stt"), 10)
            await eventually(lambda: moved("model"), 10)
            assert not await moved("tts")
            speech.script("openai", status=500)  # synthesis of what the agent is told to say fails
            with contextlib.suppress(CallError):
                await gateway.api.call("voicecall.speak", {"callId": record.call_id,
                                                           "message": "One moment please."})
            await eventually(lambda: moved("tts"), 10)


async def test_calls_restored_on_a_restart_show_as_live_and_are_not_counted_as_started_again(
        tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as first:
        placed = await first.api.call("voicecall.initiate", {"to": CALLEE, "message": "Hi",
                                                             "mode": "conversation"})
        record = await eventually(lambda: first.service.live(placed["callId"]), 5)
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 5)
        assert value(await scrape(first), "voicecall_calls_started_total", carrier="mock",
                     direction="outbound") == 1
    async with running_gateway(tmp_path) as second:
        restored = second.service.live(placed["callId"])
        assert restored is not None
        # the restored call changes (and is persisted) in this process: still not a new start
        await second.api.call("voicecall.speak", {"callId": placed["callId"], "message": "Still here"})
        after_restart = await scrape(second)
        assert value(after_restart, "voicecall_calls_started_total", carrier="mock",
                     direction="outbound") == 0
        assert sum(v for (name, _), v in after_restart.items()
                   if name == "voicecall_calls_ended_total") == 0
        assert sum(value(after_restart, "voicecall_live_calls", state=s) for s in LIVE_STATES) == 1
        # its end happens in this process, so it counts here, once
        await second.api.call("voicecall.end", {"callId": placed["callId"]})
        ended = await scrape(second)
        assert value(ended, "voicecall_calls_ended_total", carrier="mock", direction="outbound",
                     reason="hangup-bot") == 1
        assert value(ended, "voicecall_calls_started_total", carrier="mock",
                     direction="outbound") == 0
        assert sum(value(ended, "voicecall_live_calls", state=s) for s in LIVE_STATES) == 0
