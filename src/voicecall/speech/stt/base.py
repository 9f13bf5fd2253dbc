"""Streaming speech-to-text: the session protocol, callbacks, and a reconnecting WebSocket base.

A session is fed 8 kHz mu-law frames from a phone call's media stream (`send_audio`, non-blocking)
and reports transcripts through `SttCallbacks`. Audio sent while the connection is not up (before
`connect()` finishes, or during a reconnect) is queued, bounded to `max_queued_bytes` (10 s of
audio by default; the oldest audio is dropped beyond that), and flushed once connected.

`WebSocketSttSession` holds the shared machinery (connect with timeout, queue and sender,
reconnect with a backoff schedule, give-up → `on_error`); providers supply the URL, headers,
the on-open handshake, the audio framing and the message handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

__all__ = [
    "DEFAULT_BACKOFF_S",
    "MULAW_BYTES_PER_SECOND",
    "AudioQueue",
    "SttCallbacks",
    "SttError",
    "SttSession",
    "WebSocketSttSession",
]

log = logging.getLogger(__name__)

MULAW_BYTES_PER_SECOND = 8000
"""8 kHz, one byte per sample."""
DEFAULT_MAX_QUEUED_BYTES = 10 * MULAW_BYTES_PER_SECOND
DEFAULT_BACKOFF_S: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
BATCH_WAIT_S = 0.03
"""The longest a short batch waits for more audio (longer than one 20 ms frame interval)."""
DEFAULT_BATCH_BYTES = 320
"""40 ms of audio per message to the STT provider: half the messages of one per 20 ms frame, for
at most 20 ms more delay."""
MAX_SEND_CHUNK_BYTES = MULAW_BYTES_PER_SECOND
"""Queued frames are coalesced into messages of at most this many bytes (1 s) when flushed."""


def _noop_text(text: str) -> None:
    return None


def _noop() -> None:
    return None


@dataclass
class SttCallbacks:
    """What a session reports. Plain synchronous callables, called on the event loop; exceptions
    they raise are logged and swallowed."""

    on_partial: Callable[[str], None] = _noop_text
    """Interim text of the utterance in progress (cumulative, replaces the previous partial)."""
    on_final: Callable[[str], None] = _noop_text
    """The finished transcript of one utterance (never empty)."""
    on_speech_start: Callable[[], None] = _noop
    """Voice activity began (barge-in signal)."""
    on_speech_end: Callable[[], None] = _noop
    """Voice activity ended (the caller stopped talking; the turn's latency clock starts here)."""
    on_error: Callable[[str], None] = _noop_text
    """A provider error event, or the session gave up reconnecting."""


class SttError(Exception):
    """STT configuration or connection failure."""


@runtime_checkable
class SttSession(Protocol):
    """A streaming transcription session for one call."""

    async def connect(self) -> None:
        """Open the connection (raises `SttError` when the first connection cannot be made)."""
        ...

    def send_audio(self, mulaw: bytes) -> None:
        """Queue 8 kHz mu-law audio for sending; never blocks."""
        ...

    async def close(self) -> None:
        """Stop the session (idempotent); no callbacks fire afterwards."""
        ...


class AudioQueue:
    """A FIFO of audio frames bounded by total bytes; the oldest frames are dropped beyond it."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_QUEUED_BYTES) -> None:
        self.max_bytes = max_bytes
        self._frames: deque[bytes] = deque()
        self._size = 0
        self.dropped_bytes = 0

    def __len__(self) -> int:
        return self._size

    def push(self, data: bytes) -> None:
        if not data:
            return
        if len(data) > self.max_bytes:  # a single huge frame: keep its newest part
            self.dropped_bytes += len(data) - self.max_bytes
            data = data[-self.max_bytes:]
        self._frames.append(data)
        self._size += len(data)
        self._trim()

    def push_front(self, data: bytes) -> None:
        """Put back audio that could not be sent (it is older than anything queued)."""
        if not data:
            return
        self._frames.appendleft(data)
        self._size += len(data)
        self._trim()

    def pop_chunk(self, max_bytes: int = MAX_SEND_CHUNK_BYTES) -> bytes:
        """Remove and return up to `max_bytes` from the front (whole frames, at least one)."""
        parts: list[bytes] = []
        total = 0
        while self._frames and (not parts or total + len(self._frames[0]) <= max_bytes):
            frame = self._frames.popleft()
            parts.append(frame)
            total += len(frame)
        self._size -= total
        return b"".join(parts)

    def clear(self) -> None:
        self._frames.clear()
        self._size = 0

    def _trim(self) -> None:
        while self._size > self.max_bytes and self._frames:
            excess = self._size - self.max_bytes
            head = self._frames[0]
            if len(head) <= excess:
                self._frames.popleft()
                self._size -= len(head)
                self.dropped_bytes += len(head)
            else:
                self._frames[0] = head[excess:]
                self._size -= excess
                self.dropped_bytes += excess


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ws_url(base_url: str) -> str:
    """Accept http(s) base URLs too (config often holds `https://...`): map them to ws(s)."""
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://"):]
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://"):]
    return base_url


class WebSocketSttSession:
    """Shared lifecycle of a provider WebSocket STT session (subclass and fill in the hooks)."""

    provider_name = "stt"
    drain_on_close_s = 0.0
    """On close, how long to keep reading after `before_close` (providers that flush results)."""

    def __init__(self, callbacks: SttCallbacks | None = None, *, connect_timeout_s: float = 10.0,
                 backoff: Sequence[float] = DEFAULT_BACKOFF_S,
                 max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
                 batch_bytes: int = DEFAULT_BATCH_BYTES) -> None:
        self.callbacks = callbacks if callbacks is not None else SttCallbacks()
        self.batch_bytes = max(1, batch_bytes)
        self._batch_timer: asyncio.TimerHandle | None = None
        """Audio is sent once this much is queued (fewer, larger messages than one per frame)."""
        self.connect_timeout_s = connect_timeout_s
        self.backoff: tuple[float, ...] = tuple(backoff)
        self.queue = AudioQueue(max_queued_bytes)
        self.reconnects = 0
        """Successful reconnections so far."""
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._audio_ready = asyncio.Event()
        self._connect_lock = asyncio.Lock()
        self._closing = False
        self._closed = False
        self._last_audio_sent = 0.0

    # --- provider hooks -----------------------------------------------------------------------

    def url(self) -> str:
        raise NotImplementedError

    def headers(self) -> Mapping[str, str]:
        raise NotImplementedError

    async def on_open(self, ws: ClientConnection) -> None:
        """Send the provider handshake (e.g. a session update) right after connecting."""

    def encode_audio(self, mulaw: bytes) -> str | bytes:
        raise NotImplementedError

    def handle_message(self, message: str | bytes) -> None:
        raise NotImplementedError

    async def before_close(self, ws: ClientConnection) -> None:
        """Runs on explicit close while connected, after queued audio was flushed."""

    def after_close(self) -> None:
        """Runs once the session is closed (e.g. flush pending text)."""

    async def keepalive(self, ws: ClientConnection) -> None:
        """Runs alongside each connection (cancelled when it ends); default: nothing."""

    # --- public API -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def closed(self) -> bool:
        return self._closing

    async def connect(self) -> None:
        if self._closing:
            raise SttError(f"{self.provider_name}: session is closed")
        async with self._connect_lock:
            if self._runner is not None:
                return
            ws = await self._open()
            if self._closing:  # closed while connecting
                await ws.close()
                return
            self._runner = asyncio.create_task(self._run(ws), name=f"stt-{self.provider_name}")

    def send_audio(self, mulaw: bytes) -> None:
        if self._closing or not mulaw:
            return
        self.queue.push(bytes(mulaw))
        if len(self.queue) >= self.batch_bytes:
            self._audio_ready.set()
        elif self._batch_timer is None:  # a short batch goes out anyway after one frame time
            self._batch_timer = asyncio.get_running_loop().call_later(BATCH_WAIT_S, self._batch_due)

    def _batch_due(self) -> None:
        self._batch_timer = None
        if len(self.queue):
            self._audio_ready.set()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        self._audio_ready.set()
        runner, self._runner = self._runner, None
        ws = self._ws
        try:
            if ws is not None:
                with contextlib.suppress(ConnectionClosed, TimeoutError, OSError):
                    async with asyncio.timeout(2.0):
                        await self._flush(ws)
                        await self.before_close(ws)
                if runner is not None and self.drain_on_close_s > 0:
                    # Let the reader take the provider's last results until the server closes.
                    await asyncio.wait({runner}, timeout=self.drain_on_close_s)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2.0)
        finally:
            if runner is not None:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
            self._ws = None
            self.queue.clear()
            self.after_close()
            self._closed = True

    # --- internals ------------------------------------------------------------------------------

    def json_event(self, message: str | bytes) -> dict[str, Any] | None:
        """A provider message as a JSON object; anything else is logged and ignored (None)."""
        try:
            event = json.loads(message)
        except ValueError:
            log.warning("%s: ignoring a non-JSON message", self.provider_name)
            return None
        return event if isinstance(event, dict) else None

    def _emit(self, callback: Callable[..., None], *args: str) -> None:
        if self._closed:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("%s: STT callback failed", self.provider_name)

    async def _open(self) -> ClientConnection:
        url = self.url()
        try:
            return await connect(url, additional_headers=dict(self.headers()),
                                 open_timeout=self.connect_timeout_s, max_size=2**22,
                                 proxy=None if _is_loopback(url) else True)
        except InvalidStatus as exc:
            raise SttError(f"{self.provider_name}: connection rejected with HTTP "
                           f"{exc.response.status_code}") from exc
        except TimeoutError as exc:
            raise SttError(f"{self.provider_name}: connect timed out after "
                           f"{self.connect_timeout_s:g}s") from exc
        except (InvalidHandshake, OSError, ConnectionClosed) as exc:
            raise SttError(f"{self.provider_name}: connect failed: {exc}") from exc

    async def _run(self, ws: ClientConnection | None) -> None:
        attempts = 0
        while not self._closing:
            if ws is not None:
                attempts = 0
                await self._serve(ws)
                ws = None
                if self._closing:
                    return
                log.warning("%s: STT connection lost; reconnecting", self.provider_name)
            if attempts >= len(self.backoff):
                log.error("%s: STT reconnect gave up after %d attempts", self.provider_name, attempts)
                self._emit(self.callbacks.on_error,
                           f"{self.provider_name}: connection lost; gave up after {attempts} "
                           "reconnect attempts")
                self._closing = True
                self.queue.clear()
                return
            await asyncio.sleep(max(0.0, self.backoff[attempts]))
            attempts += 1
            if self._closing:
                return
            try:
                ws = await self._open()
            except SttError as exc:
                log.warning("%s: reconnect attempt %d failed: %s", self.provider_name, attempts, exc)
                continue
            self.reconnects += 1

    async def _serve(self, ws: ClientConnection) -> None:
        """Run one connection until it closes."""
        helpers: list[asyncio.Task[None]] = []
        try:
            await self.on_open(ws)
            self._ws = ws
            self._last_audio_sent = asyncio.get_running_loop().time()
            helpers.append(asyncio.create_task(self._sender(ws)))
            helpers.append(asyncio.create_task(self.keepalive(ws)))
            async for message in ws:
                try:
                    self.handle_message(message)
                except Exception:
                    log.exception("%s: could not handle an STT message", self.provider_name)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("%s: STT connection failed", self.provider_name)
        finally:
            if self._ws is ws:
                self._ws = None
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if not self._closing:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)

    async def _sender(self, ws: ClientConnection) -> None:
        while not self._closing:
            await self._flush(ws)
            self._audio_ready.clear()
            if len(self.queue) >= self.batch_bytes:
                continue
            await self._audio_ready.wait()

    async def _flush(self, ws: ClientConnection) -> None:
        while len(self.queue):
            chunk = self.queue.pop_chunk()
            try:
                await ws.send(self.encode_audio(chunk))
            except BaseException:
                self.queue.push_front(chunk)
                raise
            self._last_audio_sent = asyncio.get_running_loop().time()
