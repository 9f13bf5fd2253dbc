"""Shared pieces of the adversarial suite: gateways on each carrier, genuine signing with the
carrier's official SDK, and raw sockets for requests no HTTP client would send."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from tests.integration.conftest import speech  # noqa: F401 (the fake TTS for streaming gateways)
from tests.integration.test_media_guards import (  # noqa: F401 (streaming gateways on the simulator)
    make_gateway,
    sim,
)
from voicecall.gateway.runtime import Runtime
from voicecall.testing.gateway import running_gateway

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "adversarial-auth-token"
OUR_NUMBER = "+15550000000"
CALLER = "+15557770001"


def twilio_config(**extra: Any) -> dict[str, Any]:
    """A Twilio gateway whose REST API points nowhere: only its webhooks are exercised."""
    return {"provider": "twilio", "fromNumber": OUR_NUMBER, "inboundPolicy": "open",
            "twilio": {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN,
                       "apiBaseUrl": "http://127.0.0.1:9"}, **extra}


@pytest.fixture
async def twilio_gateway(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with running_gateway(tmp_path, twilio_config()) as gateway:
        yield gateway


@pytest.fixture
async def mock_gateway(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with running_gateway(tmp_path, {"inboundPolicy": "open"}) as gateway:
        yield gateway


def signed_url(gateway: Runtime, query: dict[str, str] | None = None) -> str:
    """The webhook URL as Twilio would request it (the gateway rebuilds it as https, D29)."""
    parts = urlsplit(gateway.webhook_url)
    url = f"https://{parts.hostname}:{parts.port}{parts.path}"
    return f"{url}?{urlencode(query)}" if query else url


def twilio_signature(url: str, params: dict[str, str]) -> str:
    """`X-Twilio-Signature` as Twilio's official SDK computes it."""
    signature: str = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    return signature


def status_params(call_sid: str, status: str = "completed", **extra: str) -> dict[str, str]:
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": call_sid,
            "CallStatus": status, "Direction": "outbound-api", "From": OUR_NUMBER, "To": CALLER,
            **extra}


async def post_signed(gateway: Runtime, url: str, params: dict[str, str], *,
                      signature: str | None = None, body: bytes | None = None,
                      client: httpx.AsyncClient | None = None) -> httpx.Response:
    """POST a form webhook to the gateway with its genuine (or the given) signature; `url` is
    the signed URL, whose path and query are requested on the gateway's own address."""
    parts = urlsplit(url)
    target = f"{gateway.webhook_url.split('?')[0]}{'?' + parts.query if parts.query else ''}"
    headers = {"x-twilio-signature": signature or twilio_signature(url, params),
               "content-type": "application/x-www-form-urlencoded"}
    content = body if body is not None else urlencode(params).encode()
    if client is not None:
        return await client.post(target, content=content, headers=headers)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.post(target, content=content, headers=headers)


def mock_body(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


class RawConnection:
    """A hand-written HTTP/1.1 exchange over a raw socket, so headers or bodies can stall."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def status(self, timeout_s: float) -> int | None:
        """The response status, or None when the server closed without answering."""
        line = await asyncio.wait_for(self.reader.readline(), timeout_s)
        if not line:
            return None
        return int(line.split()[1])

    async def closed_by_server(self, timeout_s: float) -> bool:
        """True when the server ends the connection within `timeout_s` (it may answer first)."""
        try:
            async with asyncio.timeout(timeout_s):
                while await self.reader.read(4096):
                    pass
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            return True
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
