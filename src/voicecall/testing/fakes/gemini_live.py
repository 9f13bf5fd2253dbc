"""A local stand-in for Gemini Live (`BidiGenerateContent`), for tests: a real WebSocket on
127.0.0.1 speaking the protocol's messages, scripted from the test.

    async with FakeGeminiLive(api_key="g-test") as model:
        model.answer_next("Sure.", after_bytes=32000, heard="Is Tuesday free?")
        # ...point `realtime.providers.google.baseUrl` at model.base_url, place a call...

It checks the `x-goog-api-key` header, answers `setup` with `setupComplete` (recorded in
`setups`), keeps the caller's 16 kHz PCM (`audio`), answers `realtimeInput.text` carrying the
bridge's "say exactly" instruction by speaking the quoted text (`model_audio` at 24 kHz) and
keeps any other text (`texts`), closes the session with 1007 on `clientContent` that is not the
initial history the setup announced (as current Live models do), plays a
scripted caller turn once enough audio arrived (`answer_next`: the caller's transcription, then
the model's turn, its output transcription coming in pieces with its audio, and `turnComplete`),
sends `interrupted` on
`barge_in()`, hands out session resumption handles (`handle-N` after the Nth setup) and
announces a closing connection (`go_away()`), records `toolResponse`s (`function_responses`)
and sends scripted `toolCall`s (`ModelAnswer.function_call`), and closes the session on
`end_session()`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections import deque
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from voicecall.testing.fakes.model_server import ModelServer
from voicecall.testing.fakes.realtime import SAY_MARKER, ModelAnswer, model_audio

__all__ = ["FakeGeminiLive"]

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
OUTPUT_RATE = 24000


class FakeGeminiLive(ModelServer):
    """See the module docstring."""

    def __init__(self, *, api_key: str | None = "g-test", host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        super().__init__(PATH, host=host, port=port)
        self.audio = bytearray()
        """The caller's audio as received: PCM16LE at 16 kHz."""
        self.messages: list[dict[str, Any]] = []
        self.texts: list[str] = []
        """`realtimeInput.text` other than "say exactly" instructions (notes for the model)."""
        self.refused: list[str] = []
        """Why sessions were closed for breaking the protocol."""
        self.setups: list[dict[str, Any]] = []
        self.function_responses: list[dict[str, Any]] = []
        self.answers_sent: list[ModelAnswer] = []
        self.connections = 0
        self.rejected = 0
        self._ws: WebSocket | None = None
        self._turns: deque[tuple[str, ModelAnswer | None, int, int]] = deque()
        self._ids = itertools.count(1)
        self._streaming: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()

    @property
    def base_url(self) -> str:
        """What `realtime.providers.google.baseUrl` is set to."""
        return f"ws://{self.host}:{self._loopback.port}"

    # -- script -----------------------------------------------------------------------------------
    def answer_next(self, text: str = "", *, after_bytes: int = 0, heard: str = "hello",
                    answer: ModelAnswer | None = None) -> None:
        """After `after_bytes` more caller PCM: the caller's transcription (`heard`), then the
        model's turn saying `text` (or `answer`)."""
        self._turns.append((heard, answer or (ModelAnswer(text) if text else None), after_bytes,
                            len(self.audio) if not self._turns else -1))
        self._check_turns()

    def barge_in(self, words: str = "Wait") -> None:
        """The caller talks over the model: `interrupted` (if its turn is still streaming, which
        then stops) and the first of the caller's transcribed `words`."""
        self._spawn(self._barge_in(words))

    async def _barge_in(self, words: str) -> None:
        await self._interrupt()
        await self._send({"serverContent": {"inputTranscription": {"text": words}}})

    async def go_away(self) -> None:
        """Announce that the connection closes soon (`goAway`), then close it normally: a client
        with a resumption handle resumes the session on a new connection."""
        await self._send({"goAway": {"timeLeft": "0s"}})
        await self.end_session()

    async def end_session(self, *, code: int = 1000) -> None:
        ws, self._ws = self._ws, None
        if ws is not None and ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(code=code)

    # -- protocol ---------------------------------------------------------------------------------
    async def _endpoint(self, websocket: WebSocket) -> None:
        if self.api_key is not None and websocket.headers.get("x-goog-api-key") != self.api_key:
            self.rejected += 1
            await websocket.close(code=1008)
            return
        await websocket.accept()
        self.connections += 1
        self._ws = websocket
        try:
            async for data in self._json_messages(websocket):
                self.messages.append(data)
                if "clientContent" in data and not self._history_allowed():
                    self.refused.append("clientContent after the session's initial history")
                    await websocket.close(code=1007)
                    return
                await self._on_message(data)
        except Exception:
            return
        finally:
            if self._ws is websocket:
                self._ws = None

    def _history_allowed(self) -> bool:
        """`clientContent` seeds a session's history: announced in its setup, before any input."""
        setup = self.setups[-1] if self.setups else {}
        announced = bool((setup.get("historyConfig") or {}).get("initialHistoryInClientContent"))
        since_setup = itertools.takewhile(lambda m: "setup" not in m, reversed(self.messages))
        return announced and not any("realtimeInput" in m for m in since_setup)

    async def _on_message(self, data: dict[str, Any]) -> None:
        if "setup" in data:
            self.setups.append(data["setup"])
            await self._send({"setupComplete": {}})
            if "sessionResumption" in data["setup"]:
                await self._send({"sessionResumptionUpdate": {
                    "newHandle": f"handle-{len(self.setups)}", "resumable": True}})
        elif "realtimeInput" in data:
            realtime = data["realtimeInput"] or {}
            audio = realtime.get("audio") or {}
            self.audio.extend(base64.b64decode(audio.get("data", "")))
            text = str(realtime.get("text") or "")
            if SAY_MARKER in text:
                self._stream(ModelAnswer(text.split(SAY_MARKER, 1)[1]))
            elif text:
                self.texts.append(text)
            self._check_turns()
        elif "toolResponse" in data:
            self.function_responses.extend((data["toolResponse"] or {}).get("functionResponses") or [])

    def _check_turns(self) -> None:
        if not self._turns or self._ws is None:
            return
        heard, answer, after, baseline = self._turns[0]
        if baseline < 0:
            baseline = len(self.audio)
            self._turns[0] = (heard, answer, after, baseline)
        if len(self.audio) - baseline >= after:
            self._turns.popleft()
            if self._turns:
                h, a, n, _ = self._turns[0]
                self._turns[0] = (h, a, n, len(self.audio))
            self._spawn(self._caller_turn(heard, answer))

    async def _caller_turn(self, heard: str, answer: ModelAnswer | None) -> None:
        await self._interrupt()
        await self._send({"serverContent": {"inputTranscription": {"text": heard}}})
        if answer is not None:
            self._stream(answer)

    async def _interrupt(self) -> None:
        task, self._streaming = self._streaming, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self._send({"serverContent": {"interrupted": True}})

    def _stream(self, answer: ModelAnswer) -> None:
        previous = self._streaming
        self._streaming = self._spawn(self._stream_answer(answer, previous))

    async def _stream_answer(self, answer: ModelAnswer, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        pcm = model_audio(answer.text, OUTPUT_RATE) if answer.text else b""
        if pcm:
            self.answers_sent.append(answer)
            step = OUTPUT_RATE * 2 * answer.chunk_ms // 1000
            words = answer.text.split()
            told = 0
            for start in range(0, len(pcm), step):
                await self._send({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
                    "mimeType": f"audio/pcm;rate={OUTPUT_RATE}",
                    "data": base64.b64encode(pcm[start:start + step]).decode()}}]}}})
                upto = round(len(words) * min(1.0, (start + step) / len(pcm)))
                if upto > told:  # the words of this piece, as Gemini transcribes as it speaks
                    piece = " ".join(words[told:upto])
                    await self._send({"serverContent": {"outputTranscription": {
                        "text": piece if told == 0 else " " + piece}}})
                    told = upto
                if answer.realtime:
                    await asyncio.sleep(answer.chunk_ms / 1000)
        if answer.function_call is not None:
            name, arguments = answer.function_call
            await self._send({"toolCall": {"functionCalls": [
                {"id": f"fc-{next(self._ids)}", "name": name, "args": arguments}]}})
        await self._send({"serverContent": {"turnComplete": True}})

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return
        async with self._send_lock:
            with contextlib.suppress(Exception):
                await ws.send_text(json.dumps(message))
