"""Transfer to a person on Plivo (D46): `<Dial>` with `action` (DialStatus) and `callbackUrl`
(DialAction=answer), run by the Plivo simulator against scripted people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import call_ended, eventually, free_port, place_call
from tests.integration.plivo_setup import CALLEE, plivo_config
from voicecall.testing.gateway import running_gateway
from voicecall.testing.plivo import Callee, PlivoSimulator

DESK = "+15557770099"
UNAVAILABLE = "Sorry, nobody could take the call right now. I'm still here to help."


def config(sim: PlivoSimulator) -> dict[str, Any]:
    return plivo_config(sim, free_port(), transfer={"allowedNumbers": [DESK], "timeoutSec": 5})


async def test_answered_plivo_transfer_bridges_then_ends_the_call_as_transferred(
        tmp_path: Path) -> None:
    async with PlivoSimulator(time_scale=0.05, speak_ms_per_char=5) as sim, \
            running_gateway(tmp_path, config(sim)) as gateway:
        sim.script(CALLEE, Callee())
        sim.script(DESK, Callee(answer_after_s=0.2, hangup_after_s=1.0))
        record = await place_call(gateway, CALLEE, "Hello, this is the clinic", "conversation")
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
        await gateway.api.call("voicecall.transfer", {"callId": record.call_id, "to": DESK,
                                                      "message": "Putting you through now"})
        final = await call_ended(gateway, record.call_id, within=15)
        call = sim.call(record.provider_call_id or "")
        assert call.said == ["Hello, this is the clinic", "Putting you through now"]
        assert call.dial_results == [(DESK.lstrip("+"), "completed")]
        assert final.end_reason == "transferred"
        assert [t.text for t in final.transcript if t.speaker == "tool"] == [
            f"transfer to {DESK}: dialing", f"transfer to {DESK}: bridged",
            f"transfer to {DESK}: completed"]


@pytest.mark.parametrize("outcome", ["no-answer", "busy"])
async def test_unanswered_plivo_transfer_hands_the_call_back_to_the_agent(
        tmp_path: Path, outcome: str) -> None:
    async with PlivoSimulator(time_scale=0.05, speak_ms_per_char=5) as sim, \
            running_gateway(tmp_path, config(sim)) as gateway:
        sim.script(CALLEE, Callee(replies=["Okay, what now?"], reply_delay_s=0.1))
        sim.script(DESK, Callee(outcome=outcome, answer_after_s=0.1))  # type: ignore[arg-type]
        record = await place_call(gateway, CALLEE, "Hello", "conversation")
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
        await gateway.api.call("voicecall.transfer", {"callId": record.call_id, "to": DESK})
        call = sim.call(record.provider_call_id or "")
        await call.wait_until(lambda: UNAVAILABLE in call.said, timeout=15)
        assert call.dial_results == [(DESK.lstrip("+"), outcome)]
        assert not record.is_terminal and record.metadata["transfer"]["status"] == outcome
        answer = await gateway.api.call("voicecall.continue", {"callId": record.call_id,
                                                               "message": "Anything else?"})
        assert answer["transcript"] == "Okay, what now?"
        await gateway.api.call("voicecall.end", {"callId": record.call_id})
