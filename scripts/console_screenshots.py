"""Take the README's console screenshots (docs/console-live.png, docs/console-call.png) in
headless Chromium against a local gateway: the Twilio simulator, fake speech-to-text, fake TTS
and a fake model, all on loopback. Needs Debian's `chromium` and the `dev` extra.

    .venv/bin/python scripts/console_screenshots.py
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from voicecall.testing.fakes import FakeOpenAI
from voicecall.testing.fakes.stt import FakeRealtimeTranscription
from voicecall.testing.fakes.tts import FakeSpeech
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator

DOCS = Path(__file__).resolve().parent.parent / "docs"
OUR_NUMBER = "+15550000000"
CALLER = "+15557770001"
CALLEES = ("+15555550123", "+15555550188")
TURNS = (("When are you open on Saturday?", "We open at ten on Saturdays. We close at four."),
         ("Can I book a table for six people?", "Yes, I have booked a table for six at seven."))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def until(check: Callable[[], Any], within_s: float = 15) -> Any:
    deadline = time.monotonic() + within_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError("the demo gateway did not get there in time")
        await asyncio.sleep(0.05)
    return value


async def main() -> None:
    port = free_port()
    async with TwilioSimulator() as sim, FakeSpeech() as speech, \
            FakeRealtimeTranscription() as stt, FakeOpenAI() as llm:
        for _, reply in TURNS:
            llm.script(json.dumps({"spoken": reply}))
        config = {
            "provider": "twilio", "fromNumber": OUR_NUMBER,
            "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                       "apiBaseUrl": sim.base_url},
            "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
            "inboundPolicy": "allowlist", "allowFrom": [CALLER], "maxConcurrentCalls": 5,
            "inboundGreeting": "Hello, Trattoria Roma, how can I help?",
            "responder": {"enabled": True, "baseUrl": llm.base_url}, "responseModel": "openai/gpt-4o-mini",
            "streaming": {"enabled": True, "provider": "openai",
                          "providers": {"openai": {"apiKey": "sk-test", "baseUrl": stt.base_url}}},
            "tts": {"provider": "openai",
                    "providers": {"openai": {"apiKey": "sk-test", "baseUrl": speech.openai_base_url}}},
        }
        with tempfile.TemporaryDirectory() as state:
            async with running_gateway(Path(state), config, env={"OPENAI_API_KEY": "sk-test"}) as gw:
                inbound = await sim.place_inbound(CALLER, OUR_NUMBER, gw.webhook_url)
                record = await until(lambda: gw.service.live(inbound.sid))
                await until(lambda: "initialMessageSpokenAt" in record.metadata)
                for turn, (question, _) in enumerate(TURNS, start=1):
                    stt.say(question, after_bytes=1600)
                    await until(lambda turn=turn: record.metadata.get("turnCount") == turn)
                for number in CALLEES:
                    sim.script(number, Callee(answer_after_s=600))  # ringing throughout
                    await gw.api.call("voicecall.initiate", {
                        "to": number, "mode": "conversation",
                        "message": "Hi, this is Trattoria Roma confirming your booking for tonight."})
                await shoot(gw.control_url, (await gw.api.call("console.loginCode", {}))["code"],
                            record.call_id)


async def shoot(base_url: str, code: str, call_id: str) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                   args=["--no-sandbox", "--disable-gpu"])
        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        await page.goto(f"{base_url}/login?code={code}")
        await page.wait_for_selector("#live-calls tbody tr")
        await page.wait_for_timeout(1200)
        await page.screenshot(path=str(DOCS / "console-live.png"))
        await page.goto(f"{base_url}/#/call/{call_id}")
        await page.wait_for_selector("#latency-chart")
        await page.wait_for_timeout(500)
        await page.screenshot(path=str(DOCS / "console-call.png"), full_page=True)
        await browser.close()
    print(f"wrote {DOCS / 'console-live.png'} and {DOCS / 'console-call.png'}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
