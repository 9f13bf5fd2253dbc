"""`python -m voicecall.testing.telnyx`: run the Telnyx simulator on its own and print the
voice-call config that points a gateway at it, ready to paste.

Telnyx signs the webhook body, not the URL, so the block needs no `publicUrl`: it carries the
simulator's API key, connection id and the public half of its webhook signing key.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from voicecall.testing import standalone
from voicecall.testing.standalone import DEFAULT_WEBHOOK_PORT, q
from voicecall.testing.telnyx.simulator import Callee, TelnyxSimulator

__all__ = ["build_parser", "config_block", "main"]


def config_block(sim: TelnyxSimulator, *, webhook_port: int = DEFAULT_WEBHOOK_PORT) -> str:
    """The voice-call config (JSON5, a bare voice-call object) for a gateway on this machine
    whose webhook listens on `webhook_port`, using `sim` as its Telnyx."""
    return standalone.config_block("telnyx", [
        "  telnyx: {",
        f"    apiKey: {q(sim.api_key)},",
        f"    connectionId: {q(sim.connection_id)},",
        "    // The public half of the simulator's webhook signing key (Ed25519, base64).",
        f"    publicKey: {q(sim.public_key)},",
        f"    apiBaseUrl: {q(sim.base_url)},",
        "  },",
    ], webhook_port=webhook_port)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the standalone simulator (every option documented)."""
    parser = standalone.build_parser(
        "Telnyx", "voicecall.testing.telnyx", "telnyx.apiBaseUrl", speech_option="--speak-ms-per-char",
        speech_help="Simulated time the speak action takes per character (default: 30).")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="API key the simulator accepts as Bearer token (default: random).")
    parser.add_argument("--connection-id", default=None, metavar="ID",
                        help="Call Control connection id the simulator accepts (default: random).")
    parser.add_argument("--duplicate-webhooks", type=int, default=0, metavar="N",
                        help="Extra deliveries of every webhook (meta.attempt 2, 3, ...), as Telnyx "
                             "sends on retries (default: 0).")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    callee = Callee(answer_after_s=max(0.0, args.answer_after), replies=list(args.replies))
    simulator = TelnyxSimulator(api_key=args.api_key, connection_id=args.connection_id,
                                time_scale=args.time_scale, speak_ms_per_char=args.speak_ms_per_char,
                                duplicate_webhooks=args.duplicate_webhooks, host=args.host,
                                port=args.port, default_callee=callee)
    await standalone.present(simulator, "Telnyx",
                             lambda sim: config_block(sim, webhook_port=args.webhook_port),
                             standalone.callee_summary(callee.answer_after_s, callee.replies))


def main(argv: Sequence[str] | None = None) -> None:
    """Run a simulator until interrupted and print how to point a gateway at it."""
    args = build_parser().parse_args(argv)
    standalone.run(lambda: _serve(args))
