"""Human-readable output for the CLI (the `--json` forms print the raw results)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

if TYPE_CHECKING:
    from voicecall.gateway.runtime import Runtime


def _time(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S.%f")[:-3]


def _when(ms: Any) -> str:
    """A date and time to the second, local time (`-` when unknown)."""
    if not isinstance(ms, int | float):
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    """A plain-text cell: tabs and line breaks become spaces, so rows stay one line."""
    return " ".join(str(value).split()) if value not in (None, "") else "-"


def table(console: Console, headers: list[str], rows: list[list[Any]]) -> None:
    """A table: drawn by rich on a terminal; otherwise a header line and tab-separated rows,
    written whole (rich would cut and wrap them at 80 columns when piped)."""
    if console.is_terminal:
        grid = Table(*[Column(h, no_wrap=i == 0) for i, h in enumerate(headers)])
        for row in rows:
            grid.add_row(*(escape(_cell(v)) for v in row))
        console.print(grid)
        return
    lines = ["\t".join(headers), *("\t".join(_cell(v) for v in row) for row in rows)]
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()


def calls(console: Console, result: dict[str, Any]) -> None:
    """`voicecall calls`: one row per call, newest first."""
    rows = [[c["callId"], _when(c.get("startedAt")), c["direction"],
             c["to"] if c["direction"] == "outbound" else c["from"], c["state"],
             c.get("endReason"), c.get("provider")] for c in result["calls"]]
    if not rows and console.is_terminal:
        console.print("no calls")
        return
    table(console, ["call id", "started", "direction", "to/from", "state", "end reason",
                    "carrier"], rows)


def banner(console: Console, runtime: Runtime, state_dir: Path) -> None:
    console.print(f"[bold green]voicecall gateway running[/] (carrier: {runtime.provider.name})")
    console.print(f"  webhooks: {runtime.webhook_url}")
    console.print(f"  control:  {runtime.control_url}  (token in {state_dir / 'gateway.token'}"
                  " unless control.token is set)")
    console.print(f"  store:    {runtime.store.path}")
    console.print("  try:      voicecall call --to +15555550123 -m \"Hello\" --mode notify")
    console.print("  Ctrl-C to stop.")


def status(console: Console, result: dict[str, Any]) -> None:
    if "calls" in result:
        calls = result["calls"]
        if not calls:
            console.print("no live calls")
            return
        table(console, ["call id", "direction", "to/from", "state", "started"],
              [[c["callId"], c["direction"], c["to"] if c["direction"] == "outbound"
                else c["from"], c["state"], _time(c["startedAt"])] for c in calls])
        return
    if not result.get("found"):
        console.print("call not found")
        return
    c = result["call"]
    console.print(f"[bold]{c['callId']}[/] {c['direction']} {c['from']} → {c['to']}")
    reason = f" ({c['endReason']})" if c.get("endReason") else ""
    detail = (c.get("metadata") or {}).get("endDetail")
    console.print(f"  state: [bold]{c['state']}[/]{reason}" + (f" — {detail}" if detail else ""))
    rejections = c.get("webhookRejections")
    if rejections:
        console.print(f"  [yellow]webhooks rejected: {rejections['count']}[/], last: "
                      f"{escape(str(rejections['lastReason']))}", highlight=False)
    if result.get("history"):
        console.print("  path:  " + " → ".join(h["state"] for h in result["history"]))
    for entry in c.get("transcript", []):
        who = {"bot": "bot", "tool": "tool"}.get(entry["speaker"], "caller")
        console.print(f"  {_time(entry['timestamp'])} [bold]{who}:[/] {entry['text']}")


def latency(console: Console, report: dict[str, Any]) -> None:
    console.print(f"turns scanned: {report['recordsScanned']}")
    measures = [("turn latency", report["turnLatency"]), ("listen wait", report["listenWait"])]
    measures += list(report.get("stages", {}).items())
    rows: list[list[Any]] = []
    for name, s in measures:
        if s.get("count"):
            rows.append([name, str(s["count"]), *(f"{s[k]:.0f}" for k in
                                                  ("p50Ms", "p95Ms", "minMs", "maxMs", "avgMs"))])
        else:
            rows.append([name, "0", "-", "-", "-", "-", "-"])
    table(console, ["measure", "count", "p50 ms", "p95 ms", "min", "max", "avg"], rows)


def log_entry(console: Console, entry: dict[str, Any]) -> None:
    data = entry.get("data", {})
    head = f"{_time(entry.get('at'))} {entry.get('callId', '')[:8]}"
    kind = entry.get("kind")
    if kind == "snapshot":
        console.print(f"{head} state={data.get('state')}", highlight=False)
    elif kind == "event":
        extra = data.get("transcript") or data.get("digits") or data.get("reason") or ""
        console.print(f"{head} {data.get('type')} {extra}".rstrip(), highlight=False)
    elif kind == "turn":
        console.print(f"{head} turn {data.get('turn')}: {data.get('turnLatencyMs')} ms",
                      highlight=False)
    else:
        console.print(f"{head} {kind} {data}", highlight=False)
