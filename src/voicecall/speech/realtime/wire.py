"""The WebSocket plumbing both realtime providers share: connect under a time limit, a sender
task fed by a bounded queue (callers never block), a reader task that hands each JSON message
to the provider, and one `on_closed` report however the session ends.

The connection offers no permessage-deflate: nearly every message is base64 audio, which
deflate barely shrinks, so compressing it would be work for nothing on both ends
(docs/decisions.md D128)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from voicecall.shared import bounded_json
from voicecall.speech.realtime.base import RealtimeError, RealtimeEvents

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
MAX_QUEUED_MESSAGES = 500
"""About 10 s of caller audio (one message per 20 ms frame) while the model connects."""
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def ws_url(base_url: str) -> str:
    """`http(s)://…` as `ws(s)://…` (a ws URL is kept), without a trailing slash."""
    url = base_url.rstrip("/")
    if url.startswith("https://"):
        return "wss://" + url[len("https://"):]
    if url.startswith("http://"):
        return "ws://" + url[len("http://"):]
    return url


class RealtimeSocket:
    """One provider connection. `handle` gets each parsed message object."""

    def __init__(self, url: str, headers: Mapping[str, str], events: RealtimeEvents,
                 handle: Callable[[dict[str, Any]], None], *, label: str) -> None:
        self.url = url
        self.headers = dict(headers)
        self.events = events
        self.handle = handle
        self.label = label
        self._ws: ClientConnection | None = None
        self._out: asyncio.Queue[str] = asyncio.Queue(MAX_QUEUED_MESSAGES)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.dropped = 0

    async def open(self) -> ClientConnection:
        try:
            self._ws = await asyncio.wait_for(
                connect(self.url, additional_headers=self.headers, max_size=MAX_MESSAGE_BYTES,
                        open_timeout=CONNECT_TIMEOUT_S, compression=None), CONNECT_TIMEOUT_S)
        except Exception as exc:
            raise RealtimeError(f"{self.label}: could not connect: {type(exc).__name__}: {exc}") from None
        return self._ws

    async def receive_one(self, timeout_s: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
        """One message during the handshake (before `run`)."""
        assert self._ws is not None
        try:
            raw = await asyncio.wait_for(self._ws.recv(), timeout_s)
        except TimeoutError:
            raise RealtimeError(f"{self.label}: no answer within {timeout_s:g} s") from None
        except ConnectionClosed as exc:
            raise RealtimeError(f"{self.label}: closed during setup ({exc.rcvd})") from None
        return _parse(raw)

    def run(self) -> None:
        """Start the reader and the sender (after the handshake)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._reader(), name=f"{self.label}-reader"),
                       loop.create_task(self._sender(), name=f"{self.label}-sender")]

    def send(self, message: dict[str, Any]) -> None:
        """Queue one message; beyond the queue's bound the message is dropped (and counted)."""
        if self._closed:
            return
        try:
            self._out.put_nowait(json.dumps(message))
        except asyncio.QueueFull:
            self.dropped += 1

    async def send_now(self, message: dict[str, Any]) -> None:
        """Send during the handshake (before `run`)."""
        assert self._ws is not None
        await self._ws.send(json.dumps(message))

    async def _sender(self) -> None:
        assert self._ws is not None
        try:
            while True:
                await self._ws.send(await self._out.get())
        except ConnectionClosed:
            return

    async def _reader(self) -> None:
        assert self._ws is not None
        error: str | None = None
        try:
            async for raw in self._ws:
                try:
                    message = _parse(raw)
                except RealtimeError as exc:
                    log.warning("%s: %s", self.label, exc)
                    continue
                try:
                    self.handle(message)
                except Exception:
                    log.exception("%s: handling a message failed", self.label)
        except ConnectionClosedOK:
            pass
        except ConnectionClosed as exc:
            error = f"{self.label} connection lost ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        except Exception as exc:
            error = f"{self.label} failed: {type(exc).__name__}: {exc}"
        if not self._closed:
            self._closed = True
            self._stop_sender()
            self.events.on_closed(error)

    def _stop_sender(self) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task() and not task.done():
                task.cancel()

    async def close(self) -> None:
        """Close without reporting (the bridge asked for it)."""
        self._closed = True
        self._stop_sender()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 2)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _parse(raw: str | bytes) -> dict[str, Any]:
    try:
        message: Any = bounded_json.loads(raw)
    except ValueError as exc:
        raise RealtimeError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise RealtimeError("not a JSON object")
    return message
