"""Gemini Live (`BidiGenerateContent` over WebSocket): the caller's G.711 goes in as 16 kHz
PCM, the model answers in 24 kHz PCM; Google's voice activity detection (with the configured
silence and sensitivities), transcription of both sides, function tools, session resumption and
context compression on (a connection the server closes after `goAway`, or one that is lost, is
replaced by a new one resuming the session).

Gemini differs from OpenAI's Realtime API in three ways the bridge relies on (docs/decisions.md
D124):
- Text goes in as `realtimeInput.text`: current Live models take `clientContent` only as the
  history a session starts with, and close the session when it comes later.
- An interrupted answer has no truncate message: Gemini keeps in its context everything it sent,
  which is more than the caller heard when the answer was generated faster than it played. So
  `truncate` tells the model in a note which words of its answer the caller heard.
- No end of the caller's speech is reported: the session finds it in the caller's audio (the last
  frame with speech in it before the model's answer starts) and reports it with its time.

The caller starting to talk is `interrupted` while the model generates, and the first words of
the caller's transcription otherwise (an answer fully generated may still be playing)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import SecretStr

from voicecall.audio.g711 import alaw_decode, ulaw_decode
from voicecall.audio.resample import StreamingResampler
from voicecall.shared.clock import now_ms
from voicecall.shared.words import played_prefix
from voicecall.speech.realtime.base import RealtimeError, RealtimeEvents, RealtimeSetup
from voicecall.speech.realtime.wire import RealtimeSocket, ws_url

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "wss://generativelanguage.googleapis.com"
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
DEFAULT_MODEL = "gemini-3.1-flash-live-preview"
DEFAULT_VOICE = "Kore"
INPUT_RATE = 16000
BATCH_BYTES = 1280
"""40 ms of 16 kHz PCM per message (two carrier frames)."""
SAY_INSTRUCTIONS = "Say exactly this to the caller, word for word, and nothing else: {text}"
HEARD_NOTE = ("(A note from the phone system, not from the caller: the caller interrupted your "
              "last answer and heard only this much of it: \"{heard}\". They did not hear the rest.)")
HEARD_NOTHING_NOTE = ("(A note from the phone system, not from the caller: the caller interrupted "
                      "your last answer before hearing any of it.)")
SPEECH_LEVEL = 1024
"""A caller frame whose peak (of 32767) is above this has speech in it."""
RECENT_ANSWERS = 4
"""How many of the model's latest answers `truncate` can still find."""


@dataclass
class _Answer:
    """One model turn as received: its transcribed words so far and how much audio came."""

    words: list[str] = field(default_factory=list)
    audio_ms: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.words).strip()


def _str(settings: Mapping[str, Any], key: str) -> str | None:
    value = settings.get(key)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return str(value).strip() or None if value is not None else None


@dataclass(frozen=True)
class GeminiSettings:
    api_key: str
    model: str = DEFAULT_MODEL
    voice: str = DEFAULT_VOICE
    base_url: str = DEFAULT_BASE_URL
    silence_duration_ms: int | None = None
    start_sensitivity: str | None = None
    """`high` or `low` (Gemini's START_SENSITIVITY_*)."""
    end_sensitivity: str | None = None

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], *, api_key: str) -> GeminiSettings:
        """From `realtime.providers.google` (`model`, `speakerVoice`, `baseUrl`,
        `silenceDurationMs`, `startSensitivity`, `endSensitivity`)."""
        silence = settings.get("silenceDurationMs")
        valid = isinstance(silence, int) and not isinstance(silence, bool) and silence > 0
        if silence is not None and not valid:
            raise RealtimeError("realtime.providers.google.silenceDurationMs must be a positive integer")
        sensitivities: dict[str, str | None] = {}
        for key in ("startSensitivity", "endSensitivity"):
            value = _str(settings, key)
            if value is not None and value.lower() not in ("high", "low"):
                raise RealtimeError(f'realtime.providers.google.{key} must be "high" or "low"')
            sensitivities[key] = value.lower() if value else None
        return cls(api_key=api_key, model=_str(settings, "model") or DEFAULT_MODEL,
                   voice=_str(settings, "speakerVoice") or DEFAULT_VOICE,
                   base_url=_str(settings, "baseUrl") or DEFAULT_BASE_URL,
                   silence_duration_ms=silence, start_sensitivity=sensitivities["startSensitivity"],
                   end_sensitivity=sensitivities["endSensitivity"])


class GeminiLive:
    """See the module docstring. One instance per call."""

    name = "google"

    def __init__(self, setup: RealtimeSetup, events: RealtimeEvents, settings: GeminiSettings) -> None:
        self.setup = setup
        self.events = events
        self.settings = settings
        self._decode = ulaw_decode if setup.codec == "ulaw" else alaw_decode
        self._upsample = StreamingResampler(8000, INPUT_RATE)
        self._pending = bytearray()
        self._turn = 1
        self._answers: dict[str, _Answer] = {}
        self._caller_words: list[str] = []
        self._voiced_at: int | None = None
        self._answering = False
        self.resumption_handle: str | None = None
        self.resumptions = 0
        self._going_away = False
        self._closing = False
        self._resuming: asyncio.Task[None] | None = None
        self._resumed_with: str | None = None
        self.socket = self._new_socket()

    def _new_socket(self) -> RealtimeSocket:
        events = dataclasses.replace(self.events, on_closed=self._socket_closed)
        return RealtimeSocket(ws_url(self.settings.base_url) + PATH,
                              {"x-goog-api-key": self.settings.api_key}, events, self._handle,
                              label="Gemini Live")

    def setup_message(self) -> dict[str, Any]:
        s = self.settings
        detection: dict[str, Any] = {}
        if s.start_sensitivity:
            detection["startOfSpeechSensitivity"] = f"START_SENSITIVITY_{s.start_sensitivity.upper()}"
        if s.end_sensitivity:
            detection["endOfSpeechSensitivity"] = f"END_SENSITIVITY_{s.end_sensitivity.upper()}"
        if s.silence_duration_ms:
            detection["silenceDurationMs"] = s.silence_duration_ms
        model = s.model if s.model.startswith("models/") else f"models/{s.model}"
        body: dict[str, Any] = {
            "model": model,
            "generationConfig": {"responseModalities": ["AUDIO"], "speechConfig": {
                "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": s.voice}}}},
            "systemInstruction": {"parts": [{"text": self.setup.instructions}]},
            "realtimeInputConfig": {"automaticActivityDetection": detection},
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "sessionResumption": {"handle": self.resumption_handle} if self.resumption_handle else {},
            "contextWindowCompression": {"slidingWindow": {}},
        }
        if self.setup.tools:
            body["tools"] = [{"functionDeclarations": [
                {"name": t.name, "description": t.description, "parameters": t.parameters}
                for t in self.setup.tools]}]
        return {"setup": body}

    async def connect(self) -> None:
        socket = self.socket
        await socket.open()
        await socket.send_now(self.setup_message())
        first = await socket.receive_one()
        if "setupComplete" not in first:
            await socket.close()
            raise RealtimeError(f"Gemini Live: expected setupComplete, got {sorted(first)[:5]}")
        socket.run()

    def _socket_closed(self, error: str | None) -> None:
        """The connection is gone. With a resumption handle, after the server's `goAway` or a
        lost connection, the session goes on over a new one (once per handle); otherwise the
        session is over."""
        if self._closing:
            return
        handle = self.resumption_handle
        if (handle and handle != self._resumed_with and (error is not None or self._going_away)
                and self._resuming is None):
            self._resumed_with = handle
            log.info("Gemini Live: connection closed (%s); resuming the session", error or "goAway")
            self._going_away = False
            self.socket = self._new_socket()  # what is sent meanwhile waits in its queue
            self._resuming = asyncio.get_running_loop().create_task(self._resume(error))
            return
        self.events.on_closed(error)

    async def _resume(self, error: str | None) -> None:
        try:
            await self.connect()
        except RealtimeError as exc:
            if not self._closing:
                self.events.on_closed(f"{error or 'goAway'}; resuming failed: {exc}")
            return
        finally:
            self._resuming = None
        self.resumptions += 1

    def send_audio(self, g711: bytes) -> None:
        pcm = self._decode(g711)
        if pcm.size and max(int(np.max(pcm)), -int(np.min(pcm))) > SPEECH_LEVEL:
            self._voiced_at = now_ms()
        self._pending += self._upsample.process(pcm.tobytes())
        if len(self._pending) >= BATCH_BYTES:
            data = base64.b64encode(self._pending).decode("ascii")
            self._pending.clear()
            self.socket.send({"realtimeInput": {"audio": {
                "data": data, "mimeType": f"audio/pcm;rate={INPUT_RATE}"}}})

    def say(self, text: str) -> None:
        self.socket.send({"realtimeInput": {"text": SAY_INSTRUCTIONS.format(text=text)}})

    def truncate(self, item_id: str, played_ms: int) -> None:
        """Tell the model which words of answer `item_id` the caller heard (`played_ms` of its
        audio): Gemini keeps all it sent in its context (see the module docstring)."""
        answer = self._answers.get(item_id)
        if answer is None or not answer.audio_ms:
            return
        fraction = played_ms / answer.audio_ms
        if fraction >= 0.999:
            return
        heard = played_prefix(answer.text, fraction)
        note = HEARD_NOTE.format(heard=heard) if heard else HEARD_NOTHING_NOTE
        self.socket.send({"realtimeInput": {"text": note}})

    def function_result(self, call_id: str, name: str, output: str, *, respond: bool) -> None:
        response: dict[str, Any] = {"output": output}
        if not respond:
            response["scheduling"] = "SILENT"
        self.socket.send({"toolResponse": {"functionResponses": [
            {"id": call_id, "name": name, "response": response}]}})

    async def close(self) -> None:
        self._closing = True
        if self._resuming is not None:
            self._resuming.cancel()
        await self.socket.close()

    # -- server messages ---------------------------------------------------------------------------
    @property
    def item_id(self) -> str:
        return f"turn-{self._turn}"

    def _answer(self) -> _Answer:
        """The model turn under way (the oldest one kept is dropped once there are too many)."""
        answer = self._answers.get(self.item_id)
        if answer is None:
            answer = self._answers[self.item_id] = _Answer()
            while len(self._answers) > RECENT_ANSWERS:
                del self._answers[next(iter(self._answers))]
        return answer

    def _handle(self, message: dict[str, Any]) -> None:
        content = message.get("serverContent")
        if isinstance(content, dict):
            self._content(content)
        calls = message.get("toolCall")
        if isinstance(calls, dict):
            for call in calls.get("functionCalls") or []:
                if isinstance(call, dict):
                    self.events.on_function_call(str(call.get("id", "")), str(call.get("name", "")),
                                                 json.dumps(call.get("args") or {}))
        update = message.get("sessionResumptionUpdate")
        if isinstance(update, dict) and update.get("newHandle"):
            self.resumption_handle = str(update["newHandle"])
        if "goAway" in message:
            self._going_away = True
            log.info("Gemini Live: the server will close this connection soon")

    def _content(self, content: dict[str, Any]) -> None:
        ev = self.events
        heard = content.get("inputTranscription")
        if isinstance(heard, dict) and heard.get("text"):
            if not self._caller_words:
                ev.on_speech_started()  # the caller's first words: barge-in, even on audio
            self._caller_words.append(str(heard["text"]))  # already generated (no `interrupted` then)
        if content.get("interrupted"):
            ev.on_speech_started()
            self._finish_turn()
        turn = content.get("modelTurn")
        if isinstance(turn, dict):
            self._flush_caller()
            for part in turn.get("parts") or []:
                data = part.get("inlineData") if isinstance(part, dict) else None
                if isinstance(data, dict) and str(data.get("mimeType", "")).startswith("audio/pcm"):
                    try:
                        pcm = base64.b64decode(str(data.get("data", "")), validate=True)
                    except (binascii.Error, ValueError):
                        log.warning("Gemini Live: audio that is not base64")
                        continue
                    self._audio(pcm, _rate(str(data["mimeType"])))
        said = content.get("outputTranscription")
        if isinstance(said, dict) and said.get("text"):
            self._answer().words.append(str(said["text"]))
        if content.get("turnComplete"):
            self._flush_caller()
            self._finish_turn()

    def _audio(self, pcm: bytes, rate: int) -> None:
        """A piece of the model's answer; its first piece after the caller spoke reports when
        that speech ended."""
        if not self._answering:
            self._answering = True
            if self._voiced_at is not None:
                self.events.on_speech_ended(self._voiced_at)
                self._voiced_at = None
        self._answer().audio_ms += len(pcm) / 2 / rate * 1000
        self.events.on_audio(self.item_id, rate, pcm)

    def _flush_caller(self) -> None:
        text = "".join(self._caller_words).strip()
        self._caller_words.clear()
        if text:
            self.events.on_user_transcript(text)

    def _finish_turn(self) -> None:
        item = self.item_id
        if self._answering:
            self.events.on_audio_done(item)
        text = self._answers[item].text if item in self._answers else ""
        if text:
            self.events.on_model_transcript(item, text)
        self._answering = False
        self._turn += 1


def _rate(mime: str) -> int:
    for part in mime.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "rate" and value.isdigit():
            return int(value)
    return 24000
