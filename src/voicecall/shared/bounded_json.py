"""JSON from untrusted peers, parsed under a nesting budget and as strict JSON (D62).

Python's parser recurses once per level of nesting, so a body of a thousand `[` raises
RecursionError wherever it is parsed, which callers did not expect (an unauthenticated 500, a
dropped socket). `loads` refuses such input before parsing it, and refuses the non-standard
constants `NaN` and `Infinity` too; every refusal is a `ValueError`, which each surface already
turns into its normal error (400, an ignored media frame, JSON-RPC -32700).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JsonRefused", "exceeds_depth", "loads"]

MAX_JSON_DEPTH = 64
_TOKENS = re.compile(rb'[\[\]{}]|"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


class JsonRefused(ValueError):
    """Input the bounded parser does not parse: too deep, too large, or not strict JSON."""


def exceeds_depth(data: bytes, limit: int) -> bool:
    """True when arrays and objects in `data` nest deeper than `limit` (brackets inside strings
    do not count). Input with fewer brackets than the limit is answered without a scan."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for match in _TOKENS.finditer(data):
        first = match.group()[0]
        if first in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif first in _CLOSE:
            depth -= 1
    return False


def _no_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number")


def loads(data: str | bytes, *, max_depth: int = MAX_JSON_DEPTH,
          max_bytes: int | None = None) -> Any:
    """`json.loads` for untrusted input: at most `max_depth` levels of nesting and, when given,
    `max_bytes` bytes; raises JsonRefused (a ValueError) instead, or ValueError for malformed
    JSON and UnicodeDecodeError for bytes that are not UTF-8."""
    if isinstance(data, str):
        size = len(data) if max_bytes is None else len(data.encode("utf-8", "surrogatepass"))
        brackets = data.count("[") + data.count("{")
    else:
        size, brackets = len(data), data.count(b"[") + data.count(b"{")
    if max_bytes is not None and size > max_bytes:
        raise JsonRefused(f"JSON text over {max_bytes} bytes")
    if brackets > max_depth and exceeds_depth(
            data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data, max_depth):
        raise JsonRefused(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:  # a nesting budget above what the interpreter allows
        raise JsonRefused("JSON nested too deeply") from None
