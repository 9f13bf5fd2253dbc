"""Phone numbers: E.164 validation and the digits-only form used for matching and session keys."""

from __future__ import annotations

import re

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
DTMF = re.compile(r"^[0-9*#wWpP,]+$")


def is_e164(number: str) -> bool:
    return bool(E164.match(number))


def digits_only(number: str | None) -> str:
    """Every non-digit removed: `+1 (555) 000-1111` → `15550001111`."""
    return "".join(ch for ch in (number or "") if ch.isdigit())


def is_dtmf(digits: str) -> bool:
    """Keys a carrier can play: 0-9, *, #, and the pause characters w, W, p, P and comma."""
    return bool(DTMF.match(digits))
