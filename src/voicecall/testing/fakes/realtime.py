"""A local stand-in for OpenAI's Realtime API (speech to speech), for tests: a real WebSocket
on 127.0.0.1 that speaks the protocol's events and is scripted from the test.

    async with FakeOpenAIRealtime(api_key="sk-test") as model:
        model.answer_next("Sure, Tuesday works.", after_bytes=8000, heard="Is Tuesday free?")
        # ...point `realtime.providers.openai.baseUrl` at model.base_url, place a call...
        assert model.truncations[0]["audio_end_ms"] > 0

What it does:
- checks the bearer key (a wrong one is refused at the handshake), sends `session.created`,
  records every `session.update` (`sessions`) and every client event (`events`);
- speaks the generally available protocol only, as OpenAI does: a client sending the retired
  beta's `OpenAI-Beta` header is closed (4000, `beta_api_shape_disabled`), and a `session.update`
  that is not a `realtime` session gets an `error` event (both in `refused`);
- keeps the caller's audio (`audio`, as sent: G.711, or 24 kHz PCM for a `pcm16` session, whose
  answers are then 24 kHz PCM too);
- answers `response.create`: a scripted answer if one is queued (`respond_with`), else, for the
  bridge's "say exactly" instructions, the quoted text spoken in `model_audio(text)`;
- plays a scripted caller turn once enough caller audio arrived (`answer_next`): speech
  started/stopped, the caller's transcript, then the model's answer;
- `barge_in()` sends `speech_started` now and stops the answer being streamed;
- records `conversation.item.truncate` (`truncations`) and function outputs (`function_outputs`);
- `end_session()` closes the socket normally (a model that hangs up).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import itertools
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicecall.audio.g711 import alaw_encode, ulaw_encode
from voicecall.audio.resample import StreamingResampler
from voicecall.testing.fakes.model_server import ModelServer

__all__ = ["FakeOpenAIRealtime", "ModelAnswer", "model_audio"]

from starlette.websockets import WebSocket, WebSocketState

SAY_MARKER = "word for word, and nothing else: "


def model_audio(text: str, rate: int = 8000, *, seconds: float | None = None) -> bytes:
    """The fake model's voice for `text`: PCM16LE at `rate`, deterministic, speech-like (a few
    text-seeded partials under a syllable-rate envelope), 70 ms per character, 0.3 to 4 s."""
    duration = seconds if seconds is not None else min(4.0, max(0.3, 0.07 * len(text)))
    n = int(rate * duration)
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    base = 120 + 80 * rng.random()
    wave = sum(np.sin(2 * np.pi * base * k * t + rng.random() * 6.28) / k for k in (1, 2, 3, 5))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * (3 + 2 * rng.random()) * t)
    pcm = (wave * envelope * 6000).astype("<i2")
    return pcm.tobytes()


@functools.lru_cache(maxsize=8)
def _g711(pcm: bytes, codec: str) -> bytes:
    """`pcm` in G.711 (`codec` "ulaw" or "alaw"), kept: every session of a load test says the
    same long answer."""
    return (ulaw_encode if codec == "ulaw" else alaw_encode)(pcm)


def _b64_decoded_len(text: str) -> int:
    """How many bytes the base64 `text` decodes to, without decoding it."""
    return len(text) // 4 * 3 - (len(text) - len(text.rstrip("=")))


def _to_24k(pcm8k: bytes) -> bytes:
    resampler = StreamingResampler(8000, 24000)
    return resampler.process(pcm8k) + resampler.flush()


@functools.lru_cache(maxsize=8)
def _long_audio(text: str, seconds: float) -> bytes:
    return model_audio(text, seconds=seconds)


@dataclass
class ModelAnswer:
    """One scripted answer of the model: spoken `text` (its audio from `model_audio` unless
    `pcm8k` is given) and/or a function call."""

    text: str = ""
    pcm8k: bytes | None = None
    function_call: tuple[str, dict[str, Any]] | None = None
    chunk_ms: int = 100
    realtime: bool = False
    """Stream the audio at real time instead of all at once: the first `lead_ms` in one message
    (a model's first delta is often that long, and the gateway's buffer then holds all of it from
    the first frame on, however busy this fake is), then one chunk per `chunk_ms` on absolute
    deadlines."""
    lead_ms: int = 500

    def audio(self) -> bytes:
        if self.pcm8k is not None:
            return self.pcm8k
        return model_audio(self.text) if self.text else b""


@dataclass(eq=False)
class _Conn:
    """One client connection (one call's session)."""

    ws: WebSocket
    lock: asyncio.Lock
    streaming: asyncio.Task[None] | None = None


@dataclass
class _CallerTurn:
    heard: str
    answer: ModelAnswer | None
    after_bytes: int
    baseline: int = 0


class FakeOpenAIRealtime(ModelServer):
    """See the module docstring."""

    def __init__(self, *, api_key: str | None = "sk-test", host: str = "127.0.0.1", port: int = 0,
                 say_seconds: float | None = None, realtime: bool = False, keep_audio: bool = True) -> None:
        """`say_seconds`: the length of the audio of the default answers (`say`), instead of
        `model_audio`'s; `realtime`: they stream at real time; `keep_audio=False` only counts the
        caller's audio (`audio_bytes`) and leaves its `input_audio_buffer.append` events out of
        `events`, for load tests."""
        self.api_key = api_key
        super().__init__("/v1/realtime", host=host, port=port)
        self.say_seconds = say_seconds
        self.realtime = realtime
        self.keep_audio = keep_audio
        self.audio_bytes = 0
        self.audio = bytearray()
        self.events: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.truncations: list[dict[str, Any]] = []
        self.function_outputs: list[dict[str, Any]] = []
        self.answers_sent: list[tuple[str, ModelAnswer]] = []
        """(item id, answer) of every answer streamed, in order."""
        self.connections = 0
        self.rejected = 0
        self.request_headers: list[dict[str, str]] = []
        self.refused: list[str] = []
        """Why clients speaking the retired beta protocol were turned away."""
        self._conn: _Conn | None = None
        """The newest connection: scripted caller turns and `barge_in` act on it."""
        self._responses: deque[ModelAnswer] = deque()
        self._turns: deque[_CallerTurn] = deque()
        self._ids = itertools.count(1)

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """What `realtime.providers.openai.baseUrl` is set to."""
        return f"http://{self.host}:{self._loopback.port}/v1"

    # -- script -----------------------------------------------------------------------------------
    def respond_with(self, answer: ModelAnswer) -> None:
        """Answer the next `response.create` with `answer` (instead of the default)."""
        self._responses.append(answer)

    def answer_next(self, text: str = "", *, after_bytes: int = 0, heard: str = "hello",
                    answer: ModelAnswer | None = None) -> None:
        """After `after_bytes` more caller audio: the caller's turn (VAD start/stop, `heard` as
        its transcript), then the model answers `text` (or `answer`)."""
        turn = _CallerTurn(heard, answer or (ModelAnswer(text) if text else None), after_bytes)
        if not self._turns:
            turn.baseline = self.audio_bytes
        self._turns.append(turn)
        self._check_turns()

    def barge_in(self) -> None:
        """The caller starts talking now: `speech_started`, and the answer stops streaming."""
        self._spawn(self._barge_in())

    async def end_session(self, *, code: int = 1000) -> None:
        """Close the newest session from the model's side (1000: it ended normally)."""
        conn, self._conn = self._conn, None
        if conn is not None and conn.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await conn.ws.close(code=code)

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    # -- protocol ---------------------------------------------------------------------------------
    async def _endpoint(self, websocket: WebSocket) -> None:
        self.request_headers.append(dict(websocket.headers))
        if self.api_key is not None and websocket.headers.get("authorization") != f"Bearer {self.api_key}":
            self.rejected += 1
            await websocket.close(code=1008)
            return
        await websocket.accept()
        if "openai-beta" in websocket.headers:
            self.refused.append("beta_api_shape_disabled")
            await websocket.send_text(json.dumps({"type": "error", "error": {
                "type": "invalid_request_error", "code": "beta_api_shape_disabled",
                "message": "The Realtime Beta API is no longer supported."}}))
            await websocket.close(code=4000, reason="beta_api_shape_disabled")
            return
        self.connections += 1
        conn = self._conn = _Conn(websocket, asyncio.Lock())
        await self._send(conn, {"type": "session.created", "session": {"id": f"sess_{self.connections}"}})
        try:
            async for event in self._json_messages(websocket):
                if self.keep_audio or event.get("type") != "input_audio_buffer.append":
                    self.events.append(event)
                await self._on_event(conn, event)
        except Exception:
            return
        finally:
            if conn.streaming is not None:
                conn.streaming.cancel()
            if self._conn is conn:
                self._conn = None

    async def _on_event(self, conn: _Conn, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            session = event.get("session") or {}
            if session.get("type") != "realtime" or "input_audio_format" in session:
                self.refused.append("session.update without session.type realtime")
                await self._send(conn, {"type": "error", "error": {
                    "type": "invalid_request_error", "code": "missing_required_parameter",
                    "param": "session.type", "message": "Missing required parameter: 'session.type'."}})
                return
            self.sessions.append(session)
            await self._send(conn, {"type": "session.updated", "session": session})
        elif kind == "input_audio_buffer.append":
            audio = str(event.get("audio", ""))
            if self.keep_audio:
                chunk = base64.b64decode(audio)
                self.audio_bytes += len(chunk)
                self.audio.extend(chunk)
            else:
                self.audio_bytes += _b64_decoded_len(audio)
            self._check_turns()
        elif kind == "conversation.item.truncate":
            self.truncations.append(event)
            await self._send(conn, {"type": "conversation.item.truncated", "item_id": event.get("item_id"),
                              "content_index": 0, "audio_end_ms": event.get("audio_end_ms")})
        elif kind == "conversation.item.create":
            item = event.get("item") or {}
            if item.get("type") == "function_call_output":
                self.function_outputs.append(item)
        elif kind == "response.create":
            answer = self._answer_for(event)
            if answer is not None:
                self._stream(conn, answer)
            else:
                await self._empty_response(conn)

    def _answer_for(self, event: dict[str, Any]) -> ModelAnswer | None:
        if self._responses:
            return self._responses.popleft()
        instructions = str((event.get("response") or {}).get("instructions") or "")
        if SAY_MARKER in instructions:
            text = instructions.split(SAY_MARKER, 1)[1]
            pcm = _long_audio(text, self.say_seconds) if self.say_seconds else None
            return ModelAnswer(text, pcm8k=pcm, realtime=self.realtime)
        return None

    def _check_turns(self) -> None:
        if self._turns and self._conn is not None:
            turn = self._turns[0]
            if self.audio_bytes - turn.baseline >= turn.after_bytes:
                self._turns.popleft()
                if self._turns:
                    self._turns[0].baseline = self.audio_bytes
                self._spawn(self._caller_turn(self._conn, turn))

    async def _caller_turn(self, conn: _Conn, turn: _CallerTurn) -> None:
        await self._barge_in_on(conn)
        await self._send(conn, {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 0})
        await self._send(conn, {"type": "conversation.item.input_audio_transcription.completed",
                                "item_id": f"item_user_{next(self._ids)}", "content_index": 0,
                                "transcript": turn.heard})
        if turn.answer is not None:
            self._stream(conn, turn.answer)

    async def _barge_in(self) -> None:
        if self._conn is not None:
            await self._barge_in_on(self._conn)

    async def _barge_in_on(self, conn: _Conn) -> None:
        task, conn.streaming = conn.streaming, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._send(conn, {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0,
                                "item_id": f"item_user_{next(self._ids)}"})

    def _stream(self, conn: _Conn, answer: ModelAnswer) -> None:
        previous = conn.streaming
        conn.streaming = self._spawn(self._stream_answer(conn, answer, previous))

    async def _stream_answer(self, conn: _Conn, answer: ModelAnswer,
                             previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        n = next(self._ids)
        rid, item = f"resp_{n}", f"item_{n}"
        send = functools.partial(self._send, conn)
        await send({"type": "response.created", "response": {"id": rid, "status": "in_progress"}})
        pcm = answer.audio()
        if pcm:
            self.answers_sent.append((item, answer))
            await send({"type": "response.output_item.added", "response_id": rid,
                              "item": {"id": item, "type": "message", "role": "assistant"}})
            codec = self._codec()
            if codec == "pcm16":  # the answer's voice at 24 kHz
                pcm = model_audio(answer.text, 24000) if answer.pcm8k is None else _to_24k(answer.pcm8k)
            g711 = pcm if codec == "pcm16" else _g711(pcm, codec)
            rate_bytes = 48 if codec == "pcm16" else 8  # bytes per millisecond
            step = rate_bytes * answer.chunk_ms
            lead = rate_bytes * answer.lead_ms
            starts = [0, *range(max(step, lead) if answer.realtime else step, len(g711), step)]
            loop = asyncio.get_running_loop()
            began = loop.time()
            for start, end in zip(starts, [*starts[1:], len(g711)], strict=True):
                await send({"type": "response.output_audio.delta", "response_id": rid, "item_id": item,
                                  "content_index": 0, "delta": base64.b64encode(g711[start:end]).decode()})
                if answer.realtime:  # on absolute deadlines: no drift behind real time
                    due = began + max(0, end - lead) / (rate_bytes * 1000)
                    await asyncio.sleep(max(0.0, due - loop.time()))
            await send({"type": "response.output_audio.done", "response_id": rid, "item_id": item})
            await send({"type": "response.output_audio_transcript.done", "response_id": rid,
                              "item_id": item, "content_index": 0, "transcript": answer.text})
            await send({"type": "response.output_item.done", "response_id": rid,
                              "item": {"id": item, "type": "message", "status": "completed"}})
        if answer.function_call is not None:
            name, arguments = answer.function_call
            await send({"type": "response.output_item.done", "response_id": rid, "item": {
                "id": f"fc_{n}", "type": "function_call", "call_id": f"call_{n}", "name": name,
                "arguments": json.dumps(arguments)}})
        await send({"type": "response.done", "response": {"id": rid, "status": "completed"}})

    async def _empty_response(self, conn: _Conn) -> None:
        rid = f"resp_{next(self._ids)}"
        await self._send(conn, {"type": "response.created", "response": {"id": rid}})
        await self._send(conn, {"type": "response.done", "response": {"id": rid, "status": "completed"}})

    def _codec(self) -> str:
        session = self.sessions[-1] if self.sessions else {}
        fmt = ((session.get("audio") or {}).get("output") or {}).get("format") or {}
        return {"audio/pcma": "alaw", "audio/pcm": "pcm16"}.get(str(fmt.get("type")), "ulaw")

    async def _send(self, conn: _Conn, event: dict[str, Any]) -> None:
        async with conn.lock:
            with contextlib.suppress(Exception):
                await conn.ws.send_text(json.dumps(event))
