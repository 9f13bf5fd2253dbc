"""Commands that place, drive and read calls: call, start, continue, speak, dtmf, end, status,
calls, latency, tail, mock inject."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from voicecall.calls.latency import latency_report
from voicecall.cli import render
from voicecall.cli.common import (
    CallIdOpt,
    JsonOpt,
    app,
    check_mode,
    emit,
    err,
    fail,
    loaded_config,
    mock_app,
    out,
    phone_number,
    place_call,
    run_coro,
    spin,
    spoken_text,
)
from voicecall.cli.session import gateway_client, live_api, read_call


# -- placing calls ----------------------------------------------------------------------------
def _place(params: dict[str, Any], as_json: bool) -> None:
    result = place_call(loaded_config(), params, as_json)
    emit(result, as_json, lambda r: out.print(f"call placed: [bold]{r['callId']}[/]"
                                              + (f" (ended: {r['endReason']})"
                                                 if r.get("endReason") else "")))


@app.command()
def call(
    message: Annotated[str, typer.Option("--message", "-m", help="What to say on answer.",
                                         callback=spoken_text)],
    to: Annotated[str | None, typer.Option("--to", "-t", help="E.164 number "
                  "(default: toNumber).", callback=phone_number)] = None,
    mode: Annotated[str | None, typer.Option(help="notify or conversation "
                    "(default: outbound.defaultMode).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Place an outbound call and print its call id."""
    check_mode(mode)
    _place({k: v for k, v in {"to": to, "message": message, "mode": mode}.items() if v}, as_json)


@app.command()
def start(
    to: Annotated[str, typer.Option("--to", "-t", help="E.164 number to call.",
                                    callback=phone_number)],
    message: Annotated[str | None, typer.Option("--message", "-m", callback=spoken_text)] = None,
    mode: Annotated[str | None, typer.Option(help="notify or conversation.")] = None,
    dtmf_sequence: Annotated[str | None, typer.Option("--dtmf-sequence", help="Keys to press "
                             "once connected (conversation calls).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Place an outbound call (the message is optional)."""
    check_mode(mode)
    params = {"to": to, "message": message, "mode": mode, "dtmfSequence": dtmf_sequence}
    _place({k: v for k, v in params.items() if v}, as_json)


# -- acting on live calls ---------------------------------------------------------------------
def _act(method: str, params: dict[str, Any], as_json: bool,
         human: Callable[[dict[str, Any]], None]) -> None:
    loaded = loaded_config()

    async def run() -> dict[str, Any]:
        async with live_api(loaded) as (api, _runtime):
            return await api.call(method, params)

    emit(run_coro(run()), as_json, human)


@app.command("continue")
def continue_(call_id: CallIdOpt,
              message: Annotated[str, typer.Option("--message", "-m", callback=spoken_text)],
              as_json: JsonOpt = False) -> None:
    """Say something, wait for the callee's reply, print it."""
    loaded = loaded_config()

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

            limit = f"{loaded.config.transcript_timeout_ms / 1000:g}"
            return await spin(f"waiting for the callee's reply on call {call_id} (up to "
                              f"transcriptTimeoutMs = {limit} s)", poll(), as_json)

    result = run_coro(run())
    if not result.get("success"):
        if as_json:
            out.print_json(json.dumps(result))
        fail(str(result.get("error", "continue failed")))
    emit({"success": True, "transcript": result["transcript"]}, as_json,
          lambda r: out.print(f"[bold]callee:[/] {r['transcript']}"))


@app.command()
def speak(call_id: CallIdOpt,
          message: Annotated[str, typer.Option("--message", "-m", callback=spoken_text)],
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
def transfer(call_id: CallIdOpt,
             to: Annotated[str, typer.Option("--to", callback=phone_number,
                                             help="Who to put the call through to (E.164).")],
             message: Annotated[str | None, typer.Option("--message", "-m",
                                help="Said to the caller first.")] = None,
             as_json: JsonOpt = False) -> None:
    """Put the call through to a person; returns once their phone is ringing."""
    params: dict[str, Any] = {"callId": call_id, "to": to}
    if message and message.strip():
        params["message"] = message
    _act("voicecall.transfer", params, as_json,
         lambda r: out.print(f"transferring to {r['to']} (voicecall status --call-id {call_id} "
                             "shows how it goes)"))


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
    loaded = loaded_config(require_valid=False)
    result = read_call(loaded, "voicecall.status", {"callId": call_id} if call_id else {})
    emit(result, as_json, lambda r: render.status(out, r))
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
        result = read_call(loaded_config(require_valid=False), "voicecall.latency",
                           {"last": last})
    emit(result, as_json, lambda r: render.latency(out, r))


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
                         "gateway, or of --file.")] = 250,
         file: Annotated[Path | None, typer.Option(help="Follow a calls.jsonl (one record "
                         "snapshot per line) instead of the store.")] = None,
         as_json: JsonOpt = False) -> None:
    """Follow call updates live (snapshots, events, turns). Ctrl-C stops."""
    if file is not None:
        _tail_file(file, since, poll)
        return
    loaded = loaded_config(require_valid=False)

    def show(entry: dict[str, Any]) -> None:
        if as_json:
            print(json.dumps(entry), flush=True)
        else:
            render.log_entry(out, entry)

    async def run() -> None:
        import asyncio

        async with gateway_client(loaded) as client:
            if client is not None:
                first = await client.call("voicecall.tail", {"since": since})
                for entry in first["entries"]:
                    show(entry)
                async for entry in client.events(after=first["nextSeq"]):
                    show(entry)
                return
        from voicecall.config import store_dir
        from voicecall.store import SQLiteCallStore

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
        run_coro(run())


def _tail_file(path: Path, since: int, poll_ms: int) -> None:
    """Print the last `since` lines of a calls.jsonl as they are, then each new one."""
    from voicecall.cli.jsonl_tail import follow_jsonl

    if not path.is_file():
        fail(f"No log file at {path}")

    def show(line: str) -> None:
        print(line, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        follow_jsonl(path, since, poll_ms / 1000, show)


_SPAN = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since_ms(value: str, now: dt.datetime | None = None) -> int:
    """`10m`, `2h`, `3d` ago, or an ISO time (local time unless it names a zone), as epoch ms."""
    now = now or dt.datetime.now(dt.UTC)
    span = _SPAN.fullmatch(value.strip())
    if span:
        at = now - dt.timedelta(seconds=int(span[1]) * _UNIT_S[span[2]])
    else:
        try:
            at = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise typer.BadParameter(f"{value!r} is neither a span like 10m, 2h, 3d nor an ISO "
                                     "time like 2026-01-31T09:00") from None
    return int(at.timestamp() * 1000)


def _check_since(value: str | None) -> str | None:
    if value is not None:
        since_ms(value)
    return value


def _check_states(values: list[str] | None) -> list[str] | None:
    from voicecall.calls.model import CallState

    known = ["live", "ended", *(s.value for s in CallState)]
    for value in values or ():
        if value not in known:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(known)}")
    return values


@app.command("calls")
def list_calls(
    state: Annotated[list[str] | None, typer.Option("--state", help="Only calls in this state: "
                     "live, ended, or a state like completed, listening (repeatable).",
                     callback=_check_states)] = None,
    direction: Annotated[str | None, typer.Option(help="inbound or outbound.")] = None,
    since: Annotated[str | None, typer.Option(help="Only calls active since then: a span (10m, "
                     "2h, 3d) or an ISO time.", callback=_check_since)] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Calls per page.")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Calls to skip (the next page starts at "
                      "the offset printed at the end).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List recent calls, live and ended, newest first."""
    if direction is not None and direction not in ("inbound", "outbound"):
        fail(f"--direction must be inbound or outbound, not {direction!r}", 2)
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if state:
        params["state"] = state
    if direction:
        params["direction"] = direction
    if since is not None:
        params["sinceMs"] = since_ms(since)
    result = read_call(loaded_config(require_valid=False), "voicecall.list", params)
    emit(result, as_json, lambda r: render.calls(out, r))
    if not as_json and result.get("nextOffset") is not None:
        err.print(f"more calls: repeat with --offset {result['nextOffset']}", highlight=False)


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
    loaded = loaded_config()

    async def run() -> dict[str, Any]:
        async with gateway_client(loaded) as client:
            if client is None:
                fail("mock inject needs a running gateway: start `voicecall serve` first")
            return await client.call("mock.inject", params)

    result = run_coro(run())
    emit(result, as_json, lambda r: out.print("injected"))
