"""The pieces behind `serve --log-format json` and `calls --since`, tested directly."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Mapping

import pytest
import typer

from voicecall.calls.model import CallRecord, CallState, EndReason
from voicecall.cli.calls import since_ms
from voicecall.cli.logs import JsonFormatter
from voicecall.service.state_log import STATE_LOGGER, state_fields

NOW = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.mark.parametrize(("span", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200),
                                               ("3d", 3 * 86400), ("1w", 7 * 86400),
                                               (" 5 m ", 300)])
def test_since_span_counts_back_from_now(span: str, seconds: int) -> None:
    assert since_ms(span, NOW) == NOW_MS - seconds * 1000


def test_since_iso_time_with_a_zone_is_that_instant_and_without_one_is_local_time() -> None:
    assert since_ms("2026-01-31T11:00:00Z", NOW) == NOW_MS - 3600 * 1000
    assert since_ms("2026-01-31T13:00:00+02:00", NOW) == NOW_MS - 3600 * 1000
    local = dt.datetime(2026, 1, 31, 9, 30)  # naive: the machine's local time
    assert since_ms("2026-01-31T09:30", NOW) == int(local.timestamp() * 1000)


@pytest.mark.parametrize("bad", ["yesterday", "10", "5y", "-2h", ""])
def test_since_refuses_what_is_neither_a_span_nor_an_iso_time(bad: str) -> None:
    with pytest.raises(typer.BadParameter):
        since_ms(bad, NOW)


def _record(message: str, *, extra: Mapping[str, object] | None = None,
            exc: bool = False) -> logging.LogRecord:
    logger = logging.getLogger(STATE_LOGGER)
    info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            info = sys.exc_info()
    record = logger.makeRecord(STATE_LOGGER, logging.INFO, __file__, 1, message, (), info,
                               extra=extra)
    record.created = NOW.timestamp()
    return record


def test_json_log_line_has_the_time_level_logger_message_and_state_fields() -> None:
    call = CallRecord.model_validate({"callId": "c1", "provider": "twilio", "direction": "inbound",
                                      "state": CallState.HANGUP_USER, "from": "+15550000000",
                                      "to": "+15555550123", "startedAt": 1,
                                      "endReason": EndReason.HANGUP_USER})
    line = JsonFormatter().format(_record("call c1 ended", extra=state_fields(call)))
    assert json.loads(line) == {
        "ts": "2026-01-31T12:00:00.000Z", "level": "INFO", "logger": STATE_LOGGER,
        "message": "call c1 ended", "callId": "c1", "carrier": "twilio", "direction": "inbound",
        "state": "hangup-user", "reason": "hangup-user"}
    assert "\n" not in line


def test_json_log_line_leaves_out_absent_fields_and_keeps_a_traceback_in_one_line() -> None:
    line = JsonFormatter().format(_record("webhook rejected", exc=True))
    parsed = json.loads(line)
    assert set(parsed) == {"ts", "level", "logger", "message", "exc"}
    assert "RuntimeError: boom" in parsed["exc"] and "\n" not in line
