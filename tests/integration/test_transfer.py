"""Transfer to a person (D46): through the Twilio simulator (`<Dial>` with an action URL and the
number's `answered` callback), the Telnyx simulator (the `transfer` action and its leg's
webhooks, D75) and the mock carrier; a transfer nobody answers hands the call back to the agent,
a model may only transfer to `transfer.allowedNumbers`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import call_ended, eventually, free_port, place_call
from tests.integration.test_carrier_flows import CARRIERS, Carrier
from tests.integration.test_twilio_e2e import CALLEE, OUR_NUMBER, twilio_config
from voicecall.agent.tool import dispatch_tool
from voicecall.service.errors import CallError
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator

DESK = "+15557770099"
UNAVAILABLE = "Sorry, nobody could take the call right now. I'm still here to help."


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    async with TwilioSimulator(time_scale=0.05, say_ms_per_char=5) as simulator:
        yield simulator


def config(sim: TwilioSimulator, **transfer: Any) -> dict[str, Any]:
    return twilio_config(sim, free_port(), transfer={"allowedNumbers": [DESK], **transfer})


def tool_lines(record: Any) -> list[str]:
    return [t.text for t in record.transcript if t.speaker == "tool"]


TRANSFERRING = ("twilio", "telnyx")
"""The carriers whose simulators run transfers end to end."""


@pytest.fixture(params=TRANSFERRING)
async def carrier_sim(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Carrier, Any]]:
    carrier = CARRIERS[request.param]
    async with carrier.simulator(0.05, 5) as simulator:
        yield carrier, simulator


def carrier_config(carrier: Carrier, sim: Any, **transfer: Any) -> dict[str, Any]:
    return carrier.config(sim, free_port(), transfer={"allowedNumbers": [DESK], **transfer})


async def test_answered_transfer_bridges_then_ends_the_call_as_transferred(
        tmp_path: Path, carrier_sim: tuple[Carrier, Any]) -> None:
    carrier, sim = carrier_sim
    async with running_gateway(tmp_path, carrier_config(carrier, sim)) as gateway:
        sim.script(CALLEE, carrier.callee())
        sim.script(DESK, carrier.callee(answer_after_s=0.2, hangup_after_s=1.0))
        record = await place_call(gateway, CALLEE, "Hello, this is the clinic", "conversation")
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
        started = await gateway.api.call("voicecall.transfer", {
            "callId": record.call_id, "to": DESK, "message": "Putting you through now"})
        assert started == {"success": True, "callId": record.call_id, "to": DESK,
                           "status": "dialing"}
        final = await call_ended(gateway, record.call_id, within=15)
        call = sim.call(record.provider_call_id or "")
        assert call.said == ["Hello, this is the clinic", "Putting you through now"]
        assert [(d.number, d.caller_id, d.status) for d in call.dials] == [
            (DESK, OUR_NUMBER, "completed")]
        assert final.state.value == final.end_reason == "transferred"
        assert tool_lines(final) == [f"transfer to {DESK}: dialing", f"transfer to {DESK}: bridged",
                                     f"transfer to {DESK}: completed"]
        assert final.metadata["transfer"]["status"] == "completed"
        await call.wait_ended()


@pytest.mark.parametrize("outcome", ["no-answer", "busy"])
async def test_unanswered_transfer_hands_the_call_back_to_the_agent(
        tmp_path: Path, carrier_sim: tuple[Carrier, Any], outcome: str) -> None:
    carrier, sim = carrier_sim
    async with running_gateway(tmp_path, carrier_config(carrier, sim, timeoutSec=5)) as gateway:
        sim.script(CALLEE, carrier.callee(replies=["Okay, what now?"], reply_delay_s=0.1))
        sim.script(DESK, carrier.callee(outcome=outcome, answer_after_s=0.1))
        record = await place_call(gateway, CALLEE, "Hello", "conversation")
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
        await gateway.api.call("voicecall.transfer", {"callId": record.call_id, "to": DESK})
        call = sim.call(record.provider_call_id or "")
        await call.wait_until(lambda: UNAVAILABLE in call.said, timeout=15)
        assert not record.is_terminal and record.metadata["transfer"]["status"] == outcome
        assert tool_lines(record)[-1] == f"transfer to {DESK}: {outcome}"
        # The agent has the call again: a turn works as before.
        answer = await gateway.api.call("voicecall.continue", {"callId": record.call_id,
                                                               "message": "Anything else?"})
        assert answer["transcript"] == "Okay, what now?"
        await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_a_model_may_transfer_only_to_allowed_numbers(tmp_path: Path,
                                                            sim: TwilioSimulator) -> None:
    async with running_gateway(tmp_path, config(sim)) as gateway:
        sim.script(CALLEE, Callee())
        record = await place_call(gateway, CALLEE, "Hello", "conversation")
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
        refused = await dispatch_tool({"action": "transfer_call", "callId": record.call_id,
                                       "to": "+15550001234", "asAgent": False},
                                      gateway.api.call)
        assert "not allowed" in refused["error"] and "transfer.allowedNumbers" in refused["error"]
        assert "transfer" not in record.metadata and not sim.call(record.provider_call_id or "").dials
        with pytest.raises(CallError, match="not a phone number"):
            await gateway.api.call("voicecall.transfer", {"callId": record.call_id, "to": "desk"})
        await gateway.api.call("voicecall.end", {"callId": record.call_id})


async def test_mock_carrier_transfer_is_bridged_then_transferred(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, {"mock": {"transferTalkMs": 100}}) as gateway:
        placed = await gateway.api.call("voicecall.initiate", {
            "to": CALLEE, "message": "Hi", "mode": "conversation"})
        call_id = placed["callId"]
        record = await eventually(lambda: gateway.service.live(call_id))
        await eventually(lambda: "initialMessageSpokenAt" in record.metadata)
        await gateway.api.call("voicecall.transfer", {"callId": call_id, "to": DESK})
        final = await call_ended(gateway, call_id)
        assert final.end_reason == "transferred"
        assert tool_lines(final)[-1] == f"transfer to {DESK}: completed"
