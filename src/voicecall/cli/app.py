"""The `voicecall` command. Human-readable output by default, `--json` everywhere, a one-line
reason and a non-zero exit code on failure."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from voicecall.agent.tool import tool_schema
from voicecall.calls.latency import latency_report
from voicecall.cli import render
from voicecall.cli.session import gateway_client, live_api, read_api
from voicecall.config import (
    ConfigError,
    LoadedConfig,
    config_json_schema,
    discover_config_path,
    load_config,
    redacted_config,
    resolve_control_token,
    state_dir,
    store_dir,
)
from voicecall.gateway.client import GatewayUnavailable, RpcError
from voicecall.gateway.garbage import (
    CollectAfterTicks,
    collect_garbage_periodically,
    settle_garbage_collector,
)
from voicecall.gateway.ports import PortInUse
from voicecall.gateway.runtime import Runtime
from voicecall.service import CallError
from voicecall.store import SQLiteCallStore

T = TypeVar("T")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="voicecall: phone calls for AI agents (Twilio, Telnyx, Plivo, mock).")
config_app = typer.Typer(no_args_is_help=True, help="Inspect the configuration.")
mock_app = typer.Typer(no_args_is_help=True, help="Act as the callee on mock-carrier calls.")
app.add_typer(config_app, name="config")
app.add_typer(mock_app, name="mock")

out = Console()
err = Console(stderr=True)
_state: dict[str, Any] = {"config": None}
SMOKE_MESSAGE = "OpenClaw voice call smoke test."

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
CallIdOpt = Annotated[str, typer.Option("--call-id", help="Call id (ours or the carrier's).")]


class Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise Exit(code, message)


@app.callback()
def main_options(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config file (JSON5). "
                      "Default: $VOICECALL_CONFIG, $OPENCLAW_CONFIG_PATH, "
                      "$OPENCLAW_STATE_DIR/openclaw.json, ~/.openclaw/openclaw.json.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    _state["config"] = config
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _loaded(*, require_valid: bool = True) -> LoadedConfig:
    try:
        loaded = load_config(_state["config"])
    except ConfigError as exc:
        fail(f"invalid config:\n{exc}", 2)
    for warning in loaded.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if require_valid and loaded.issues:
        fail("invalid config:\n" + "\n".join(f"  {i.path}: {i.message}" for i in loaded.issues), 2)
    return loaded


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it is, with uvicorn[standard]): the media hot path (hundreds of
    sockets at fifty frames a second) spends much less time in the event loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run(coro: Coroutine[Any, Any, T], *, fast_loop: bool = False) -> T:
    try:
        with asyncio.Runner(loop_factory=_loop_factory() if fast_loop else None) as runner:
            return runner.run(coro)
    except Exit:
        raise
    except PortInUse as exc:
        fail(str(exc), 3)
    except (CallError, RpcError) as exc:
        fail(str(exc))
    except ConfigError as exc:
        fail(f"invalid config:\n{exc}", 2)


def _emit(result: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        out.print_json(json.dumps(result))
    else:
        human(result)


async def _spin(message: str, awaitable: Awaitable[T], as_json: bool) -> T:
    if as_json or not err.is_terminal:
        return await awaitable
    with err.status(message):
        return await awaitable


# -- the gateway ------------------------------------------------------------------------------
@app.command()
def serve(as_json: JsonOpt = False) -> None:
    """Run the gateway: webhooks, control API and timers (mock carrier with no config)."""
    loaded = _loaded()

    async def run() -> None:
        runtime = Runtime(loaded)
        await runtime.start()
        if as_json:
            print(json.dumps({"carrier": runtime.provider.name, "webhookUrl": runtime.webhook_url,
                              "controlUrl": runtime.control_url, "store": str(runtime.store.path)}),
                  flush=True)
        else:
            render.banner(out, runtime, state_dir(loaded.env))
        settle_garbage_collector()
        collector = asyncio.create_task(collect_garbage_periodically(), name="voicecall-gc")
        paced_gc: CollectAfterTicks | None = None
        if runtime.media is not None:  # young collections in the gaps between frames
            paced_gc = CollectAfterTicks()
            paced_gc.install()
            runtime.media.pacer.after_tick = paced_gc
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            err.print("stopping…")
            collector.cancel()
            if paced_gc is not None and runtime.media is not None:
                runtime.media.pacer.after_tick = None
                paced_gc.uninstall()
            await runtime.stop()

    _run(run(), fast_loop=True)


@app.command()
def setup(as_json: JsonOpt = False) -> None:
    """Check the configuration for what real calls need; exits 1 when something is missing."""
    from voicecall.gateway.setup import run_checks

    loaded = _loaded(require_valid=False)
    checks = run_checks(loaded)
    ok = all(check.ok for check in checks)
    if as_json:
        out.print_json(json.dumps({"ok": ok, "checks": [c.to_json() for c in checks]}))
    else:
        out.print(f"Voice Call setup: {'OK' if ok else 'needs attention'}")
        for check in checks:
            out.print(f"{'OK  ' if check.ok else 'FAIL'} {check.id}: {check.message}", highlight=False)
    if not ok:
        raise typer.Exit(1)


@app.command()
def smoke(
    to: Annotated[str | None, typer.Option("--to", "-t", help="E.164 number for a live test "
                  "call.")] = None,
    message: Annotated[str, typer.Option(help="What the test call says.")] = SMOKE_MESSAGE,
    mode: Annotated[str, typer.Option(help="notify or conversation.")] = "notify",
    yes: Annotated[bool, typer.Option("--yes", help="Really place the call (otherwise a dry "
                   "run).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Setup checks, then (with --to and --yes) one real test call; exits 1 if a check fails."""
    from voicecall.gateway.setup import run_checks

    _check_mode(mode)
    loaded = _loaded(require_valid=False)
    checks = run_checks(loaded)
    ok = all(check.ok for check in checks)
    report: dict[str, Any] = {"ok": ok, "setup": [c.to_json() for c in checks], "liveCall": False}
    if ok and to:
        params = {"to": to, "message": message, "mode": mode}
        if yes:
            placed = _place_call(loaded, params, as_json)
            report.update(liveCall=True, callId=placed["callId"])
        else:
            report["wouldCall"] = params

    def human(r: dict[str, Any]) -> None:
        out.print(f"Voice Call smoke: {'OK' if r['ok'] else 'setup needs attention'}")
        for check in checks:
            out.print(f"{'OK  ' if check.ok else 'FAIL'} {check.id}: {check.message}", highlight=False)
        if r.get("wouldCall"):
            out.print(f"dry run: would call {to} ({mode}); add --yes to place it", highlight=False)
        elif r.get("callId"):
            out.print(f"test call placed: [bold]{r['callId']}[/]")

    _emit(report, as_json, human)
    if not ok:
        raise typer.Exit(1)


@app.command()
def doctor(fix: Annotated[bool, typer.Option("--fix", help="Rewrite the config file with the "
                          "legacy keys migrated (the original is kept as .bak).")] = False,
           as_json: JsonOpt = False) -> None:
    """Find legacy config keys; with --fix, rewrite the config file without them."""
    from voicecall.config.doctor import check_config_file

    env = dict(os.environ)
    try:
        path, _openclaw = discover_config_path(_state["config"], env)
        if path is None:
            _emit({"path": None, "changes": [], "fixed": False}, as_json,
                  lambda r: out.print("no config file found: nothing to check"))
            return
        report = check_config_file(path, fix=fix)
    except ConfigError as exc:
        fail(f"invalid config:\n{exc}", 2)

    def human(r: dict[str, Any]) -> None:
        if not r["changes"]:
            out.print(f"{r['path']}: no legacy keys", highlight=False)
            return
        for change in r["changes"]:
            out.print(f"- {change}", highlight=False)
        if r["fixed"]:
            out.print(f"rewrote {r['path']} (original kept as {r['backup']}; comments are not "
                      "kept)", highlight=False)
        else:
            out.print("run `voicecall doctor --fix` to rewrite the file", highlight=False)

    _emit(report.to_json(), as_json, human)


# -- placing calls ----------------------------------------------------------------------------
def _place(params: dict[str, Any], as_json: bool) -> None:
    result = _place_call(_loaded(), params, as_json)
    _emit(result, as_json, lambda r: out.print(f"call placed: [bold]{r['callId']}[/]"
                                              + (f" (ended: {r['endReason']})"
                                                 if r.get("endReason") else "")))


def _place_call(loaded: LoadedConfig, params: dict[str, Any], as_json: bool) -> dict[str, Any]:
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
                final = await _spin("call in progress…", _wait_ended(api, call_id), as_json)
            except (KeyboardInterrupt, asyncio.CancelledError):
                await api.call("voicecall.end", {"callId": call_id})
                raise
            return {**result, "state": final["state"], "endReason": final.get("endReason")}

    return _run(run())


async def _wait_ended(api: Any, call_id: str) -> dict[str, Any]:
    while True:
        status = await api.call("voicecall.status", {"callId": call_id})
        call = status.get("call") or {}
        if status.get("found") and call.get("endReason"):
            return dict(call)
        await asyncio.sleep(0.25)


@app.command()
def call(
    message: Annotated[str, typer.Option("--message", "-m", help="What to say on answer.")],
    to: Annotated[str | None, typer.Option("--to", "-t", help="E.164 number "
                  "(default: toNumber).")] = None,
    mode: Annotated[str | None, typer.Option(help="notify or conversation "
                    "(default: outbound.defaultMode).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Place an outbound call and print its call id."""
    _check_mode(mode)
    _place({k: v for k, v in {"to": to, "message": message, "mode": mode}.items() if v}, as_json)


@app.command()
def start(
    to: Annotated[str, typer.Option("--to", "-t", help="E.164 number to call.")],
    message: Annotated[str | None, typer.Option("--message", "-m")] = None,
    mode: Annotated[str | None, typer.Option(help="notify or conversation.")] = None,
    dtmf_sequence: Annotated[str | None, typer.Option("--dtmf-sequence", help="Keys to press "
                             "once connected (conversation calls).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Place an outbound call (the message is optional)."""
    _check_mode(mode)
    params = {"to": to, "message": message, "mode": mode, "dtmfSequence": dtmf_sequence}
    _place({k: v for k, v in params.items() if v}, as_json)


def _check_mode(mode: str | None) -> None:
    if mode is not None and mode not in ("notify", "conversation"):
        fail(f"--mode must be notify or conversation, not {mode!r}", 2)


# -- acting on live calls ---------------------------------------------------------------------
def _act(method: str, params: dict[str, Any], as_json: bool,
         human: Callable[[dict[str, Any]], None]) -> None:
    loaded = _loaded()

    async def run() -> dict[str, Any]:
        async with live_api(loaded) as (api, _runtime):
            return await api.call(method, params)

    _emit(_run(run()), as_json, human)


@app.command("continue")
def continue_(call_id: CallIdOpt,
              message: Annotated[str, typer.Option("--message", "-m")],
              as_json: JsonOpt = False) -> None:
    """Say something, wait for the callee's reply, print it."""
    loaded = _loaded()

    async def run() -> dict[str, Any]:
        async with live_api(loaded) as (api, _runtime):
            started = await api.call("voicecall.continue.start",
                                     {"callId": call_id, "message": message})

            async def poll() -> dict[str, Any]:
                while True:
                    result = await api.call("voicecall.continue.result",
                                            {"operationId": started["operationId"],
                                             "waitMs": 20_000})
                    if result.get("done"):
                        return result

            return await _spin("waiting for the callee…", poll(), as_json)

    result = _run(run())
    if not result.get("success"):
        if as_json:
            out.print_json(json.dumps(result))
        fail(str(result.get("error", "continue failed")))
    _emit({"success": True, "transcript": result["transcript"]}, as_json,
          lambda r: out.print(f"[bold]callee:[/] {r['transcript']}"))


@app.command()
def speak(call_id: CallIdOpt, message: Annotated[str, typer.Option("--message", "-m")],
          as_json: JsonOpt = False) -> None:
    """Say something on the call (returns once it has played)."""
    _act("voicecall.speak", {"callId": call_id, "message": message}, as_json,
         lambda r: out.print("spoken"))


@app.command()
def dtmf(call_id: CallIdOpt, digits: Annotated[str, typer.Option(help="0-9 * # and w/p pauses")],
         as_json: JsonOpt = False) -> None:
    """Press phone keys on the call."""
    _act("voicecall.dtmf", {"callId": call_id, "digits": digits}, as_json,
         lambda r: out.print(f"sent {digits}"))


@app.command()
def end(call_id: CallIdOpt, as_json: JsonOpt = False) -> None:
    """Hang up the call."""
    _act("voicecall.end", {"callId": call_id}, as_json,
         lambda r: out.print("already ended" if r.get("alreadyEnded") else "call ended"))


# -- reading ----------------------------------------------------------------------------------
@app.command()
def status(call_id: Annotated[str | None, typer.Option("--call-id", help="One call (live or "
                              "ended); without it, all live calls.")] = None,
           as_json: JsonOpt = False) -> None:
    """Show one call, or every live call."""
    loaded = _loaded(require_valid=False)

    async def run() -> dict[str, Any]:
        async with read_api(loaded) as api:
            return await api.call("voicecall.status", {"callId": call_id} if call_id else {})

    result = _run(run())
    _emit(result, as_json, lambda r: render.status(out, r))
    if call_id and not result.get("found"):
        raise typer.Exit(1)


@app.command()
def latency(last: Annotated[int, typer.Option(min=1, help="Turns to scan.")] = 200,
            file: Annotated[Path | None, typer.Option(help="A calls.jsonl to read instead of "
                            "the store.")] = None,
            as_json: JsonOpt = False) -> None:
    """Per-turn latency: p50/p95 of turn latency, listen wait and each known stage."""
    if file is not None:
        result = _latency_from_jsonl(file, last)
    else:
        loaded = _loaded(require_valid=False)

        async def run() -> dict[str, Any]:
            async with read_api(loaded) as api:
                return await api.call("voicecall.latency", {"last": last})

        result = _run(run())
    _emit(result, as_json, lambda r: render.latency(out, r))


def _latency_from_jsonl(path: Path, last: int) -> dict[str, Any]:
    if not path.exists():
        fail(f"No log file at {path}")
    lines = path.read_text(encoding="utf-8").splitlines()[-last:]
    turns: list[Mapping[str, Any]] = []
    for line in lines:
        try:
            meta = json.loads(line).get("metadata") or {}
        except ValueError:
            continue
        if isinstance(meta.get("lastTurnLatencyMs"), int | float):
            turns.append({"turnLatencyMs": meta["lastTurnLatencyMs"],
                          "listenWaitMs": meta.get("lastTurnListenWaitMs")})
    return latency_report(turns, records_scanned=len(lines))


@app.command()
def tail(since: Annotated[int, typer.Option(min=0, help="Entries to show first.")] = 25,
         poll: Annotated[int, typer.Option(min=50, help="Poll interval (ms) with no "
                         "gateway.")] = 250,
         as_json: JsonOpt = False) -> None:
    """Follow call updates live (snapshots, events, turns). Ctrl-C stops."""
    loaded = _loaded(require_valid=False)

    def show(entry: dict[str, Any]) -> None:
        if as_json:
            print(json.dumps(entry), flush=True)
        else:
            render.log_entry(out, entry)

    async def run() -> None:
        async with gateway_client(loaded) as client:
            if client is not None:
                first = await client.call("voicecall.tail", {"since": since})
                for entry in first["entries"]:
                    show(entry)
                async for entry in client.events(after=first["nextSeq"]):
                    show(entry)
                return
        store = SQLiteCallStore(store_dir(loaded.config, loaded.env))
        async with store:
            entries = await store.last_log(since)
            after = entries[-1].seq if entries else 0
            for e in entries:
                show(e.to_json_dict())
            while True:
                await asyncio.sleep(poll / 1000)
                for e in await store.log_since(after):
                    after = e.seq
                    show(e.to_json_dict())

    with contextlib.suppress(KeyboardInterrupt):
        _run(run())


# -- store import / export -------------------------------------------------------------------
store_app = typer.Typer(no_args_is_help=True, help="Move call history in and out (JSONL).")
app.add_typer(store_app, name="store")


@store_app.command("export")
def store_export(file: Annotated[Path, typer.Option(help="Where to write calls.jsonl.")],
                 as_json: JsonOpt = False) -> None:
    """Write every record snapshot as one CallRecord JSON per line (the original's calls.jsonl)."""
    loaded = _loaded(require_valid=False)

    async def run() -> int:
        async with SQLiteCallStore(store_dir(loaded.config, loaded.env)) as store:
            return await store.export_jsonl(file)

    count = _run(run())
    _emit({"exported": count, "file": str(file)}, as_json,
          lambda r: out.print(f"exported {count} snapshots to {file}"))


@store_app.command("import")
def store_import(file: Annotated[Path, typer.Option(help="A calls.jsonl to import.")],
                 as_json: JsonOpt = False) -> None:
    """Import a calls.jsonl: the last snapshot of each call wins; invalid lines are skipped."""
    if not file.exists():
        fail(f"No log file at {file}")
    loaded = _loaded(require_valid=False)

    async def run() -> int:
        async with SQLiteCallStore(store_dir(loaded.config, loaded.env)) as store:
            return await store.import_jsonl(file)

    count = _run(run())
    _emit({"imported": count, "file": str(file)}, as_json,
          lambda r: out.print(f"imported {count} calls from {file}"))


# -- config, tool, mock -----------------------------------------------------------------------
@config_app.command("show")
def config_show(as_json: JsonOpt = True) -> None:
    """Print the effective configuration, secrets redacted."""
    loaded = _loaded(require_valid=False)
    out.print_json(json.dumps(redacted_config(loaded.config)))
    for issue in loaded.issues:
        err.print(f"[red]problem:[/] {issue.path}: {issue.message}")


@config_app.command("schema")
def config_schema(as_json: JsonOpt = True) -> None:
    """Print the configuration's JSON Schema."""
    out.print_json(json.dumps(config_json_schema()))


@app.command("tool-schema")
def tool_schema_cmd(as_json: JsonOpt = True) -> None:
    """Print the `voice_call` agent tool (OpenAI function-calling JSON Schema)."""
    out.print_json(json.dumps(tool_schema()))


@app.command("mcp")
def mcp_cmd() -> None:
    """Serve the `voice_call` tool over MCP on stdio (for agent hosts: Claude, Cursor, ...).

    Calls go to the running gateway; with none running, to a standalone runtime in this process.
    """
    from voicecall import __version__
    from voicecall.agent.mcp_server import serve_mcp_stdio

    loaded = _loaded()

    async def run() -> None:
        async with live_api(loaded) as (api, _runtime):
            await serve_mcp_stdio(api.call, version=__version__)

    _run(run())


@app.command()
def expose(
    mode: Annotated[str, typer.Option(help="off, serve (tailnet only) or funnel (public); "
                    "anything else means funnel.")] = "funnel",
    path: Annotated[str | None, typer.Option(help="Path to expose (default: tailscale.path, "
                    "else the serve path).")] = None,
    port: Annotated[int | None, typer.Option(help="Local webhook port (default: serve.port "
                    "or 3334).")] = None,
    serve_path: Annotated[str | None, typer.Option("--serve-path", help="Local webhook path "
                          "(default: serve.path).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Turn Tailscale serve/funnel for the webhook port on or off; exits 1 when it fails."""
    from voicecall.gateway.exposure import expose as run_expose

    c = _loaded(require_valid=False).config
    local_path = serve_path or c.serve.path or "/voice/webhook"
    ts_path = path or (c.tailscale.path if "path" in c.tailscale.model_fields_set else local_path)
    report, error = _run(run_expose(mode.strip().lower(), ts_path, port or c.serve.port or 3334))
    if error:
        err.print(f"[red]error:[/] {error}", highlight=False)

    def human(r: dict[str, Any]) -> None:
        if r["mode"] == "off":
            out.print(f"tailscale serve/funnel off for {r['path']}", highlight=False)
        elif r["ok"]:
            out.print(f"tailscale {r['mode']}: {r['publicUrl']} -> {r['localUrl']}", highlight=False)
        else:
            out.print(f"tailscale {r['mode']} for {r['path']} failed. {r['hint']['note']}",
                      highlight=False)
            if r["hint"]["enableUrl"]:
                out.print(f"enable it at {r['hint']['enableUrl']}", highlight=False)

    _emit(report, as_json, human)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command("token")
def token_cmd(as_json: JsonOpt = False) -> None:
    """Print the control API token (for the Python client or curl)."""
    loaded = _loaded(require_valid=False)
    token = resolve_control_token(loaded.config, loaded.env)
    _emit({"token": token}, as_json, lambda r: print(token))


@mock_app.command("inject")
def mock_inject(call_id: CallIdOpt,
                speech: Annotated[str | None, typer.Option(help="What the callee says.")] = None,
                digits: Annotated[str | None, typer.Option(help="Keys the callee presses.")] = None,
                hangup: Annotated[bool, typer.Option("--hangup", help="The callee hangs "
                                  "up.")] = False,
                as_json: JsonOpt = False) -> None:
    """Act as the callee on a mock call: say something, press keys, or hang up."""
    params: dict[str, Any] = {"callId": call_id}
    if speech:
        params["speech"] = speech
    if digits:
        params["digits"] = digits
    if hangup:
        params["hangup"] = True
    loaded = _loaded()

    async def run() -> dict[str, Any]:
        async with gateway_client(loaded) as client:
            if client is None:
                raise GatewayUnavailable("mock inject needs a running gateway: start "
                                         "`voicecall serve` first")
            return await client.call("mock.inject", params)

    try:
        result = _run(run())
    except GatewayUnavailable as exc:
        fail(str(exc))
    _emit(result, as_json, lambda r: out.print("injected"))


def main() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    try:
        code = app(standalone_mode=False)  # click returns an Exit's code instead of raising
        if isinstance(code, int) and code:
            sys.exit(code)
    except Exit as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    finally:
        logging.getLogger(__name__).debug("done in %.2fs", time.monotonic() - started)
