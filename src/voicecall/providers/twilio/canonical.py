"""The one arrangement of a signed Twilio request that the gateway applies (D61).

Twilio signs the URL followed by `name + value` of every parameter with no separators, so a
copy of a genuine request can move characters across those boundaries (from the body onto the
end of the query, from a value into the next name) and keep its signature; its replay key
(built from the signed string) is the genuine one's. Such a copy must not apply a different
meaning and turn the genuine request into a replay. So a verified request is applied only in
the form Twilio sends, and its meaning is read from that same form:

- every query and body parameter name appears once (no repeated keys to choose between);
- body names are Twilio's shape (an ASCII capital, then letters and digits), and the one after
  the caller's speech (`SpeechResult`) is a parameter Twilio sends there, so a transcript's last
  word cannot break off as a new pair; other unknown names are accepted, as Twilio adds
  parameters;
- `AccountSid` is present and is the configured account: it sorts first, so it pins the
  boundary between the URL and the body;
- the parameters that carry meaning, and the language next to the caller's speech, have
  Twilio's formats, and a voice request (one with a call status or caller input) carries the
  standard `Direction`, `From` and `To`;
- a known parameter that is missing does not appear inside another value or an unknown name,
  and no unknown name is the start of it: that is what a value or name that swallowed, or
  took part of, its neighbour's pair looks like.

So every arrangement of the signed content except Twilio's own is refused, as far as the
parameters the gateway reads are concerned; an unread free-text parameter may still swallow an
unread neighbour, which changes nothing the gateway does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping

from voicecall.providers.canonical_form import CanonicalRequest, NotCanonical, canonical_request

__all__ = ["CanonicalRequest", "NotCanonical", "canonical_request", "check_twilio_form"]

_NAME = re.compile(r"[A-Z][A-Za-z0-9]*\Z")
_FORMATS: Mapping[str, re.Pattern[str]] = {
    "CallSid": re.compile(r"CA[0-9a-fA-F]{32}\Z"),
    "CallStatus": re.compile(r"(queued|initiated|ringing|in-progress|completed|busy|failed|"
                             r"no-answer|canceled)\Z", re.IGNORECASE),
    "Direction": re.compile(r"(inbound|outbound-api|outbound-dial|trunking-terminating|"
                            r"trunking-originating)\Z"),
    "Digits": re.compile(r"[0-9*#wW]*\Z"),
    "AnsweredBy": re.compile(r"[a-z_]*\Z"),
    "Language": re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*\Z"),
    "From": re.compile(r"(\+?[0-9]{1,20}|client:\S+|sip:\S+|[A-Za-z]+)\Z"),
    "To": re.compile(r"(\+?[0-9]{1,20}|client:\S+|sip:\S+|[A-Za-z]+)\Z"),
}
_ONE_WORD = frozenset({"Called", "Caller", "Confidence", "Digits", "Direction", "Duration", "From",
                       "Language", "Stability", "Timestamp", "To"})
_KNOWN_COMPOUND = (
    "AccountSid", "AnsweredBy", "ApiVersion", "CallSid", "CallStatus", "CallToken", "CalledCity",
    "CalledCountry", "CalledState", "CalledZip", "CallerCity", "CallerCountry", "CallerName",
    "CallerState", "CallerZip", "DialBridged", "DialCallDuration", "DialCallSid", "DialCallStatus",
    "ForwardedFrom", "FromCity", "FromCountry", "FromState", "FromZip",
    "ParentCallSid", "SpeechResult", "StirPassportToken", "StirVerstat", "ToCity", "ToCountry",
    "ToState", "ToZip", "UnstableSpeechResult")
_SWALLOWED: Mapping[str, re.Pattern[str]] = {
    **{name: re.compile(re.escape(name)) for name in _KNOWN_COMPOUND},
    "Digits": re.compile(r"Digits[0-9*#]+\Z"), "Confidence": re.compile(r"Confidence[0-9.]+\Z"),
    "Duration": re.compile(r"Duration[0-9]+\Z"),
    "Language": re.compile(r"Language[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*\Z"),
    "Direction": re.compile(r"Direction(inbound|outbound-api|outbound-dial|trunking-[a-z]+)\Z")}
"""A missing parameter's pair inside a value: what a value that swallowed it looks like. A
compound name never occurs in a genuine value (a transcript, a number, a city)."""
_KNOWN = frozenset(_KNOWN_COMPOUND) | _ONE_WORD
_FREE_TEXT = ("SpeechResult",)
"""The free-text value the gateway reads, whose last word could break off as a new pair: the
parameter after it must be one Twilio sends there (`StirVerstat`, `Timestamp`, `To`, ...)."""
_REQUIRED = ("AccountSid", "CallSid")
_VOICE = ("CallStatus", "SpeechResult", "Digits")
"""Parameters of a voice request, which always carries the standard ones below too."""
_STANDARD = ("Direction", "From", "To")


def check_twilio_form(canonical: CanonicalRequest, account_sid: str) -> None:
    """Raise NotCanonical unless the parameters are in the form Twilio sends (module docstring)."""
    params = canonical.params
    _check_names(params)
    _check_required(params, account_sid)
    _check_formats(params)
    _check_nothing_swallowed(params)


def _check_names(params: Mapping[str, str]) -> None:
    """Twilio-shaped names, and a known one right after the caller's free-text speech."""
    for name in params:
        if not _NAME.match(name):
            raise NotCanonical(f"{name[:40]!r} is not a Twilio parameter name")
    for name, following in itertools.pairwise(sorted(params)):
        if name in _FREE_TEXT and following not in _KNOWN:
            # A free-text value's last word could have broken off as this pair.
            raise NotCanonical(f"{following[:40]!r} right after {name} is not a Twilio parameter")


def _check_required(params: Mapping[str, str], account_sid: str) -> None:
    required = _REQUIRED + (_STANDARD if any(n in params for n in _VOICE) else ())
    for name in required:
        if name not in params:
            raise NotCanonical(f"the {name} parameter is missing")
    if params["AccountSid"] != account_sid:
        raise NotCanonical("AccountSid is not this gateway's account")


def _check_formats(params: Mapping[str, str]) -> None:
    for name, pattern in _FORMATS.items():
        value = params.get(name)
        if value is not None and value != "" and not pattern.match(value):
            raise NotCanonical(f"{name} is not in Twilio's format")


def _check_nothing_swallowed(params: Mapping[str, str]) -> None:
    """No missing known pair's text inside another value, nor a name that took part of it."""
    for missing, swallowed in _SWALLOWED.items():
        if missing in params:
            continue
        if any(swallowed.search(value) for value in params.values()) or any(
                missing in name or missing.startswith(name) for name in params if name not in _KNOWN):
            raise NotCanonical(f"the {missing} pair is missing but its text is in another parameter")
