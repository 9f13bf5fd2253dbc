"""Telnyx webhook signatures: Ed25519 over `"{telnyx-timestamp}|{raw body}"`.

Telnyx signs every Call Control webhook with its account key and sends the signature (base64,
64 bytes) in `telnyx-signature-ed25519` and the Unix time in `telnyx-timestamp`. The request URL
is not signed. The signature is checked first, then the clock skew (at most 300 s either way,
exactly 300 s still passing, as Telnyx's SDK does): docs/decisions.md D70.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from voicecall.providers.base import Verification, WebhookRequest

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_S",
    "decode_signature",
    "load_public_key",
    "telnyx_request_key",
    "verify_telnyx_webhook",
]

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
TOLERANCE_S = 300
SIGNATURE_BYTES = 64
RAW_KEY_BYTES = 32


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional (Telnyx shows keys and signatures both ways)."""
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def load_public_key(text: str) -> Ed25519PublicKey:
    """The Ed25519 public key in `text`: PEM (SPKI), base64 of the raw 32-byte key (as Mission
    Control shows it), or base64 of a DER SPKI. ValueError says which form was expected."""
    text = text.strip()
    if not text:
        raise ValueError("telnyx.publicKey is empty")
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode("ascii"))
        else:
            raw = _b64decode(text)
            if len(raw) == RAW_KEY_BYTES:
                return Ed25519PublicKey.from_public_bytes(raw)
            key = load_der_public_key(raw)
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("telnyx.publicKey is not an Ed25519 public key (expected PEM, base64 of "
                         "the 32-byte key, or base64 DER SPKI)") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"telnyx.publicKey is a {type(key).__name__}, not an Ed25519 key")
    return key


def decode_signature(header: str) -> bytes:
    """The 64 signature bytes of a `telnyx-signature-ed25519` header (base64 or base64url)."""
    try:
        raw = _b64decode(header)
    except (ValueError, binascii.Error) as exc:
        raise ValueError("signature is not base64") from exc
    if len(raw) != SIGNATURE_BYTES:
        raise ValueError(f"signature has {len(raw)} bytes, not {SIGNATURE_BYTES}")
    return raw


def telnyx_request_key(timestamp: str, signature: bytes, body: bytes) -> str:
    """Replay identity of a verified webhook: `telnyx:` + sha256 hex of exactly what was signed
    and the signature in canonical base64, so base64 and base64url spellings of one signature
    are the same request."""
    canonical = base64.b64encode(signature)
    digest = hashlib.sha256(timestamp.encode() + b"\n" + canonical + b"\n" + body).hexdigest()
    return "telnyx:" + digest


def _skip_key(request: WebhookRequest) -> str:
    data = f"{request.method}\n{request.url}\n".encode() + request.body
    return "telnyx:skip:" + hashlib.sha256(data).hexdigest()


def verify_telnyx_webhook(request: WebhookRequest, *, public_key: Ed25519PublicKey | None,
                          skip_verification: bool = False,
                          now: Callable[[], float] = time.time) -> Verification:
    """Check a Telnyx webhook's Ed25519 signature and timestamp; on success `request_key` is
    its replay key. Never raises for bad input: a refusal says what was wrong."""
    if skip_verification:
        return Verification(ok=True, request_key=_skip_key(request))
    header = request.headers.get(SIGNATURE_HEADER, "").strip()
    timestamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
    if not header or not timestamp:
        return Verification(ok=False, reason="Missing signature or timestamp header")
    if public_key is None:
        return Verification(ok=False, reason="Missing telnyx.publicKey (configure to verify webhooks)")
    if not (timestamp.isascii() and timestamp.isdigit()):
        return Verification(ok=False, reason="Invalid timestamp header")
    try:
        signature = decode_signature(header)
    except ValueError as exc:
        return Verification(ok=False, reason=f"Invalid signature ({exc})")
    try:
        public_key.verify(signature, timestamp.encode() + b"|" + request.body)
    except InvalidSignature:
        return Verification(ok=False, reason="Invalid signature (check telnyx.publicKey)")
    skew = abs(now() - int(timestamp))
    if skew > TOLERANCE_S:
        return Verification(ok=False, reason=f"Timestamp too old or too new ({skew:.0f} s from now; "
                                             f"at most {TOLERANCE_S} s)")
    return Verification(ok=True, request_key=telnyx_request_key(timestamp, signature, request.body))
