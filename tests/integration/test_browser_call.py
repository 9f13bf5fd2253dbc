"""Browser calls over the console's WebSocket, driven from Python against a running gateway
with the fake STT, fake model and fake TTS: the call is an inbound call like any other, the
agent hears the page's PCM and answers over the shared media pipeline, barge-in clears the
page's playback, and a socket without a console session is refused at the upgrade."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.helpers import eventually, free_port, openai_speech_settings
from voicecall.audio.g711 import ulaw_decode
from voicecall.gateway.runtime import Runtime
from voicecall.testing.fakes import FakeOpenAI
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import TwilioSimulator

OUR_NUMBER = "+15550000000"
TONE = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
                for i in range(160))
"""20 ms of a 440 Hz tone, 16-bit PCM at 8 kHz: what the page's worklet sends."""
REPLY = ("We open at nine on weekdays and at ten on Saturdays, and we close at five every day "
         "except Sunday when we are closed")


def tone_frequency(mulaw: bytes | bytearray) -> float:
    """The dominant frequency (Hz) of the last second of 8 kHz μ-law audio, from its zero
    crossings; 0 for silence."""
    pcm = ulaw_decode(bytes(mulaw[-8000:])).astype(np.float64)
    if len(pcm) < 800 or float(np.sqrt(np.mean(pcm ** 2))) < 300:
        return 0.0
    crossings = int(np.count_nonzero(np.diff(np.signbit(pcm))))
    return crossings / 2 / (len(pcm) / 8000)


def browser_config(sim: TwilioSimulator, speech: FakeSpeech, stt: FakeRealtimeTranscription,
                   llm: FakeOpenAI) -> dict[str, Any]:
    port = free_port()
    return {"provider": "twilio", "fromNumber": OUR_NUMBER,
            "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                       "apiBaseUrl": sim.base_url},
            "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
            "inboundPolicy": "disabled", "inboundGreeting": "Hello from the agent.",
            "responder": {"enabled": True, "baseUrl": llm.base_url},
            "responseModel": "openai/gpt-4o-mini", **openai_speech_settings(speech, stt)}


@pytest.fixture
async def gateway(tmp_path: Path, speech: FakeSpeech, stt: FakeRealtimeTranscription
                  ) -> AsyncIterator[tuple[Runtime, FakeOpenAI]]:
    async with TwilioSimulator() as sim, FakeOpenAI() as llm, running_gateway(
            tmp_path, browser_config(sim, speech, stt, llm), env={"OPENAI_API_KEY": "sk-test"}) as rt:
        yield rt, llm


async def session_cookie(runtime: Runtime) -> str:
    code = (await runtime.api.call("console.loginCode", {}))["code"]
    async with httpx.AsyncClient(base_url=runtime.control_url, trust_env=False, timeout=5,
                                 follow_redirects=False) as http:
        reply = await http.get("/login", params={"code": code})
    cookie: str = reply.cookies["voicecall_console"]
    return cookie


class Page:
    """What a page does: streams the tone, echoes marks, drops its audio on clear."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.audio = bytearray()
        self.clears = 0
        self.call_id: str | None = None
        self.audio_at_clear: list[int] = []

    async def run(self) -> None:
        sender = asyncio.create_task(self._speak())
        try:
            async for message in self.ws:
                event = json.loads(message)
                if event["event"] == "call":
                    self.call_id = event["callId"]
                elif event["event"] == "media":
                    self.audio += base64.b64decode(event["payload"])
                elif event["event"] == "mark":
                    await self.ws.send(json.dumps({"event": "mark", "name": event["name"]}))
                elif event["event"] == "clear":
                    self.clears += 1
                    self.audio_at_clear.append(len(self.audio))
        finally:
            sender.cancel()

    async def _speak(self) -> None:
        while True:
            await self.ws.send(TONE)
            await asyncio.sleep(0.02)


def ws_url(runtime: Runtime) -> str:
    return runtime.control_url.replace("http://", "ws://") + "/console/call"


async def test_a_socket_without_a_console_session_is_refused_at_the_upgrade(
        gateway: tuple[Runtime, FakeOpenAI]) -> None:
    runtime, _ = gateway
    for headers in ({}, {"Cookie": "voicecall_console=forged"},
                    {"Authorization": f"Bearer {runtime.token}"}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(runtime), additional_headers=headers, open_timeout=5):
                pass
        assert refused.value.response.status_code == 403
    cookie = await session_cookie(runtime)
    with pytest.raises(InvalidStatus):  # a signed-in browser, but a page of another site
        async with connect(ws_url(runtime), open_timeout=5, origin="http://evil.example",  # type: ignore[arg-type]
                           additional_headers={"Cookie": f"voicecall_console={cookie}"}):
            pass
    assert runtime.service.active_calls() == []


async def test_the_agent_hears_the_page_answers_it_and_barge_in_clears_the_page(
        gateway: tuple[Runtime, FakeOpenAI], stt: FakeRealtimeTranscription) -> None:
    runtime, llm = gateway
    llm.script(json.dumps({"spoken": REPLY}))
    llm.script(json.dumps({"spoken": "Sure."}), first_token_delay_s=1.0)
    cookie = await session_cookie(runtime)
    async with connect(ws_url(runtime), open_timeout=5,
                       additional_headers={"Cookie": f"voicecall_console={cookie}"}) as ws:
        page = Page(ws)
        reader = asyncio.create_task(page.run())
        call_id = await eventually(lambda: page.call_id, 5)
        record = runtime.service.live(call_id)
        assert record is not None
        assert (record.direction, record.provider) == ("inbound", "browser")
        assert record.from_.startswith("browser:")
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata, 10)
        greeting_bytes = len(page.audio)
        assert greeting_bytes > 2000  # the greeting's audio reached the page (μ-law, 8 kHz)

        stt.say("When are you open?", after_bytes=3200)
        await eventually(lambda: any(t.speaker == "user" for t in record.transcript), 10)
        await eventually(lambda: len(page.audio) > greeting_bytes + 8000, 10)  # the reply plays
        stt.say("Stop please", after_bytes=1600, speech_started=True)
        await eventually(lambda: page.clears >= 1, 10)
        await asyncio.sleep(0.3)
        after_clear = page.audio[page.audio_at_clear[0]:]
        # playback stopped at the clear: at most a frame in flight, then silence until the
        # (slow) answer to the interruption
        assert sum(1 for b in after_clear if b != 0xFF) <= 160, len(after_clear)
        await eventually(lambda: len([t for t in record.transcript if t.speaker == "bot"]) >= 2, 5)
        bot = [t.text for t in record.transcript if t.speaker == "bot"]
        assert bot[0] == "Hello from the agent."
        played = bot[1]  # what the caller heard of the reply before cutting in
        assert played and REPLY.startswith(played) and played != REPLY, bot
        assert 400 < tone_frequency(stt.audio) < 480  # the STT heard the page's 440 Hz tone
        status = await runtime.api.call("voicecall.status", {"callId": call_id})
        assert status["call"]["provider"] == "browser"
        await ws.close()
        await eventually(lambda: record.is_terminal, 5)
        assert record.end_reason == "hangup-user"
        reader.cancel()
