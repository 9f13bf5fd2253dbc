"""`voicecall.list` parameters: recent calls, live and ended, filtered and paged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voicecall.calls.model import LIVE_ORDER, TERMINAL_STATES, CallState
from voicecall.service import CallError
from voicecall.store.protocol import CallQuery

INVALID_PARAMS = -32602
DEFAULT_LIMIT = 20
MAX_LIMIT = 500

_GROUPS: dict[str, tuple[str, ...]] = {
    "live": tuple(s.value for s in LIVE_ORDER),
    "ended": tuple(sorted(s.value for s in TERMINAL_STATES)),
}
STATE_NAMES = (*_GROUPS, *(s.value for s in CallState))
"""What `state` accepts: `live`, `ended`, or one call state."""


def _bad(message: str) -> CallError:
    return CallError(message, code=INVALID_PARAMS)


def _states(value: Any) -> tuple[str, ...]:
    """`state` as a string or a list of strings, groups expanded, duplicates dropped."""
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _bad("state must be a string or a list of strings")
    states: list[str] = []
    for name in names:
        if name not in STATE_NAMES:
            raise _bad(f"unknown state {name!r}; expected one of {', '.join(STATE_NAMES)}")
        states.extend(s for s in _GROUPS.get(name, (name,)) if s not in states)
    return tuple(states)


def _int(params: Mapping[str, Any], name: str, default: int | None, *, lo: int,
         hi: int) -> int | None:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer")
    if not lo <= value <= hi:
        raise _bad(f"{name} must be between {lo} and {hi}")
    return value


def list_query(params: Mapping[str, Any]) -> CallQuery:
    """The store query for `voicecall.list`: `state` (a state, `live`, `ended`, or a list),
    `direction`, `sinceMs` (epoch ms), `limit` (1-500, default 20) and `offset`. One row more
    than `limit` is asked for, so the caller can tell whether another page follows."""
    direction = params.get("direction")
    if direction is not None and direction not in ("inbound", "outbound"):
        raise _bad("direction must be inbound or outbound")
    limit = _int(params, "limit", DEFAULT_LIMIT, lo=1, hi=MAX_LIMIT)
    offset = _int(params, "offset", 0, lo=0, hi=2**62)
    assert limit is not None and offset is not None
    return CallQuery(states=_states(params.get("state")), direction=direction,
                     since_ms=_int(params, "sinceMs", None, lo=0, hi=2**62),
                     limit=limit + 1, offset=offset)
