"""What every `voicecall` command shares: the Typer apps, config loading, running a coroutine
with one-line errors, and output."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from voicecall.calls.phone import normalize_e164
from voicecall.cli.session import live_api

if TYPE_CHECKING:
    import asyncio

    from voicecall.config import LoadedConfig

# The config, the control client and the gateway are imported where a command uses them, so
# `voicecall --help` and a mistyped option answer without loading them.

T = TypeVar("T")

# Plain click help (`rich_markup_mode=None`): no `<bool>` placeholders on flags, nothing boxed.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="voicecall: phone calls for AI agents (Twilio, Telnyx, Plivo, mock).")
config_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Inspect the configuration.")
mock_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="Act as the callee on mock-carrier calls.")
app.add_typer(config_app, name="config")
app.add_typer(mock_app, name="mock")

out = Console()
err = Console(stderr=True)
# Piped or redirected, rich would wrap every line at 80 columns: write lines whole instead.
out.soft_wrap = not out.is_terminal
err.soft_wrap = not err.is_terminal
options: dict[str, Any] = {"config": None}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
CallIdOpt = Annotated[str, typer.Option("--call-id", help="Call id (ours or the carrier's).")]


class Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise Exit(code, message)


def spoken_text(value: str | None) -> str | None:
    """Option callback: text to speak must have something in it."""
    if value is not None and not value.strip():
        raise typer.BadParameter("must not be empty")
    return value


def phone_number(value: str | None) -> str | None:
    """Option callback: a phone number, normalized to E.164 (`+1 555 555 0123` is accepted)."""
    if value is None:
        return None
    number = normalize_e164(value)
    if number is None:
        raise typer.BadParameter(f"{value!r} is not a phone number in E.164 form, like +15555550123")
    return number


def _print_version(value: bool) -> None:
    if value:
        print(f"voicecall {package_version('voicecall')}")
        raise typer.Exit()


@app.callback()
def main_options(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config file (JSON5). "
                      "Default: $VOICECALL_CONFIG, $OPENCLAW_CONFIG_PATH, "
                      "$OPENCLAW_STATE_DIR/openclaw.json, ~/.openclaw/openclaw.json.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          is_eager=True, callback=_print_version)] = False,
) -> None:
    options["config"] = config
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx2 (the MCP client's HTTP) logs every request's full URL at INFO; an MCP server's URL
    # may carry a key in its query (D94)
    logging.getLogger("httpx2").setLevel(logging.WARNING)


def loaded_config(*, require_valid: bool = True) -> LoadedConfig:
    from voicecall.config import ConfigError, load_config

    try:
        loaded = load_config(options["config"])
    except ConfigError as exc:
        where = f" in {exc.source}" if exc.source is not None else ""
        fail(f"invalid config{where}:\n{exc}", 2)
    for warning in loaded.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if require_valid and loaded.issues:
        fail("invalid config:\n" + "\n".join(f"  {i.path}: {i.message}" for i in loaded.issues), 2)
    return loaded


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it is, with uvicorn[standard]): the media hot path (hundreds of
    sockets at fifty frames a second) spends much less time in the event loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_coro(coro: Coroutine[Any, Any, T], *, fast_loop: bool = False) -> T:
    import asyncio

    with reported(), asyncio.Runner(loop_factory=loop_factory() if fast_loop else None) as runner:
        return runner.run(coro)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Known errors (a refused request, a bad config, a call error) end the command with one
    line and their exit code instead of a traceback."""
    try:
        yield
    except Exit:
        raise
    except Exception as exc:
        known = _reported(exc)
        if known is None:
            raise
        fail(*known)


_REPORTED = (  # (module, class, exit code, message prefix): errors shown in one line
    ("voicecall.gateway.ports", "PortInUse", 3, ""),
    ("voicecall.gateway.rpc_wire", "RpcError", 1, ""),
    ("voicecall.gateway.rpc_wire", "GatewayUnavailable", 1, ""),
    ("voicecall.config.loader", "ConfigError", 2, "invalid config:\n"),
    ("voicecall.service.errors", "CallError", 1, ""),
)


def _reported(exc: Exception) -> tuple[str, int] | None:
    """The message and exit code for an error a command reports without a traceback. Only
    modules already loaded are looked at: an exception's class is loaded if it was raised."""
    for module_name, class_name, code, prefix in _REPORTED:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return f"{prefix}{exc}", code
    return None


def emit(result: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        out.print_json(json.dumps(result))
    else:
        human(result)


async def spin(message: str, awaitable: Awaitable[T], as_json: bool) -> T:
    """Await `awaitable`; when stderr is a terminal, show a spinner saying what is awaited
    (`message`) and the seconds spent so far."""
    import asyncio

    if as_json or not err.is_terminal:
        return await awaitable
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.ensure_future(awaitable)
    try:
        with err.status(f"{message} (0 s)") as status:
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                status.update(f"{message} ({loop.time() - started:.0f} s)")
        return task.result()
    finally:
        task.cancel()


# -- placing calls (call, start, smoke) ------------------------------------------------------
def check_mode(mode: str | None) -> None:
    if mode is not None and mode not in ("notify", "conversation"):
        fail(f"--mode must be notify or conversation, not {mode!r}", 2)


def place_call(loaded: LoadedConfig, params: dict[str, Any], as_json: bool) -> dict[str, Any]:
    import asyncio

    async def run() -> dict[str, Any]:
        async with live_api(loaded) as (api, runtime):
            result = await api.call("voicecall.initiate" if params.get("message")
                                    else "voicecall.start", params)
            if runtime is None:
                return result
            # No gateway was running: this process hosts the call until it ends.
            call_id = result["callId"]
            err.print(f"[dim]no gateway running: this command hosts call {call_id} until it "
                      f"ends (Ctrl-C hangs up). Start `voicecall serve` to place calls in the "
                      f"background.[/]")
            try:
                limit = loaded.config.max_duration_seconds
                final = await spin(f"hosting call {call_id} until it ends (at most "
                                   f"maxDurationSeconds = {limit} s after the answer)",
                                   _wait_ended(api, call_id), as_json)
            except (KeyboardInterrupt, asyncio.CancelledError):
                await api.call("voicecall.end", {"callId": call_id})
                raise
            return {**result, "state": final["state"], "endReason": final.get("endReason")}

    return run_coro(run())


async def _wait_ended(api: Any, call_id: str) -> dict[str, Any]:
    import asyncio

    while True:
        status = await api.call("voicecall.status", {"callId": call_id})
        call = status.get("call") or {}
        if status.get("found") and call.get("endReason"):
            return dict(call)
        await asyncio.sleep(0.25)
