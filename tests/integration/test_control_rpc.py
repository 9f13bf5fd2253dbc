"""The control API of a real gateway (JSON-RPC 2.0 at POST /rpc, SSE at GET /events) over real
loopback HTTP, with the mock carrier."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from voicecall.calls.model import CallRecord, EndReason
from voicecall.gateway.client import ControlClient, RpcError, Unauthorized
from voicecall.gateway.runtime import Runtime
from voicecall.providers.base import DialRequest, ProviderError
from voicecall.testing.gateway import running_gateway

CALLEE = "+15555550123"
# The callee never answers during a test, so placed calls stay live (and ringing) throughout.
NEVER_ANSWERS = {"mock": {"answerAfterMs": 120_000}}


def rpc_payload(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


async def call_of(client: ControlClient, call_id: str) -> dict[str, Any]:
    result = await client.call("voicecall.status", {"callId": call_id})
    assert result["found"] is True, result
    call: dict[str, Any] = result["call"]
    return call


async def wait_answered(client: ControlClient, call_id: str) -> dict[str, Any]:
    async def answered() -> bool:
        return "answeredAt" in await call_of(client, call_id)

    await wait_until(answered, what=f"call {call_id} to be answered")
    return await call_of(client, call_id)


@contextlib.asynccontextmanager
async def client_for(runtime: Runtime, token: str | None = None) -> Any:
    async with ControlClient(runtime.control_url, token or runtime.token, timeout_s=15) as client:
        yield client


# -- authentication -------------------------------------------------------------------------------
async def test_rpc_and_events_require_the_bearer_token(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as runtime, httpx.AsyncClient(
            base_url=runtime.control_url, trust_env=False, timeout=5) as http:
        payload = rpc_payload("voicecall.status")
        refused = [
            await http.post("/rpc", json=payload),
            await http.post("/rpc", json=payload, headers={"authorization": "Bearer wrong-token-123456"}),
            await http.post("/rpc", json=payload, headers={"authorization": f"Basic {runtime.token}"}),
            await http.post("/rpc", json=payload, headers={"authorization": "Bearer"}),
            await http.get("/events"),
            await http.get("/events", headers={"authorization": "Bearer wrong-token-123456"}),
        ]
        assert [r.status_code for r in refused] == [401] * len(refused)
        assert all(r.headers["www-authenticate"] == "Bearer" for r in refused)

        ok = await http.post("/rpc", json=payload, headers={"authorization": f"Bearer {runtime.token}"})
        assert ok.status_code == 200
        assert ok.json()["result"]["calls"] == []


async def test_control_client_with_wrong_token_raises_unauthorized(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as runtime:
        async with client_for(runtime, token="not-the-token-at-all") as client:
            with pytest.raises(Unauthorized):
                await client.call("voicecall.status", {})
        async with client_for(runtime) as client:
            assert (await client.call("voicecall.status", {}))["calls"] == []


# -- JSON-RPC errors ------------------------------------------------------------------------------
async def test_json_rpc_protocol_errors(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as runtime, httpx.AsyncClient(
            base_url=runtime.control_url, trust_env=False, timeout=5,
            headers={"authorization": f"Bearer {runtime.token}"}) as http:
        not_json = await http.post("/rpc", content=b"{not json",
                                   headers={"content-type": "application/json"})
        assert not_json.status_code == 200
        assert not_json.json()["error"]["code"] == -32700
        assert not_json.json()["id"] is None

        no_method = await http.post("/rpc", json={"jsonrpc": "2.0", "id": 7, "params": {}})
        assert no_method.json()["error"]["code"] == -32600
        assert no_method.json()["id"] == 7

        unknown = await http.post("/rpc", json=rpc_payload("voicecall.teleport", request_id=8))
        assert unknown.json()["error"]["code"] == -32601
        assert "voicecall.teleport" in unknown.json()["error"]["message"]
        assert unknown.json()["id"] == 8


async def test_method_parameter_errors(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as runtime, client_for(runtime) as client:
        with pytest.raises(RpcError, match="message required") as no_message:
            await client.call("voicecall.initiate", {"to": CALLEE})
        assert no_message.value.code == -32602

        with pytest.raises(RpcError, match=r"E\.164") as bad_number:
            await client.call("voicecall.initiate", {"to": "555-0123", "message": "hi"})
        assert bad_number.value.code == -32602

        assert await client.call("voicecall.status", {"callId": "no-such-call"}) == {"found": False}
        assert (await client.call("voicecall.status", {}))["calls"] == []


# -- concurrency cap ------------------------------------------------------------------------------
async def test_fifty_parallel_initiates_respect_max_concurrent_calls(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, {"maxConcurrentCalls": 3, **NEVER_ANSWERS}) as runtime, \
            client_for(runtime) as client:
        results = await asyncio.gather(
            *(client.call("voicecall.initiate", {"to": CALLEE, "message": f"call {n}"})
              for n in range(50)), return_exceptions=True)
        placed = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, RpcError)]
        assert len(placed) == 3 and len(refused) == 47, results
        assert {str(e).split(":")[0] for e in refused} == {"Maximum concurrent calls (3) reached"}
        assert {e.code for e in refused} == {-32003}

        live = (await client.call("voicecall.status", {}))["calls"]
        assert sorted(c["callId"] for c in live) == sorted(p["callId"] for p in placed)

        assert await client.call("voicecall.end", {"callId": placed[0]["callId"]}) == {"success": True}
        again = await asyncio.gather(
            *(client.call("voicecall.initiate", {"to": CALLEE, "message": "again"}) for _ in range(5)),
            return_exceptions=True)
        assert len([r for r in again if isinstance(r, dict)]) == 1, again
        assert len((await client.call("voicecall.status", {}))["calls"]) == 3


async def test_failed_dial_ends_the_call_failed_and_frees_the_slot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_gateway(tmp_path, {"maxConcurrentCalls": 1, **NEVER_ANSWERS}) as runtime, \
            client_for(runtime) as client:
        async def carrier_down(request: DialRequest) -> str:
            raise ProviderError("carrier down")

        with monkeypatch.context() as patch:
            patch.setattr(runtime.provider, "initiate_call", carrier_down)
            with pytest.raises(RpcError, match="carrier down") as failed:
                await client.call("voicecall.initiate", {"to": CALLEE, "message": "hi"})
        call_id = failed.value.data["callId"]
        call = await call_of(client, call_id)
        assert call["state"] == "failed"
        assert call["endReason"] == "failed"
        assert "carrier down" in call["metadata"]["endDetail"]
        assert (await client.call("voicecall.status", {}))["calls"] == []

        placed = await client.call("voicecall.initiate", {"to": CALLEE, "message": "hi"})
        assert placed["initiated"] is True
        assert (await call_of(client, placed["callId"]))["providerCallId"]


# -- conversation ---------------------------------------------------------------------------------
async def test_conversation_turns_over_rpc(tmp_path: Path) -> None:
    config = {"mock": {"callerReplies": ["fine thanks"]}}
    async with running_gateway(tmp_path, config) as runtime, client_for(runtime) as client:
        placed = await client.call("voicecall.initiate", {
            "to": CALLEE, "message": "Hello there", "mode": "conversation"})
        call_id = placed["callId"]
        await wait_answered(client, call_id)

        async def greeted() -> bool:
            return "initialMessageSpokenAt" in (await call_of(client, call_id))["metadata"]

        await wait_until(greeted, what="the first message to be played")

        first = await client.call("voicecall.continue", {"callId": call_id, "message": "How are you?"})
        assert first == {"success": True, "transcript": "fine thanks"}

        # No scripted replies left: this turn waits until speech is injected.
        started = await client.call("voicecall.continue.start",
                                    {"callId": call_id, "message": "Which day suits you?"})
        operation_id = started["operationId"]
        assert started["callId"] == call_id

        async def listening() -> bool:
            # Persisted (not just in memory): the waiter is registered and listening starts next.
            stored = await runtime.store.get(call_id)
            assert stored is not None
            return stored.state == "listening" and stored.transcript[-1].text == "Which day suits you?"

        await wait_until(listening, what="the second turn to listen")
        pending = await client.call("voicecall.continue.result", {"operationId": operation_id})
        assert pending == {"operationId": operation_id, "done": False, "callId": call_id}

        with pytest.raises(RpcError, match="Already waiting for transcript"):
            await client.call("voicecall.continue", {"callId": call_id, "message": "Hello?"})

        assert await client.call("mock.inject", {"callId": call_id, "speech": "Tuesday"}) == {
            "success": True}
        result = await client.call("voicecall.continue.result",
                                   {"operationId": operation_id, "waitMs": 5000})
        assert result == {"operationId": operation_id, "done": True, "success": True,
                          "callId": call_id, "transcript": "Tuesday"}

        call = await call_of(client, call_id)
        assert [(e["speaker"], e["text"]) for e in call["transcript"]] == [
            ("bot", "Hello there"), ("bot", "How are you?"), ("user", "fine thanks"),
            ("bot", "Which day suits you?"), ("user", "Tuesday")]
        latency = await client.call("voicecall.latency", {})
        assert latency["turnLatency"]["count"] >= 2


async def test_dtmf_validates_digits_and_reaches_the_carrier(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as runtime, client_for(runtime) as client:
        placed = await client.call("voicecall.initiate", {
            "to": CALLEE, "message": "Hi", "mode": "conversation"})
        call = await wait_answered(client, placed["callId"])
        pcid = call["providerCallId"]

        with pytest.raises(RpcError, match="digits") as bad:
            await client.call("voicecall.dtmf", {"callId": placed["callId"], "digits": "12x"})
        assert bad.value.code == -32602
        assert runtime.provider.digits_heard(pcid) == []  # type: ignore[attr-defined]

        ok = await client.call("voicecall.dtmf", {"callId": placed["callId"], "digits": "12#*"})
        assert ok == {"success": True}
        assert runtime.provider.digits_heard(pcid) == ["12#*"]  # type: ignore[attr-defined]


# -- live events ----------------------------------------------------------------------------------
async def test_events_stream_yields_live_log_entries(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as runtime, client_for(runtime) as client:
        received: list[dict[str, Any]] = []
        arrived = asyncio.Event()

        async def consume(after: int) -> None:
            async for entry in client.events(after):
                received.append(entry)
                arrived.set()

        after = (await client.call("voicecall.tail", {"since": 1}))["nextSeq"]
        consumer = asyncio.create_task(consume(after))
        try:
            placed = await client.call("voicecall.initiate", {
                "to": CALLEE, "message": "Hi", "mode": "conversation"})
            call_id = placed["callId"]

            def kinds(**match: Any) -> set[str]:
                return {e["kind"] for e in received if e["callId"] == call_id
                        and all(e["data"].get(k) == v for k, v in match.items())}

            async def seen(predicate: Callable[[], bool]) -> None:
                while not predicate():
                    arrived.clear()
                    await arrived.wait()

            await asyncio.wait_for(seen(lambda: {"snapshot", "event"} <= kinds()), 5)
            # The stream is surely connected now: what happens next must arrive live.
            await wait_answered(client, call_id)
            await client.call("mock.inject", {"callId": call_id, "speech": "live words"})
            await asyncio.wait_for(seen(lambda: "event" in kinds(transcript="live words")), 5)
            seqs = [e["seq"] for e in received]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer


# -- ending a call the carrier has not confirmed yet ------------------------------------------------
async def test_end_works_before_the_carrier_call_id_is_known(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_gateway(tmp_path, NEVER_ANSWERS) as runtime, client_for(runtime) as client:
        release = asyncio.Event()
        dial = runtime.provider.initiate_call

        async def slow_dial(request: DialRequest) -> str:
            await release.wait()
            return await dial(request)

        monkeypatch.setattr(runtime.provider, "initiate_call", slow_dial)
        initiate = asyncio.create_task(client.call("voicecall.initiate", {"to": CALLEE, "message": "hi"}))
        try:
            async def dialling() -> bool:
                return bool((await client.call("voicecall.status", {}))["calls"])

            await wait_until(dialling, what="the call to be created")
            (call,) = (await client.call("voicecall.status", {}))["calls"]
            assert "providerCallId" not in call

            assert await client.call("voicecall.end", {"callId": call["callId"]}) == {"success": True}
            ended = await call_of(client, call["callId"])
            assert ended["state"] == "hangup-bot"
            assert ended["endReason"] == "hangup-bot"
            assert (await client.call("voicecall.status", {}))["calls"] == []
        finally:
            release.set()
            with contextlib.suppress(RpcError):
                await asyncio.wait_for(initiate, 5)


async def test_call_ended_during_dial_is_hung_up_at_the_carrier_once_dial_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_gateway(tmp_path, NEVER_ANSWERS) as runtime, client_for(runtime) as client:
        release = asyncio.Event()
        dial = runtime.provider.initiate_call
        hangup = runtime.provider.hangup_call
        hangups: list[tuple[str | None, EndReason]] = []

        async def slow_dial(request: DialRequest) -> str:
            await release.wait()
            return await dial(request)

        async def counting_hangup(call: CallRecord, reason: EndReason) -> None:
            hangups.append((call.provider_call_id, reason))
            await hangup(call, reason)

        monkeypatch.setattr(runtime.provider, "initiate_call", slow_dial)
        monkeypatch.setattr(runtime.provider, "hangup_call", counting_hangup)
        initiate = asyncio.create_task(client.call("voicecall.initiate", {"to": CALLEE, "message": "hi"}))

        async def dialling() -> bool:
            return bool((await client.call("voicecall.status", {}))["calls"])

        await wait_until(dialling, what="the call to be created")
        (call,) = (await client.call("voicecall.status", {}))["calls"]
        await client.call("voicecall.end", {"callId": call["callId"]})
        release.set()
        with contextlib.suppress(RpcError):
            await asyncio.wait_for(initiate, 5)

        pcid = (await call_of(client, call["callId"])).get("providerCallId")
        assert pcid is not None
        assert hangups == [(pcid, EndReason.HANGUP_BOT)]
