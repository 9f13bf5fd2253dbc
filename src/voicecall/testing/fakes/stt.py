"""Local stand-ins for streaming STT services, for tests: real WebSockets on 127.0.0.1, scripted.

    async with FakeRealtimeTranscription(api_key="sk-test") as fake:
        fake.say("hello there", after_bytes=1600, partial_chunks=3)
        stt = OpenAIRealtimeStt("sk-test", callbacks, base_url=fake.base_url)
        await stt.connect()
        stt.send_audio(frames)             # the utterance fires once 1600 more bytes arrived
        await fake.wait_for_audio(1600)
        assert fake.sessions[0]["audio"]["input"]["format"] == {"type": "audio/pcmu"}

`FakeRealtimeTranscription` speaks OpenAI's realtime transcription protocol (`/v1/realtime`, the
generally available one: the retired beta's `OpenAI-Beta` header is refused);
`FakeDeepgram` speaks Deepgram's live protocol (`/v1/listen`). Both check the auth header (a
wrong one is refused at the handshake: HTTP 403), record what arrives (`audio`, `events`,
`connections`), emit scripted utterances once enough audio has arrived (`say`), and can drop the
live connection (`drop`) or refuse new ones (`refuse_connections`) to exercise reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

from voicecall.testing.fakes.openai_server import LoopbackServer

__all__ = ["FakeDeepgram", "FakeRealtimeTranscription", "FakeSttServer", "ScriptedUtterance",
           "check_transcription_session_update"]


@dataclass
class ScriptedUtterance:
    """One utterance the fake will "hear": fires once `after_bytes` more audio bytes arrived."""

    text: str
    after_bytes: int = 0
    chunks: int = 3
    """OpenAI: number of deltas. Deepgram: interim results per final segment."""
    delay_s: float = 0.0
    """Pause between emitted events."""
    speech_started: bool = True
    segments: int = 1
    """Deepgram: number of `is_final` segments (the last one is `speech_final`)."""
    baseline: int | None = field(default=None, repr=False)


def _split_words(text: str, parts: int) -> list[str]:
    """Split into at most `parts` non-empty word groups, keeping the spacing of the original."""
    words = text.split(" ")
    parts = max(1, min(parts, len(words)))
    size, extra = divmod(len(words), parts)
    out: list[str] = []
    start = 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(" ".join(words[start:end]))
        start = end
    return out


class FakeSttServer:
    """Shared plumbing: loopback serving, auth, audio accounting, the script, drop/refuse."""

    path = "/"

    def __init__(self, *, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.audio = bytearray()
        self.events: list[Any] = []
        """Every JSON message received, in order (all connections)."""
        self.connections = 0
        """Accepted connections so far."""
        self.rejected = 0
        """Handshakes refused (bad auth or `refuse_connections`)."""
        self.request_headers: list[dict[str, str]] = []
        self.refuse_connections = False
        self.errors: list[str] = []
        """Protocol problems the fake noticed in what the client sent."""
        self._ws: WebSocket | None = None
        self._pending: deque[ScriptedUtterance] = deque()
        self._emit_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = Starlette(routes=[WebSocketRoute(self.path, self._endpoint)])
        self._loopback = LoopbackServer(self.app, host=host, port=port, ws="websockets")

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        await self._loopback.start()
        self.port = self._loopback.port

    async def stop(self) -> None:
        for pending in list(self._tasks):
            pending.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.drop(code=1001)
        await self._loopback.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # --- control ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def say(self, text: str, *, after_bytes: int = 0, chunks: int = 3, partial_chunks: int | None = None,
            delay_s: float = 0.0, speech_started: bool = True, segments: int = 1) -> ScriptedUtterance:
        """Queue an utterance; it fires once `after_bytes` more audio bytes arrived (counted from
        now, or from when the previous queued utterance fired) and a client is connected."""
        utterance = ScriptedUtterance(text, after_bytes=after_bytes,
                                      chunks=partial_chunks if partial_chunks is not None else chunks,
                                      delay_s=delay_s, speech_started=speech_started, segments=segments)
        if not self._pending:
            utterance.baseline = len(self.audio)
        self._pending.append(utterance)
        self._check_script()
        return utterance

    async def send(self, event: Any) -> None:
        """Send one raw JSON event to the connected client."""
        ws = self._ws
        if ws is None:
            raise RuntimeError("no client connected")
        await ws.send_text(json.dumps(event))

    async def drop(self, *, code: int = 1011, reason: str = "dropped by test") -> None:
        """Close the live connection from the server side (the client sees an unexpected close)."""
        ws, self._ws = self._ws, None
        if ws is not None and ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(code=code, reason=reason)

    async def wait_until(self, predicate: Callable[[], bool], within_s: float = 5.0) -> None:
        deadline = time.monotonic() + within_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.005)

    async def wait_for_audio(self, n_bytes: int, within_s: float = 5.0) -> None:
        await self.wait_until(lambda: len(self.audio) >= n_bytes, within_s)

    async def wait_for_connections(self, n: int, within_s: float = 5.0) -> None:
        await self.wait_until(lambda: self.connections >= n and self._ws is not None, within_s)

    # --- protocol hooks ---------------------------------------------------------------------------

    def auth_ok(self, websocket: WebSocket) -> bool:
        raise NotImplementedError

    async def on_connect(self, websocket: WebSocket) -> None:
        """Runs right after accept."""

    async def on_message(self, websocket: WebSocket, message: Mapping[str, Any]) -> bool:
        """Handle one ASGI receive message; return False to end the connection."""
        raise NotImplementedError

    async def emit_utterance(self, websocket: WebSocket, utterance: ScriptedUtterance) -> None:
        raise NotImplementedError

    # --- internals --------------------------------------------------------------------------------

    async def _endpoint(self, websocket: WebSocket) -> None:
        self.request_headers.append(dict(websocket.headers))
        if self.refuse_connections or not self.auth_ok(websocket):
            self.rejected += 1
            await websocket.close(code=1008)  # before accept → HTTP 403
            return
        await websocket.accept()
        self.connections += 1
        self._ws = websocket
        try:
            await self.on_connect(websocket)
            self._check_script()
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if not await self.on_message(websocket, message):
                    break
        except Exception:  # the client vanished or the test dropped the connection
            pass
        finally:
            if self._ws is websocket:
                self._ws = None

    def _add_audio(self, data: bytes) -> None:
        self.audio += data
        self._check_script()

    def _check_script(self) -> None:
        ws = self._ws
        while self._pending and ws is not None:
            head = self._pending[0]
            if head.baseline is None:
                head.baseline = len(self.audio)
            if len(self.audio) - head.baseline < head.after_bytes:
                return
            self._pending.popleft()
            if self._pending:
                self._pending[0].baseline = len(self.audio)
            task = asyncio.create_task(self._run_utterance(ws, head))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_utterance(self, websocket: WebSocket, utterance: ScriptedUtterance) -> None:
        async with self._emit_lock:
            with contextlib.suppress(Exception):
                await self.emit_utterance(websocket, utterance)

    async def _pause(self, utterance: ScriptedUtterance) -> None:
        await asyncio.sleep(utterance.delay_s)


# --- OpenAI realtime transcription ------------------------------------------------------------------


def check_transcription_session_update(event: Any) -> list[str]:
    """Problems with the `session.update` of a transcription session (empty list = looks right)."""
    if not isinstance(event, dict) or event.get("type") != "session.update":
        return ["first event must be session.update"]
    session = event.get("session")
    if not isinstance(session, dict):
        return ["session must be an object"]
    if session.get("type") != "transcription":
        return ["session.type must be transcription"]
    audio = session.get("audio")
    given = audio.get("input") if isinstance(audio, dict) else None
    audio_in: dict[str, Any] = given if isinstance(given, dict) else {}
    problems: list[str] = []
    if audio_in.get("format") != {"type": "audio/pcmu"}:
        problems.append('session.audio.input.format must be {"type": "audio/pcmu"}')
    transcription = audio_in.get("transcription")
    if not isinstance(transcription, dict) or not isinstance(transcription.get("model"), str):
        problems.append("session.audio.input.transcription.model must be a string")
    vad = audio_in.get("turn_detection")
    if not isinstance(vad, dict) or vad.get("type") != "server_vad":
        problems.append("session.audio.input.turn_detection.type must be server_vad")
    else:
        for key in ("threshold", "prefix_padding_ms", "silence_duration_ms"):
            value = vad.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"session.audio.input.turn_detection.{key} must be a number")
    return problems


class FakeRealtimeTranscription(FakeSttServer):
    """OpenAI realtime transcription over WebSocket at `/v1/realtime?intent=transcription`."""

    path = "/v1/realtime"

    def __init__(self, *, api_key: str | None = "sk-test", host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(api_key=api_key, host=host, port=port)
        self.sessions: list[dict[str, Any]] = []
        """The `session` object of every valid `session.update`, in order."""
        self.queries: list[dict[str, str]] = []
        self._configured: set[int] = set()
        self._seq = 0

    @property
    def base_url(self) -> str:
        """What to pass as the client's `base_url` (`ws://127.0.0.1:PORT/v1`)."""
        return f"{self.url}/v1"

    def auth_ok(self, websocket: WebSocket) -> bool:
        self.queries.append(dict(websocket.query_params))
        if websocket.query_params.get("intent") != "transcription":
            self.errors.append("missing ?intent=transcription")
            return False
        if websocket.headers.get("openai-beta") is not None:
            self.errors.append("OpenAI-Beta header: the beta interface is retired (beta_api_shape_disabled)")
            return False
        return self.api_key is None or websocket.headers.get("authorization") == f"Bearer {self.api_key}"

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}_{self._seq:04d}"

    async def on_connect(self, websocket: WebSocket) -> None:
        await websocket.send_text(json.dumps({
            "type": "session.created", "event_id": self._next_id("event"),
            "session": {"id": self._next_id("sess"), "type": "transcription"},
        }))

    async def _error(self, websocket: WebSocket, message: str) -> None:
        self.errors.append(message)
        await websocket.send_text(json.dumps({
            "type": "error", "event_id": self._next_id("event"),
            "error": {"type": "invalid_request_error", "code": "invalid_value", "message": message},
        }))

    async def on_message(self, websocket: WebSocket, message: Mapping[str, Any]) -> bool:
        text = message.get("text")
        if text is None:
            await self._error(websocket, "binary frames are not supported")
            return True
        try:
            event = json.loads(text)
        except ValueError:
            await self._error(websocket, "invalid JSON")
            return True
        self.events.append(event)
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "session.update":
            problems = check_transcription_session_update(event)
            if problems:
                await self._error(websocket, "; ".join(problems))
                return True
            self.sessions.append(event["session"])
            self._configured.add(id(websocket))
            await websocket.send_text(json.dumps({
                "type": "session.updated", "event_id": self._next_id("event"),
                "session": event["session"],
            }))
        elif kind == "input_audio_buffer.append":
            if id(websocket) not in self._configured:
                self.errors.append("audio appended before session.update")
            try:
                data = base64.b64decode(event.get("audio", ""), validate=True)
            except (binascii.Error, ValueError, TypeError):
                await self._error(websocket, "audio must be base64")
                return True
            self._add_audio(data)
        else:
            await self._error(websocket, f"unexpected event type {kind!r}")
        return True

    async def emit_utterance(self, websocket: WebSocket, utterance: ScriptedUtterance) -> None:
        item_id = self._next_id("item")

        async def send(event: dict[str, Any]) -> None:
            event.setdefault("event_id", self._next_id("event"))
            await websocket.send_text(json.dumps(event))

        if utterance.speech_started:
            await send({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": item_id})
            await self._pause(utterance)
        await send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1000, "item_id": item_id})
        await send({"type": "input_audio_buffer.committed", "previous_item_id": None, "item_id": item_id})
        pieces = _split_words(utterance.text, utterance.chunks)
        for i, piece in enumerate(pieces):
            delta = piece if i == 0 else " " + piece
            await send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id,
                        "content_index": 0, "delta": delta})
            await self._pause(utterance)
        await send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                    "content_index": 0, "transcript": utterance.text})


# --- Deepgram ------------------------------------------------------------------------------------------


class FakeDeepgram(FakeSttServer):
    """Deepgram live transcription over WebSocket at `/v1/listen`."""

    path = "/v1/listen"

    def __init__(self, *, api_key: str | None = "dg-test", host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(api_key=api_key, host=host, port=port)
        self.queries: list[dict[str, str]] = []
        self.keepalives = 0
        self.close_streams = 0
        self._cursor = 0.0

    @property
    def base_url(self) -> str:
        """What to pass as the client's `base_url` (`ws://127.0.0.1:PORT/v1/listen`)."""
        return f"{self.url}/v1/listen"

    def auth_ok(self, websocket: WebSocket) -> bool:
        self.queries.append(dict(websocket.query_params))
        return self.api_key is None or websocket.headers.get("authorization") == f"Token {self.api_key}"

    async def on_message(self, websocket: WebSocket, message: Mapping[str, Any]) -> bool:
        data = message.get("bytes")
        if data is not None:
            self._add_audio(data)
            return True
        try:
            event = json.loads(message.get("text") or "")
        except ValueError:
            self.errors.append("invalid JSON text frame")
            return True
        self.events.append(event)
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "KeepAlive":
            self.keepalives += 1
        elif kind == "CloseStream":
            self.close_streams += 1
            async with self._emit_lock:  # let a running utterance finish first
                await websocket.send_text(json.dumps({
                    "type": "Metadata", "request_id": "fake", "duration": len(self.audio) / 8000,
                    "channels": 1,
                }))
            await websocket.close(code=1000)
            return False
        else:
            self.errors.append(f"unexpected message type {kind!r}")
        return True

    def _results(self, transcript: str, *, is_final: bool, speech_final: bool) -> str:
        return json.dumps({
            "type": "Results", "channel_index": [0, 1], "duration": 0.5, "start": self._cursor,
            "is_final": is_final, "speech_final": speech_final, "from_finalize": False,
            "channel": {"alternatives": [{"transcript": transcript, "confidence": 0.98, "words": []}]},
            "metadata": {"request_id": "fake", "model_info": {"name": "fake"}},
        })

    async def emit_utterance(self, websocket: WebSocket, utterance: ScriptedUtterance) -> None:
        if utterance.speech_started:
            await websocket.send_text(json.dumps({"type": "SpeechStarted", "channel": [0],
                                                  "timestamp": self._cursor}))
            await self._pause(utterance)
        segments = _split_words(utterance.text, utterance.segments)
        for n, segment in enumerate(segments):
            interims = _split_words(segment, utterance.chunks)
            for i in range(1, len(interims) + 1):
                await websocket.send_text(self._results(" ".join(interims[:i]), is_final=False,
                                                        speech_final=False))
                await self._pause(utterance)
            await websocket.send_text(self._results(segment, is_final=True,
                                                    speech_final=n == len(segments) - 1))
            self._cursor += 0.5
            await self._pause(utterance)
