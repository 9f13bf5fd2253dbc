"""The shape of one inbound webhook request, as verification and parsing see it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple


class WebhookRequest(NamedTuple):
    """One inbound HTTP request, as the verification and parsing steps see it."""

    method: str
    url: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    remote_addr: str
