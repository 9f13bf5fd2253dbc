"""Whether a webhook URL can be reached by a carrier on the internet."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_local_only(url: str) -> bool:
    """True for loopback, unspecified, private, link-local and unique-local hosts, and localhost."""
    host = (urlsplit(url).hostname or "").lower()
    if not host or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified
