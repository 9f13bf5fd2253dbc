"""The Twilio side of a Media Streams WebSocket (`<Connect><Stream>` / `<Start><Stream>`).

The simulator dials the app's stream URL as a WebSocket *client*, like Twilio does, and speaks the
documented JSON protocol: `connected`, `start`, a `media` frame every 20 ms (160 bytes of μ-law,
silence unless the caller has queued audio), `dtmf` when the caller presses keys, `mark` echoes once
the app's audio queued before them has "played" (a playout clock consuming 8000 bytes/s of real
time), every pending mark on `clear`, and `stop` when the stream ends from the call side.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from voicecall.testing.media_clock import CallerFeed, Playout, run_frames
from voicecall.testing.twilio.signing import SIGNATURE_HEADER, sign

INVALID_MESSAGE = 31951
OPEN_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 1.0


class StreamError(Exception):
    """The WebSocket could not be opened; `code` is the Twilio error code (319xx)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class StreamRecord:
    """Everything one stream did, for assertions."""

    stream_sid: str
    url: str
    name: str | None
    bidirectional: bool
    custom_parameters: dict[str, str]
    track: str = "inbound_track"
    started_at: float | None = None
    stopped_at: float | None = None
    closed_by: str | None = None  # "app" (the WebSocket closed) or "call" (we sent stop)
    sent: list[dict[str, Any]] = field(default_factory=list)  # every message but `media` frames
    received: list[dict[str, Any]] = field(default_factory=list)  # app messages but `media`
    received_audio: bytearray = field(default_factory=bytearray)
    marks: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    cleared_bytes: int = 0
    clear_positions: list[int] = field(default_factory=list)  # len(received_audio) at each clear
    invalid_messages: list[str] = field(default_factory=list)
    frames_sent: int = 0
    frames_received: int = 0

    def sent_events(self) -> list[str]:
        """The `event` of every message sent to the app, in order (media frames left out)."""
        return [str(m.get("event")) for m in self.sent]


class MediaStream:
    """One Media Streams WebSocket session, run until the app closes it or the task is cancelled.

    `audio_sink` and `marks_sink` (usually the call's `received_audio` / `marks`) also receive the
    app's outbound audio and mark names; `on_warning(code, message)` is called once per stream for
    invalid app messages (31951).
    """

    def __init__(self, *, url: str, account_sid: str, call_sid: str, auth_token: str, feed: CallerFeed,
                 custom_parameters: dict[str, str] | None = None, name: str | None = None,
                 bidirectional: bool = True, track: str = "inbound_track",
                 audio_sink: bytearray | None = None, marks_sink: list[str] | None = None,
                 marks_echoed_sink: list[str] | None = None,
                 on_warning: Callable[[int, str], None] | None = None) -> None:
        self.url = url
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.auth_token = auth_token
        self.feed = feed
        self.bidirectional = bidirectional
        self.record = StreamRecord(stream_sid="MZ" + secrets.token_hex(16), url=url, name=name,
                                   bidirectional=bidirectional,
                                   custom_parameters=dict(custom_parameters or {}), track=track)
        self._audio_sink = audio_sink
        self._marks_sink = marks_sink
        self._marks_echoed_sink = marks_echoed_sink
        self._on_warning = on_warning
        self._warned = False
        self._seq = 0
        self._send_lock = asyncio.Lock()
        self._playout = Playout()
        self._ws: ClientConnection | None = None

    @property
    def stream_sid(self) -> str:
        return self.record.stream_sid

    @property
    def tracks(self) -> list[str]:
        return {"inbound_track": ["inbound"], "outbound_track": ["outbound"],
                "both_tracks": ["inbound", "outbound"]}.get(self.record.track, ["inbound"])

    # -- sending ---------------------------------------------------------------------------------
    async def _send(self, message: dict[str, Any], *, numbered: bool = True) -> None:
        ws = self._ws
        if ws is None:
            return
        async with self._send_lock:
            if numbered:
                self._seq += 1
                message = {"event": message["event"], "sequenceNumber": str(self._seq),
                           **{k: v for k, v in message.items() if k != "event"}}
            await ws.send(json.dumps(message))
            if message["event"] != "media":
                self.record.sent.append(message)

    async def _echo_mark(self, name: str) -> None:
        await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
        self.record.marks_echoed.append(name)
        if self._marks_echoed_sink is not None:
            self._marks_echoed_sink.append(name)

    # -- session ---------------------------------------------------------------------------------
    async def _open(self) -> ClientConnection:
        headers = {SIGNATURE_HEADER: sign(self.auth_token, self.url, None)}
        try:
            return await connect(self.url, additional_headers=headers, open_timeout=OPEN_TIMEOUT_S,
                                 proxy=None, compression=None, user_agent_header="Twilio.TmeWs/1.0",
                                 max_size=None)
        except InvalidURI as exc:
            raise StreamError(31923, f"malformed WebSocket URL {self.url!r}: {exc}") from exc
        except InvalidStatus as exc:
            raise StreamError(31920, f"handshake failed: HTTP {exc.response.status_code}") from exc
        except InvalidHandshake as exc:
            raise StreamError(31920, f"handshake failed: {exc}") from exc
        except TimeoutError as exc:
            raise StreamError(31901, "connection timed out") from exc
        except OSError as exc:
            raise StreamError(31902, f"connection refused: {exc}") from exc

    async def run(self) -> None:
        """Open, stream until the app closes the socket; on cancellation send `stop` and close."""
        self._ws = await self._open()
        ticker: asyncio.Task[None] | None = None
        try:
            await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"},
                             numbered=False)
            start = {"accountSid": self.account_sid, "streamSid": self.stream_sid,
                     "callSid": self.call_sid, "tracks": self.tracks,
                     "customParameters": dict(self.record.custom_parameters),
                     "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
            await self._send({"event": "start", "start": start, "streamSid": self.stream_sid})
            self.record.started_at = time.time()
            ticker = asyncio.create_task(run_frames(self._frame))
            await self._receive()
            self.record.closed_by = "app"
        except asyncio.CancelledError:
            self.record.closed_by = "call"
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._stop_and_close(), STOP_TIMEOUT_S)
            raise
        except ConnectionClosed:
            self.record.closed_by = "app"
        finally:
            self.record.stopped_at = time.time()
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ticker
            if self._ws is not None and self.record.closed_by != "call":
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._ws.close(), STOP_TIMEOUT_S)

    async def _stop_and_close(self) -> None:
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await self._send({"event": "stop", "stop": {"accountSid": self.account_sid,
                                                        "callSid": self.call_sid},
                              "streamSid": self.stream_sid})
        await ws.close()

    async def _frame(self, k: int) -> None:
        """One 20 ms frame: pending DTMF, one inbound media frame, playout of app audio, due marks."""
        if self.bidirectional:
            while self.feed.dtmf:
                digit = self.feed.dtmf.popleft()
                await self._send({"event": "dtmf", "streamSid": self.stream_sid,
                                  "dtmf": {"track": "inbound_track", "digit": digit}})
        payload = base64.b64encode(self.feed.take_frame()).decode("ascii")
        await self._send({"event": "media", "media": {"track": "inbound", "chunk": str(k),
                                                      "timestamp": str((k - 1) * 20),
                                                      "payload": payload},
                          "streamSid": self.stream_sid})
        self.record.frames_sent += 1
        for name in self._playout.tick():
            await self._echo_mark(name)

    def _invalid(self, why: str) -> None:
        self.record.invalid_messages.append(why)
        if not self._warned:
            self._warned = True
            if self._on_warning is not None:
                self._on_warning(INVALID_MESSAGE, f"Stream - Protocol - Invalid Message: {why}")

    async def _receive(self) -> None:
        ws = self._ws
        assert ws is not None
        async for raw in ws:
            if isinstance(raw, bytes):
                self._invalid("binary frame")
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                self._invalid("bad JSON")
                continue
            if not isinstance(message, dict):
                self._invalid("not a JSON object")
                continue
            if message.get("event") == "media":
                self.record.frames_received += 1
            else:
                self.record.received.append(message)
            await self._handle(message)

    async def _handle(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if not self.bidirectional:
            self._invalid(f"{event!r} on a unidirectional stream")
            return
        if message.get("streamSid") != self.stream_sid:
            self._invalid(f"wrong streamSid {message.get('streamSid')!r}")
            return
        if event == "media":
            media = message.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            if not isinstance(payload, str):
                self._invalid("media without payload")
                return
            try:
                audio = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                self._invalid("media payload is not base64")
                return
            self.record.received_audio.extend(audio)
            if self._audio_sink is not None:
                self._audio_sink.extend(audio)
            self._playout.add_audio(len(audio))
        elif event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str):
                self._invalid("mark without name")
                return
            self.record.marks.append(name)
            if self._marks_sink is not None:
                self._marks_sink.append(name)
            self._playout.add_mark(name)
        elif event == "clear":
            self.record.clear_positions.append(len(self.record.received_audio))
            due = self._playout.clear()
            self.record.cleared_bytes = self._playout.cleared_bytes
            for name in due:
                await self._echo_mark(name)
        else:
            self._invalid(f"unknown event {event!r}")


__all__ = ["CallerFeed", "MediaStream", "StreamError", "StreamRecord"]
