"""The public webhook listener of a real gateway, over real loopback sockets.

Every test starts a gateway on the mock carrier (`running_gateway`) and talks to it with httpx or,
where the request must be malformed in time (slow or truncated bodies), with raw asyncio streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from voicecall.calls.model import CallRecord, EndReason
from voicecall.gateway.runtime import Runtime
from voicecall.security.limits import (
    BODY_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_IN_FLIGHT_PER_CLIENT,
    MAX_READS_PER_CLIENT,
    ReadSlot,
    body_deadline_s,
)
from voicecall.server.webhook import WebhookApp
from voicecall.service import apply as service_apply
from voicecall.testing.gateway import running_gateway

OPEN = {"inboundPolicy": "open"}
CALLER = "+15551230001"
GATEWAY_NUMBER = "+15559870001"
DEFAULT_GREETING = "Hello! How can I help you today?"


# -- helpers -------------------------------------------------------------------------------------
def inbound(kind: str, pcid: str, **fields: Any) -> dict[str, Any]:
    """A normalized mock event for an inbound call known to the carrier as `pcid`."""
    return {"type": kind, "callId": pcid, "providerCallId": pcid, "direction": "inbound",
            "from": CALLER, "to": GATEWAY_NUMBER, **fields}


def body_of(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


async def post(runtime: Runtime, content: bytes | dict[str, Any], *, url: str | None = None,
               client: httpx.AsyncClient | None = None) -> httpx.Response:
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    headers = {"content-type": "application/json"}
    if client is not None:
        return await client.post(url or runtime.webhook_url, content=data, headers=headers)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.post(url or runtime.webhook_url, content=data, headers=headers)


async def status(runtime: Runtime, call_id: str) -> dict[str, Any]:
    return await runtime.api.call("voicecall.status", {"callId": call_id})


async def live_calls(runtime: Runtime) -> list[dict[str, Any]]:
    result = await runtime.api.call("voicecall.status", {})
    calls: list[dict[str, Any]] = result["calls"]
    return calls


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


async def last_seq(runtime: Runtime) -> int:
    entries = await runtime.store.last_log(1)
    return entries[-1].seq if entries else 0


def webhook_app(runtime: Runtime) -> WebhookApp:
    """The WebhookApp the running gateway serves (to observe its limiter and settings)."""
    for server, _task in runtime._servers:
        app = server.config.app
        if isinstance(app, WebhookApp):
            return app
    raise AssertionError("the gateway serves no WebhookApp")


class RawRequest:
    """One HTTP/1.1 request written by hand over a raw socket, so the body can stall or stop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str, *, headers: dict[str, str], first_bytes: bytes = b"") -> RawRequest:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        head = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode("latin-1") + first_bytes)
        await writer.drain()
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def status(self, timeout_s: float) -> int:
        line = await asyncio.wait_for(self.reader.readline(), timeout_s)
        assert line.startswith(b"HTTP/1.1 "), line
        return int(line.split()[1])

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


# -- routing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/voice/webhook-evil", "/voice", "/voice/webhook/extra"])
async def test_lookalike_paths_are_404_and_apply_nothing(tmp_path: Path, path: str) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        origin = runtime.webhook_url.removesuffix("/voice/webhook")
        response = await post(runtime, body_of(inbound("call.initiated", "pc-lookalike")),
                              url=origin + path)
        assert response.status_code == 404
        assert await live_calls(runtime) == []
        assert await runtime.store.get("pc-lookalike") is None


async def test_trailing_slash_is_the_same_webhook_path(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        response = await post(runtime, body_of(inbound("call.initiated", "pc-slash")),
                              url=runtime.webhook_url + "/")
        assert response.status_code == 200
        assert response.json() == {"ok": True, "events": 1}
        assert (await status(runtime, "pc-slash"))["found"] is True


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_non_post_methods_on_webhook_path_are_405(tmp_path: Path, method: str) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime, httpx.AsyncClient(trust_env=False) as http:
        response = await http.request(method, runtime.webhook_url,
                                      content=body_of(inbound("call.initiated", "pc-405")))
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert await runtime.store.get("pc-405") is None


async def test_health_answers_200(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as runtime, httpx.AsyncClient(trust_env=False) as http:
        origin = runtime.webhook_url.removesuffix("/voice/webhook")
        response = await http.get(origin + "/health")
        assert response.status_code == 200
        assert response.json() == {"ok": True, "provider": "mock"}


# -- body limits ----------------------------------------------------------------------------------
async def test_oversized_content_length_is_413_before_the_body_is_sent(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        # Only the headers go out: the gateway must refuse on Content-Length alone, not wait for
        # (or read) the 64 KiB + 1 bytes it announced.
        request = await RawRequest.open(runtime.webhook_url, headers={
            "Content-Type": "application/json", "Content-Length": str(MAX_BODY_BYTES + 1)})
        try:
            assert await request.status(timeout_s=2.0) == 413
        finally:
            await request.close()
        assert await live_calls(runtime) == []


async def test_oversized_honest_body_is_413_and_applies_nothing(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        payload = {"events": [inbound("call.initiated", "pc-big")], "pad": "x" * MAX_BODY_BYTES}
        response = await post(runtime, payload)
        assert response.status_code == 413
        assert await live_calls(runtime) == []
        assert await runtime.store.get("pc-big") is None
        assert await last_seq(runtime) == 0


async def test_oversized_chunked_body_is_413_and_applies_nothing(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime, \
            httpx.AsyncClient(trust_env=False, timeout=10) as http:
        payload = json.dumps({"events": [inbound("call.initiated", "pc-chunked")],
                              "pad": "x" * MAX_BODY_BYTES}).encode()

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 8192):
                yield payload[start:start + 8192]

        response = await http.post(runtime.webhook_url, content=chunks(),
                                   headers={"content-type": "application/json"})
        assert response.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.request.headers
        assert response.status_code == 413
        assert await live_calls(runtime) == []
        assert await runtime.store.get("pc-chunked") is None


async def test_body_of_exactly_64_kib_is_accepted(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        head = json.dumps({"events": [inbound("call.initiated", "pc-edge")], "pad": ""}).encode()
        payload = head[:-2] + b"x" * (MAX_BODY_BYTES - len(head)) + head[-2:]
        assert len(payload) == MAX_BODY_BYTES
        response = await post(runtime, payload)
        assert response.status_code == 200
        assert (await status(runtime, "pc-edge"))["found"] is True


async def test_stalled_body_gets_408_after_its_deadline(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        assert webhook_app(runtime).body_timeout_s == BODY_TIMEOUT_S == 5.0
        payload = body_of(inbound("call.initiated", "pc-stall"))
        # A declared length shortens the deadline to what the minimum rate needs (D60).
        deadline = body_deadline_s(len(payload), BODY_TIMEOUT_S)
        assert 2.0 <= deadline < BODY_TIMEOUT_S
        started = time.monotonic()
        request = await RawRequest.open(runtime.webhook_url, first_bytes=payload[:10], headers={
            "Content-Type": "application/json", "Content-Length": str(len(payload))})
        try:
            code = await request.status(timeout_s=BODY_TIMEOUT_S + 3)
        finally:
            await request.close()
        elapsed = time.monotonic() - started
        assert code == 408
        assert deadline - 0.5 <= elapsed < deadline + 2, elapsed
        assert await runtime.store.get("pc-stall") is None


async def test_body_truncated_by_client_disconnect_is_not_applied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        reads = webhook_app(runtime).reads
        handled = asyncio.Event()
        release = reads.release

        def signalling_release(slot: ReadSlot) -> None:
            release(slot)
            handled.set()

        monkeypatch.setattr(reads, "release", signalling_release)
        payload = body_of(inbound("call.initiated", "pc-truncated"))
        # The client announces more bytes than it sends and then goes away: the request never
        # completed, so nothing in it may take effect.
        request = await RawRequest.open(runtime.webhook_url, first_bytes=payload, headers={
            "Content-Type": "application/json", "Content-Length": str(len(payload) + 64)})
        await request.close()
        await asyncio.wait_for(handled.wait(), BODY_TIMEOUT_S + 2)  # the server is done with it
        assert await runtime.store.get("pc-truncated") is None
        assert await live_calls(runtime) == []


async def test_a_request_over_the_read_budget_takes_the_oldest_slow_readers_slot(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        app = webhook_app(runtime)
        assert app.limiter.per_key == MAX_IN_FLIGHT_PER_CLIENT == 8
        assert app.reads.per_key == MAX_READS_PER_CLIENT == 64
        bodies = [json.dumps({"events": [], "n": i}).encode() for i in range(MAX_READS_PER_CLIENT)]
        held = []
        for b in bodies:  # one at a time, so the first is the oldest
            held.append(await RawRequest.open(runtime.webhook_url, first_bytes=b[:5], headers={
                "Content-Type": "application/json", "Content-Length": str(len(b))}))

            async def admitted(count: int = len(held)) -> bool:
                return len(app.reads) == count

            await wait_until(admitted, what="every slow request reading its body")
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
                after = await post(runtime, body_of(inbound("call.initiated", "pc-after")), client=http)
                assert after.status_code == 200
                assert (await status(runtime, "pc-after"))["found"] is True
            assert await held[0].status(timeout_s=3) == 408  # the oldest lost its slot
            assert app.reads.evicted == 1
            codes = []
            for request, b in zip(held[1:], bodies[1:], strict=True):
                await request.send(b[5:])
                codes.append(await request.status(timeout_s=3))
            assert codes == [200] * (MAX_READS_PER_CLIENT - 1)
        finally:
            for request in held:
                await request.close()


# -- parsing --------------------------------------------------------------------------------------
async def test_malformed_json_is_400(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        response = await post(runtime, b'{"events": [')
        assert response.status_code == 400
        assert "invalid JSON" in response.text


async def test_event_without_call_id_is_400_and_applies_nothing(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        good = inbound("call.initiated", "pc-good")
        bad = {k: v for k, v in inbound("call.initiated", "pc-bad").items() if k != "callId"}
        response = await post(runtime, body_of(good, bad))
        assert response.status_code == 400
        assert "callId is required" in response.text
        assert await live_calls(runtime) == []
        # A 400 is not remembered as seen: the corrected delivery is applied.
        fixed = await post(runtime, body_of(good))
        assert fixed.status_code == 200
        assert (await status(runtime, "pc-good"))["found"] is True


async def test_unknown_event_types_are_ignored_with_200(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        response = await post(runtime, body_of(inbound("call.teleported", "pc-unknown"),
                                                inbound("call.initiated", "pc-known")))
        assert response.status_code == 200
        assert response.json() == {"ok": True, "events": 1}
        assert [c["providerCallId"] for c in await live_calls(runtime)] == ["pc-known"]


# -- a mock inbound call driven by webhooks ---------------------------------------------------------
async def test_inbound_call_lifecycle_through_webhooks(tmp_path: Path) -> None:
    pcid = "pc-inbound"
    async with running_gateway(tmp_path, OPEN) as runtime:
        response = await post(runtime, body_of(inbound("call.initiated", pcid)))
        assert response.status_code == 200
        found = await status(runtime, pcid)
        assert found["found"] is True
        call = found["call"]
        assert (call["direction"], call["from"], call["to"]) == ("inbound", CALLER, GATEWAY_NUMBER)
        assert call["providerCallId"] == pcid
        assert call["state"] == "ringing"
        call_id = call["callId"]
        stored = await runtime.store.get(call_id)
        assert stored is not None and stored.provider_call_id == pcid

        assert (await post(runtime, body_of(inbound("call.answered", pcid)))).status_code == 200
        assert "answeredAt" in (await status(runtime, call_id))["call"]

        assert (await post(runtime, body_of(inbound("call.speech", pcid, transcript="I need help",
                                                     isFinal=True)))).status_code == 200
        transcript = (await status(runtime, call_id))["call"]["transcript"]
        assert [(e["speaker"], e["text"]) for e in transcript if e["speaker"] == "user"] == [
            ("user", "I need help")]

        assert (await post(runtime, body_of(inbound("call.ended", pcid, reason="hangup-user")))
                ).status_code == 200
        ended = (await status(runtime, call_id))["call"]
        assert ended["state"] == "hangup-user"
        assert ended["endReason"] == "hangup-user"
        assert await live_calls(runtime) == []
        stored = await runtime.store.get(call_id)
        assert stored is not None and stored.end_reason is EndReason.HANGUP_USER


async def test_inbound_call_answered_by_webhook_speaks_the_default_greeting(tmp_path: Path) -> None:
    pcid = "pc-greet"
    async with running_gateway(tmp_path, OPEN) as runtime:
        assert (await post(runtime, body_of(inbound("call.initiated", pcid)))).status_code == 200
        assert (await post(runtime, body_of(inbound("call.answered", pcid)))).status_code == 200

        async def greeting_settled() -> bool:
            call = (await status(runtime, pcid))["call"]
            # Spoken: initialMessageSpokenAt is recorded. Failed: the call drops to listening.
            return "initialMessageSpokenAt" in call["metadata"] or call["state"] == "listening"

        await wait_until(greeting_settled, what="the greeting to be played or to fail")
        call = (await status(runtime, pcid))["call"]
        assert [(e["speaker"], e["text"]) for e in call["transcript"]] == [("bot", DEFAULT_GREETING)]


# -- replay -----------------------------------------------------------------------------------------
async def test_identical_body_is_a_replay_even_after_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pcid = "pc-replay"
    speech = body_of(inbound("call.speech", pcid, transcript="only once", isFinal=True))

    def count_applied(runtime: Runtime) -> list[Any]:
        applied: list[Any] = []
        apply_one = service_apply.apply_one

        async def counting(service: Any, event: Any) -> Any:
            applied.append(event)
            return await apply_one(service, event)

        monkeypatch.setattr(service_apply, "apply_one", counting)
        return applied

    async with running_gateway(tmp_path, OPEN) as runtime:
        assert (await post(runtime, body_of(inbound("call.initiated", pcid)))).status_code == 200
        applied = count_applied(runtime)
        first = await post(runtime, speech)
        assert first.status_code == 200
        assert len(applied) == 1
        seq = await last_seq(runtime)

        second = await post(runtime, speech)
        assert (second.status_code, second.content) == (first.status_code, first.content)
        assert len(applied) == 1, "the replayed body reached the call service"
        assert await last_seq(runtime) == seq
        call = (await status(runtime, pcid))["call"]
        assert [e["text"] for e in call["transcript"]] == ["only once"]

    async with running_gateway(tmp_path, OPEN) as runtime:
        applied = count_applied(runtime)
        seq = await last_seq(runtime)
        third = await post(runtime, speech)
        assert (third.status_code, third.content) == (first.status_code, first.content)
        assert applied == []
        assert await last_seq(runtime) == seq
        call = (await status(runtime, pcid))["call"]
        assert [e["text"] for e in call["transcript"]] == ["only once"]


# -- inbound policy -----------------------------------------------------------------------------------
async def test_rejected_inbound_caller_gets_no_record_and_exactly_one_hangup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"inboundPolicy": "allowlist", "allowFrom": ["+15550001111"]}
    async with running_gateway(tmp_path, config) as runtime:
        hangups: list[tuple[str | None, EndReason]] = []
        hangup = runtime.provider.hangup_call

        async def counting_hangup(call: CallRecord, reason: EndReason) -> None:
            hangups.append((call.provider_call_id, reason))
            await hangup(call, reason)

        monkeypatch.setattr(runtime.provider, "hangup_call", counting_hangup)
        stranger = "pc-stranger"
        bodies = [body_of({**inbound("call.initiated", stranger), "from": "+15557770000",
                           "id": f"evt-{n}"}) for n in range(3)]
        assert len(set(bodies)) == 3
        responses = await asyncio.gather(*(post(runtime, b) for b in bodies))
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert hangups == [(stranger, EndReason.HANGUP_BOT)]
        assert (await status(runtime, stranger)) == {"found": False}
        assert await runtime.store.get(stranger) is None

        friend = {**inbound("call.initiated", "pc-friend"), "from": "+1 (555) 000-1111"}
        assert (await post(runtime, body_of(friend))).status_code == 200
        assert [c["providerCallId"] for c in await live_calls(runtime)] == ["pc-friend"]
        assert len(hangups) == 1


# -- persist before ack -----------------------------------------------------------------------------
def replay_key(body: bytes) -> str:
    return "mock:" + hashlib.sha256(body).hexdigest()


async def test_store_failure_answers_500_and_forgets_the_replay_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        body = body_of(inbound("call.initiated", "pc-disk"))
        attempts: list[Any] = []
        apply_one = service_apply.apply_one

        async def counting(service: Any, event: Any) -> Any:
            attempts.append(event)
            return await apply_one(service, event)

        monkeypatch.setattr(service_apply, "apply_one", counting)

        async def broken_save(*args: Any, **kwargs: Any) -> None:
            raise OSError("disk full")

        with monkeypatch.context() as patch:
            patch.setattr(runtime.store, "save", broken_save)
            failed = await post(runtime, body)
        assert failed.status_code == 500
        assert len(attempts) == 1
        assert await runtime.store.get("pc-disk") is None

        retry = await post(runtime, body)
        assert retry.status_code == 200
        assert len(attempts) == 2, "the retry was taken for a replay: its key was not forgotten"
        # ...and from now on it is remembered as seen.
        assert await runtime.store.lookup_replay(replay_key(body)) is not None


async def test_carrier_retry_after_store_failure_is_persisted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        body = body_of(inbound("call.initiated", "pc-retry"))

        async def broken_save(*args: Any, **kwargs: Any) -> None:
            raise OSError("disk full")

        with monkeypatch.context() as patch:
            patch.setattr(runtime.store, "save", broken_save)
            assert (await post(runtime, body)).status_code == 500

        retry = await post(runtime, body)
        assert retry.status_code == 200
        # Acknowledged means durable: the call the retry created must be in the store.
        stored = await runtime.store.get("pc-retry")
        assert stored is not None
        assert stored.provider_call_id == "pc-retry"


async def test_a_webhook_whose_event_changes_nothing_still_records_its_reply(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, OPEN) as runtime:
        pcid = "pc-dup"
        assert (await post(runtime, body_of(inbound("call.initiated", pcid)))).status_code == 200
        event = inbound("call.speech", pcid, transcript="once", isFinal=True, id="evt-dup")
        assert (await post(runtime, body_of(event))).status_code == 200
        # The same event (same id, so the same dedupe key) in a different body: not a replay of
        # the request, and applying it changes nothing; the reply is recorded all the same.
        other = json.dumps({"events": [event], "note": "resent"}).encode()
        first = await post(runtime, other)
        assert first.status_code == 200
        assert await runtime.store.lookup_replay(replay_key(other)) == {
            "status": 200, "headers": {"content-type": "application/json"}, "body": first.text}
        assert [e["text"] for e in (await status(runtime, pcid))["call"]["transcript"]] == ["once"]
