"""The one small HTTP layer every carrier's REST calls go through: a base URL (overridable for
simulators), timeouts, bounded retries for idempotent requests, and errors that name the carrier,
the HTTP status and the carrier's own code and message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx

from voicecall.providers.base import ProviderError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class CarrierApiError(ProviderError):
    """A carrier REST request failed."""

    def __init__(self, carrier: str, status: int | None, message: str, code: str | int | None = None,
                 ) -> None:
        where = f"HTTP {status}" if status is not None else "no response"
        tag = f" (code {code})" if code is not None else ""
        super().__init__(f"{carrier} API error{tag}, {where}: {message}")
        self.carrier, self.status, self.code, self.detail = carrier, status, code, message


ErrorParser = Callable[[httpx.Response], tuple[str | int | None, str]]


def _default_error(response: httpx.Response) -> tuple[str | int | None, str]:
    return None, response.text[:300] or response.reason_phrase


def json_error(message_field: str, code_field: str | None = None) -> ErrorParser:
    """An error parser for carriers that answer errors with a JSON object: the message (and
    code) from those fields, else the body's first 300 characters."""
    def parse(response: httpx.Response) -> tuple[str | int | None, str]:
        try:
            body = response.json()
        except ValueError:
            return _default_error(response)
        if not isinstance(body, dict):
            return _default_error(response)
        code = body.get(code_field) if code_field else None
        return code, str(body.get(message_field) or response.reason_phrase)
    return parse


class CarrierHttp:
    """An httpx client bound to one carrier's API."""

    def __init__(self, carrier: str, base_url: str, *, auth: httpx.Auth | tuple[str, str] | None = None,
                 headers: dict[str, str] | None = None, timeout_s: float = 10.0, retries: int = 2,
                 parse_error: ErrorParser = _default_error,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.carrier = carrier
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.parse_error = parse_error
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), auth=auth, headers=headers,
                                         timeout=httpx.Timeout(timeout_s, connect=5.0),
                                         transport=transport, trust_env=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, *, data: Sequence[tuple[str, str]] | None = None,
                      json: Any = None, idempotent: bool = False,
                      ok_statuses: Sequence[int] = ()) -> httpx.Response:
        """Send one request. Non-2xx raises `CarrierApiError` unless listed in `ok_statuses`;
        idempotent requests are retried (bounded, with backoff) on transport errors and 5xx/429."""
        attempts = 1 + (self.retries if idempotent else 0)
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(min(0.25 * 2 ** (attempt - 1), 2.0))
            try:
                response = await self._client.request(
                    method, path, content=_form(data) if data is not None else None, json=json,
                    headers={"content-type": "application/x-www-form-urlencoded"}
                    if data is not None else None)
            except httpx.TimeoutException as exc:
                last = CarrierApiError(self.carrier, None, f"timed out ({type(exc).__name__})")
                continue
            except httpx.TransportError as exc:
                last = CarrierApiError(self.carrier, None, f"connection failed: {exc}")
                continue
            if response.is_success or response.status_code in ok_statuses:
                return response
            code, message = self.parse_error(response)
            last = CarrierApiError(self.carrier, response.status_code, message, code)
            if response.status_code not in RETRY_STATUSES:
                break
        assert last is not None
        raise last


def _form(pairs: Sequence[tuple[str, str]]) -> bytes:
    """Form-encode with repeated keys kept, as carriers expect for list parameters."""
    return urlencode(list(pairs)).encode()
