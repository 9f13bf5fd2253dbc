"""The media-stream WebSocket endpoint, on the webhook port.

uvicorn hands every WebSocket upgrade to `MediaEndpoint.protocol_class()`: an asyncio protocol
without an ASGI round trip per frame. The `websockets` sans-I/O server state machine answers the
opening handshake; from the 101 on, frames go through `ws_frames.FrameStream` (parsed as they
arrive in `data_received`), and outbound frames are written straight to the transport, so fifty
frames a second on hundreds of calls stay cheap, and the send buffer is visible for
backpressure. The guards:

- the path must equal `streaming.streamPath` (404 otherwise);
- `maxConnections` open or upgrading sockets: more get HTTP 503 at the upgrade. A socket the
  server closes stops counting at once, and is dropped if the peer does not answer the close
  within half a second (D64);
- before a valid `start`: at most `maxPendingConnections` sockets, `maxPendingConnectionsPerIp`
  per client IP, each for `preStartTimeoutMs` (close 1008 "Start timeout"). A new socket over
  either budget takes the slot of the oldest one that has not sent `start` (which is closed
  with 1013), so idle sockets cannot keep a real stream out (D64);
- `start` must name a live call and carry its token (close 1008 "Missing callSid" /
  "Unknown call"); the client IP is the socket's unless it is a trusted proxy;
- messages over 64 KiB close the socket (1009), WebSocket protocol errors too (1002, 1007);
  a send buffer over 1 MiB closes it (1013);
- malformed messages and bad base64 are logged and ignored, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from voicecall.media.session import StreamSession
from voicecall.providers.streams import StreamMessage, StreamSerializer, StreamStart
from voicecall.security.client_address import client_address
from voicecall.server.ws_frames import FrameStream, StreamState, text_frame

__all__ = ["MediaEndpoint", "MediaLimits", "StreamOpener", "client_ip"]

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
MAX_SEND_BUFFER = 1024 * 1024
CLOSE_TIMEOUT_S = 0.5
MAX_BUFFERED_BEFORE_AUTH = 100
MAX_HEAD_BYTES = 16 * 1024
_END_OF_HEAD = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class MediaLimits:
    path: str = "/voice/stream"
    max_connections: int = 128
    max_pending: int = 32
    max_pending_per_ip: int = 4
    pre_start_timeout_s: float = 5.0
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_send_buffer: int = MAX_SEND_BUFFER
    trust_forwarding_headers: bool = False
    trusted_proxy_ips: frozenset[str] = field(default_factory=frozenset)


class StreamOpener(Protocol):
    """Turns an authorized `start` into a session (the `MediaHub`)."""

    async def open(self, start: StreamStart, query_token: str | None,
                   connection: Any) -> StreamSession | None: ...


def client_ip(remote: str, headers: Headers, limits: MediaLimits) -> str:
    """The caller's IP: the socket's, or, from a trusted proxy, the right-most untrusted
    `X-Forwarded-For` hop (the first hop when all are trusted), else `X-Real-IP`."""
    trusted = limits.trusted_proxy_ips if limits.trust_forwarding_headers else frozenset()
    return client_address(remote, forwarded_for=headers.get_all("X-Forwarded-For"),
                          real_ip=headers.get("X-Real-IP"), trusted_proxies=trusted)


class MediaEndpoint:
    """Shared state of all media sockets: counts, pending registry, and where sessions open."""

    def __init__(self, limits: MediaLimits, serializer: StreamSerializer, opener: StreamOpener) -> None:
        self.limits = limits
        self.serializer = serializer
        self.opener = opener
        self.sockets: set[MediaConnection] = set()
        self.pending: dict[MediaConnection, str] = {}
        self.pending_per_ip: Counter[str] = Counter()
        self.refused_503 = 0
        self.closed_by_code: Counter[int] = Counter()

    def protocol_class(self) -> type[asyncio.Protocol]:
        """The class uvicorn instantiates for each WebSocket upgrade (its `ws=` setting)."""
        endpoint = self

        class BoundMediaConnection(MediaConnection):
            def __init__(self, config: Any, server_state: Any, app_state: Any = None,
                         _loop: asyncio.AbstractEventLoop | None = None) -> None:
                super().__init__(endpoint, server_state)

        return BoundMediaConnection

    def add_pending(self, conn: MediaConnection, ip: str) -> bool:
        """Count `conn` as pending for `ip`. Over the per-IP or the global budget, the oldest
        pending socket (of that IP, or of all) that has not sent `start` loses its slot; False
        when every candidate has (the newcomer is then refused)."""
        limits = self.limits
        if self.pending_per_ip[ip] >= limits.max_pending_per_ip and not self._evict_oldest(ip):
            return False
        if len(self.pending) >= limits.max_pending and not self._evict_oldest(None):
            return False
        self.pending[conn] = ip
        self.pending_per_ip[ip] += 1
        return True

    def _evict_oldest(self, ip: str | None) -> bool:
        victim = next((c for c, c_ip in self.pending.items()
                       if (ip is None or c_ip == ip) and not c.started), None)
        if victim is None:
            return False
        victim.close(1013, "Too many pending media stream connections")
        return True

    def drop_pending(self, conn: MediaConnection) -> None:
        ip = self.pending.pop(conn, None)
        if ip is not None:
            self.pending_per_ip[ip] -= 1
            if self.pending_per_ip[ip] <= 0:
                del self.pending_per_ip[ip]


class MediaConnection(asyncio.Protocol):
    """One media WebSocket (see the module docstring)."""

    def __init__(self, endpoint: MediaEndpoint, server_state: Any) -> None:
        self.endpoint = endpoint
        self.server_state = server_state
        self.conn = ServerProtocol(max_size=endpoint.limits.max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.query_token: str | None = None
        self.session: StreamSession | None = None
        self.accepted = False
        self.closing = False
        self._authorizing = False
        self.frames: FrameStream | None = None
        """The open connection's frames; None until the 101 is sent."""
        self._head = bytearray()
        self._buffered: list[StreamMessage] = []
        self._max_send = endpoint.limits.max_send_buffer
        self._start_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._auth_task: asyncio.Task[None] | None = None
        self._over_capacity = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else ""
        self._over_capacity = len(self.endpoint.sockets) >= self.endpoint.limits.max_connections
        self.endpoint.sockets.add(self)  # counted from now on: upgrades in flight count too
        if self.server_state is not None:
            self.server_state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint.sockets.discard(self)
        self.endpoint.drop_pending(self)
        if self.server_state is not None:
            self.server_state.connections.discard(self)
        for timer in (self._start_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        if self._auth_task is not None and not self._auth_task.done():
            self._auth_task.cancel()
        self.closing = True
        if self.session is not None:
            self.session.end()

    def data_received(self, data: bytes) -> None:
        frames = self.frames
        if frames is not None:
            for message in frames.receive_data(data):
                self._message(message)
            self._flush()
            return
        self._head += data
        end = self._head.find(_END_OF_HEAD)
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._close_transport()
            return
        head, rest = bytes(self._head[:end + 4]), bytes(self._head[end + 4:])
        self._head.clear()
        self.conn.receive_data(head)
        for event in self.conn.events_received():
            if isinstance(event, Request):
                self._handshake(event)
        self._flush()
        if rest and self.frames is not None and not self.closing:
            self.data_received(rest)

    def eof_received(self) -> bool | None:
        if self.frames is not None:
            self.frames.receive_eof()
        else:
            self.conn.receive_eof()
        self._flush()
        return None

    def pause_writing(self) -> None:  # the backpressure check reads the buffer size itself
        pass

    def resume_writing(self) -> None:
        pass

    def shutdown(self) -> None:
        """uvicorn is shutting down: going away (1001)."""
        if self.accepted:
            self.close(1001, "gateway shutting down")
        elif self.transport is not None:
            self.transport.close()

    @property
    def started(self) -> bool:
        """The socket sent `start` (it is being authorized or has a session)."""
        return self._authorizing or self.session is not None

    # -- handshake -------------------------------------------------------------------------------
    def _handshake(self, request: Request) -> None:
        endpoint, limits = self.endpoint, self.endpoint.limits
        target = urlsplit(request.path)
        if target.path != limits.path:
            self._refuse(404, "Not Found")
            return
        if self._over_capacity:
            endpoint.refused_503 += 1
            self._refuse(503, "Too many media stream connections")
            return
        response = self.conn.accept(request)
        self.conn.send_response(response)
        self._write(self.conn.data_to_send())
        if response.status_code != 101:
            self._close_transport()
            return
        self.accepted = True
        self.frames = FrameStream(limits.max_frame_bytes)
        query = parse_qs(target.query)
        tokens = query.get("token")
        self.query_token = tokens[0] if tokens else None
        self.client_ip = client_ip(self.client_ip, request.headers, limits)
        if not endpoint.add_pending(self, self.client_ip):
            self.close(1013, "Too many pending media stream connections")
            return
        loop = asyncio.get_running_loop()
        self._start_timer = loop.call_later(limits.pre_start_timeout_s, self._start_timeout)

    def _refuse(self, status: int, text: str) -> None:
        response = Response(status, "Service Unavailable" if status == 503 else "Not Found",
                            Headers([("Content-Type", "text/plain; charset=utf-8"),
                                     ("Connection", "close")]), text.encode())
        self.conn.send_response(response)
        self._flush()
        self._close_transport()

    def _start_timeout(self) -> None:
        self._start_timer = None
        if self.session is None and not self.closing:
            self.close(1008, "Start timeout")

    # -- messages --------------------------------------------------------------------------------
    def _message(self, data: str | bytes) -> None:
        if self.closing:
            return
        try:
            message = self.endpoint.serializer.parse(data)
        except (ValueError, UnicodeDecodeError) as exc:
            log.debug("media stream from %s: ignored a malformed message: %s", self.client_ip, exc)
            return
        except Exception as exc:  # a frame no parser can take is still just a bad frame (D62)
            log.debug("media stream from %s: ignored a message its parser failed on: %r",
                      self.client_ip, exc)
            return
        if message is None:
            return
        if self.session is not None:
            self.session.handle(message)
        elif self._authorizing:
            if len(self._buffered) < MAX_BUFFERED_BEFORE_AUTH:
                self._buffered.append(message)
        elif isinstance(message, StreamStart):
            if not message.call_sid:
                self.close(1008, "Missing callSid")
                return
            self._authorizing = True
            self._auth_task = asyncio.get_running_loop().create_task(self._authorize(message))

    async def _authorize(self, start: StreamStart) -> None:
        try:
            session = await self.endpoint.opener.open(start, self.query_token, self)
        except Exception:
            log.exception("media stream for %s: authorization failed", start.call_sid)
            session = None
        self._authorizing = False
        if self.closing:
            if session is not None:
                session.end()
            return
        if session is None:
            self.close(1008, "Unknown call")
            return
        self.session = session
        self.endpoint.drop_pending(self)
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        buffered, self._buffered = self._buffered, []
        for message in buffered:
            session.handle(message)

    # -- sending ---------------------------------------------------------------------------------
    def send_text(self, text: str) -> bool:
        """Send one message now; False if the socket is closed (or just closed for backpressure)."""
        transport = self.transport
        if self.closing or self.frames is None or transport is None:
            return False
        limit = self._max_send
        if transport.get_write_buffer_size() > limit:
            self.close(1013, "Backpressure: send buffer exceeded")
            return False
        transport.write(text_frame(text.encode()))
        if transport.get_write_buffer_size() > limit:
            self.close(1013, "Backpressure: send buffer exceeded")
        return True

    def close(self, code: int, reason: str) -> None:
        """Close with `code`; the socket is dropped if the peer does not answer in time."""
        if self.closing:
            return
        self.closing = True
        self.endpoint.closed_by_code[code] += 1
        self.endpoint.drop_pending(self)
        self.endpoint.sockets.discard(self)  # a closing socket no longer takes capacity
        if self.frames is not None:
            self.frames.send_close(code, reason)
        self._flush()
        if self.transport is not None and not self.transport.is_closing():
            self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S,
                                                                      self._abort_transport)
        if self.session is not None:
            self.session.end()

    def _flush(self) -> None:
        """Write what the handshake or the frame stream has to send; once the closing handshake
        has started or the connection failed, the session ends."""
        frames = self.frames
        if frames is None:
            self._write(self.conn.data_to_send())
            return
        self._write(frames.data_to_send())
        if frames.state is not StreamState.OPEN:
            self.closing = True
            if self.session is not None:
                self.session.end()

    def _write(self, chunks: Iterable[bytes]) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in chunks:
            if chunk:
                transport.write(chunk)
            else:  # the state machine's end-of-stream marker
                self._close_transport()
                return

    def _close_transport(self) -> None:
        self.endpoint.sockets.discard(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _abort_transport(self) -> None:
        """The peer did not answer the close in time: drop the connection without waiting."""
        self._close_timer = None
        self.endpoint.sockets.discard(self)
        if self.transport is not None:
            self.transport.abort()
