"""`python -m voicecall.testing.twilio`: run the Twilio simulator on its own and print the
voice-call config that points a gateway at it, ready to paste (`testing/standalone.py`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence

from voicecall.testing import standalone
from voicecall.testing.standalone import DEFAULT_WEBHOOK_PORT, callee_summary
from voicecall.testing.twilio.simulator import TwilioSimulator

__all__ = ["build_parser", "callee_summary", "config_block", "main"]


def _credentials(sim: TwilioSimulator) -> list[tuple[str, str]]:
    return [("accountSid", sim.account_sid), ("authToken", sim.auth_token),
            ("apiBaseUrl", sim.base_url)]


def config_block(sim: TwilioSimulator, *, webhook_port: int = DEFAULT_WEBHOOK_PORT) -> str:
    """The voice-call config (JSON5) for a gateway on this machine using `sim` as its Twilio."""
    return standalone.config_block("twilio", _credentials(sim), webhook_port=webhook_port)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the standalone simulator (every option documented)."""
    parser = argparse.ArgumentParser(
        prog="python -m voicecall.testing.twilio",
        description="A local Twilio look-alike for offline testing. It prints a voice-call config "
                    "block (JSON5) to save as a file and pass to the gateway with --config.")
    parser.add_argument("--account-sid", default=None, metavar="SID",
                        help="Account SID the simulator accepts (default: a random AC... SID).")
    standalone.add_far_end_options(parser, carrier="Twilio", api_setting="twilio.apiBaseUrl",
                                   speak_verb="Say")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    callee = standalone.callee_from(args)
    sim = TwilioSimulator(account_sid=args.account_sid, auth_token=args.auth_token,
                          time_scale=args.time_scale, say_ms_per_char=args.say_ms_per_char,
                          webhook_retries=args.webhook_retries, host=args.host, port=args.port,
                          default_callee=callee)
    await standalone.serve_until_interrupted(sim, "Twilio", _credentials, callee, args.webhook_port)


def main(argv: Sequence[str] | None = None) -> None:
    """Run a simulator until interrupted and print how to point a gateway at it."""
    args = build_parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
