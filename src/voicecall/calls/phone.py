"""Phone numbers: E.164 validation and the digits-only form used for matching and session keys."""

from __future__ import annotations

import re

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
DTMF = re.compile(r"^[0-9*#wWpP,]+$")


_SEPARATORS = re.compile(r"[\s().\-]")


def is_e164(number: str) -> bool:
    return bool(E164.match(number))


def normalize_e164(text: str) -> str | None:
    """A number as people write it (`+1 555 555 0123`, `+1 (555) 555-0123`) in E.164 form
    (`+15555550123`); None if it is not E.164 once spaces, dots, dashes and parentheses are gone."""
    number = _SEPARATORS.sub("", text)
    return number if is_e164(number) else None


def digits_only(number: str | None) -> str:
    """Every non-digit removed: `+1 (555) 000-1111` → `15550001111`."""
    return "".join(ch for ch in (number or "") if ch.isdigit())


def is_dtmf(digits: str) -> bool:
    """Keys a carrier can play: 0-9, *, #, and the pause characters w, W, p, P and comma."""
    return bool(DTMF.match(digits))
