"""`python -m voicecall.testing.twilio`: run the Twilio simulator on its own and print the
voice-call config that points a gateway at it, ready to paste.

The block sets `publicUrl` to the gateway's local webhook URL: the simulator requests and signs
exactly the URL the gateway gives it, so without `publicUrl` (which the gateway would otherwise
rebuild as `https://<Host>/...`) every signature check would fail.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from voicecall.testing import standalone
from voicecall.testing.standalone import DEFAULT_WEBHOOK_PORT
from voicecall.testing.twilio.simulator import Callee, TwilioSimulator

__all__ = ["build_parser", "callee_summary", "config_block", "main"]


def config_block(sim: TwilioSimulator, *, webhook_port: int = DEFAULT_WEBHOOK_PORT) -> str:
    """The voice-call config (JSON5, a bare voice-call object) for a gateway on this machine
    whose webhook listens on `webhook_port`, using `sim` as its Twilio."""
    return standalone.config_block("twilio", [
        ("accountSid", sim.account_sid), ("authToken", sim.auth_token), ("apiBaseUrl", sim.base_url),
    ], webhook_port=webhook_port, public_url_note=(
        "The simulator calls the URL the gateway gives it and signs exactly that URL, so",
        "signatures are checked against it (not the https:// URL rebuilt from Host)."))


def callee_summary(callee: Callee) -> str:
    """How the simulated far end behaves, in one sentence."""
    return standalone.callee_summary(callee.answer_after_s, callee.replies)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the standalone simulator (every option documented)."""
    parser = standalone.build_parser(
        "Twilio", "voicecall.testing.twilio", "twilio.apiBaseUrl", speech_option="--say-ms-per-char",
        speech_help="Simulated time <Say> takes per character (default: 30).")
    parser.add_argument("--account-sid", default=None, metavar="SID",
                        help="Account SID the simulator accepts (default: a random AC... SID).")
    parser.add_argument("--auth-token", default=None, metavar="TOKEN",
                        help="Auth token for the REST API and for signing webhooks "
                             "(default: random).")
    parser.add_argument("--webhook-retries", type=int, default=0, metavar="N",
                        help="Extra identical copies of every webhook, as Twilio sends on "
                             "retries (default: 0).")
    return parser


def _simulator(args: argparse.Namespace) -> TwilioSimulator:
    return TwilioSimulator(account_sid=args.account_sid, auth_token=args.auth_token,
                           time_scale=args.time_scale, say_ms_per_char=args.say_ms_per_char,
                           webhook_retries=args.webhook_retries, host=args.host, port=args.port,
                           default_callee=Callee(answer_after_s=max(0.0, args.answer_after),
                                                 replies=list(args.replies)))


def main(argv: Sequence[str] | None = None) -> None:
    """Run a simulator until interrupted and print how to point a gateway at it."""
    standalone.main(argv, build_parser(), "Twilio", _simulator,
                    lambda sim, port: config_block(sim, webhook_port=port))
