"""Process-wide counts of failures by kind (carrier REST, TTS, STT, model), kept where each
failure is handled and read by the Prometheus exporter (`server/metrics.py`, D110).

A plain counter rather than a metrics-library object: the layers that fail sit below the server
and must not depend on the exporter.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

ErrorKind = Literal["carrier", "tts", "stt", "model"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("carrier", "tts", "stt", "model")

_counts: Counter[str] = Counter()


def count_error(kind: ErrorKind) -> None:
    """Count one failure of `kind`."""
    _counts[kind] += 1


def error_counts() -> dict[str, int]:
    """Failures so far, by kind (every kind present, zero when none)."""
    return {kind: _counts[kind] for kind in ERROR_KINDS}
