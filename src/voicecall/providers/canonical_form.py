"""One meaning per signed request: Twilio's and Plivo's signatures cover the URL and the sorted
parameters concatenated without separators, so one signature also fits re-arranged copies
(docs/decisions.md D61, D67). Each carrier checks its own arrangement; what they share is reading
a request's query and form body with every name once, and reading the callback from that same
checked form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import parse_qsl

from voicecall.providers.base import WebhookParseError, WebhookRequest
from voicecall.security.public_url import request_query_string

__all__ = ["CanonicalRequest", "NotCanonical", "canonical_request", "signed_form"]


class NotCanonical(ValueError):
    """The request is not in a form that has one meaning."""


class CanonicalRequest(NamedTuple):
    """A request's query and form parameters, each name once."""

    query: dict[str, str]
    params: dict[str, str]


def _unique(pairs: list[tuple[str, str]], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise NotCanonical(f"the {where} repeats the parameter {name[:40]!r}")
        out[name] = value
    return out


def canonical_request(request: WebhookRequest, *, form_body: bool = True) -> CanonicalRequest:
    """The query and (for a form body) the parameters of `request`, each name once; raises
    NotCanonical for a repeated name or a body that is not UTF-8 form data."""
    query = _unique(parse_qsl(request_query_string(request), keep_blank_values=True), "query")
    if not form_body:
        return CanonicalRequest(query, {})
    try:
        pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise NotCanonical("the body is not UTF-8 form data") from exc
    return CanonicalRequest(query, _unique(pairs, "body"))


def signed_form(request: WebhookRequest) -> tuple[dict[str, str], Mapping[str, str]]:
    """A callback's form fields and query, read from the same one-name-once form that its
    verification checked; `WebhookParseError` for anything else."""
    try:
        canonical = canonical_request(request)
    except NotCanonical as exc:
        raise WebhookParseError(str(exc)) from exc
    return canonical.params, canonical.query
