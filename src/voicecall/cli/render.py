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
        table = Table("direction", "to/from", "state", "started")
        table.columns.insert(0, Column("call id", no_wrap=True))
        for c in calls:
            other = c["to"] if c["direction"] == "outbound" else c["from"]
            table.add_row(c["callId"], c["direction"], other, c["state"], _time(c["startedAt"]))
        console.print(table)
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
        who = "bot" if entry["speaker"] == "bot" else "caller"
        console.print(f"  {_time(entry['timestamp'])} [bold]{who}:[/] {entry['text']}")


def latency(console: Console, report: dict[str, Any]) -> None:
    console.print(f"turns scanned: {report['recordsScanned']}")
    table = Table("measure", "count", "p50 ms", "p95 ms", "min", "max", "avg")
    rows = [("turn latency", report["turnLatency"]), ("listen wait", report["listenWait"])]
    rows += list(report.get("stages", {}).items())
    for name, s in rows:
        if s.get("count"):
            table.add_row(name, str(s["count"]), *(f"{s[k]:.0f}" for k in
                                                   ("p50Ms", "p95Ms", "minMs", "maxMs", "avgMs")))
        else:
            table.add_row(name, "0", "-", "-", "-", "-", "-")
    console.print(table)


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
