"""The Telnyx side of a media-streaming WebSocket (Call Control `stream_url`).

The simulator dials the app's stream URL as a WebSocket client, as Telnyx does, and speaks
Telnyx's protocol: `connected`, `start` (with `media_format` naming the codec, PCMU or PCMA),
a `media` frame every 20 ms (160 bytes of the caller's audio in that codec, else silence),
`dtmf` when the caller presses keys, `mark` echoes once the app's audio queued before them has
"played", every pending mark at once on `clear`, and `stop` when the call ends. App messages
(`media`, `mark`, `clear`) need no `stream_id`; malformed ones get an `error` message
(100003 malformed_frame, 100004 invalid_media), as Telnyx sends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import Callable
from typing import Any, Literal
from uuid import uuid4

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicecall.audio.g711 import ALAW_SILENCE, ULAW_SILENCE, alaw_encode, ulaw_encode
from voicecall.testing.media_clock import CallerFeed, Playout, run_frames

__all__ = ["MediaClient", "PcmFeed", "StreamCodec"]

StreamCodec = Literal["PCMU", "PCMA"]
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0


class PcmFeed(CallerFeed):
    """A caller feed in the stream's codec that also takes 16-bit PCM (encoded on the way in)."""

    def __init__(self, codec: StreamCodec) -> None:
        super().__init__(silence=(ULAW_SILENCE if codec == "PCMU" else ALAW_SILENCE)[0])
        self._encode = ulaw_encode if codec == "PCMU" else alaw_encode

    def add_pcm(self, pcm16: bytes) -> None:
        """Queue 8 kHz 16-bit little-endian PCM, encoded in the stream's codec."""
        self.add_audio(self._encode(pcm16))


class MediaClient:
    """One Telnyx media stream, run until the app closes it or the call ends (`close`)."""

    def __init__(self, *, url: str, call_control_id: str, call_session_id: str, from_: str, to: str,
                 client_state: str | None, codec: StreamCodec, bidirectional: bool = True,
                 on_change: Callable[[], None] | None = None) -> None:
        self.url = url
        self.call_control_id = call_control_id
        self.call_session_id = call_session_id
        self.from_, self.to = from_, to
        self.client_state = client_state
        self.codec: StreamCodec = codec
        self.bidirectional = bidirectional
        self.stream_id = str(uuid4()).upper()
        self.feed = PcmFeed(codec)
        self.playout = Playout()
        self.started = False
        self.open = False
        self.closed_by: str | None = None
        self.received_audio = bytearray()
        """The app's audio, in the stream's codec."""
        self.marks: list[str] = []
        self.marks_echoed: list[str] = []
        self.clear_positions: list[int] = []
        self.errors_sent: list[int] = []
        self.sent: list[dict[str, Any]] = []
        """Every message sent to the app but `media` frames."""
        self._on_change = on_change or (lambda: None)
        self._seq = 0
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            return
        self._seq += 1
        message = {"event": message["event"], "sequence_number": str(self._seq),
                   **{k: v for k, v in message.items() if k != "event"}, "stream_id": self.stream_id}
        await self._ws.send(json.dumps(message, separators=(",", ":")))
        if message["event"] != "media":
            self.sent.append(message)

    async def run(self) -> None:
        """Open the socket and stream until the app closes it or `close()` is called."""
        self._runner = asyncio.current_task()
        self._ws = await connect(self.url, open_timeout=OPEN_TIMEOUT_S, proxy=None, compression=None,
                                 user_agent_header="Telnyx-Media-Streaming", max_size=None)
        self.open = True
        ticker: asyncio.Task[None] | None = None
        try:
            await self._ws.send(json.dumps({"event": "connected", "version": "1.0.0"}))
            media_format = {"encoding": self.codec, "sample_rate": 8000, "channels": 1}
            await self._send({"event": "start", "start": {
                "user_id": str(uuid4()), "call_control_id": self.call_control_id,
                "call_session_id": self.call_session_id, "from": self.from_, "to": self.to,
                "client_state": self.client_state, "media_format": media_format}})
            self.started = True
            self._on_change()
            ticker = asyncio.create_task(run_frames(self._frame))
            await self._receive()
            self.closed_by = "app"
        except asyncio.CancelledError:
            self.closed_by = "call"
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._stop(), CLOSE_TIMEOUT_S)
        except ConnectionClosed:
            self.closed_by = "app"
        finally:
            self.open = False
            if ticker is not None:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT_S)
            self._on_change()

    async def close(self) -> None:
        """The call ended: send `stop` and close (no-op when the stream is not running)."""
        runner = self._runner
        if runner is not None and not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    async def _stop(self) -> None:
        await self._send({"event": "stop", "stop": {"user_id": str(uuid4()),
                                                    "call_control_id": self.call_control_id}})
        if self._ws is not None:
            await self._ws.close()

    async def _frame(self, k: int) -> None:
        while self.feed.dtmf:
            await self._send({"event": "dtmf", "dtmf": {"digit": self.feed.dtmf.popleft()}})
        payload = base64.b64encode(self.feed.take_frame()).decode("ascii")
        await self._send({"event": "media", "media": {"track": "inbound", "chunk": str(k),
                                                      "timestamp": str((k - 1) * 20),
                                                      "payload": payload}})
        for name in self.playout.tick():
            await self._echo(name)

    async def _echo(self, name: str) -> None:
        await self._send({"event": "mark", "mark": {"name": name}})
        self.marks_echoed.append(name)
        self._on_change()

    async def _error(self, code: int, title: str, detail: str) -> None:
        self.errors_sent.append(code)
        await self._send({"event": "error", "payload": {"code": code, "title": title, "detail": detail}})

    async def _receive(self) -> None:
        assert self._ws is not None
        async for raw in self._ws:
            try:
                message = json.loads(raw)
            except ValueError:
                await self._error(100003, "malformed_frame", "The frame is not JSON.")
                continue
            if not isinstance(message, dict) or not self.bidirectional:
                await self._error(100003, "malformed_frame", "Unexpected frame.")
                continue
            await self._handle(message)

    async def _handle(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "media":
            media = message.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            try:
                audio = base64.b64decode(payload, validate=True) if isinstance(payload, str) else None
            except (binascii.Error, ValueError):
                audio = None
            if audio is None:
                await self._error(100004, "invalid_media", "The media payload is not base64.")
                return
            self.received_audio.extend(audio)
            self.playout.add_audio(len(audio))
            self._on_change()
        elif event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str):
                await self._error(100003, "malformed_frame", "A mark needs a name.")
                return
            self.marks.append(name)
            self.playout.add_mark(name)
            if self.playout.played >= self.playout.queued:
                for due in self.playout.tick():  # nothing playing: the mark comes back at once
                    await self._echo(due)
        elif event == "clear":
            self.clear_positions.append(len(self.received_audio))
            for name in self.playout.clear():
                await self._echo(name)
        else:
            await self._error(100003, "malformed_frame", f"Unknown event {str(event)[:40]!r}.")
