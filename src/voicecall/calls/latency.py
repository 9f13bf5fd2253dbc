"""Per-turn latency: the timeline of one turn and the percentile report over many."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

STAGES: tuple[tuple[str, str, str], ...] = (
    # (stage name, from timestamp, to timestamp)
    ("speechToTranscript", "speechEndedAt", "transcriptAt"),
    ("transcriptToReply", "transcriptAt", "replyReadyAt"),
    ("replyToFirstTtsByte", "replyReadyAt", "firstTtsByteAt"),
    ("ttsByteToFirstFrame", "firstTtsByteAt", "firstAudioAt"),
    ("speechToFirstFrame", "speechEndedAt", "firstAudioAt"),
)


def percentile(sorted_values: list[float], p: float) -> float:
    """The nearest-rank percentile (docs/decisions.md D44): the value at ceil(p/100*n)-1, clamped."""
    index = math.ceil(p / 100 * len(sorted_values)) - 1
    return sorted_values[min(max(index, 0), len(sorted_values) - 1)]


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """`{count, minMs, maxMs, avgMs, p50Ms, p95Ms}`; only `count` when there is nothing."""
    data = sorted(float(v) for v in values)
    if not data:
        return {"count": 0}
    return {
        "count": len(data),
        "minMs": data[0],
        "maxMs": data[-1],
        "avgMs": round(sum(data) / len(data), 1),
        "p50Ms": percentile(data, 50),
        "p95Ms": percentile(data, 95),
    }


def stage_durations(turn: Mapping[str, Any]) -> dict[str, float]:
    """Durations of the stages whose two timestamps are both known for this turn."""
    out: dict[str, float] = {}
    for name, start, end in STAGES:
        a, b = turn.get(start), turn.get(end)
        if isinstance(a, int | float) and isinstance(b, int | float) and b >= a:
            out[name] = float(b - a)
    return out


def latency_report(turns: list[Mapping[str, Any]], records_scanned: int) -> dict[str, Any]:
    """The `latency` command's JSON: turn latency, listen wait and each known stage."""
    stages: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    for turn in turns:
        for name, value in stage_durations(turn).items():
            stages[name].append(value)
    return {
        "recordsScanned": records_scanned,
        "turnLatency": summarize(
            t["turnLatencyMs"] for t in turns if isinstance(t.get("turnLatencyMs"), int | float)
        ),
        "listenWait": summarize(
            t["listenWaitMs"] for t in turns if isinstance(t.get("listenWaitMs"), int | float)
        ),
        "stages": {name: summarize(vals) for name, vals in stages.items() if vals},
    }
