"""How `voicecall serve` logs: call state changes at INFO without every library's INFO, and
optionally one JSON object per line (`--log-format json`)."""

from __future__ import annotations

import datetime as dt
import json
import logging

from voicecall.service.state_log import STATE_FIELDS, STATE_LOGGER

_OWN_HANDLERS = ("uvicorn", "uvicorn.access")
"""Loggers uvicorn gives handlers of their own (they do not reach the root handler)."""


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: `ts` (UTC, ISO 8601), `level`, `logger`, `message`, the
    call-state fields when the record has them, and `exc` (`stack`) for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.UTC)
        line: dict[str, object] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for name in STATE_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def show_state_changes() -> None:
    """Log call state changes and the history import at INFO, whatever the root level (other
    loggers keep theirs)."""
    from voicecall.gateway.history_import import HISTORY_LOGGER

    for name in (STATE_LOGGER, HISTORY_LOGGER):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)


def use_format(log_format: str) -> None:
    """Format every handler the process logs through: the root's and uvicorn's own. Call it
    again once the servers are up: uvicorn replaces its handlers when it is configured."""
    if log_format != "json":
        return
    formatter = JsonFormatter()
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in _OWN_HANDLERS)]
    for logger in loggers:
        for handler in logger.handlers:
            handler.setFormatter(formatter)
