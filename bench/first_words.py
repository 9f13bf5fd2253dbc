#!/usr/bin/env python
"""How long a Twilio callee waits, after answering, for the TwiML of the call's first words.

Through the Twilio simulator (loopback, signed webhooks, REST API) and a real gateway, for
`--calls` outbound notify calls and `--calls` inbound calls (greeting), both without media
streaming: the time from the simulator sending the answer webhook to the first `<Say>` being
available to it, either in the answer itself or in the REST update that follows.

Two modes, same run: `inline` (the gateway as built: the first words ride in the answer,
docs/decisions.md D45) and `rest` (the answer window disabled by patching `AnswerWindow.park`
to refuse, which is exactly the path before D45: a hold document, then a REST update).

`--api-rtt-ms` makes every REST request to the simulator take that long (default 80: a round
trip to Twilio's API from a server on the same continent, plus its processing); on bare
loopback (0) the REST path costs only a few milliseconds more than the inline one.

Prints one JSON object: per mode and flow, median/p95/max milliseconds and how many calls got
their first words inline.

    .venv/bin/python bench/first_words.py --calls 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from voicecall.providers.answer_window import AnswerWindow
from voicecall.testing.gateway import running_gateway
from voicecall.testing.twilio import Callee, TwilioSimulator
from voicecall.testing.twilio.simulator import SimCall

OUR_NUMBER = "+15550000000"
CALLEE = "+15555550123"
CALLER = "+15557770001"


def config(sim: TwilioSimulator, port: int) -> dict[str, Any]:
    return {"provider": "twilio", "fromNumber": OUR_NUMBER,
            "twilio": {"accountSid": sim.account_sid, "authToken": sim.auth_token,
                       "apiBaseUrl": sim.base_url},
            "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
            "outbound": {"notifyHangupDelaySec": 0}, "inboundPolicy": "open",
            "maxConcurrentCalls": 5}


def first_words_ms(sim: TwilioSimulator, call: SimCall) -> tuple[float, bool]:
    """(milliseconds from the answer webhook to the first `<Say>`, whether it was inline)."""
    answer = next(r for r in call.webhooks if r.status_code == 200 and (
        ("type=" not in r.url and r.params.get("CallStatus") == "in-progress"
         and call.direction != "inbound") or "type=answered" in r.url))
    if "<Say" in answer.body and answer.replied_at is not None:
        return (answer.replied_at - answer.at) * 1000, True
    update = next(r for r in sim.api_requests if r.path.endswith(f"/Calls/{call.sid}.json")
                  and any(k == "Twiml" and "<Say" in v for k, v in r.params))
    return (update.at - answer.at) * 1000, False


def summary(samples: list[tuple[float, bool]]) -> dict[str, Any]:
    values = sorted(ms for ms, _ in samples)
    return {"medianMs": round(statistics.median(values), 1),
            "p95Ms": round(values[max(0, round(0.95 * len(values)) - 1)], 1),
            "maxMs": round(values[-1], 1), "inline": sum(1 for _, inline in samples if inline),
            "calls": len(values)}


async def measure(calls: int, api_rtt_ms: float) -> dict[str, Any]:
    results: dict[str, list[tuple[float, bool]]] = {"notify": [], "inboundGreeting": []}
    with tempfile.TemporaryDirectory() as tmp:
        async with TwilioSimulator(time_scale=0.02, say_ms_per_char=1,
                                   api_latency_s=api_rtt_ms / 1000) as sim:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            async with running_gateway(Path(tmp), config(sim, port)) as gateway:
                sim.script(CALLEE, Callee(answer_after_s=0.05))
                for _ in range(calls):
                    placed = await gateway.api.call("voicecall.initiate", {
                        "to": CALLEE, "message": "Your order has shipped", "mode": "notify"})
                    record = await gateway.service.get_call(placed["callId"])
                    assert record is not None and record.provider_call_id
                    call = sim.call(record.provider_call_id)
                    await call.wait_ended(timeout=20)
                    results["notify"].append(first_words_ms(sim, call))
                for _ in range(calls):
                    call = await sim.place_inbound(CALLER, OUR_NUMBER, gateway.webhook_url)
                    await call.wait_until(lambda c=call: bool(c.said), timeout=20)
                    await call.hangup()
                    results["inboundGreeting"].append(first_words_ms(sim, call))
    return {flow: summary(samples) for flow, samples in results.items()}


async def refuse(self: AnswerWindow, document: str) -> bool:
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--api-rtt-ms", type=float, default=80.0)
    options = parser.parse_args()
    inline = asyncio.run(measure(options.calls, options.api_rtt_ms))
    AnswerWindow.park = refuse  # type: ignore[method-assign]
    rest = asyncio.run(measure(options.calls, options.api_rtt_ms))
    print(json.dumps({"inline": inline, "rest": rest,
                      "env": {"python": sys.version.split()[0], "calls": options.calls,
                              "apiRttMs": options.api_rtt_ms}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
