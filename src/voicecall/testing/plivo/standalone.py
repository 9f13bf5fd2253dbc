"""`python -m voicecall.testing.plivo`: run the Plivo simulator on its own and print the
voice-call config that points a gateway at it, ready to paste (`testing/standalone.py`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence

from voicecall.testing import standalone
from voicecall.testing.plivo.simulator import PlivoSimulator
from voicecall.testing.standalone import DEFAULT_WEBHOOK_PORT

__all__ = ["build_parser", "config_block", "main"]


def _credentials(sim: PlivoSimulator) -> list[tuple[str, str]]:
    return [("authId", sim.auth_id), ("authToken", sim.auth_token), ("apiBaseUrl", sim.base_url)]


def config_block(sim: PlivoSimulator, *, webhook_port: int = DEFAULT_WEBHOOK_PORT) -> str:
    """The voice-call config (JSON5) for a gateway on this machine using `sim` as its Plivo."""
    return standalone.config_block("plivo", _credentials(sim), webhook_port=webhook_port)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the standalone simulator (every option documented)."""
    parser = argparse.ArgumentParser(
        prog="python -m voicecall.testing.plivo",
        description="A local Plivo look-alike for offline testing. It prints a voice-call config "
                    "block (JSON5) to save as a file and pass to the gateway with --config.")
    parser.add_argument("--auth-id", default=None, metavar="ID",
                        help="Auth ID the simulator accepts (default: a random MA... ID of 20 "
                             "characters).")
    parser.add_argument("--v2-only", action="store_true",
                        help="Sign callbacks with the legacy X-Plivo-Signature-V2 headers only "
                             "(default: V3 and V2).")
    standalone.add_far_end_options(parser, carrier="Plivo", api_setting="plivo.apiBaseUrl",
                                   speak_verb="Speak")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    callee = standalone.callee_from(args)
    sim = PlivoSimulator(auth_id=args.auth_id, auth_token=args.auth_token,
                         time_scale=args.time_scale, speak_ms_per_char=args.speak_ms_per_char,
                         webhook_retries=args.webhook_retries, host=args.host, port=args.port,
                         default_callee=callee, v2_only=args.v2_only)
    await standalone.serve_until_interrupted(sim, "Plivo", _credentials, callee, args.webhook_port)


def main(argv: Sequence[str] | None = None) -> None:
    """Run a simulator until interrupted and print how to point a gateway at it."""
    args = build_parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
