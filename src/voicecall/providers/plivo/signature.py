"""Plivo webhook signatures: V3 (`X-Plivo-Signature-V3` + `-V3-Nonce`), else V2.

V3 signs, with HMAC-SHA256 keyed by the auth token, `<base string>.<nonce>`, where the base
string is the URL without query, then `?` and the decoded query parameters (`k=v`, keys sorted,
values sorted per key, joined by `&`), then for a POST with parameters `.` (only when there is a
query) and every POST parameter as `k` + `v` (keys sorted, values sorted) with no separators. A
POST without parameters signs the URL as a GET does. The header may hold several signatures
separated by commas (an old and a new token); any match passes. V2 signs the URL without its
query followed directly by the nonce.

This reproduces `plivo.utils.signature_v3` (SDK 4.63); the tests cross-check it against the SDK.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from voicecall.providers.base import Verification, WebhookRequest
from voicecall.security.public_url import (
    ForwardingPolicy,
    apply_public_url,
    reconstruct_webhook_url,
)

__all__ = [
    "V2_HEADER",
    "V2_NONCE_HEADER",
    "V3_HEADER",
    "V3_MA_HEADER",
    "V3_NONCE_HEADER",
    "form_params",
    "sign_v2",
    "sign_v3",
    "v3_base_string",
    "verify_plivo_webhook",
]

V3_HEADER = "x-plivo-signature-v3"
V3_MA_HEADER = "x-plivo-signature-ma-v3"
V3_NONCE_HEADER = "x-plivo-signature-v3-nonce"
V2_HEADER = "x-plivo-signature-v2"
V2_MA_HEADER = "x-plivo-signature-ma-v2"
V2_NONCE_HEADER = "x-plivo-signature-v2-nonce"


def form_params(body: bytes) -> list[tuple[str, str]]:
    """A form body as (name, value) pairs, in order, keeping duplicates and blank values."""
    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True,
                     encoding="utf-8", errors="replace")


def _grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def _url_without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def v3_base_string(method: str, url: str, params: Sequence[tuple[str, str]] = ()) -> str:
    """The string V3 signs before `.nonce`. For GET, `params` join the URL's query parameters;
    for POST they are the body's parameters."""
    query = _grouped(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    if method.upper() == "GET":
        for name, values in _grouped(params).items():
            query[name] = values  # the SDK's dict.update: passed params replace the URL's
        body: dict[str, list[str]] = {}
    else:
        body = _grouped(params)
    q = "&".join(f"{k}={v}" for k in sorted(query) for v in sorted(query[k]))
    base = _url_without_query(url)
    if q or body:
        base += "?" + q
    if q and body:
        base += "."
    return base + "".join(f"{k}{v}" for k in sorted(body) for v in sorted(body[k]))


def _hmac_b64(auth_token: str, message: str) -> str:
    mac = hmac.new(auth_token.encode("utf-8"), message.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def sign_v3(auth_token: str, method: str, url: str, params: Sequence[tuple[str, str]],
            nonce: str) -> str:
    """The `X-Plivo-Signature-V3` value Plivo sends for this request."""
    return _hmac_b64(auth_token, f"{v3_base_string(method, url, params)}.{nonce}")


def sign_v2(auth_token: str, url: str, nonce: str) -> str:
    """The `X-Plivo-Signature-V2` value: the URL without its query, then the nonce."""
    return _hmac_b64(auth_token, _url_without_query(url) + nonce)


def _canonical(signature: str) -> bytes | None:
    """A base64 signature decoded (so spellings of one value compare equal); None if invalid."""
    try:
        return base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _any_matches(header: str, expected: str) -> bool:
    """Whether any comma-separated signature in `header` equals `expected` (constant time)."""
    want = base64.b64decode(expected)
    found = False
    for item in header.split(","):
        got = _canonical(item)
        if got is not None and hmac.compare_digest(got, want):
            found = True
    return found


def _request_key(version: str, signed: str) -> str:
    return f"plivo:{version}:" + hashlib.sha256(signed.encode("utf-8")).hexdigest()


def _skip_key(request: WebhookRequest) -> str:
    data = f"{request.method}\n{request.url}\n".encode() + request.body
    return "plivo:skip:" + hashlib.sha256(data).hexdigest()


def verification_url(request: WebhookRequest, *, public_url: str | None,
                     policy: ForwardingPolicy) -> str:
    """The URL Plivo signed: `publicUrl` with the request's query when configured (D28), else
    the URL rebuilt from the request under the forwarding-header policy (D29)."""
    if public_url:
        return apply_public_url(public_url, request)
    return reconstruct_webhook_url(request, policy)


def verify_plivo_webhook(request: WebhookRequest, *, auth_token: str, public_url: str | None,
                         policy: ForwardingPolicy, skip_verification: bool = False) -> Verification:
    """Check a Plivo webhook's V3 signature (V2 when only V2 headers are present); on success
    `request_key` is its replay key, a hash of exactly the signed string and the nonce."""
    if skip_verification:
        return Verification(ok=True, request_key=_skip_key(request))
    headers: Mapping[str, str] = request.headers
    url = verification_url(request, public_url=public_url, policy=policy)
    base = _url_without_query(url)
    parts = urlsplit(base)
    shown = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))  # no credentials
    if headers.get(V3_HEADER) and headers.get(V3_NONCE_HEADER):
        method = request.method.upper()
        if method not in ("GET", "POST"):
            return Verification(ok=False, reason=f"V3 signatures cover GET and POST only, not {method}")
        params = form_params(request.body) if method == "POST" else []
        nonce = headers[V3_NONCE_HEADER]
        signed = f"{v3_base_string(method, url, params)}.{nonce}"
        if _any_matches(headers[V3_HEADER], _hmac_b64(auth_token, signed)):
            return Verification(ok=True, request_key=_request_key("v3", signed))
        return Verification(ok=False, reason=f"Invalid Plivo V3 signature for URL: {shown}")
    if headers.get(V2_HEADER) and headers.get(V2_NONCE_HEADER):
        signed = base + headers[V2_NONCE_HEADER]
        if _any_matches(headers[V2_HEADER], _hmac_b64(auth_token, signed)):
            return Verification(ok=True, request_key=_request_key("v2", signed))
        return Verification(ok=False, reason=f"Invalid Plivo V2 signature for URL: {shown}")
    return Verification(ok=False, reason="Missing Plivo signature headers (V3 or V2)")
