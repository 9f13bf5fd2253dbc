"""The one arrangement of a signed Plivo request that the gateway applies (D67).

Plivo's V3 signature covers the URL, its decoded query as sorted `name=value` pairs joined by
`&`, then `.` and the POST parameters as sorted `name + value` with no separators (D82). So a copy
of a genuine callback can move characters across the body's boundaries (a name taking the start
of its value, a value swallowing the next pair, a value's tail breaking off as a new pair), a
query value can hold `&` and `=` that spell other pairs, and the last query value can swallow the
body, all under the genuine signature and replay key. Such a copy must not apply a different
meaning and turn the genuine callback into a replay. So a verified request is applied only in
the form Plivo sends, and its meaning is read from that same form:

- every query and body parameter name appears once;
- no query name holds `&` or `=` and no query value holds `&` (each query pair is then the one
  that was signed), and the gateway's own query parameters have the formats it writes;
- the body names the call (`CallUUID` or `RequestUUID`), body names start with a letter, and
  a GetInput result carries its `Digits` or `Speech`;
- the parameters the gateway reads have Plivo's formats;
- a known parameter that is missing does not appear inside another value (query or body) or an
  unknown name (a one-word name there with the start of its value, or at the name's end), and
  no unknown name is the start of it: that is what a value or name that swallowed, or took part
  of, its neighbour's pair looks like;
- an unknown name right after a parameter the gateway reads is refused when that value followed
  by the unknown pair would still be in the value's format: the pair could have broken off from
  the value's tail (or the value swallowed it in a copy of another callback). Free text (the
  caller's speech) fits any text, so only a known name may follow it; other new names are
  accepted, as Plivo adds parameters.

So every arrangement of the signed content except Plivo's own is refused or means the same, as
far as the parameters the gateway reads are concerned; an unread parameter may still swallow an
unread neighbour, which changes nothing the gateway does. The one copy that passes with another
meaning is of a callback this check refuses: one with an unknown name right after the speech,
which the speech swallowed.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping

from voicecall.providers.canonical_form import CanonicalRequest, NotCanonical, canonical_request

__all__ = ["CanonicalRequest", "NotCanonical", "canonical_request", "check_plivo_form"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z")
_NUMBER = re.compile(r"(\+?[0-9]{1,20}|sip:[^\s@]+@[a-z0-9.-]+(:[0-9]{1,5})?(;[a-z0-9=._-]+)*"
                     r"|[A-Za-z][a-z0-9]*)\Z")
"""`From`/`To`: digits, a SIP URI (Plivo's endpoints are lower-case hosts), or a word such as
`anonymous` or an endpoint's user name."""
_FREE = re.compile(r".*\Z", re.DOTALL)
_FORMATS: Mapping[str, re.Pattern[str]] = {
    "CallUUID": _UUID, "RequestUUID": _UUID,
    "CallStatus": re.compile(r"[a-z][a-z-]*\Z"),
    "Direction": re.compile(r"[a-z]+\Z"),
    "Event": re.compile(r"[A-Za-z]+\Z"),
    "From": _NUMBER, "To": _NUMBER,
    "Digits": re.compile(r"[0-9*#]*\Z"),
    "InputType": re.compile(r"[a-z]+( [a-z]+)?\Z"),
    "SpeechConfidenceScore": re.compile(r"-?[0-9]*\.?[0-9]+\Z"),
    "Machine": re.compile(r"(true|false)\Z", re.IGNORECASE),
    "DialAction": re.compile(r"[a-z]+\Z"),
    "DialStatus": re.compile(r"[a-z][a-z-]*\Z"),
    **{name: _FREE for name in ("Speech", "Transcription", "TranscriptionText", "SpeechResult",
                                "RecognizedSpeech", "Text")},
}
"""What the gateway reads from the body (providers/plivo/provider.py), in Plivo's formats; the
caller's speech (under any of the names the adapter reads it from) is free text."""
_COMPOUND = (
    "ALegRequestUUID", "ALegUUID", "AnswerTime", "BillDuration", "BillRate", "BilledAmount",
    "CallStatus", "CallUUID", "CallerName", "DialALegUUID", "DialAction", "DialBLegBillDuration",
    "DialBLegBillRate", "DialBLegDuration", "DialBLegFrom", "DialBLegHangupCause",
    "DialBLegHangupCauseCode", "DialBLegHangupCauseName", "DialBLegHangupSource",
    "DialBLegPosition", "DialBLegStatus", "DialBLegTo", "DialBLegTotalCost", "DialBLegUUID",
    "DialDigitsMatch", "DialHangupCause", "DialRingStatus", "DialStatus", "EndTime",
    "ForwardedFrom", "HangupCause", "HangupCauseCode", "HangupCauseName", "HangupSource",
    "InputType", "ParentAuthID", "RecognizedSpeech", "RecordFile", "RecordUrl",
    "RecordingDuration", "RecordingDurationMs", "RecordingEndMs", "RecordingID",
    "RecordingStartMs", "RequestUUID", "STIRAttestation", "STIRVerification", "SequenceNumber",
    "SessionStart", "SpeechConfidenceScore", "SpeechResult", "StableSpeech", "StartTime",
    "StreamID", "TotalCost", "TranscriptionText", "UnstableSpeech")
"""Plivo's voice callback parameters named by more than one word: such a name never occurs in a
genuine value (a number, a status, a transcript)."""
_COMPOUND_NAMES = frozenset(_COMPOUND)
_SWALLOWED: Mapping[str, re.Pattern[str]] = {
    **{name: re.compile(re.escape(name)) for name in _COMPOUND},
    "Digits": re.compile(r"Digits([0-9*#]+|(?=[A-Z])|\Z)"),
    "Direction": re.compile(r"Direction(inbound|outbound)"),
    "Event": re.compile(r"Event[A-Z][a-z]"),
    "From": re.compile(r"From[+0-9A-Za-z]"), "To": re.compile(r"To[+0-9A-Za-z]"),
    "Machine": re.compile(r"Machine(true|false)", re.IGNORECASE)}
"""A missing parameter's pair inside another value: what a value that swallowed it looks like
(compound names, and the one-word names the gateway reads, with the start of their value)."""
_VALUE_START: Mapping[str, str] = {"Digits": "0-9*#", "Direction": "a-z", "Event": "A-Za-z",
                                   "From": "+0-9A-Za-z", "To": "+0-9A-Za-z", "Machine": "tfTF"}
"""The characters a one-word read parameter's value starts with: a name holding the parameter's
name followed by one of them took the start of its value."""
_KNOWN = frozenset(_COMPOUND) | frozenset(_FORMATS) | frozenset(_SWALLOWED) | frozenset(
    {"Stability", "Status", "Timestamp", "Name"})
_CALL_IDS = ("CallUUID", "RequestUUID")
_INPUT_RESULT = {"dtmf": "Digits", "speech": "Speech"}
"""A GetInput result names its input type and carries that input (possibly empty)."""
_OUR_QUERY: Mapping[str, re.Pattern[str]] = {
    "callId": re.compile(r"[A-Za-z0-9_-]{1,128}\Z"), "type": re.compile(r"[a-z-]{1,32}\Z"),
    "turnToken": re.compile(r"[A-Za-z0-9_-]{1,128}\Z"),
    "utt": re.compile(r"[A-Za-z0-9_-]{1,128}\Z"), "doc": re.compile(r"[A-Za-z0-9_-]{1,128}\Z")}
"""The query the gateway puts on every URL it gives Plivo (providers/markup.py)."""


def check_plivo_form(canonical: CanonicalRequest) -> None:
    """Raise NotCanonical unless the request is in the form Plivo sends (module docstring)."""
    _check_query(canonical.query)
    params = canonical.params
    _check_names(params)
    _check_required(params)
    _check_formats(params)
    _check_nothing_swallowed(params, canonical.query)
    _check_neighbours(params)


def _check_query(query: Mapping[str, str]) -> None:
    """Each query pair is the one signed (no `&` or `=` to re-split), ours in our formats."""
    for name, value in query.items():
        if "&" in name or "=" in name or "&" in value:
            raise NotCanonical(f"the query parameter {name[:40]!r} holds '&' or '='")
        pattern = _OUR_QUERY.get(name)
        if pattern is not None and not pattern.match(value):
            raise NotCanonical(f"the query parameter {name} is not in the gateway's format")


def _check_names(params: Mapping[str, str]) -> None:
    for name in params:
        if not _NAME.match(name):
            raise NotCanonical(f"{name[:40]!r} is not a Plivo parameter name")


def _check_required(params: Mapping[str, str]) -> None:
    if not any(params.get(name) for name in _CALL_IDS):
        raise NotCanonical("neither CallUUID nor RequestUUID is present")
    wanted = _INPUT_RESULT.get(params.get("InputType", ""))
    if wanted is not None and wanted not in params:
        raise NotCanonical(f"the {params['InputType']} input has no {wanted} parameter")


def _check_formats(params: Mapping[str, str]) -> None:
    for name, pattern in _FORMATS.items():
        value = params.get(name)
        if value is not None and value != "" and not pattern.match(value):
            raise NotCanonical(f"{name} is not in Plivo's format")


def _check_nothing_swallowed(params: Mapping[str, str], query: Mapping[str, str]) -> None:
    """No missing known pair's text inside another value, nor a name that took part of it. The
    query's names and values count as values: the query borders the body, and body text holding
    an `=` can pass for a query pair."""
    values = [*params.values(), *query, *query.values()]
    unknown = [name for name in params if name not in _KNOWN]
    for missing, swallowed in _SWALLOWED.items():
        if missing in params:
            continue
        if any(swallowed.search(value) for value in values) or any(
                _took_part(missing, name) for name in unknown):
            raise NotCanonical(f"the {missing} pair is missing but its text is in another parameter")


def _took_part(missing: str, name: str) -> bool:
    """Whether the unknown `name` is a start of `missing`, or holds it: a compound name
    anywhere; a one-word name at the end (after the tail of the value before it) or followed by
    the start of its value."""
    if missing.startswith(name) or (missing in _COMPOUND_NAMES and missing in name):
        return True
    start = _VALUE_START.get(missing)
    return name.endswith(missing) or (
        start is not None and re.search(f"{re.escape(missing)}[{start}]", name) is not None)


def _check_neighbours(params: Mapping[str, str]) -> None:
    """An unknown name right after a read value must not fit as that value's tail."""
    for name, following in itertools.pairwise(sorted(params)):
        pattern = _FORMATS.get(name)
        if pattern is None or following in _KNOWN:
            continue
        if pattern.match(params[name] + following + params[following]):
            raise NotCanonical(f"{following[:40]!r} right after {name} could be part of its value")
