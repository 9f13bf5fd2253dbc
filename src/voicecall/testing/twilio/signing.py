"""Twilio's `X-Twilio-Signature` (HMAC-SHA1), computed exactly like Twilio and its SDK validator.

The signed string is the full URL as requested (query included) followed, for form POSTs, by every
parameter name in codepoint order, each with its values sorted and de-duplicated: `name + value`
with no separators. The HMAC-SHA1 of that string, keyed with the auth token, is base64-encoded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

SIGNATURE_HEADER = "X-Twilio-Signature"

ParamValue = str | Sequence[str]
Params = Mapping[str, ParamValue] | Iterable[tuple[str, str]]


def _grouped(params: Params | None) -> dict[str, list[str]]:
    """`{name: [values]}` from a mapping (str or list values) or from (name, value) pairs."""
    out: dict[str, list[str]] = {}
    if params is None:
        return out
    if isinstance(params, Mapping):
        for name, value in params.items():
            values = [value] if isinstance(value, str) else list(value)
            out.setdefault(str(name), []).extend(str(v) for v in values)
        return out
    for name, value in params:
        out.setdefault(str(name), []).append(str(value))
    return out


def signing_string(url: str, params: Params | None = None) -> str:
    """The exact string Twilio signs for `url` and form `params`."""
    grouped = _grouped(params)
    parts = [url]
    for name in sorted(grouped):
        for value in sorted(set(grouped[name])):
            parts.append(name + value)
    return "".join(parts)


def sign(auth_token: str, url: str, params: Params | None = None) -> str:
    """The `X-Twilio-Signature` value for a request to `url` with form `params` (none for GET/WS)."""
    mac = hmac.new(auth_token.encode("utf-8"), signing_string(url, params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """The URL without any port and with the default port, as the SDK's `validate()` tries both."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    without = urlunsplit(parts._replace(netloc=prefix + host))
    if parts.port:
        with_port = url
    else:
        default = 443 if parts.scheme == "https" else 80
        with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))
    return [without, with_port, url]


def validate(auth_token: str, url: str, params: Params | None, signature: str) -> bool:
    """True when `signature` matches `url` + `params` (with the SDK's port normalisation)."""
    return any(hmac.compare_digest(sign(auth_token, candidate, params).encode(), signature.encode())
               for candidate in _port_variants(url))


__all__ = ["SIGNATURE_HEADER", "Params", "sign", "signing_string", "validate"]
