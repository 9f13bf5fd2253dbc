"""The console in real headless Chromium against a running mock gateway: sign in with a
one-time code, place a call from the form, watch it appear in the live list and its transcript
fill in without a reload, end it, find it in history."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.helpers import eventually
from voicecall.testing.gateway import running_gateway

pytestmark = pytest.mark.slow
CALLEE = "+15555550123"
TIMEOUT_MS = 10_000


async def test_sign_in_place_watch_end_and_find_a_call_in_history(tmp_path: Path,
                                                                  browser: Browser) -> None:
    async with running_gateway(tmp_path, {"mock": {"answerAfterMs": 300}}) as runtime:
        code = (await runtime.api.call("console.loginCode", {}))["code"]
        page = await browser.new_page()
        await page.goto(f"{runtime.control_url}/login?code={code}")
        await expect(page.locator("h1")).to_have_text("Live calls", timeout=TIMEOUT_MS)
        await expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT_MS)
        await page.evaluate("window.__notReloaded = true")

        await page.click("nav >> text=Place a call")
        await page.fill("#place-form input[name=to]", CALLEE)
        await page.fill("#place-form textarea[name=message]", "Hello from the console.")
        await page.select_option("#place-form select[name=mode]", "conversation")
        await page.click("#place-form button[type=submit]")
        await expect(page.locator("h1 code")).not_to_be_empty(timeout=TIMEOUT_MS)
        call_id = await page.locator("h1 code").inner_text()
        record = runtime.service.live(call_id)
        assert record is not None and record.direction == "outbound"

        await page.click("nav >> text=Live calls")
        row = page.locator(f'#live-calls tr[data-call-id="{call_id}"]')
        await expect(row).to_be_visible(timeout=TIMEOUT_MS)
        await expect(row.locator(".state")).to_have_text("speaking", timeout=TIMEOUT_MS)

        await row.click()
        transcript = page.locator("#transcript li")
        await expect(transcript.first).to_contain_text("Hello from the console.", timeout=TIMEOUT_MS)
        await runtime.api.call("mock.inject", {"callId": call_id, "speech": "Tuesday works for me"})
        await expect(transcript.last).to_contain_text("Tuesday works for me", timeout=TIMEOUT_MS)
        await expect(transcript.last.locator(".who")).to_have_text("caller")

        await page.click("#end-call")
        await expect(page.locator("#call-state")).to_have_text("hangup-bot", timeout=TIMEOUT_MS)
        await eventually(lambda: record.is_terminal, 5)

        await page.click("nav >> text=History")
        await page.fill("#history-filters input[name=q]", "Tuesday")
        await page.click("#history-filters button[type=submit]")
        found = page.locator(f'#history-calls tr[data-call-id="{call_id}"]')
        await expect(found).to_be_visible(timeout=TIMEOUT_MS)
        await expect(found.locator(".state")).to_have_text("hangup-bot")
        assert await page.evaluate("window.__notReloaded") is True
