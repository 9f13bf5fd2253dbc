"""`python -m voicecall.testing.plivo`: run the Plivo simulator on its own and print the
voice-call config that points a gateway at it, ready to paste (`testing/standalone.py`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from voicecall.testing import standalone
from voicecall.testing.plivo.call import Callee
from voicecall.testing.plivo.simulator import PlivoSimulator

__all__ = ["build_parser", "main"]


def _credentials(sim: PlivoSimulator) -> list[tuple[str, str]]:
    return [("authId", sim.auth_id), ("authToken", sim.auth_token), ("apiBaseUrl", sim.base_url)]


def build_parser() -> argparse.ArgumentParser:
    """The command line of the standalone simulator (every option documented)."""
    parser = standalone.simulator_parser("Plivo", speak_verb="Speak")
    parser.add_argument("--auth-id", default=None, metavar="ID",
                        help="Auth ID the simulator accepts (default: a random MA... ID of 20 "
                             "characters).")
    parser.add_argument("--v2-only", action="store_true",
                        help="Sign callbacks with the legacy X-Plivo-Signature-V2 headers only "
                             "(default: V3 and V2).")
    return parser


def _simulator(args: argparse.Namespace, callee: Callee) -> PlivoSimulator:
    return PlivoSimulator(auth_id=args.auth_id, auth_token=args.auth_token,
                          time_scale=args.time_scale, speak_ms_per_char=args.speak_ms_per_char,
                          webhook_retries=args.webhook_retries, host=args.host, port=args.port,
                          default_callee=callee, v2_only=args.v2_only)


def main(argv: Sequence[str] | None = None) -> None:
    """Run a simulator until interrupted and print how to point a gateway at it."""
    standalone.run(argv, build_parser(), "Plivo", _simulator, _credentials)
