"""What every telephony TTS provider is: a stream of PCM16LE mono chunks for a piece of text.

Providers yield audio as it arrives from the network (never the whole utterance at once), always in
whole samples (an even number of bytes), at the provider's fixed `sample_rate`.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeAlias, runtime_checkable

import aiohttp
import certifi

__all__ = [
    "DEFAULT_HTTP_TIMEOUT_S",
    "TtsChunk",
    "TtsError",
    "TtsProvider",
    "aligned_pcm16",
    "error_detail",
]

TtsChunk: TypeAlias = bytes
"""PCM signed 16-bit little-endian mono samples (an even number of bytes)."""

DEFAULT_HTTP_TIMEOUT_S = 30.0
"""Per-operation HTTP timeout of a provider (connect, read); the chain's synthesis timeout is tighter."""
ERROR_BODY_LIMIT = 4096
"""How much of an error response is read for its message."""


class TtsError(Exception):
    """Text-to-speech failed; the message is safe to log (it never contains a key)."""


@runtime_checkable
class TtsProvider(Protocol):
    """A streaming text-to-speech engine producing PCM16LE mono at `sample_rate` Hz."""

    name: str
    sample_rate: int

    def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        """Yield PCM16LE chunks as they arrive; raise TtsError on failure."""
        ...

    async def aclose(self) -> None:
        """Release network resources (the provider may be used again afterwards)."""
        ...


async def aligned_pcm16(chunks: AsyncIterator[bytes]) -> AsyncIterator[TtsChunk]:
    """Re-cut a byte stream on sample boundaries: every chunk has an even length, none is empty.

    A byte split across two network reads is carried over to the next chunk; an odd byte left at
    the very end (a truncated sample) is dropped.
    """
    carry = b""
    async for piece in chunks:
        data = carry + piece if carry else piece
        cut = len(data) & ~1
        carry = data[cut:]
        if cut:
            yield data[:cut]


def error_detail(raw: bytes, limit: int = 300) -> str:
    """The human message in an error body: OpenAI's `{"error": {"message"}}`, ElevenLabs' `{"detail": ...}`,
    or the text itself, shortened to `limit` characters."""
    text = raw.decode("utf-8", "replace").strip()
    message = _json_error_message(text)
    message = " ".join((text if message is None else message).split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _json_error_message(text: str) -> str | None:
    """The message a JSON error body carries; None when the text is not a JSON object or the
    object names no message."""
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    error_message = error.get("message") if isinstance(error, dict) else None
    if isinstance(error_message, str):
        return error_message
    if isinstance(error, str):
        return error
    detail = body.get("detail")
    if isinstance(detail, dict | str | list):
        return _detail_message(detail)
    message = body.get("message")
    return message if isinstance(message, str) else None


def _detail_message(detail: dict[str, Any] | str | list[Any]) -> str | None:
    """The message in a `detail` field: a string, `{"message"}` or `{"status"}` (ElevenLabs), or a
    list of validation errors `[{"msg"}, ...]`."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("status") or "") or None
    return _validation_errors(detail)


def _validation_errors(errors: list[Any]) -> str | None:
    """The `msg` of each error in a validation-error list, joined with "; "."""
    parts = [str(e.get("msg", "")) for e in errors if isinstance(e, dict)]
    return "; ".join(p for p in parts if p) or None


async def stream_pcm(session: aiohttp.ClientSession, label: str, url: str, *, json_body: Any,
                     headers: dict[str, str], params: dict[str, str] | None = None
                     ) -> AsyncIterator[TtsChunk]:
    """POST `json_body` to a streaming speech endpoint and yield its PCM16 as it arrives.

    Each yield is everything that has arrived since the last one (aiohttp decodes the chunked
    body in C and buffers it), so a consumer that reads in bursts gets few large pieces.
    Errors become `TtsError` naming `label` ("OpenAI", "ElevenLabs"): an HTTP error status with
    the provider's message, a timeout, or a transport failure.
    """
    try:
        async with session.post(url, params=params, json=json_body,
                                headers={**headers, "accept-encoding": "identity"}) as response:
            if not 200 <= response.status < 300:
                detail = error_detail(await response.content.read(ERROR_BODY_LIMIT))
                raise TtsError(f"{label} TTS failed: HTTP {response.status}"
                               + (f": {detail}" if detail else ""))
            async for chunk in aligned_pcm16(response.content.iter_any()):
                yield chunk
    except TimeoutError as exc:  # aiohttp's socket timeouts are TimeoutErrors too
        raise TtsError(f"{label} TTS timed out ({type(exc).__name__})") from None
    except aiohttp.ClientError as exc:
        raise TtsError(f"{label} TTS request failed: {type(exc).__name__}: {exc}") from None


def tls_context() -> ssl.SSLContext:
    """The CA bundle httpx uses everywhere else in the gateway (certifi's, or `SSL_CERT_FILE`),
    so TTS verifies servers exactly like the carrier and LLM clients do."""
    cafile = os.environ.get("SSL_CERT_FILE") or certifi.where()
    return ssl.create_default_context(cafile=cafile)


class HttpClientHolder:
    """One aiohttp session per event loop (a connection pool belongs to the loop that opened it),
    or an injected one.

    aiohttp rather than httpx for this one job: a TTS stream is read for as long as a call
    speaks, on every call at once, and aiohttp's buffered stream is the lighter one to read
    (bench/README.md, "Notes moved from code", has the measurement). The pool has no
    connection cap: the media endpoint's `maxConnections`
    already bounds how many calls speak at once, and a capped pool (httpx's default is 100)
    would leave the calls past the cap hearing silence while they wait for a connection.
    """

    def __init__(self, session: aiohttp.ClientSession | None, timeout_s: float) -> None:
        self._injected = session
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._injected is not None:
            return self._injected
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            # A session from another (finished) loop cannot be closed from here; drop it.
            if self._session is not None:
                self._session.detach()
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, trust_env=True,
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=tls_context()))
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        session, loop = self._session, self._loop
        self._session = self._loop = None
        if session is not None and loop is asyncio.get_running_loop():
            await session.close()
