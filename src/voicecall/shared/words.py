"""How much of a spoken text a listener heard, for answers cut short by a barge-in."""

from __future__ import annotations

__all__ = ["played_prefix"]


def played_prefix(text: str, fraction: float) -> str:
    """The words of `text` a caller heard when `fraction` of its audio was played."""
    if fraction >= 0.999:
        return text
    words = text.split()
    keep = int(len(words) * max(0.0, fraction))
    return " ".join(words[:keep])
