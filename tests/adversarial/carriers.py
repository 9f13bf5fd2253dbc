"""The carriers the adversarial suite and `bench/adversarial.py` run against.

Each carrier is one `Carrier` entry in `CARRIERS`: its gateway config (REST pointed at nothing,
or at a local API that accepts every command when answering a webhook needs one: only the webhook
side is probed), how to build its genuine webhooks (signed with the carrier's official SDK, or
for Telnyx, whose SDK only verifies, with PyNaCl), and the forgeries derived from a genuine one,
every one of which must be refused. A new carrier adds itself here with its own entry; every
probe then runs against it (`gateway_config` gives the config to run it with).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import secrets
import string
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlencode, urlsplit
from uuid import uuid4

from nacl.signing import SigningKey
from plivo.utils.signature_v3 import (
    construct_post_url,
    get_signature_v3,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from voicecall.testing.loopback import LoopbackServer

CALLER = "+15557770001"
OUR_NUMBER = "+15550000000"


class Webhook(NamedTuple):
    """One request to the gateway's webhook: its full URL, headers and body."""

    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Carrier:
    name: str
    config: dict[str, Any]
    """The voice-call config (merged over a fast mock setup with loopback ports)."""
    signed: bool
    """Whether the carrier signs its webhooks (forgeries are then probed)."""
    streams: bool
    """Whether the carrier has media streams (the media endpoint is then probed)."""
    inbound_call: Callable[[str, int], Webhook]
    """`(webhook_url, n)`: the webhook that starts inbound call number `n`."""
    caller_speech: Callable[[str, int, str], Webhook]
    """`(webhook_url, n, text)`: the caller of call `n` said `text` (a transcript entry)."""
    forgeries: Callable[[Webhook], Iterator[tuple[str, Webhook]]]
    """Altered copies of a genuine webhook, each named by what was changed."""
    call_id: Callable[[int], str]
    """The carrier's id for call `n` (how `voicecall.status` finds it)."""
    sign: Callable[[str, str, bytes], dict[str, str]]
    """`(webhook_url, query, body)`: headers that make any body genuinely signed (none for an
    unsigned carrier), to probe what verified but malformed requests do."""
    answers_by_rest: bool = False
    """Whether answering a webhook sends REST commands (Telnyx answers an accepted caller with
    `answer`): its `apiBaseUrl` then points at a local API that accepts every command."""


def _on_gateway(webhook_url: str, signed_url: str) -> str:
    """`signed_url`'s path and query on the gateway's own address."""
    parts = urlsplit(signed_url)
    base = urlsplit(webhook_url)
    return f"{base.scheme}://{base.netloc}{parts.path}{'?' + parts.query if parts.query else ''}"


# -- mock ----------------------------------------------------------------------------------------
def _mock_pcid(n: int) -> str:
    return f"pc-adv-{n}"


def _mock_event(kind: str, n: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "callId": _mock_pcid(n), "providerCallId": _mock_pcid(n),
            "direction": "inbound", "from": CALLER, "to": OUR_NUMBER, **fields}


def _mock_webhook(url: str, *events: dict[str, Any]) -> Webhook:
    return Webhook(url, {"content-type": "application/json"},
                   json.dumps({"events": list(events)}).encode())


def _no_forgeries(_: Webhook) -> Iterator[tuple[str, Webhook]]:
    return iter(())


MOCK = Carrier(
    name="mock", config={"provider": "mock", "inboundPolicy": "open"}, signed=False, streams=False,
    sign=lambda url, query, body: {},
    inbound_call=lambda url, n: _mock_webhook(url, _mock_event("call.initiated", n)),
    caller_speech=lambda url, n, text: _mock_webhook(
        url, _mock_event("call.speech", n, transcript=text, isFinal=True)),
    forgeries=_no_forgeries, call_id=_mock_pcid,
)


# -- Twilio --------------------------------------------------------------------------------------
TWILIO_ACCOUNT = "AC" + "5" * 32
TWILIO_TOKEN = "adversarial-auth-token"


def _twilio_sid(n: int) -> str:
    return "CA" + f"{n:032x}"


def _twilio_signed_url(webhook_url: str, query: dict[str, str]) -> str:
    """The URL Twilio signs: the gateway rebuilds it as https with the Host header (D29)."""
    parts = urlsplit(webhook_url)
    url = f"https://{parts.netloc}{parts.path}"
    return f"{url}?{urlencode(query)}" if query else url


def _twilio_webhook(webhook_url: str, query: dict[str, str], params: dict[str, str]) -> Webhook:
    signed = _twilio_signed_url(webhook_url, query)
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(signed, params)
    return Webhook(_on_gateway(webhook_url, signed),
                   {"x-twilio-signature": signature,
                    "content-type": "application/x-www-form-urlencoded"},
                   urlencode(params).encode())


def _twilio_params(n: int, status: str, **extra: str) -> dict[str, str]:
    return {"AccountSid": TWILIO_ACCOUNT, "ApiVersion": "2010-04-01", "CallSid": _twilio_sid(n),
            "CallStatus": status, "Direction": "inbound", "From": CALLER, "To": OUR_NUMBER, **extra}


class _MultiDict(dict[str, list[str]]):
    """Repeated form keys, the way the SDK reads them (`getlist`)."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


def _twilio_sign(webhook_url: str, query: str, body: bytes) -> dict[str, str]:
    signed = _twilio_signed_url(webhook_url, {}) + (f"?{query}" if query else "")
    params = _MultiDict(parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    return {"x-twilio-signature": RequestValidator(TWILIO_TOKEN).compute_signature(signed, params)}


def _signature_bit_flips(genuine: Webhook, header: str) -> Iterator[tuple[str, Webhook]]:
    """The genuine webhook with each single bit of its base64 signature flipped."""
    raw = base64.b64decode(genuine.headers[header])
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield f"signature bit {bit}", genuine._replace(
            headers={**genuine.headers, header: base64.b64encode(bytes(flipped)).decode()})


def rearrangements(genuine: Webhook) -> Iterator[tuple[str, Webhook]]:
    """Copies that keep a `name + value`-concatenating signature's signed string (and so the
    signature and the replay key): a name taking its value's first character, a value
    swallowing the next pair, the first pair moved onto the URL (D61)."""
    pairs = [tuple(p.split("=", 1)) for p in genuine.body.decode().split("&")]

    def form(items: list[tuple[str, ...]]) -> bytes:
        return "&".join(f"{k}={v}" for k, v in items).encode()

    for i, (name, value) in enumerate(pairs):
        if len(value) > 1:
            yield f"{name} takes its value's first character", genuine._replace(
                body=form([*pairs[:i], (name + value[0], value[1:]), *pairs[i + 1:]]))
        if i + 1 < len(pairs):
            after, after_value = pairs[i + 1]
            yield f"{name} swallows {after}", genuine._replace(
                body=form([*pairs[:i], (name, value + after + after_value), *pairs[i + 2:]]))
    first, first_value = pairs[0]
    yield f"{first} moved onto the URL", genuine._replace(
        url=genuine.url + first + first_value, body=form(pairs[1:]))


def _form_forgeries(genuine: Webhook, signature_header: str, *,
                    port_signed: bool) -> Iterator[tuple[str, Webhook]]:
    """For carriers that sign the URL and form fields: every single-bit flip of the signature,
    each parameter changed, dropped or renamed, an added parameter or value, the query changed,
    another host (or port, when the signed URL has one), no signature, an empty one."""
    headers, body = genuine.headers, genuine.body
    yield from _signature_bit_flips(genuine, signature_header)
    pairs = [tuple(p.split("=", 1)) for p in body.decode().split("&")]

    def form(items: list[tuple[str, ...]]) -> bytes:
        return "&".join(f"{k}={v}" for k, v in items).encode()

    for i, (name, value) in enumerate(pairs):
        yield f"parameter {name} changed", genuine._replace(
            body=form([*pairs[:i], (name, value + "0"), *pairs[i + 1:]]))
        yield f"parameter {name} dropped", genuine._replace(body=form(pairs[:i] + pairs[i + 1:]))
        yield f"parameter {name} renamed", genuine._replace(
            body=form([*pairs[:i], (name + "X", value), *pairs[i + 1:]]))
    yield "parameter added", genuine._replace(body=body + b"&Extra=1")
    yield "second value added", genuine._replace(body=body + b"&CallStatus=completed")
    parts = urlsplit(genuine.url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    yield "query added", genuine._replace(url=f"{genuine.url}{'&' if parts.query else '?'}x=1")
    if parts.query:
        yield "query dropped", genuine._replace(url=base)
        yield "query changed", genuine._replace(url=f"{base}?{parts.query}0")
    yield "other host", genuine._replace(headers={**headers, "host": "attacker.example"})
    if port_signed:
        yield "other port", genuine._replace(headers={**headers, "host": f"{parts.hostname}:1"})
    yield "no signature", genuine._replace(
        headers={k: v for k, v in headers.items() if k != signature_header})
    yield "empty signature", genuine._replace(headers={**headers, signature_header: ""})


TWILIO = Carrier(
    name="twilio",
    config={"provider": "twilio", "fromNumber": OUR_NUMBER, "inboundPolicy": "open",
            "twilio": {"accountSid": TWILIO_ACCOUNT, "authToken": TWILIO_TOKEN,
                       "apiBaseUrl": "http://127.0.0.1:9"}},
    signed=True, streams=True,
    inbound_call=lambda url, n: _twilio_webhook(url, {}, _twilio_params(n, "ringing")),
    caller_speech=lambda url, n, text: _twilio_webhook(
        url, {"type": "listen"}, _twilio_params(n, "in-progress", SpeechResult=text,
                                                Confidence="0.9")),
    forgeries=lambda genuine: itertools.chain(
        _form_forgeries(genuine, "x-twilio-signature", port_signed=True), rearrangements(genuine)),
    call_id=_twilio_sid,
    sign=_twilio_sign,
)


# -- Plivo ---------------------------------------------------------------------------------------
PLIVO_AUTH_ID = "MA" + "A" * 18
PLIVO_TOKEN = "adversarial-plivo-auth-token"
PLIVO_SIGNATURE = "x-plivo-signature-v3"
PLIVO_NONCE = "x-plivo-signature-v3-nonce"


def _plivo_uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _plivo_params(n: int, **extra: str) -> dict[str, str]:
    """An answered inbound call's callback fields (Plivo gives numbers as digits)."""
    return {"CallUUID": _plivo_uuid(n), "CallStatus": "in-progress", "Direction": "inbound",
            "From": CALLER.lstrip("+"), "To": OUR_NUMBER.lstrip("+"), **extra}


def _plivo_signature(url: str, params: dict[str, str | list[str]], nonce: str) -> str:
    """`X-Plivo-Signature-V3` as Plivo's official SDK computes it."""
    base = construct_post_url(url, dict(params)).decode("utf-8")
    return str(get_signature_v3(PLIVO_TOKEN.encode(), base, nonce.encode()).decode())


def _plivo_signed_url(webhook_url: str, query: dict[str, str]) -> str:
    """The URL Plivo signs: the gateway rebuilds it as https with the Host header's name and no
    port (D29)."""
    parts = urlsplit(webhook_url)
    url = f"https://{parts.hostname}{parts.path}"
    return f"{url}?{urlencode(query)}" if query else url


def _plivo_nonce() -> str:
    return "".join(secrets.choice(string.digits) for _ in range(20))


def _plivo_webhook(webhook_url: str, query: dict[str, str], params: dict[str, str]) -> Webhook:
    signed, nonce = _plivo_signed_url(webhook_url, query), _plivo_nonce()
    return Webhook(_on_gateway(webhook_url, signed),
                   {PLIVO_SIGNATURE: _plivo_signature(signed, dict(params), nonce), PLIVO_NONCE: nonce,
                    "content-type": "application/x-www-form-urlencoded"},
                   urlencode(params).encode())


def _plivo_sign(webhook_url: str, query: str, body: bytes) -> dict[str, str]:
    signed = _plivo_signed_url(webhook_url, {}) + (f"?{query}" if query else "")
    params: dict[str, str | list[str]] = {
        k: v[0] if len(v) == 1 else v
        for k, v in parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True).items()}
    nonce = _plivo_nonce()
    return {PLIVO_SIGNATURE: _plivo_signature(signed, params, nonce), PLIVO_NONCE: nonce}


def _plivo_forgeries(genuine: Webhook) -> Iterator[tuple[str, Webhook]]:
    """The form forgeries (the URL Plivo signs has no port), the re-arranged copies (D67), and
    the genuine signature under another nonce or none."""
    yield from _form_forgeries(genuine, PLIVO_SIGNATURE, port_signed=False)
    yield from rearrangements(genuine)
    nonce = genuine.headers[PLIVO_NONCE]
    yield "nonce changed", genuine._replace(
        headers={**genuine.headers, PLIVO_NONCE: nonce[:-1] + ("1" if nonce[-1] != "1" else "2")})
    yield "no nonce", genuine._replace(
        headers={k: v for k, v in genuine.headers.items() if k != PLIVO_NONCE})


PLIVO = Carrier(
    name="plivo",
    config={"provider": "plivo", "fromNumber": OUR_NUMBER, "inboundPolicy": "open",
            "plivo": {"authId": PLIVO_AUTH_ID, "authToken": PLIVO_TOKEN,
                      "apiBaseUrl": "http://127.0.0.1:9"}},
    signed=True, streams=True,
    inbound_call=lambda url, n: _plivo_webhook(url, {}, _plivo_params(n)),
    caller_speech=lambda url, n, text: _plivo_webhook(
        url, {"type": "listen"}, _plivo_params(n, InputType="speech", Speech=text,
                                               SpeechConfidenceScore="0.9")),
    forgeries=_plivo_forgeries, call_id=_plivo_uuid, sign=_plivo_sign,
)


# -- Telnyx --------------------------------------------------------------------------------------
TELNYX_KEY = SigningKey(bytes(range(32)))
"""The account's webhook signing key (PyNaCl: Telnyx's SDK verifies but does not sign)."""
TELNYX_PUBLIC_KEY = base64.b64encode(bytes(TELNYX_KEY.verify_key)).decode()
TELNYX_SIGNATURE = "telnyx-signature-ed25519"
TELNYX_TIMESTAMP = "telnyx-timestamp"


def _telnyx_pcid(n: int) -> str:
    return f"v3:adversarial-call-{n}"


def _telnyx_headers(body: bytes, timestamp: int | None = None,
                    key: SigningKey = TELNYX_KEY) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(ts.encode() + b"|" + body).signature
    return {TELNYX_SIGNATURE: base64.b64encode(signature).decode(), TELNYX_TIMESTAMP: ts}


def _telnyx_body(n: int, event_type: str, **payload: Any) -> bytes:
    return json.dumps({
        "data": {"record_type": "event", "id": str(uuid4()), "event_type": event_type,
                 "occurred_at": "2026-01-01T00:00:00.000000Z",
                 "payload": {"call_control_id": _telnyx_pcid(n), "call_leg_id": f"leg-{n}",
                             "call_session_id": f"session-{n}", "connection_id": "adversarial",
                             "from": CALLER, "to": OUR_NUMBER, "direction": "incoming",
                             "state": "parked", **payload}},
        "meta": {"attempt": 1, "delivered_to": "https://gateway.example/voice/webhook"},
    }).encode()


def _telnyx_webhook(webhook_url: str, body: bytes) -> Webhook:
    return Webhook(webhook_url, {**_telnyx_headers(body), "content-type": "application/json"}, body)


def _telnyx_forgeries(genuine: Webhook) -> Iterator[tuple[str, Webhook]]:
    """Every single-bit flip of the signature, each payload field changed or dropped, the event
    and its id changed, the timestamp moved, a signature by another key or from 301 s ago, and
    missing or empty headers."""
    headers, body = genuine.headers, genuine.body
    yield from _signature_bit_flips(genuine, TELNYX_SIGNATURE)
    envelope = json.loads(body)
    data = envelope["data"]

    def with_data(**changes: Any) -> bytes:
        return json.dumps({**envelope, "data": {**data, **changes}}).encode()

    for name, value in data["payload"].items():
        changed = {**data["payload"], name: f"{value}0"}
        yield f"payload {name} changed", genuine._replace(body=with_data(payload=changed))
        dropped = {k: v for k, v in data["payload"].items() if k != name}
        yield f"payload {name} dropped", genuine._replace(body=with_data(payload=dropped))
    yield "event type changed", genuine._replace(body=with_data(event_type="call.hangup"))
    yield "event id changed", genuine._replace(body=with_data(id=str(uuid4())))
    yield "attempt changed", genuine._replace(body=json.dumps({**envelope, "meta": {"attempt": 2}}).encode())
    yield "trailing space", genuine._replace(body=body + b" ")
    stamp = int(headers[TELNYX_TIMESTAMP])
    yield "timestamp moved", genuine._replace(headers={**headers, TELNYX_TIMESTAMP: str(stamp + 1)})
    yield "signed 301 s ago", genuine._replace(headers={**headers, **_telnyx_headers(body, stamp - 301)})
    yield "signed by another key", genuine._replace(
        headers={**headers, **_telnyx_headers(body, stamp, SigningKey(bytes(32)))})
    for name in (TELNYX_SIGNATURE, TELNYX_TIMESTAMP):
        yield f"no {name}", genuine._replace(headers={k: v for k, v in headers.items() if k != name})
        yield f"empty {name}", genuine._replace(headers={**headers, name: ""})


TELNYX = Carrier(
    name="telnyx",
    config={"provider": "telnyx", "fromNumber": OUR_NUMBER, "inboundPolicy": "open",
            "telnyx": {"apiKey": "adversarial-key", "connectionId": "adversarial",
                       "publicKey": TELNYX_PUBLIC_KEY, "apiBaseUrl": "http://127.0.0.1:9/v2"}},
    signed=True, streams=True, answers_by_rest=True,
    inbound_call=lambda url, n: _telnyx_webhook(url, _telnyx_body(n, "call.initiated")),
    caller_speech=lambda url, n, text: _telnyx_webhook(url, _telnyx_body(
        n, "call.transcription", state="answered", transcription_data={
            "transcript": text, "is_final": True, "confidence": 0.9,
            "transcription_track": "inbound"})),
    forgeries=_telnyx_forgeries, call_id=_telnyx_pcid,
    sign=lambda url, query, body: _telnyx_headers(body),
)

CARRIERS: dict[str, Carrier] = {c.name: c for c in (MOCK, TWILIO, PLIVO, TELNYX)}
"""Every carrier the probes run against; a new carrier adds its entry here."""


async def _accept_command(request: Request) -> JSONResponse:
    """Any REST command succeeds (what it would do to a call is not what the probes look at)."""
    return JSONResponse({"data": {"result": "ok"}})


@contextlib.asynccontextmanager
async def gateway_config(carrier: Carrier) -> AsyncIterator[dict[str, Any]]:
    """`carrier.config`, with its `apiBaseUrl` on a local API that accepts every command while
    the context lasts when answering its webhooks sends REST commands."""
    if not carrier.answers_by_rest:
        yield carrier.config
        return
    server = LoopbackServer()
    app = Starlette(routes=[Route("/{path:path}", _accept_command, methods=["GET", "POST", "DELETE"])])
    url = await server.start(app)
    try:
        block = carrier.config[carrier.name]
        suffix = urlsplit(block["apiBaseUrl"]).path
        yield {**carrier.config, carrier.name: {**block, "apiBaseUrl": f"{url}{suffix}"}}
    finally:
        await server.stop()
