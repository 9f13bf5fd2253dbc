"""`X-Twilio-Signature` verification.

Twilio signs the URL it requested followed by every POST parameter as `name + value` (names in
codepoint order; the values of one name sorted and de-duplicated), with HMAC-SHA1 keyed by the
auth token, base64-encoded. JSON posts carry `?bodySHA256=<hex>` and sign the URL alone.

This module reproduces the algorithm of `twilio.request_validator` (SDK 9.13) without depending
on the SDK, and accepts every port spelling that the SDK's `validate()` accepts for a URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence
from typing import Literal
from urllib.parse import parse_qs, parse_qsl

from voicecall.providers.base import Verification, WebhookRequest
from voicecall.security.public_url import (
    ForwardingPolicy,
    apply_public_url,
    is_loopback,
    reconstruct_webhook_url,
    request_query_string,
    split_url,
)

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_SETTINGS_HEADER",
    "compute_signature",
    "form_params",
    "signature_url_candidates",
    "signing_string",
    "twilio_request_key",
    "verify_twilio_webhook",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-twilio-signature"
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
_NGROK_MARKERS = (".ngrok-free.app", ".ngrok.io")
_NGROK_HINT = (" (ngrok URL: set publicUrl to the exact ngrok URL configured at Twilio, or trust the"
               " tunnel's forwarding headers via webhookSecurity)")


def signing_string(url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """The exact string Twilio signs: the URL, then `name + value` for each parameter, names in
    codepoint order and, per name, the distinct values in codepoint order (as the SDK does with
    `sorted(set(values))`: a repeated identical pair counts once)."""
    by_name: dict[str, set[str]] = {}
    for name, value in params:
        by_name.setdefault(name, set()).add(value)
    return url + "".join(name + value for name in sorted(by_name) for value in sorted(by_name[name]))


def compute_signature(auth_token: str, url: str, params: Sequence[tuple[str, str]] = (), *,
                      algorithm: Literal["sha1", "sha256"] = "sha1") -> str:
    """`base64(HMAC(auth_token, signing_string(url, params)))` with SHA-1 (default) or SHA-256."""
    digest = _DIGESTS.get(algorithm)
    if digest is None:
        raise ValueError(f"unsupported signature algorithm: {algorithm!r}")
    mac = hmac.new(auth_token.encode("utf-8"), signing_string(url, params).encode("utf-8"), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def twilio_request_key(url: str, params: Iterable[tuple[str, str]], signature: str) -> str:
    """Replay identity of a verified request: `twilio:req:` + sha256 hex of the signed string and
    the signature.

    It is built from exactly what the signature covers, so every request that verifies with the
    same signed content gets the same key: reordered or repeated identical parameters, an added
    empty `=` pair, or characters moved between the URL and a parameter or between a name and
    its value (the signed string has no separators) cannot dodge replay detection."""
    data = f"{signing_string(url, params)}\n{signature}"
    return "twilio:req:" + hashlib.sha256(data.encode("utf-8")).hexdigest()


def _skip_key(request: WebhookRequest) -> str:
    data = f"{request.method}\n{request.url}\n".encode() + request.body
    return "twilio:skip:" + hashlib.sha256(data).hexdigest()


def form_params(body: bytes) -> list[tuple[str, str]]:
    """A form body as (name, value) pairs, in order, keeping duplicates and blank values."""
    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True,
                     encoding="utf-8", errors="replace")


# --- URL candidates ---------------------------------------------------------------------------

def _split_port(authority: str) -> tuple[str, str | None]:
    """`[userinfo@]host` and the port text (None when there is no `:`) of an authority."""
    userinfo, at, hostport = authority.rpartition("@")
    prefix = userinfo + at
    if hostport.startswith("["):
        end = hostport.find("]")
        if end >= 0:
            rest = hostport[end + 1:]
            return prefix + hostport[:end + 1], rest[1:] if rest.startswith(":") else None
    host, colon, port = hostport.partition(":")
    return prefix + host, port if colon else None


def _port_of(value: str | None) -> str | None:
    """The decimal port of an authority-like value (`host:port`, `[v6]:port`, a URL), if any."""
    if not value:
        return None
    parts = split_url(value)
    _, port = _split_port(parts[1] if parts is not None else value.strip())
    if port and port.isascii() and port.isdigit():
        return port
    return None


def _with_port(url: str, port: str | None) -> str | None:
    """`url` with its port replaced (`port=None` removes it); None for a non-absolute URL."""
    parts = split_url(url)
    if parts is None:
        return None
    prefix, authority, rest = parts
    host, _ = _split_port(authority)
    return f"{prefix}{host}{':' + port if port is not None else ''}{rest}"


def signature_url_candidates(primary: str, *, public_url: str | None,
                             host_header: str | None) -> list[str]:
    """URLs to try, in order, deduplicated: `primary`; it without a port; with the public URL's
    port; with the Host header's port; and, when it has no port, with the
    scheme's default port (`:443` for https, `:80` for anything else) as the SDK's `validate()`
    also tries. Only the port ever differs from `primary`."""
    candidates = [primary]
    parts = split_url(primary)
    if parts is not None:
        candidates.append(_with_port(primary, None) or primary)
        for port in (_port_of(public_url), _port_of(host_header)):
            if port is not None:
                candidates.append(_with_port(primary, port) or primary)
        _, current_port = _split_port(parts[1])
        if not current_port:
            default = "443" if parts[0].lower() == "https://" else "80"
            candidates.append(_with_port(primary, default) or primary)
    return list(dict.fromkeys(candidates))


# --- verification -----------------------------------------------------------------------------

def _settings_algorithm(header: str | None) -> str:
    """The `algorithm=` of X-Twilio-Webhooks-Signature-Settings, HMAC_SHA1 when absent."""
    for part in (header or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            return value.strip()
    return "HMAC_SHA1"


def _shown_url(url: str) -> str:
    """`url` without a `user:password@` part: a refusal reason never shows a credential."""
    parts = split_url(url)
    if parts is None:
        return url
    prefix, authority, rest = parts
    return f"{prefix}{authority.rpartition('@')[2]}{rest}"


def _equal(a: str, b: str) -> bool:
    # compare_digest refuses non-ASCII str; the header is attacker-controlled.
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def verify_twilio_webhook(request: WebhookRequest, *, auth_token: str, public_url: str | None,
                          policy: ForwardingPolicy, ngrok_loopback_bypass: bool = False,
                          skip_verification: bool = False) -> Verification:
    """Check a Twilio webhook's `X-Twilio-Signature`; on success `request_key` is its replay key.

    The verification URL is `publicUrl` (its path kept) with the request's query when configured, else
    the URL rebuilt from the request under `policy` (forwarding headers forced-trusted for
    loopback remotes when the ngrok loopback rule is on). Port variants of it are tried
    (`signature_url_candidates`); the first that matches is used for the replay key.
    """
    if skip_verification:
        return Verification(ok=True, request_key=_skip_key(request))
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature:
        return Verification(ok=False, reason="Missing X-Twilio-Signature header")

    algorithm = _settings_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER)).upper()
    if algorithm == "HMAC_SHA256":
        return Verification(ok=False, reason=(
            "HMAC_SHA256 (SharedKey) webhook signatures are not supported: no shared key is "
            "configured; remove the Twilio Webhooks signature rule for this number"))
    if algorithm != "HMAC_SHA1":
        return Verification(ok=False, reason=f"Unsupported webhook signature algorithm {algorithm[:40]!r}")

    if public_url:
        url = apply_public_url(public_url, request)
    else:
        force = ngrok_loopback_bypass and is_loopback(request.remote_addr)
        url = reconstruct_webhook_url(request, policy, force_trust=force)

    query = parse_qs(request_query_string(request))
    params: list[tuple[str, str]]
    if "bodySHA256" in query:
        # JSON body: the URL (whose query pins the body's hash) is signed with no parameters.
        if not _equal(hashlib.sha256(request.body).hexdigest(), query["bodySHA256"][0]):
            return Verification(ok=False, reason="bodySHA256 does not match the request body")
        params = []
    else:
        params = form_params(request.body)

    candidates = signature_url_candidates(url, public_url=public_url,
                                          host_header=request.headers.get("host"))
    for candidate in candidates:
        if _equal(compute_signature(auth_token, candidate, params), signature):
            return Verification(ok=True, request_key=twilio_request_key(candidate, params, signature))

    log.debug("twilio signature mismatch; tried %s", candidates)
    reason = f"Invalid signature for URL: {_shown_url(url)}"
    if any(marker in url for marker in _NGROK_MARKERS):
        reason += _NGROK_HINT
    return Verification(ok=False, reason=reason)
