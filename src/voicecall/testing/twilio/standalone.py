"""`python -m voicecall.testing.twilio`: run the Twilio simulator on its own and print the
voice-call config that points a gateway at it, ready to paste.

The block sets `publicUrl` to the gateway's local webhook URL: the simulator requests and signs
exactly the URL the gateway gives it, so without `publicUrl` (which the gateway would otherwise
rebuild as `https://<Host>/...`) every signature check would fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Sequence

from voicecall.testing.twilio.simulator import Callee, TwilioSimulator

DEFAULT_WEBHOOK_PORT = 3334
WEBHOOK_PATH = "/voice/webhook"
FROM_NUMBER = "+15550000000"
TO_NUMBER = "+15555550123"


def config_block(sim: TwilioSimulator, *, webhook_port: int = DEFAULT_WEBHOOK_PORT) -> str:
    """The voice-call config (JSON5, a bare voice-call object) for a gateway on this machine
    whose webhook listens on `webhook_port`, using `sim` as its Twilio."""
    webhook_url = f"http://127.0.0.1:{webhook_port}{WEBHOOK_PATH}"

    def q(value: str) -> str:
        return json.dumps(value)

    return "\n".join([
        "{",
        '  provider: "twilio",',
        f"  fromNumber: {q(FROM_NUMBER)},",
        f"  toNumber: {q(TO_NUMBER)},  // `voicecall call` without --to dials it",
        "  // The simulator calls the URL the gateway gives it and signs exactly that URL, so",
        "  // signatures are checked against it (not the https:// URL rebuilt from Host).",
        f"  publicUrl: {q(webhook_url)},",
        f"  serve: {{ bind: \"127.0.0.1\", port: {webhook_port}, path: {q(WEBHOOK_PATH)} }},",
        "  twilio: {",
        f"    accountSid: {q(sim.account_sid)},",
        f"    authToken: {q(sim.auth_token)},",
        f"    apiBaseUrl: {q(sim.base_url)},",
        "  },",
        "  // `continue` drives the conversation; remove this to have the model answer the callee.",
        "  responder: { enabled: false },",
        "}",
    ])


def callee_summary(callee: Callee) -> str:
    """How the simulated far end behaves, in one sentence."""
    said = ", ".join(json.dumps(r) for r in callee.replies)
    then = f"replies {said} (one per listen), then stays silent" if said else "stays silent"
    return f"Outbound calls are answered after {callee.answer_after_s:g} s; the callee {then}."


def build_parser() -> argparse.ArgumentParser:
    """The command line of the standalone simulator (every option documented)."""
    parser = argparse.ArgumentParser(
        prog="python -m voicecall.testing.twilio",
        description="A local Twilio look-alike for offline testing. It prints a voice-call config "
                    "block (JSON5) to save as a file and pass to the gateway with --config.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="Address the simulator's REST API listens on (default: 127.0.0.1).")
    parser.add_argument("--port", type=int, default=0,
                        help="Port of the simulator's REST API (twilio.apiBaseUrl); 0 picks a free "
                             "one (default: 0).")
    parser.add_argument("--account-sid", default=None, metavar="SID",
                        help="Account SID the simulator accepts (default: a random AC... SID).")
    parser.add_argument("--auth-token", default=None, metavar="TOKEN",
                        help="Auth token for the REST API and for signing webhooks "
                             "(default: random).")
    parser.add_argument("--answer-after", type=float, default=0.5, metavar="SECONDS",
                        help="Ring time before the callee answers an outbound call "
                             "(default: 0.5).")
    parser.add_argument("--replies", nargs="+", action="extend", default=[], metavar="TEXT",
                        help="What the callee says, one reply per time the gateway listens "
                             "(`voicecall continue`), then silence; e.g. --replies \"I'm fine\" "
                             "\"Tuesday works\" (default: none).")
    parser.add_argument("--webhook-port", type=int, default=DEFAULT_WEBHOOK_PORT, metavar="PORT",
                        help="The gateway's webhook port, used in the printed serve.port and "
                             f"publicUrl (default: {DEFAULT_WEBHOOK_PORT}).")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="FACTOR",
                        help="Real seconds per simulated second; below 1 runs calls faster "
                             "(default: 1.0).")
    parser.add_argument("--say-ms-per-char", type=int, default=30, metavar="MS",
                        help="Simulated time <Say> takes per character (default: 30).")
    parser.add_argument("--webhook-retries", type=int, default=0, metavar="N",
                        help="Extra identical copies of every webhook, as Twilio sends on "
                             "retries (default: 0).")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    callee = Callee(answer_after_s=max(0.0, args.answer_after), replies=list(args.replies))
    async with TwilioSimulator(account_sid=args.account_sid, auth_token=args.auth_token,
                               time_scale=args.time_scale, say_ms_per_char=args.say_ms_per_char,
                               webhook_retries=args.webhook_retries, host=args.host, port=args.port,
                               default_callee=callee) as sim:
        print(f"Twilio simulator listening at {sim.base_url}", flush=True)
        print("Voice-call config for it (JSON5; save as sim.json5 and run "
              "`voicecall --config sim.json5 serve`):", flush=True)
        print(config_block(sim, webhook_port=args.webhook_port), flush=True)
        print(callee_summary(callee), flush=True)
        print('Then: voicecall --config sim.json5 call -m "Hello" --mode conversation. '
              "Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Run a simulator until interrupted and print how to point a gateway at it."""
    args = build_parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
