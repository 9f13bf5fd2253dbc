"""One log line per persisted call state change, carrier-neutral, with structured fields.

`voicecall serve` shows this logger at INFO by default; `--log-format json` writes the fields
(`STATE_FIELDS`) as keys of each line. Only ids, the carrier's name, the direction, the state and
the end reason are logged: never numbers, transcripts or credentials.
"""

from __future__ import annotations

import logging

from voicecall.calls.model import CallRecord

STATE_LOGGER = "voicecall.state"
STATE_FIELDS = ("callId", "carrier", "direction", "state", "reason")

log = logging.getLogger(STATE_LOGGER)


def state_fields(record: CallRecord) -> dict[str, str | None]:
    """The structured fields of a state-change line for `record` as it is now."""
    return {"callId": record.call_id, "carrier": record.provider, "direction": record.direction,
            "state": record.state.value,
            "reason": record.end_reason.value if record.end_reason else None}


def log_state_change(record: CallRecord) -> None:
    """Log that `record` was persisted in a new state."""
    if not log.isEnabledFor(logging.INFO):
        return
    fields = state_fields(record)
    reason = f" ({fields['reason']})" if fields["reason"] else ""
    log.info("call %s %s %s: %s%s", fields["callId"], fields["carrier"], fields["direction"],
             fields["state"], reason, extra=fields)
