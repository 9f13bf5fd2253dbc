"""Which client a request comes from, for per-client budgets (D23, D60).

The socket's address, unless that address is a trusted proxy: then the right-most
`X-Forwarded-For` hop that is not itself a trusted proxy (the first hop when all are), else a
valid `X-Real-IP`. Behind a tunnel every request arrives from the tunnel's address, so without
this, one client's budget is everyone's."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from voicecall.security.public_url import normalize_ip

__all__ = ["client_address", "is_ip"]


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def client_address(remote: str, *, forwarded_for: Iterable[str], real_ip: str | None,
                   trusted_proxies: frozenset[str]) -> str:
    """The client's address; `forwarded_for` holds each `X-Forwarded-For` header value, and
    forwarding headers count only when `remote` is in `trusted_proxies`."""
    remote_ip = normalize_ip(remote) or remote
    if remote_ip not in trusted_proxies:
        return remote_ip
    hops = [normalize_ip(h.strip()) for value in forwarded_for for h in value.split(",")]
    valid = [h for h in hops if is_ip(h)]
    for hop in reversed(valid):
        if hop not in trusted_proxies:
            return hop
    if valid:
        return valid[0]
    real = normalize_ip((real_ip or "").strip())
    return real if is_ip(real) else remote_ip
