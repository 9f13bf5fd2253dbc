"""Every carrier (tests/adversarial/carriers.py) against malformed bodies and framing, unsigned
and genuinely signed, and against forged copies of a genuine webhook: never a 5xx, never a
forgery accepted, nothing applied, and genuine webhooks still answered afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.adversarial.carriers import CARRIERS, Carrier, gateway_config, rearrangements
from tests.adversarial.conftest import RawConnection
from tests.adversarial.corpus import malformed_bodies, malformed_framing
from voicecall.gateway.runtime import Runtime
from voicecall.testing.gateway import running_gateway


@pytest.fixture(params=sorted(CARRIERS))
def carrier(request: pytest.FixtureRequest) -> Carrier:
    return CARRIERS[request.param]


@pytest.fixture
async def gateway(tmp_path: Path, carrier: Carrier) -> AsyncIterator[Runtime]:
    async with gateway_config(carrier) as config, running_gateway(tmp_path, config) as runtime:
        yield runtime


async def assert_still_serving(gateway: Runtime, carrier: Carrier, http: httpx.AsyncClient) -> None:
    genuine = carrier.inbound_call(gateway.webhook_url, 1)
    response = await http.post(genuine.url, content=genuine.body, headers=genuine.headers)
    assert response.status_code == 200, response.text
    assert gateway.service.live(carrier.call_id(1)) is not None


async def test_malformed_bodies_unsigned_and_signed_get_no_5xx_and_change_nothing(
        gateway: Runtime, carrier: Carrier) -> None:
    query = urlsplit(carrier.inbound_call(gateway.webhook_url, 0).url).query
    target = gateway.webhook_url + (f"?{query}" if query else "")
    outcomes: dict[str, int] = {}
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        for case in malformed_bodies():
            base = {"content-type": case.content_type} if case.content_type else {}
            variants = {"bogus signature": {**base, "x-twilio-signature": "x"},
                        "genuine signature": {**base, **carrier.sign(gateway.webhook_url, query, case.body)}}
            for how, headers in variants.items():
                response = await http.post(target, content=case.body, headers=headers)
                outcomes[f"{case.name}, {how}"] = response.status_code
        assert {k: v for k, v in outcomes.items() if v >= 500} == {}
        if carrier.signed:  # nothing malformed verifies and parses into something to apply
            assert {k: v for k, v in outcomes.items() if v < 400} == {}
        assert gateway.service.active_calls() == []
        await assert_still_serving(gateway, carrier, http)


async def test_malformed_framing_is_refused_without_a_5xx(gateway: Runtime, carrier: Carrier) -> None:
    parts = urlsplit(gateway.webhook_url)
    outcomes: dict[str, int | None] = {}
    for name, raw in malformed_framing(parts.path, parts.netloc):
        conn = await RawConnection.open(gateway.webhook_url)
        try:
            await conn.send(raw)
            conn.writer.write_eof()  # nothing more comes: a body left short ends now, not at 408
            try:
                outcomes[name] = await conn.status(5)
            except (ConnectionError, OSError):
                outcomes[name] = None
        finally:
            await conn.close()
    assert all(code is None or 400 <= code < 500 for code in outcomes.values()), outcomes
    assert gateway.service.active_calls() == []
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        await assert_still_serving(gateway, carrier, http)


SIGNED = sorted(name for name, c in CARRIERS.items() if c.signed)


@pytest.mark.parametrize("carrier", SIGNED, indirect=True)
async def test_no_forgery_of_a_genuine_webhook_is_accepted(gateway: Runtime, carrier: Carrier) -> None:
    genuine = carrier.inbound_call(gateway.webhook_url, 7)
    accepted: list[str] = []
    count = 0
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        for name, forged in carrier.forgeries(genuine):
            count += 1
            response = await http.post(forged.url, content=forged.body, headers=forged.headers)
            if response.status_code < 400:
                accepted.append(f"{name}: {response.status_code}")
        assert accepted == []
        assert count > 160  # every bit of the signature, and more
        assert gateway.service.active_calls() == []
        await asyncio.sleep(0)
        response = await http.post(genuine.url, content=genuine.body, headers=genuine.headers)
        assert response.status_code == 200
        assert gateway.service.live(carrier.call_id(7)) is not None


@pytest.mark.parametrize("carrier", ["plivo"], indirect=True)
async def test_no_rearranged_copy_of_a_genuine_plivo_webhook_is_accepted(
        gateway: Runtime, carrier: Carrier) -> None:
    genuine = carrier.inbound_call(gateway.webhook_url, 7)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        accepted = [name for name, copy in rearrangements(genuine)
                    if (await http.post(copy.url, content=copy.body,
                                        headers=copy.headers)).status_code < 400]
    assert accepted == []
