"""The public URL a carrier requested, rebuilt from a webhook request (docs/decisions.md D28, D29).

Carriers sign the URL *they* requested (scheme, public host, path, query). Behind a tunnel or a
reverse proxy the request we see carries a different scheme and host, so the URL is rebuilt:

- with a configured `publicUrl`, from its scheme, host, port and path plus the request's query
  (`apply_public_url`, docs/decisions.md D28);
- otherwise from the request (`reconstruct_webhook_url`): `https` and the `Host` header, or the
  forwarding headers when the `ForwardingPolicy` trusts them for this remote address.

Nothing here raises on a malformed `Host` header: a bad value yields a URL that simply fails
verification.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from voicecall.shared.request import WebhookRequest

__all__ = [
    "ForwardingPolicy",
    "apply_public_url",
    "is_loopback",
    "normalize_host",
    "normalize_ip",
    "reconstruct_webhook_url",
    "request_query_string",
    "request_target",
    "split_url",
    "trusts_forwarding",
]

# Forwarded-host headers, in the order they are consulted (docs/decisions.md D29).
FORWARDED_HOST_HEADERS = ("x-forwarded-host", "x-original-host", "ngrok-forwarded-host")

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]*")
_MAX_HOST_LENGTH = 253


@dataclass(frozen=True)
class ForwardingPolicy:
    """When forwarding headers (`X-Forwarded-Proto`/`-Host`, ...) may shape the rebuilt URL.

    They are trusted only if `allowed_hosts` is non-empty or `trust_forwarding_headers` is set,
    and, when `trusted_proxy_ips` is non-empty, only for requests from one of those addresses.
    With `allowed_hosts` set, a forwarded host outside the list is ignored.
    """

    allowed_hosts: tuple[str, ...] = ()
    trust_forwarding_headers: bool = False
    trusted_proxy_ips: tuple[str, ...] = ()


def normalize_ip(value: str) -> str:
    """Canonical text of an IP address: IPv4-mapped IPv6 becomes IPv4, IPv6 is compressed and
    lower-cased, brackets are dropped. A value that is not an IP comes back stripped and
    lower-cased, so comparisons with it stay exact."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def is_loopback(addr: str) -> bool:
    """True for loopback remote addresses: `127.*`, `::1` and `::ffff:127.*`."""
    try:
        ip = ipaddress.ip_address(normalize_ip(addr))
    except ValueError:
        return False
    return ip.is_loopback


def normalize_host(value: str | None) -> str | None:
    """The hostname of a `Host`-style value (`host[:port]`), lower-cased and without the port;
    `None` when it is not a valid hostname (docs/decisions.md D29).

    - `[v6addr]` or `[v6addr]:port` gives `[v6addr]` (brackets kept, so it can go into a URL);
    - a value containing `@` is rejected;
    - otherwise everything from the first `:` on is dropped and the rest must be RFC 1123 labels
      (1-63 characters of letters, digits and inner hyphens) of at most 253 characters in all.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or not text.isascii() or "@" in text:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        rest = text[end + 1:]
        if rest and not (rest.startswith(":") and _DIGITS.fullmatch(rest[1:])):
            return None
        inner = text[1:end]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return None
        if "%" in inner:  # zone ids have no place in a public URL
            return None
        return f"[{inner.lower()}]"
    host = text.split(":", 1)[0]
    if not host or len(host) > _MAX_HOST_LENGTH:
        return None
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        return None
    return host.lower()


def _allowed_hosts(policy: ForwardingPolicy) -> frozenset[str]:
    hosts = (normalize_host(entry) for entry in policy.allowed_hosts)
    return frozenset(host for host in hosts if host is not None)


def trusts_forwarding(policy: ForwardingPolicy, remote_addr: str) -> bool:
    """Whether forwarding headers are trusted for a request from `remote_addr`:
    (allowed hosts configured OR trust_forwarding_headers) AND (no trusted proxy list OR the
    remote address is on it). Addresses are compared in canonical form (`::ffff:1.2.3.4` is
    `1.2.3.4`; IPv6 spellings are equivalent)."""
    if not (_allowed_hosts(policy) or policy.trust_forwarding_headers):
        return False
    if not policy.trusted_proxy_ips:
        return True
    remote = normalize_ip(remote_addr or "")
    return any(normalize_ip(entry) == remote for entry in policy.trusted_proxy_ips)


def split_url(url: str) -> tuple[str, str, str] | None:
    """`scheme://`, authority and the rest (path, query, fragment) of an absolute URL, verbatim;
    `None` when `url` has no `://`."""
    scheme, sep, after = url.partition("://")
    if not sep or not scheme:
        return None
    cut = len(after)
    for stop in "/?#":
        index = after.find(stop)
        if 0 <= index < cut:
            cut = index
    return scheme + sep, after[:cut], after[cut:]


def request_target(request: WebhookRequest) -> str:
    """The path and query of the request, verbatim from `request.url` (`/path?query`).

    `request.url` is built as `<scheme>://<Host header><path>[?<query>]`; the Host header is
    attacker-controlled, so it is cut off by its known value rather than by parsing."""
    url = request.url
    target: str | None = None
    scheme, sep, after = url.partition("://")
    if sep and scheme:
        host = request.headers.get("host")
        for prefix in (host, "localhost"):
            if prefix is not None and after.startswith(prefix):
                rest = after[len(prefix):]
                if rest.startswith(request.path) and (rest == request.path
                                                      or rest[len(request.path)] == "?"):
                    target = rest
                    break
        if target is None:
            parts = split_url(url)
            target = parts[2] if parts is not None else request.path
    elif url.startswith("/"):
        target = url
    else:
        target = request.path
    target = target.split("#", 1)[0]
    if not target.startswith("/"):
        target = "/" + target
    return target


def request_query_string(request: WebhookRequest) -> str:
    """The raw query string of the request (without `?`), `""` when there is none."""
    _, _, query = request_target(request).partition("?")
    return query


def _first_value(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    return value.split(",", 1)[0].strip()


def reconstruct_webhook_url(request: WebhookRequest, policy: ForwardingPolicy, *,
                            force_trust: bool = False) -> str:
    """`<proto>://<host><path>[?<query>]` as the carrier most likely requested it
    (docs/decisions.md D29).

    `force_trust` acts as `trust_forwarding_headers=True` (the ngrok loopback rule,
    docs/decisions.md D31); the trusted-proxy gate and the allowed-hosts filter still apply.
    The result never has a port.
    """
    if force_trust:
        policy = replace(policy, trust_forwarding_headers=True)
    headers = request.headers
    trusted = trusts_forwarding(policy, request.remote_addr)

    proto = "https"
    if trusted:
        forwarded_proto = (_first_value(headers, "x-forwarded-proto") or "").lower()
        if forwarded_proto in ("http", "https"):
            proto = forwarded_proto

    host: str | None = None
    if trusted:
        allowed = _allowed_hosts(policy)
        for name in FORWARDED_HOST_HEADERS:
            candidate = normalize_host(_first_value(headers, name))
            if candidate is not None and (not allowed or candidate in allowed):
                host = candidate
                break
    if host is None and "host" in headers:
        host = normalize_host(headers["host"])
    elif host is None:  # no Host header at all (HTTP/1.0): the URL's authority, if any
        parts = split_url(request.url)
        host = normalize_host(parts[1]) if parts is not None else None
    return f"{proto}://{host or ''}{request_target(request)}"


def apply_public_url(public_url: str, request: WebhookRequest) -> str:
    """The configured public URL with the request's query string (docs/decisions.md D28).

    The public URL's scheme, host, port and path are kept verbatim (a proxy may rewrite the
    path it forwards); its own query and fragment are replaced by the request's query, which is
    what the carrier actually requested (it includes any query the public URL carried)."""
    base = public_url.strip().split("#", 1)[0].split("?", 1)[0]
    query = request_query_string(request)
    return f"{base}?{query}" if query else base
