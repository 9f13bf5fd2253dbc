"""`python -m voicecall.testing.twilio`: run the Twilio simulator on its own and print the
voice-call config that points a gateway at it, ready to paste (`testing/standalone.py`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from voicecall.testing import standalone
from voicecall.testing.standalone import DEFAULT_WEBHOOK_PORT, callee_summary
from voicecall.testing.twilio.simulator import Callee, TwilioSimulator

__all__ = ["build_parser", "callee_summary", "config_block", "main"]


def _credentials(sim: TwilioSimulator) -> list[tuple[str, str]]:
    return [("accountSid", sim.account_sid), ("authToken", sim.auth_token),
            ("apiBaseUrl", sim.base_url)]


def config_block(sim: TwilioSimulator, *, webhook_port: int = DEFAULT_WEBHOOK_PORT) -> str:
    """The voice-call config (JSON5) for a gateway on this machine using `sim` as its Twilio."""
    return standalone.config_block("twilio", _credentials(sim), webhook_port=webhook_port)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the standalone simulator (every option documented)."""
    parser = standalone.simulator_parser("Twilio", speak_verb="Say")
    parser.add_argument("--account-sid", default=None, metavar="SID",
                        help="Account SID the simulator accepts (default: a random AC... SID).")
    return parser


def _simulator(args: argparse.Namespace, callee: Callee) -> TwilioSimulator:
    return TwilioSimulator(account_sid=args.account_sid, auth_token=args.auth_token,
                           time_scale=args.time_scale, say_ms_per_char=args.say_ms_per_char,
                           webhook_retries=args.webhook_retries, host=args.host, port=args.port,
                           default_callee=callee)


def main(argv: Sequence[str] | None = None) -> None:
    """Run a simulator until interrupted and print how to point a gateway at it."""
    standalone.run(argv, build_parser(), "Twilio", _simulator, _credentials)
