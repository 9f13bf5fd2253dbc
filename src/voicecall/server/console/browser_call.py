"""Browser calls (D112): a signed-in console user talks to the agent from the page. The page's
WebSocket at `/console/call` becomes an inbound call carried by this channel, and its audio
runs through the shared media pipeline (the hub's STT, responder, TTS, pacing, marks and
barge-in) with `BrowserStreamSerializer` as its wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from voicecall.calls.model import CallRecord, EndReason
from voicecall.media.hub import MediaHub
from voicecall.providers.base import ProviderCallStatus, ProviderError, TransferRequest
from voicecall.providers.browser import BrowserStreamSerializer
from voicecall.providers.streams import StreamSerializer, StreamStart
from voicecall.server.console.auth import COOKIE, ConsoleAuth
from voicecall.service import CallError, CallService

log = logging.getLogger(__name__)

CHANNEL = "browser"
SEND_QUEUE = 500
"""Outbound messages a page may fall behind by (10 s of audio) before it is dropped."""
POLICY_VIOLATION = 1008


class _PageSocket:
    """A page's WebSocket as the session's `StreamConnection`: sends never block (the pacer
    calls them every tick), a writer task drains them in order."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        client = websocket.client
        self.client_ip = client.host if client else ""
        self.closed = False
        self._queue: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue(SEND_QUEUE)
        self._writer = asyncio.get_running_loop().create_task(self._drain(), name="browser-call-send")

    def send_text(self, text: str) -> bool:
        if self.closed:
            return False
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self.close(1013, "the page fell behind")
            return False
        return True

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait((code, reason))
        if self._queue.full():  # no room for the close: drop what is queued, then close
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait((code, reason))

    async def _drain(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, tuple):
                    await self.websocket.close(*item)
                    return
                await self.websocket.send_text(item)
        except Exception:  # the page went away: the receive loop notices
            self.closed = True

    async def finish(self) -> None:
        self.closed = True
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._writer


class BrowserCalls:
    """The browser channel: `MediaStreams` for its streams, `CallChannel` for its calls, and the
    WebSocket endpoint that starts them."""

    def __init__(self, service: CallService, hub: MediaHub, auth: ConsoleAuth, *,
                 to: str = "console") -> None:
        self.service = service
        self.hub = hub
        self.auth = auth
        self.to = to
        self.serializer: StreamSerializer = BrowserStreamSerializer()
        self._sockets: dict[str, _PageSocket] = {}
        self._tokens: dict[str, str] = {}
        service.channels[CHANNEL] = self

    # -- MediaStreams ----------------------------------------------------------------------------
    async def authorize_stream(self, start: StreamStart, query_token: str | None) -> str | None:
        expected = self._tokens.get(start.call_sid)
        given = start.token or query_token or ""
        if expected is None or not hmac.compare_digest(expected.encode(), given.encode()):
            return None
        record = self.service.live(start.call_sid)
        return record.call_id if record is not None else None

    # -- CallChannel -----------------------------------------------------------------------------
    async def hangup_call(self, call: CallRecord, reason: EndReason) -> None:
        socket = self._sockets.get(call.provider_call_id or "")
        if socket is not None:
            socket.close(1000, "call ended")

    async def play_tts(self, call: CallRecord, text: str) -> None:
        raise ProviderError("a browser call speaks over its stream")

    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None:
        """Nothing to do: the page streams the microphone all the time."""

    async def stop_listening(self, call: CallRecord) -> None:
        """Nothing to do (see `start_listening`)."""

    async def send_dtmf(self, call: CallRecord, digits: str) -> None:
        raise ProviderError("a browser call plays keys over its stream")

    async def transfer_call(self, call: CallRecord, request: TransferRequest) -> None:
        raise ProviderError("a browser call cannot be transferred")

    async def get_call_status(self, call: CallRecord) -> ProviderCallStatus:
        if call.provider_call_id in self._sockets:
            return ProviderCallStatus("in-progress", is_terminal=False)
        return ProviderCallStatus("gone", is_terminal=True, end_reason=EndReason.HANGUP_USER)

    # -- the page's WebSocket --------------------------------------------------------------------
    async def endpoint(self, websocket: WebSocket) -> None:
        """One browser call, for as long as the page keeps its socket open."""
        session = self.auth.session(websocket.cookies.get(COOKIE))
        origin = websocket.headers.get("origin")
        host = websocket.headers.get("host", "")
        if session is None or (origin is not None and origin.split("://", 1)[-1] != host):
            await websocket.close(POLICY_VIOLATION)  # before accept: the upgrade gets 403
            return
        await websocket.accept()
        channel_id = f"browser-{secrets.token_hex(8)}"
        token = secrets.token_urlsafe(24)
        self._tokens[channel_id] = token
        page = _PageSocket(websocket)
        self._sockets[channel_id] = page
        record: CallRecord | None = None
        stream = None
        try:
            try:
                record = await self.service.open_channel_call(
                    CHANNEL, from_=f"browser:{session.name}", to=self.to, channel_call_id=channel_id)
            except CallError as exc:
                await websocket.send_json({"event": "error", "message": str(exc)})
                await websocket.close(1013, "no call")
                return
            start = StreamStart(call_sid=channel_id, stream_id=f"BS{secrets.token_hex(8)}", token=token,
                                encoding="audio/l16", sample_rate=8000)
            stream = await self.hub.open(start, None, page, streams=self)
            if stream is None:
                page.close(POLICY_VIOLATION, "call ended")
                return
            page.send_text(f'{{"event":"call","callId":"{record.call_id}"}}')
            await self._receive(websocket, stream)
        finally:
            if stream is not None:
                stream.end()
            self._sockets.pop(channel_id, None)
            self._tokens.pop(channel_id, None)
            await page.finish()
            if record is not None and self.service.live(record.call_id) is not None:
                await self.service.end(record.call_id, EndReason.HANGUP_USER,
                                       detail="the browser hung up")

    async def _receive(self, websocket: WebSocket, stream: Any) -> None:
        while not stream.ended:
            try:
                message = await websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is None:
                continue
            try:
                parsed = self.serializer.parse(data)
            except ValueError as exc:
                log.debug("browser call %s: bad frame ignored: %s", stream.call_id, exc)
                continue
            if parsed is not None:
                stream.handle(parsed)
