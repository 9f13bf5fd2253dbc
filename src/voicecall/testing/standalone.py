"""What every `python -m voicecall.testing.<carrier>` shares: the common command-line options,
the printed voice-call config block, the one-sentence summary of the scripted callee, and
serving until interrupted. Each carrier adds its credentials and how to build its simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

DEFAULT_WEBHOOK_PORT = 3334
WEBHOOK_PATH = "/voice/webhook"
FROM_NUMBER = "+15550000000"
TO_NUMBER = "+15555550123"

__all__ = ["DEFAULT_WEBHOOK_PORT", "FROM_NUMBER", "TO_NUMBER", "WEBHOOK_PATH", "build_parser",
           "callee_summary", "config_block", "main", "present", "q", "run"]


class _Simulator(Protocol):
    @property
    def base_url(self) -> str: ...


SimT = TypeVar("SimT", bound=_Simulator)


def q(value: str) -> str:
    """A JSON5 string literal."""
    return json.dumps(value)


def config_block(provider: str, settings: Sequence[tuple[str, str]], *, webhook_port: int,
                 notes: Mapping[str, str] | None = None,
                 public_url_note: Sequence[str] = ()) -> str:
    """The voice-call config (JSON5, a bare voice-call object) for a gateway on this machine
    whose webhook listens on `webhook_port`, with the carrier's settings block (`settings` as
    key and value, each preceded by its comment in `notes`, if any). With `public_url_note`, the
    block also sets `publicUrl` to the local webhook URL (for carriers that sign the URL),
    preceded by that comment."""
    webhook_url = f"http://127.0.0.1:{webhook_port}{WEBHOOK_PATH}"
    public = [*(f"  // {line}" for line in public_url_note), f"  publicUrl: {q(webhook_url)},"] \
        if public_url_note else []
    carrier: list[str] = []
    for key, value in settings:
        if notes and key in notes:
            carrier.append(f"    // {notes[key]}")
        carrier.append(f"    {key}: {q(value)},")
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
        "}",
    ])


def callee_summary(answer_after_s: float, replies: Sequence[str]) -> str:
    """How the simulated far end behaves, in one sentence."""
    said = ", ".join(json.dumps(r) for r in replies)
    then = f"replies {said} (one per listen), then stays silent" if said else "stays silent"
    return f"Outbound calls are answered after {answer_after_s:g} s; the callee {then}."


def build_parser(carrier: str, module: str, port_setting: str, *, speech_option: str,
                 speech_help: str) -> argparse.ArgumentParser:
    """The options every standalone simulator takes (every option documented); the carrier adds
    its credentials."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=f"A local {carrier} look-alike for offline testing. It prints a voice-call config "
                    "block (JSON5) to save as a file and pass to the gateway with --config.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="Address the simulator's REST API listens on (default: 127.0.0.1).")
    parser.add_argument("--port", type=int, default=0,
                        help=f"Port of the simulator's REST API ({port_setting}); 0 picks a free "
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
    parser.add_argument(speech_option, type=int, default=30, metavar="MS", help=speech_help)
    return parser


def run(serve: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `serve` until interrupted (Ctrl-C ends it quietly)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


async def present(simulator: AbstractAsyncContextManager[SimT], carrier: str,
                  block: Callable[[SimT], str], summary: str) -> None:
    """Start `simulator`, print where it listens, the config block for it and what its callee
    does, then serve until cancelled."""
    async with simulator as sim:
        print(f"{carrier} simulator listening at {sim.base_url}", flush=True)
        print("Voice-call config for it (JSON5; save as sim.json5 and run "
              "`voicecall --config sim.json5 serve`):", flush=True)
        print(block(sim), flush=True)
        print(summary, flush=True)
        print('Then: voicecall --config sim.json5 call -m "Hello" --mode conversation. '
              "Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None, parser: argparse.ArgumentParser, carrier: str,
         simulator: Callable[[argparse.Namespace], AbstractAsyncContextManager[SimT]],
         block: Callable[[SimT, int], str]) -> None:
    """Parse the command line, build the simulator from it, print its config block and serve
    until interrupted."""
    args = parser.parse_args(argv)
    summary = callee_summary(max(0.0, args.answer_after), args.replies)
    run(lambda: present(simulator(args), carrier, lambda sim: block(sim, args.webhook_port), summary))
