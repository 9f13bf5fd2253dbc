"""What every carrier simulator's standalone mode shares (`python -m voicecall.testing.<carrier>`):
the options that script the far end, the voice-call config block it prints (ready to paste),
and running until Ctrl-C.

For carriers that sign the URL (Twilio, Plivo) the block sets `publicUrl` to the gateway's local
webhook URL: a simulator requests and signs exactly the URL the gateway gives it, so without
`publicUrl` (which the gateway would otherwise rebuild as `https://<Host>/...`) every signature
check would fail. Telnyx signs the body only, so its block needs none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from voicecall.testing.far_end import Callee

__all__ = [
    "DEFAULT_WEBHOOK_PORT",
    "add_far_end_options",
    "callee_from",
    "callee_summary",
    "config_block",
    "serve_until_interrupted",
    "simulator_parser",
]

DEFAULT_WEBHOOK_PORT = 3334
WEBHOOK_PATH = "/voice/webhook"
FROM_NUMBER = "+15550000000"
TO_NUMBER = "+15555550123"


def config_block(provider: str, credentials: Sequence[tuple[str, str]], *,
                 webhook_port: int = DEFAULT_WEBHOOK_PORT, signs_url: bool = True,
                 notes: Mapping[str, str] | None = None) -> str:
    """The voice-call config (JSON5, a bare voice-call object) for a gateway on this machine
    whose webhook listens on `webhook_port`, with `credentials` as its `provider` block (each
    preceded by its comment in `notes`, if any); `publicUrl` only when the carrier signs the URL."""
    webhook_url = f"http://127.0.0.1:{webhook_port}{WEBHOOK_PATH}"

    def q(value: str) -> str:
        return json.dumps(value)

    public = [
        "  // The simulator calls the URL the gateway gives it and signs exactly that URL, so",
        "  // signatures are checked against it (not the https:// URL rebuilt from Host).",
        f"  publicUrl: {q(webhook_url)},",
    ] if signs_url else []
    carrier: list[str] = []
    for name, value in credentials:
        if notes and name in notes:
            carrier.append(f"    // {notes[name]}")
        carrier.append(f"    {name}: {q(value)},")

    return "\n".join([
        "{",
        f"  provider: {q(provider)},",
        f"  fromNumber: {q(FROM_NUMBER)},",
        f"  toNumber: {q(TO_NUMBER)},  // `voicecall call` without --to dials it",
        *public,
        f"  serve: {{ bind: \"127.0.0.1\", port: {webhook_port}, path: {q(WEBHOOK_PATH)} }},",
        f"  {provider}: {{",
        *carrier,
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


def simulator_parser(carrier: str, *, speak_verb: str, auth_token: bool = True
                     ) -> argparse.ArgumentParser:
    """The command line of `python -m voicecall.testing.<carrier>` with the options every
    simulator has (`--auth-token` for carriers whose webhooks are signed with it); the carrier
    adds its account options."""
    parser = argparse.ArgumentParser(
        prog=f"python -m voicecall.testing.{carrier.lower()}",
        description=f"A local {carrier} look-alike for offline testing. It prints a voice-call "
                    "config block (JSON5) to save as a file and pass to the gateway with --config.")
    add_far_end_options(parser, carrier=carrier, api_setting=f"{carrier.lower()}.apiBaseUrl",
                        speak_verb=speak_verb)
    if auth_token:
        parser.add_argument("--auth-token", default=None, metavar="TOKEN",
                            help="Auth token for the REST API and for signing webhooks "
                                 "(default: random).")
    return parser


def add_far_end_options(parser: argparse.ArgumentParser, *, carrier: str, api_setting: str,
                        speak_verb: str) -> None:
    """The options every standalone simulator has: where it listens, how the far end behaves,
    how fast calls run. `api_setting` is the config key its REST URL goes in."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="Address the simulator's REST API listens on (default: 127.0.0.1).")
    parser.add_argument("--port", type=int, default=0,
                        help=f"Port of the simulator's REST API ({api_setting}); 0 picks a free "
                             "one (default: 0).")
    parser.add_argument("--answer-after", type=float, default=0.5, metavar="SECONDS",
                        help="Ring time before the callee answers an outbound call "
                             "(default: 0.5).")
    parser.add_argument("--replies", nargs="+", action="extend", default=[], metavar="TEXT",
                        help="What the callee says, one reply per time the gateway listens "
                             "(`voicecall continue`), then silence; e.g. --replies \"I'm fine\" "
                             "\"Tuesday works\" (default: none).")
    parser.add_argument("--webhook-port", type=int, default=DEFAULT_WEBHOOK_PORT, metavar="PORT",
                        help="The gateway's webhook port, used in the printed config block "
                             f"(default: {DEFAULT_WEBHOOK_PORT}).")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="FACTOR",
                        help="Real seconds per simulated second; below 1 runs calls faster "
                             "(default: 1.0).")
    parser.add_argument(f"--{speak_verb.lower()}-ms-per-char", type=int, default=30, metavar="MS",
                        help=f"Simulated time <{speak_verb}> takes per character (default: 30).")
    parser.add_argument("--webhook-retries", type=int, default=0, metavar="N",
                        help=f"Extra identical copies of every webhook, as {carrier} sends on "
                             "retries (default: 0).")


def callee_from(args: argparse.Namespace) -> Callee:
    """The far end the options describe."""
    from voicecall.testing.twilio.simulator import Callee

    return Callee(answer_after_s=max(0.0, args.answer_after), replies=list(args.replies))


async def serve_until_interrupted(simulator: AbstractAsyncContextManager[Any], carrier: str,
                                  credentials: Any, callee: Callee, webhook_port: int, *,
                                  signs_url: bool = True,
                                  notes: Mapping[str, str] | None = None) -> None:
    """Run `simulator`, print how to point a gateway at it (`credentials(sim)` gives the
    config block's carrier settings, `signs_url` and `notes` as for `config_block`), and wait
    for Ctrl-C."""
    async with simulator as sim:
        print(f"{carrier} simulator listening at {sim.base_url}", flush=True)
        print("Voice-call config for it (JSON5; save as sim.json5 and run "
              "`voicecall --config sim.json5 serve`):", flush=True)
        print(config_block(carrier.lower(), credentials(sim), webhook_port=webhook_port,
                           signs_url=signs_url, notes=notes), flush=True)
        print(callee_summary(callee), flush=True)
        print('Then: voicecall --config sim.json5 call -m "Hello" --mode conversation. '
              "Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def run(argv: Sequence[str] | None, parser: argparse.ArgumentParser, carrier: str,
        simulator: Callable[[argparse.Namespace, Callee], AbstractAsyncContextManager[Any]],
        credentials: Callable[[Any], Sequence[tuple[str, str]]], *, signs_url: bool = True,
        notes: Mapping[str, str] | None = None) -> None:
    """Parse `argv`, run the simulator `simulator(args, callee)` builds until Ctrl-C (`callee`
    is the far end the options describe; a carrier with its own callee type copies it)."""
    args = parser.parse_args(argv)
    callee = callee_from(args)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_interrupted(simulator(args, callee), carrier, credentials, callee,
                                            args.webhook_port, signs_url=signs_url, notes=notes))
