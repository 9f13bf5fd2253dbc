"""`python -m voicecall.testing.telnyx`: run the Telnyx simulator on its own and print the
voice-call config that points a gateway at it, ready to paste.

Telnyx signs the webhook body, not the URL, so the block needs no `publicUrl`: it carries the
simulator's API key, connection id and the public half of its webhook signing key.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from voicecall.testing import standalone
from voicecall.testing.standalone import DEFAULT_WEBHOOK_PORT
from voicecall.testing.telnyx.simulator import Callee, TelnyxSimulator

__all__ = ["build_parser", "config_block", "main"]


def config_block(sim: TelnyxSimulator, *, webhook_port: int = DEFAULT_WEBHOOK_PORT) -> str:
    """The voice-call config (JSON5, a bare voice-call object) for a gateway on this machine
    whose webhook listens on `webhook_port`, using `sim` as its Telnyx."""
    settings = {"apiKey": sim.api_key, "connectionId": sim.connection_id,
                "publicKey": sim.public_key, "apiBaseUrl": sim.base_url}
    return standalone.config_block("telnyx", list(settings.items()), webhook_port=webhook_port, notes={
        "publicKey": "The public half of the simulator's webhook signing key (Ed25519, base64)."})


CREDENTIALS = (
    ("--api-key", "KEY", "API key the simulator accepts as Bearer token (default: random)."),
    ("--connection-id", "ID", "Call Control connection id the simulator accepts (default: random)."),
)
SIMULATOR_OPTIONS = ("api_key", "connection_id", "host", "port", "time_scale", "speak_ms_per_char",
                     "duplicate_webhooks")
"""The parsed options passed on to `TelnyxSimulator` as they are."""


def build_parser() -> argparse.ArgumentParser:
    """The command line of the standalone simulator (every option documented)."""
    parser = standalone.build_parser(
        "Telnyx", "voicecall.testing.telnyx", "telnyx.apiBaseUrl", speech_option="--speak-ms-per-char",
        speech_help="Simulated time the speak action takes per character (default: 30).")
    for option, metavar, text in CREDENTIALS:
        parser.add_argument(option, default=None, metavar=metavar, help=text)
    parser.add_argument("--duplicate-webhooks", type=int, default=0, metavar="N",
                        help="Extra deliveries of every webhook (meta.attempt 2, 3, ...), as Telnyx "
                             "sends on retries (default: 0).")
    return parser


def _simulator(args: argparse.Namespace) -> TelnyxSimulator:
    callee = Callee(answer_after_s=max(0.0, args.answer_after), replies=list(args.replies))
    return TelnyxSimulator(default_callee=callee, **{name: getattr(args, name) for name in SIMULATOR_OPTIONS})


def main(argv: Sequence[str] | None = None) -> None:
    """Run a simulator until interrupted and print how to point a gateway at it."""
    standalone.main(argv, build_parser(), "Telnyx", _simulator,
                    lambda sim, port: config_block(sim, webhook_port=port))
