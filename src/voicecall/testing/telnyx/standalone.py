"""`python -m voicecall.testing.telnyx`: run the Telnyx simulator on its own and print the
voice-call config that points a gateway at it, ready to paste (`testing/standalone.py`).

Telnyx signs the webhook body, not the URL, so the block needs no `publicUrl`: it carries the
simulator's API key, connection id and the public half of its webhook signing key.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from voicecall.testing import standalone
from voicecall.testing.standalone import DEFAULT_WEBHOOK_PORT
from voicecall.testing.telnyx.simulator import Callee, TelnyxSimulator
from voicecall.testing.twilio.simulator import Callee as FarEnd

__all__ = ["build_parser", "config_block", "main"]

NOTES = {"publicKey": "The public half of the simulator's webhook signing key (Ed25519, base64)."}


def _credentials(sim: TelnyxSimulator) -> list[tuple[str, str]]:
    return [("apiKey", sim.api_key), ("connectionId", sim.connection_id),
            ("publicKey", sim.public_key), ("apiBaseUrl", sim.base_url)]


def config_block(sim: TelnyxSimulator, *, webhook_port: int = DEFAULT_WEBHOOK_PORT) -> str:
    """The voice-call config (JSON5) for a gateway on this machine using `sim` as its Telnyx."""
    return standalone.config_block("telnyx", _credentials(sim), webhook_port=webhook_port,
                                   signs_url=False, notes=NOTES)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the standalone simulator (every option documented)."""
    parser = standalone.simulator_parser("Telnyx", speak_verb="Speak", auth_token=False)
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="API key the simulator accepts as Bearer token (default: random).")
    parser.add_argument("--connection-id", default=None, metavar="ID",
                        help="Call Control connection id the simulator accepts (default: random).")
    return parser


def _simulator(args: argparse.Namespace, far_end: FarEnd) -> TelnyxSimulator:
    callee = Callee(answer_after_s=far_end.answer_after_s, replies=list(far_end.replies))
    return TelnyxSimulator(api_key=args.api_key, connection_id=args.connection_id, host=args.host,
                           port=args.port, time_scale=args.time_scale,
                           speak_ms_per_char=args.speak_ms_per_char,
                           duplicate_webhooks=args.webhook_retries, default_callee=callee)


def main(argv: Sequence[str] | None = None) -> None:
    """Run a simulator until interrupted and print how to point a gateway at it."""
    standalone.run(argv, build_parser(), "Telnyx", _simulator, _credentials, signs_url=False,
                   notes=NOTES)
