"""Commands that run and check the gateway: serve, setup, smoke, doctor."""

from __future__ import annotations

import json
import os
import signal
from typing import Annotated, Any

import typer

from voicecall.cli import render
from voicecall.cli.common import (
    JsonOpt,
    app,
    check_mode,
    emit,
    err,
    fail,
    loaded_config,
    options,
    out,
    phone_number,
    place_call,
    run_coro,
    spoken_text,
)

SMOKE_MESSAGE = "OpenClaw voice call smoke test."


# -- the gateway ------------------------------------------------------------------------------
@app.command()
def serve(as_json: JsonOpt = False,
          log_format: Annotated[str, typer.Option("--log-format", help="Log lines as text or "
                                "json (one object per line, on stderr).")] = "text") -> None:
    """Run the gateway: webhooks, control API and timers (mock carrier with no config). Logs
    each call state change at INFO; -v logs more."""
    if log_format not in ("text", "json"):
        fail(f"--log-format must be text or json, not {log_format!r}", 2)
    from voicecall.cli import logs
    from voicecall.config import state_dir
    from voicecall.gateway.garbage import (
        CollectAfterTicks,
        collect_garbage_periodically,
        settle_garbage_collector,
    )
    from voicecall.gateway.runtime import Runtime

    logs.show_state_changes()
    logs.use_format(log_format)
    loaded = loaded_config()

    async def run() -> None:
        import asyncio

        runtime = Runtime(loaded)
        await runtime.start()
        logs.use_format(log_format)  # uvicorn's handlers, set up as the servers started
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

    run_coro(run(), fast_loop=True)


@app.command()
def setup(as_json: JsonOpt = False) -> None:
    """Check the configuration for what real calls need; exits 1 when something is missing."""
    from voicecall.gateway.setup import run_checks

    loaded = loaded_config(require_valid=False)
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
                  "call.", callback=phone_number)] = None,
    message: Annotated[str, typer.Option(help="What the test call says.",
                                         callback=spoken_text)] = SMOKE_MESSAGE,
    mode: Annotated[str, typer.Option(help="notify or conversation.")] = "notify",
    yes: Annotated[bool, typer.Option("--yes", help="Really place the call (otherwise a dry "
                   "run).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Setup checks, then (with --to and --yes) one real test call; exits 1 if a check fails."""
    from voicecall.gateway.setup import run_checks

    check_mode(mode)
    loaded = loaded_config(require_valid=False)
    checks = run_checks(loaded)
    ok = all(check.ok for check in checks)
    setup_report = {"ok": ok, "checks": [c.to_json() for c in checks]}  # what `setup --json` prints
    report: dict[str, Any] = {"ok": ok, "setup": setup_report, "liveCall": False}
    if ok and to:
        params = {"to": to, "message": message, "mode": mode}
        if yes:
            placed = place_call(loaded, params, as_json)
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

    emit(report, as_json, human)
    if not ok:
        raise typer.Exit(1)


@app.command()
def doctor(fix: Annotated[bool, typer.Option("--fix", help="Rewrite the config file with the "
                          "legacy keys migrated (the original is kept as .bak).")] = False,
           as_json: JsonOpt = False) -> None:
    """Find legacy config keys (exit 1 if any); --fix rewrites the file without them."""
    from voicecall.config import ConfigError, discover_config_path
    from voicecall.config.doctor import check_config_file

    env = dict(os.environ)
    try:
        path, _openclaw = discover_config_path(options["config"], env)
        if path is None:
            emit({"path": None, "changes": [], "fixed": False}, as_json,
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

    result = report.to_json()
    emit(result, as_json, human)
    if result["changes"] and not result["fixed"]:
        raise typer.Exit(1)  # legacy keys left in the file
