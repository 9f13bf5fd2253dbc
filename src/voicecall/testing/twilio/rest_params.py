"""The simulator's REST form bodies and the create-call parameters Twilio checks before a 201.

`parse_create` validates a `POST /Calls.json` form in Twilio's own order and raises
`InvalidParameter` with the error code and message Twilio answers the first problem with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

STATUS_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
AMD_MODES = ("Enable", "DetectMessageEnd")
HTTP_METHODS = ("GET", "POST")


class Form:
    """A form body: repeated keys kept in order."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.pairs if k == name), None)

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


class InvalidParameter(Exception):
    """A request parameter Twilio rejects with a 400: its error code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class CreateParams:
    """A create-call request that passed every check."""

    to: str
    from_: str
    url: str | None
    twiml: str | None
    method: str
    status_callback: str | None
    status_callback_method: str
    status_callback_events: list[str]
    timeout_s: float
    time_limit_s: float | None
    machine_detection: str | None
    async_amd_callback: str | None
    async_amd_method: str


def valid_url(url: str) -> bool:
    """An absolute http(s) URL with a host."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def valid_to(number: str) -> bool:
    """A number, client or SIP address Twilio can dial."""
    return bool(E164.match(number)) or number.startswith(("client:", "sip:"))


def valid_from(number: str) -> bool:
    """A caller ID Twilio accepts: a number or a client identity."""
    return bool(E164.match(number)) or number.startswith("client:")


def _parties(form: Form) -> tuple[str, str]:
    """`To` and `From`, present and well-formed."""
    to, from_ = (form.get("To") or "").strip(), (form.get("From") or "").strip()
    if not to:
        raise InvalidParameter(21201, "No 'To' number is specified")
    if not from_:
        raise InvalidParameter(21213, "No 'From' number is specified")
    if not valid_to(to):
        raise InvalidParameter(21211, f"Invalid 'To' Phone Number: {to}")
    if not valid_from(from_):
        raise InvalidParameter(21212, f"Invalid 'From' Phone Number: {from_}")
    return to, from_


def _instructions(form: Form) -> tuple[str | None, str | None]:
    """`(Url, Twiml)`: one of them is required, and like Twilio, Twiml is ignored when Url is given."""
    url, twiml = form.get("Url"), form.get("Twiml")
    if form.get("ApplicationSid") and not url and not twiml:
        raise InvalidParameter(21200, "ApplicationSid is not supported by the simulator; use Url or Twiml")
    if not url and not twiml:
        raise InvalidParameter(21200, "A 'Url', 'Twiml' or 'ApplicationSid' parameter is required")
    if not url:
        return url, twiml
    if not valid_url(url):
        raise InvalidParameter(21205, f"Url is not a valid URL: {url}")
    return url, None


def _methods(form: Form) -> tuple[str, str]:
    """`(Method, StatusCallbackMethod)`, each GET or POST (POST when absent)."""
    method = (form.get("Method") or "POST").upper()
    cb_method = (form.get("StatusCallbackMethod") or "POST").upper()
    if method not in HTTP_METHODS or cb_method not in HTTP_METHODS:
        raise InvalidParameter(21200, "Method and StatusCallbackMethod must be GET or POST")
    return method, cb_method


def _status_callback(form: Form) -> tuple[str | None, list[str]]:
    """`StatusCallback` and its events (space- or repeat-separated; `completed` when none)."""
    status_callback = form.get("StatusCallback") or None
    if status_callback and not valid_url(status_callback):
        raise InvalidParameter(21205, f"StatusCallback is not a valid URL: {status_callback}")
    events = [e for value in form.getlist("StatusCallbackEvent") for e in value.split()]
    if bad := [e for e in events if e not in STATUS_EVENTS]:
        raise InvalidParameter(21200, f"Invalid StatusCallbackEvent: {' '.join(bad)}")
    return status_callback, events or ["completed"]


def _timing(form: Form) -> tuple[float, float | None]:
    """`(Timeout, TimeLimit)` in seconds; the ring timeout is clamped to Twilio's 1-600 s."""
    try:
        timeout = min(600.0, max(1.0, float(form.get("Timeout") or 60)))
        limit = form.get("TimeLimit")
        return timeout, float(limit) if limit else None
    except ValueError:
        raise InvalidParameter(21200, "Timeout and TimeLimit must be numbers of seconds") from None


def _machine_detection(form: Form) -> tuple[str | None, str | None, str]:
    """`MachineDetection` and, for async AMD, its status callback and method."""
    amd = form.get("MachineDetection") or None
    if amd is not None and amd not in AMD_MODES:
        raise InvalidParameter(21200, f"Invalid MachineDetection: {amd}")
    if amd and (form.get("AsyncAmd") or "").lower() == "true" and form.get("AsyncAmdStatusCallback"):
        return amd, form.get("AsyncAmdStatusCallback"), (
            form.get("AsyncAmdStatusCallbackMethod") or "POST").upper()
    return amd, None, "POST"


def parse_create(form: Form) -> CreateParams:
    """Validate a create-call form in Twilio's order; raises InvalidParameter on the first problem."""
    to, from_ = _parties(form)
    url, twiml = _instructions(form)
    method, cb_method = _methods(form)
    status_callback, events = _status_callback(form)
    timeout_s, time_limit_s = _timing(form)
    amd, amd_callback, amd_method = _machine_detection(form)
    return CreateParams(to=to, from_=from_, url=url, twiml=twiml, method=method,
                        status_callback=status_callback, status_callback_method=cb_method,
                        status_callback_events=events, timeout_s=timeout_s, time_limit_s=time_limit_s,
                        machine_detection=amd, async_amd_callback=amd_callback, async_amd_method=amd_method)
