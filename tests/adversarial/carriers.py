"""The carriers the adversarial suite and `bench/adversarial.py` run against.

Each carrier is one `Carrier` entry in `CARRIERS`: its gateway config (REST pointed at nothing:
only the webhook side is probed), how to build its genuine webhooks (signed with the carrier's
official SDK), and the forgeries derived from a genuine one, every one of which must be refused.
A new carrier adds itself here with its own entry; every probe then runs against it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlencode, urlsplit

from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

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


def _twilio_forgeries(genuine: Webhook) -> Iterator[tuple[str, Webhook]]:
    """Every single-bit flip of the signature, each parameter changed, dropped or renamed,
    re-arrangements that sign the same (a name taking its value's first character, a value
    swallowing the next pair, the first pair moved onto the URL), an added parameter, the query
    changed, another host."""
    headers, body = genuine.headers, genuine.body
    raw = base64.b64decode(headers["x-twilio-signature"])
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield f"signature bit {bit}", genuine._replace(
            headers={**headers, "x-twilio-signature": base64.b64encode(bytes(flipped)).decode()})
    pairs = [tuple(p.split("=", 1)) for p in body.decode().split("&")]

    def form(items: list[tuple[str, ...]]) -> bytes:
        return "&".join(f"{k}={v}" for k, v in items).encode()

    for i, (name, value) in enumerate(pairs):
        yield f"parameter {name} changed", genuine._replace(
            body=form([*pairs[:i], (name, value + "0"), *pairs[i + 1:]]))
        yield f"parameter {name} dropped", genuine._replace(body=form(pairs[:i] + pairs[i + 1:]))
        yield f"parameter {name} renamed", genuine._replace(
            body=form([*pairs[:i], (name + "X", value), *pairs[i + 1:]]))
    # Re-arrangements that keep the signed string (and so the signature and the replay key).
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
    yield "parameter added", genuine._replace(body=body + b"&Extra=1")
    yield "second value added", genuine._replace(body=body + b"&CallStatus=completed")
    parts = urlsplit(genuine.url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    yield "query added", genuine._replace(url=f"{genuine.url}{'&' if parts.query else '?'}x=1")
    if parts.query:
        yield "query dropped", genuine._replace(url=base)
        yield "query changed", genuine._replace(url=f"{base}?{parts.query}0")
    yield "other host", genuine._replace(headers={**headers, "host": "attacker.example"})
    yield "other port", genuine._replace(headers={**headers, "host": f"{parts.hostname}:1"})
    yield "no signature", genuine._replace(
        headers={k: v for k, v in headers.items() if k != "x-twilio-signature"})
    yield "empty signature", genuine._replace(headers={**headers, "x-twilio-signature": ""})


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
    forgeries=_twilio_forgeries, call_id=_twilio_sid, sign=_twilio_sign,
)

CARRIERS: dict[str, Carrier] = {c.name: c for c in (MOCK, TWILIO)}
"""Every carrier the probes run against; a new carrier adds its entry here."""
