"""Malformed webhook requests: bodies no carrier sends, and framing no HTTP client sends.

Bounded and deterministic for a seed, so a failure can be replayed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import NamedTuple


class Malformed(NamedTuple):
    name: str
    content_type: str | None
    body: bytes


def malformed_bodies(seed: int = 20, random_count: int = 16) -> Iterator[Malformed]:
    """Named bodies (each under the 64 KiB cap unless it is about the cap), then random bytes."""
    form, js = "application/x-www-form-urlencoded", "application/json"
    fixed = [
        ("empty", form, b""),
        ("invalid utf-8", form, b"CallSid=\xff\xfe&From=\xc3\x28"),
        ("lone surrogate escape", js, b'{"events": [{"type": "call.initiated", "callId": "\\ud800"}]}'),
        ("10,000 fields", form, b"&".join(b"f%d=%d" % (i, i) for i in range(10_000))),
        ("repeated keys", form, b"CallSid=CA1&CallSid=CA2&CallStatus=ringing&CallStatus=busy"),
        ("bad percent-encoding", form, b"CallSid=%zz%4&From=%&To=%%%"),
        ("nul bytes", form, b"CallSid=\x00\x00&\x00=\x00"),
        ("one 60 KiB field", form, b"SpeechResult=" + b"a" * 60_000),
        ("over the cap", form, b"x=" + b"a" * 70_000),
        ("deep JSON", js, b"[" * 20_000 + b"]" * 20_000),
        ("JSON NaN", js, b'{"events": [{"type": "call.speech", "callId": "c", "confidence": NaN}]}'),
        ("JSON 1e999", js, b'{"events": [{"type": "call.speech", "callId": "c", "confidence": 1e999}]}'),
        ("events not a list", js, b'{"events": "x"}'),
        ("events of numbers", js, b'{"events": [1, 2, 3]}'),
        ("wrong content type", "text/plain", b"CallSid=CA1&CallStatus=ringing"),
        ("multipart junk", "multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: x\r\n\r\n--"),
        ("no content type", None, b"\x00\x01\x02"),
    ]
    for name, content_type, body in fixed:
        yield Malformed(name, content_type, body)
    rng = random.Random(seed)
    for i in range(random_count):
        size = rng.choice((1, 7, 64, 512, 4096, 32_768))
        yield Malformed(f"random bytes {i} ({size} B)", rng.choice((form, js, None)), rng.randbytes(size))


def malformed_framing(path: str, host: str) -> Iterator[tuple[str, bytes]]:
    """Raw HTTP/1.1 requests with absurd or broken lengths (each a complete write)."""
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-Twilio-Signature: x\r\n"
    yield "absurd Content-Length", (head + "Content-Length: 99999999999999999999\r\n\r\nab").encode()
    yield "negative Content-Length", (head + "Content-Length: -5\r\n\r\nab").encode()
    yield "non-numeric Content-Length", (head + "Content-Length: ten\r\n\r\nab").encode()
    yield "two Content-Lengths", (head + "Content-Length: 2\r\nContent-Length: 3\r\n\r\nab").encode()
    yield "bad chunk size", (head + "Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n").encode()
    yield "huge chunk size", (head + "Transfer-Encoding: chunked\r\n\r\nffffffffffff\r\nab").encode()
    yield "chunked and Content-Length", (head + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"
                                         "\r\n2\r\nab\r\n0\r\n\r\n").encode()
    yield "header without a colon", (head + "Broken header\r\nContent-Length: 0\r\n\r\n").encode()
    yield "65 KiB header", (head + "X-Pad: " + "a" * 66_000 + "\r\nContent-Length: 0\r\n\r\n").encode()
