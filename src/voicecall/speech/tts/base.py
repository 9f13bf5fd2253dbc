"""What every telephony TTS provider is: a stream of PCM16LE mono chunks for a piece of text.

Providers yield audio as it arrives from the network (never the whole utterance at once), always in
whole samples (an even number of bytes), at the provider's fixed `sample_rate`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeAlias, runtime_checkable

import httpx

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
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    message: str | None = None
    if isinstance(body, dict):
        error, detail = body.get("error"), body.get("detail")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
        elif isinstance(detail, dict):
            message = str(detail.get("message") or detail.get("status") or "") or None
        elif isinstance(detail, str):
            message = detail
        elif isinstance(detail, list):
            parts = [str(d.get("msg", "")) for d in detail if isinstance(d, dict)]
            message = "; ".join(p for p in parts if p) or None
        elif isinstance(body.get("message"), str):
            message = body["message"]
    if message is None:
        message = text
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


async def read_limited(response: httpx.Response, limit: int = 4096) -> bytes:
    """Up to `limit` bytes of a streamed response body (for error messages)."""
    data = b""
    async for piece in response.aiter_bytes():
        data += piece
        if len(data) >= limit:
            break
    return data[:limit]


async def stream_pcm(client: httpx.AsyncClient, label: str, url: str, *, json_body: Any,
                     headers: dict[str, str], params: dict[str, str] | None = None
                     ) -> AsyncIterator[TtsChunk]:
    """POST `json_body` to a streaming speech endpoint and yield its PCM16 as it arrives.

    Errors become `TtsError` naming `label` ("OpenAI", "ElevenLabs"): an HTTP error status with
    the provider's message, a timeout, or a transport failure.
    """
    try:
        async with client.stream("POST", url, params=params, json=json_body,
                                 headers=headers) as response:
            if not 200 <= response.status_code < 300:
                detail = error_detail(await read_limited(response))
                raise TtsError(f"{label} TTS failed: HTTP {response.status_code}"
                               + (f": {detail}" if detail else ""))
            async for chunk in aligned_pcm16(response.aiter_bytes()):
                yield chunk
    except httpx.TimeoutException as exc:
        raise TtsError(f"{label} TTS timed out ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise TtsError(f"{label} TTS request failed: {type(exc).__name__}: {exc}") from None


class HttpClientHolder:
    """One httpx client per event loop (a pool belongs to the loop that opened it), or an injected one."""

    def __init__(self, client: httpx.AsyncClient | None, timeout_s: float) -> None:
        self._injected = client
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> httpx.AsyncClient:
        if self._injected is not None:
            return self._injected
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A client from another (finished) loop cannot be closed from here; drop it.
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self._timeout_s), follow_redirects=False)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()
