"""What the console shows of calls beyond `voicecall.status`: one call's page (record, states,
turns with their latency stages, its log, stream stats) and the searchable history."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from voicecall.calls.latency import stage_durations
from voicecall.server.rpc import ControlApi

LOG_SCAN = 2000
"""How far back in the log a call's turns and events are looked for."""
SEARCH_SCAN = 500
"""How many of the newest matching calls a text search looks through."""
PAGE = 20


async def call_detail(api: ControlApi, call_id: str,
                      stream_stats: Callable[[str], Mapping[str, Any] | None] | None
                      ) -> dict[str, Any] | None:
    """A call's page: its record and states, its turns (stages in ms), its recent log entries
    and, while it streams, its media-stream stats."""
    status = await api.call("voicecall.status", {"callId": call_id})
    if not status.get("found"):
        return None
    call = status["call"]
    entries = await api.service.store.last_log(LOG_SCAN)
    own = [e for e in entries if e.call_id == call["callId"]]
    turns = [{"turn": e.data.get("turn"), "at": e.at, "stages": stage_durations(e.data),
              "turnLatencyMs": e.data.get("turnLatencyMs")} for e in own if e.kind == "turn"]
    log = [{"seq": e.seq, "at": e.at, "kind": e.kind, "summary": _summary(e.kind, e.data)}
           for e in own]
    stats = stream_stats(call["callId"]) if stream_stats is not None else None
    return {"call": call, "history": status.get("history", []), "turns": turns,
            "log": log[-200:], "stream": dict(stats) if stats else None}


def _summary(kind: str, data: Mapping[str, Any]) -> str:
    """One line for the event log."""
    if kind == "turn":
        return f"#{data.get('turn', '?')}: {data.get('turnLatencyMs', '?')} ms to the first audio"
    parts = [str(data.get(k)) for k in ("type", "state", "text", "reason", "digits")
             if data.get(k) not in (None, "")]
    return " ".join(parts)[:200] or kind


async def search_history(api: ControlApi, params: Mapping[str, str]) -> dict[str, Any]:
    """Ended calls (or `state` ones), newest first, filtered by `direction`, `state` and a
    text `q` matched against ids, numbers and the transcript; paged by `offset`."""
    offset = _int(params.get("offset"), 0)
    query: dict[str, Any] = {"state": params.get("state") or "ended"}
    if params.get("direction"):
        query["direction"] = params["direction"]
    text = (params.get("q") or "").strip().lower()
    if not text:
        listed = await api.call("voicecall.list", {**query, "limit": PAGE, "offset": offset})
        return {"calls": listed["calls"], "offset": offset, "nextOffset": listed["nextOffset"]}
    listed = await api.call("voicecall.list", {**query, "limit": SEARCH_SCAN})
    hits = [c for c in listed["calls"] if _matches(c, text)]
    page = hits[offset:offset + PAGE]
    return {"calls": page, "offset": offset,
            "nextOffset": offset + PAGE if len(hits) > offset + PAGE else None}


def _matches(call: Mapping[str, Any], text: str) -> bool:
    fields = [call.get("callId"), call.get("from"), call.get("to"), call.get("endReason"),
              *(t.get("text") for t in call.get("transcript", []))]
    return any(text in str(f).lower() for f in fields if f)


def _int(value: str | None, default: int) -> int:
    try:
        return max(int(value), 0) if value is not None else default
    except ValueError:
        return default
