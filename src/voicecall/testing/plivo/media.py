"""Plivo's side of a bidirectional audio stream (`<Stream bidirectional="true">`).

The simulator dials the app's WebSocket like Plivo: one `start` (with the `extraHeaders` of the
XML as `extra_headers`), then a `media` frame every 20 ms (160 bytes of μ-law: the far end's
audio, else silence) with numeric `sequenceNumber` and `chunk`, and `dtmf` for keys pressed.
The app's `playAudio` goes into a playout buffer drained at 8000 bytes a second; a `checkpoint`
is answered with `playedStream` once the audio before it has played, and `clearAudio` empties
the buffer (its checkpoints are never played) and is answered with `clearedAudio`. Plivo sends
no `stop`: the socket closes when the call leaves the stream.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicecall.testing.media_clock import CallerFeed

__all__ = ["PlivoStream", "PlivoStreamRecord"]

FRAME_S = 0.02
OPEN_TIMEOUT_S = 10.0
CONTENT_TYPES = frozenset({("audio/x-mulaw", 8000), ("audio/x-l16", 8000), ("audio/x-l16", 16000)})


@dataclass
class PlivoStreamRecord:
    """What one stream did, for assertions."""

    stream_id: str
    url: str
    extra_headers: str
    started: bool = False
    closed_by: str | None = None  # "app" (its socket closed) or "call"
    received_audio: bytearray = field(default_factory=bytearray)
    """Every byte of audio the app sent (`playAudio`), cleared or not."""
    played_audio: bytearray = field(default_factory=bytearray)
    """The app's audio as the far end heard it (cleared audio left out)."""
    clear_positions: list[int] = field(default_factory=list)
    """`len(received_audio)` at each `clearAudio`."""
    checkpoints: list[str] = field(default_factory=list)
    played_checkpoints: list[str] = field(default_factory=list)
    cleared_bytes: int = 0
    clears: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)  # app messages but playAudio
    invalid: list[str] = field(default_factory=list)
    frames_sent: int = 0


class PlivoStream:
    """One stream session, run until the app closes the socket or the task is cancelled."""

    def __init__(self, *, url: str, call_uuid: str, auth_id: str, extra_headers: str,
                 feed: CallerFeed, on_change: Any = None) -> None:
        self.url = url
        self.call_uuid = call_uuid
        self.auth_id = auth_id
        self.feed = feed
        self.record = PlivoStreamRecord(stream_id=str(uuid4()), url=url, extra_headers=extra_headers)
        self._on_change = on_change or (lambda: None)
        self._seq = 0
        self._chunk = 0
        self._buffer = bytearray()
        self._pending: list[tuple[int, str]] = []  # (bytes still to play before it, name)
        self._ws: ClientConnection | None = None

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        self._seq += 1
        await self._ws.send(json.dumps({**message, "sequenceNumber": self._seq},
                                       separators=(",", ":")))

    async def run(self) -> None:
        async with connect(self.url, open_timeout=OPEN_TIMEOUT_S, max_size=2**20) as ws:
            self._ws = ws
            await self._send({"event": "start", "start": {
                "callId": self.call_uuid, "streamId": self.record.stream_id,
                "accountId": self.auth_id, "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}},
                "extra_headers": self.record.extra_headers})
            self.record.started = True
            self._on_change()
            ticker = asyncio.create_task(self._tick())
            try:
                await self._receive()
                self.record.closed_by = "app"
            except asyncio.CancelledError:
                self.record.closed_by = "call"
                raise
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
                self._on_change()

    async def _tick(self) -> None:
        """Every 20 ms: one caller frame out, keys pressed, and 20 ms of the app's audio played."""
        next_at = time.monotonic()
        with contextlib.suppress(ConnectionClosed):
            while True:
                self._chunk += 1
                frame = self.feed.take_frame()
                await self._send({"event": "media", "streamId": self.record.stream_id, "media": {
                    "track": "inbound", "timestamp": str(int(time.time() * 1000)),
                    "chunk": self._chunk, "payload": base64.b64encode(frame).decode("ascii")}})
                self.record.frames_sent += 1
                while self.feed.dtmf:
                    await self._send({"event": "dtmf", "streamId": self.record.stream_id,
                                      "dtmf": {"track": "inbound", "digit": self.feed.dtmf.popleft(),
                                               "timestamp": str(int(time.time() * 1000))}})
                await self._play(160)
                next_at += FRAME_S
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _play(self, nbytes: int) -> None:
        played = bytes(self._buffer[:nbytes])
        del self._buffer[:nbytes]
        self.record.played_audio.extend(played)
        still: list[tuple[int, str]] = []
        for before, name in self._pending:
            left = before - len(played)
            if left <= 0:
                self.record.played_checkpoints.append(name)
                await self._send({"event": "playedStream", "streamId": self.record.stream_id,
                                  "name": name})
            else:
                still.append((left, name))
        if len(still) != len(self._pending) or played:
            self._on_change()
        self._pending = still

    async def _receive(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for raw in self._ws:
                try:
                    message = json.loads(raw)
                    if not isinstance(message, dict):
                        raise ValueError("not an object")
                except ValueError:
                    self.record.invalid.append(str(raw)[:200])
                    continue
                await self._handle(message)

    async def _handle(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "playAudio":
            media = message.get("media") if isinstance(message.get("media"), dict) else {}
            assert isinstance(media, dict)
            kind = (media.get("contentType"), int(media.get("sampleRate") or 0))
            try:
                audio = binascii.a2b_base64(str(media.get("payload") or ""), strict_mode=True)
            except (binascii.Error, ValueError):
                audio = b""
            if kind not in CONTENT_TYPES or not audio:
                self.record.invalid.append(f"playAudio {kind}")
                return
            self._buffer.extend(audio)
            self.record.received_audio.extend(audio)
            return
        self.record.received.append(message)
        if event == "checkpoint" and message.get("name"):
            name = str(message["name"])
            self.record.checkpoints.append(name)
            self._pending.append((len(self._buffer), name))
            if not self._buffer:
                await self._play(0)
        elif event == "clearAudio":
            self.record.cleared_bytes += len(self._buffer)
            self.record.clears += 1
            self.record.clear_positions.append(len(self.record.received_audio))
            self._buffer.clear()
            self._pending.clear()
            await self._send({"event": "clearedAudio", "streamId": self.record.stream_id})
            self._on_change()
        elif event != "sendDTMF":
            self.record.invalid.append(f"unknown event {event!r}")
