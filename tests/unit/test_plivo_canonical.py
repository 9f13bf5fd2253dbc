"""The form a V3-signed Plivo callback must be in to be applied (D67): every kind of genuine
callback the adapter receives is accepted, and each class of re-arranged copy that signs the same
(a name taking its value's start, a value swallowing its neighbour, a value's tail breaking off,
a query value spelling other pairs, the body moved into the query) is refused or means the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicecall.providers.base import WebhookRequest
from voicecall.providers.plivo.canonical import NotCanonical, canonical_request, check_plivo_form
from voicecall.providers.plivo.signature import v3_base_string

Pairs = list[tuple[str, str]]
CALL = "2a3b4c5d-0000-4111-8222-333344445555"
REQUEST = "9f8e7d6c-aaaa-4bbb-8ccc-ddddeeeeffff"
B_LEG = "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f"
OUR = "https://gw.example.test/voice/webhook"
READ_BODY = ("CallUUID", "RequestUUID", "CallStatus", "Direction", "Event", "From", "To", "Digits",
             "InputType", "Speech", "SpeechConfidenceScore", "Machine", "DialAction", "DialStatus")
READ_QUERY = ("callId", "type", "turnToken", "utt", "doc")


def call(status: str = "in-progress", direction: str = "inbound", **extra: str) -> Pairs:
    """The parameters Plivo sends on every voice callback (numbers as digits)."""
    pairs = [("CallUUID", CALL), ("From", "15557770001"), ("To", "15550000000"),
             ("CallStatus", status), ("Direction", direction)]
    if direction == "outbound":
        pairs += [("ALegUUID", CALL), ("ALegRequestUUID", REQUEST), ("RequestUUID", REQUEST)]
    return pairs + list(extra.items())


GENUINE: dict[str, tuple[dict[str, str], Pairs]] = {
    "inbound answer URL": ({}, call(Event="StartApp", CallerName="WIRELESS CALLER",
                                    STIRVerification="Verified", STIRAttestation="A",
                                    SessionStart="2026-12-07 16:00:00.123456", BillRate="0.0085",
                                    ParentAuthID="MAAAAAAAAAAAAAAAAAAA")),
    "outbound answer URL": ({"callId": "c0ffee00-1111-4222-8333-444455556666"},
                            call(direction="outbound", Event="StartApp")),
    "ring URL": ({"callId": "c0ffee00-1111-4222-8333-444455556666", "type": "status"},
                 call("ringing", "outbound", Event="Ring")),
    "hangup URL": ({"callId": "c0ffee00-1111-4222-8333-444455556666", "type": "status"},
                   call("completed", "outbound", Event="Hangup", HangupCause="NORMAL_CLEARING",
                        HangupCauseCode="4000", HangupCauseName="Normal Hangup",
                        HangupSource="Callee", Duration="12", BillDuration="60",
                        StartTime="2026-12-07 16:00:00", AnswerTime="2026-12-07 16:00:03",
                        EndTime="2026-12-07 16:00:15", TotalCost="0.00850")),
    "unanswered hangup": ({"type": "status"},
                          [("RequestUUID", REQUEST), ("From", "15550000000"),
                           ("To", "15557770001"), ("CallStatus", "no-answer"),
                           ("Direction", "outbound"), ("Event", "Hangup"),
                           ("HangupCause", "NO_ANSWER")]),
    "machine detection": ({"callId": "c", "type": "amd"}, call(direction="outbound", Machine="true")),
    "GetInput DTMF": ({"callId": "c", "turnToken": "f00d"},
                      call(InputType="dtmf", Digits="1234#", Speech="")),
    "GetDigits action": ({"callId": "c"}, call(Digits="42")),
    "GetInput speech": ({"callId": "c", "turnToken": "f00d"},
                        call(InputType="speech", Digits="", BilledAmount="0.0100",
                             Speech="Yes, please. Book it for 7 p.m. To Boston!",
                             SpeechConfidenceScore="0.87")),
    "GetInput speech, empty": ({"callId": "c", "type": "listen"},
                               call(InputType="speech", Speech="", SpeechConfidenceScore="0")),
    "transfer to a document": ({"callId": "c", "type": "doc", "doc": "0123abcd"}, call()),
    "played redirect": ({"callId": "c", "type": "played", "utt": "u-17"}, call(Event="Redirect")),
    "Dial action": ({"callId": "c", "type": "dial"},
                    call(DialStatus="completed", DialALegUUID=CALL, DialBLegUUID=B_LEG,
                         DialRingStatus="true", DialHangupCause="NORMAL_CLEARING",
                         DialBLegDuration="5", DialBLegTo="15553334444")),
    "Dial action, nobody answered": ({"callId": "c", "type": "dial"},
                                     call(DialStatus="no-answer", DialALegUUID=CALL,
                                          DialBLegUUID="", DialRingStatus="false")),
    "dial callback": ({"callId": "c", "type": "dial-status"},
                      call(DialAction="answer", DialBLegStatus="answer", DialBLegUUID=B_LEG,
                           DialBLegTo="15553334444", DialBLegFrom="15550000000",
                           DialALegUUID=CALL)),
    "stream status callback": ({"callId": "c", "type": "stream"},
                               call(Event="StartStream", StreamID=B_LEG,
                                    Timestamp="2026-12-07 16:00:04", Name="agent")),
    "recording callback": ({"callId": "c", "type": "recording"},
                           call(RecordUrl="https://media.plivo.com/v1/Account/MA/Recording/x.mp3",
                                RecordingID=B_LEG, RecordingDuration="9",
                                RecordingDurationMs="9120", RecordingStartMs="1765123200000",
                                RecordingEndMs="1765123209120")),
    "SIP headers and a new parameter": ({}, call(**{"X-PH-Ticket": "A17", "CallerCountry": "US",
                                                     "api_id": "7d1e"})),
    "SIP caller with URI parameters": ({}, [("CallUUID", CALL),
                                            ("From", "sip:bob@sip.example.com:5060;transport=udp"),
                                            ("To", "15550000000"), ("CallStatus", "ringing"),
                                            ("Direction", "inbound"),
                                            ("MachineDetectionDuration", "2500")]),
    "SIP caller": ({}, [("CallUUID", CALL), ("From", "sip:alice1234@phone.plivo.com"),
                        ("To", "15550000000"), ("CallStatus", "ringing"),
                        ("Direction", "inbound")]),
    "public URL with its own query": ({"key": "s3cr.t=", "callId": "c", "type": "status"},
                                      call("completed", Event="Hangup")),
}


def request(query: dict[str, str] | str, pairs: Pairs, raw_body: str | None = None) -> WebhookRequest:
    text = query if isinstance(query, str) else urlencode(query)
    path = "/voice/webhook" + (f"?{text}" if text else "")
    body = raw_body if raw_body is not None else urlencode(pairs)
    return WebhookRequest("POST", OUR + (f"?{text}" if text else ""), path, {}, {},
                          body.encode(), "")


def accepted(query: dict[str, str] | str, pairs: Pairs, raw_body: str | None = None) -> bool:
    try:
        check_plivo_form(canonical_request(request(query, pairs, raw_body)))
    except NotCanonical:
        return False
    return True


def signed(query: dict[str, str], pairs: Pairs) -> str:
    url = OUR + (f"?{urlencode(query)}" if query else "")
    return v3_base_string("POST", url, pairs)


def meaning(query: dict[str, str], pairs: Pairs) -> dict[str, str | None]:
    body = dict(pairs)
    return {**{n: body.get(n) for n in READ_BODY}, **{f"?{n}": query.get(n) for n in READ_QUERY}}


@pytest.mark.parametrize("kind", sorted(GENUINE))
def test_every_kind_of_genuine_plivo_callback_is_accepted(kind: str) -> None:
    query, pairs = GENUINE[kind]
    assert accepted(query, pairs)


# -- the re-arrangements ------------------------------------------------------------------------

def body_rearrangements(pairs: Pairs) -> Iterator[tuple[str, Pairs]]:
    """Characters shifted across every name|value and value|name boundary of the signed body."""
    ordered = sorted(pairs)
    for i, (name, value) in enumerate(ordered):
        before, after = ordered[:i], ordered[i + 1:]
        for k in range(1, min(len(value), 12) + 1):
            yield f"{name} takes {k}", [*before, (name + value[:k], value[k:]), *after]
        for k in range(1, len(name)):
            yield f"{name} gives {k}", [*before, (name[:-k], name[-k:] + value), *after]
        for n in range(1, min(len(after), 3) + 1):
            swallowed = "".join(k + v for k, v in after[:n])
            yield f"{name} swallows {n}", [*before, (name, value + swallowed), *after[n:]]
        if after:
            nxt, nxt_value = after[0]
            for k in range(1, min(len(value), 12)):
                yield f"{nxt} takes {k} of {name}", [*before, (name, value[:-k]),
                                                     (value[-k:] + nxt, nxt_value), *after[1:]]
        for k in range(1, min(len(value), 12)):
            tail = value[-k:]
            for cut in range(1, len(tail) + 1):
                yield f"{name} splits {k}/{cut}", [*before, (name, value[:-k]),
                                                   (tail[:cut], tail[cut:]), *after]


def query_into_body(query: dict[str, str], pairs: Pairs) -> Iterator[tuple[str, dict[str, str], Pairs]]:
    """The last query value swallowing `.` and the body: all of it, or up to a `.` inside a
    value (the copy's body then starts after that `.`)."""
    last = sorted(query)[-1]
    ordered = sorted(pairs)
    moved = "".join(k + v for k, v in ordered)
    yield "query swallows the body", {**query, last: f"{query[last]}.{moved}"}, []
    for i, (name, value) in enumerate(ordered):
        if "." not in value:
            continue
        head, _, rest = value.partition(".")
        before = "".join(k + v for k, v in ordered[:i]) + name + head
        after = ordered[i + 1:]
        body = [(rest + after[0][0], after[0][1]), *after[1:]] if rest and after else after
        yield f"query swallows up to {name}", {**query, last: f"{query[last]}.{before}"}, body


def test_a_query_value_that_spells_other_pairs_is_refused() -> None:
    query = {"callId": "c", "turnToken": "t1", "type": "listen"}
    pairs = call(InputType="speech", Speech="yes", SpeechConfidenceScore="0.9")
    merged = "callId=" + quote("c&turnToken=t1") + "&type=listen"
    assert signed({"callId": "c&turnToken=t1", "type": "listen"}, pairs) == signed(query, pairs)
    assert not accepted(merged, pairs)
    split_name = quote("callId=c") + "=&turnToken=t1&type=listen"
    assert not accepted(split_name, pairs)
    assert accepted(query, pairs)


@pytest.mark.parametrize("kind", ["GetInput speech", "played redirect", "public URL with its own query"])
def test_the_body_moved_into_the_last_query_value_is_refused(kind: str) -> None:
    query, pairs = GENUINE[kind]
    tried = 0
    for how, forged_query, forged_pairs in query_into_body(query, pairs):
        assert signed(forged_query, forged_pairs) == signed(query, pairs), how
        tried += 1
        assert not accepted(forged_query, forged_pairs), how
    assert tried >= 1


def test_body_text_holding_an_equals_sign_cannot_pass_for_a_query_pair() -> None:
    """With no query, the signed URL ends in `?` and the body; a body value with `=` and `.`
    lets a copy turn the start of the body into one query pair (whose name then holds the
    parameters it swallowed) and the rest into a new body."""
    pairs = call(RecordUrl="https://media.plivo.com/r.mp3?sig=ab.Cd", RequestUUID=REQUEST)
    text = "".join(k + v for k, v in sorted(pairs))
    head, _, rest = text.partition(".Cd")
    name, _, value = head.partition("=")
    forged = [("Cd", ""), ("RequestUUID", REQUEST), ("To", "15550000000")]
    assert "".join(k + v for k, v in sorted(forged)) == "Cd" + rest
    assert signed({name: value}, forged) == signed({}, pairs)
    assert accepted({}, pairs)
    assert not accepted({name: value}, forged)


def test_a_repeated_name_is_refused() -> None:
    pairs = call(Event="StartApp")
    assert not accepted({}, pairs, urlencode(pairs) + "&CallStatus=completed")
    assert not accepted("type=status&type=listen", pairs)


def test_an_unknown_name_right_after_the_callers_speech_is_refused() -> None:
    """A transcript's last word could have broken off as that pair."""
    pairs = call(InputType="speech", Speech="cancel it. Thanks")
    broken = [p for p in pairs if p[0] != "Speech"] + [("Speech", "cancel it. "), ("Thanks", "")]
    assert signed({}, broken) == signed({}, pairs)
    assert accepted({}, pairs)
    assert not accepted({}, broken)


def test_a_speech_result_without_its_transcript_is_refused() -> None:
    pairs = call(InputType="speech", SpeechConfidenceScore="0.9")
    assert not accepted({}, pairs)


@pytest.mark.parametrize("kind", sorted(GENUINE))
def test_every_rearranged_copy_of_a_genuine_callback_is_refused_or_means_the_same(kind: str) -> None:
    query, pairs = GENUINE[kind]
    wanted = signed(query, pairs)
    tried, problems = 0, []
    for how, variant in body_rearrangements(pairs):
        names = [n for n, _ in variant]
        if not all(names) or len(set(names)) != len(names) or signed(query, variant) != wanted:
            continue  # not a copy that signs the same
        tried += 1
        if accepted(query, variant) and meaning(query, variant) != meaning(query, pairs):
            problems.append(f"{how}: {sorted(set(variant) - set(pairs))}")
    assert tried > 20
    assert problems == []


@pytest.mark.parametrize("how, build", [
    ("a name takes its value's first character",
     lambda p: [(n + v[0], v[1:]) if n == "CallStatus" else (n, v) for n, v in p]),
    ("a value swallows its neighbour",
     lambda p: [(n, v + "CallUUID" + CALL) if n == "CallStatus" else (n, v)
                for n, v in p if n != "CallUUID"]),
    ("a name gives its tail to its value",
     lambda p: [("Direc", "tion" + v) if n == "Direction" else (n, v) for n, v in p]),
])
def test_each_class_of_rearrangement_of_a_hangup_is_refused(how: str, build: object) -> None:
    query, pairs = GENUINE["hangup URL"]
    assert callable(build)
    forged = build(pairs)
    assert signed(query, forged) == signed(query, pairs), how
    assert not accepted(query, forged), how


word = st.tuples(st.from_regex(r"[A-Za-z][a-z']{0,8}|[0-9]{1,4}", fullmatch=True),
                 st.sampled_from(["", "", ".", ",", "?", "!"])).map("".join)
speech = st.lists(word, min_size=1, max_size=8).map(" ".join)
"""A transcript as speech recognition writes one: words (capitalised or not) and numbers."""


@settings(max_examples=100, deadline=None)
@given(speech=speech, digits=st.text(alphabet="0123456789*#", min_size=1, max_size=6),
       kind=st.sampled_from(["speech", "dtmf"]),
       caller=st.sampled_from(["15557770001", "sip:bob@phone.plivo.com", "anonymous"]),
       direction=st.sampled_from(["inbound", "outbound"]),
       extra=st.sampled_from([{}, {"CallerName": "JOHN SMITH"}, {"X-PH-Ref": "42"},
                              {"BilledAmount": "0.0100"}]))
def test_generated_input_callbacks_are_accepted_and_rearrangements_refused_or_the_same(
        speech: str, digits: str, kind: str, caller: str, direction: str,
        extra: dict[str, str]) -> None:
    query = {"callId": "c", "turnToken": "t0"}
    pairs = [(n, caller if n == "From" else v) for n, v in call(direction=direction)]
    pairs += [("InputType", kind), ("Digits", digits if kind == "dtmf" else ""),
              ("Speech", speech if kind == "speech" else ""), *extra.items()]
    if kind == "speech":
        pairs.append(("SpeechConfidenceScore", "0.91"))
    assert accepted(query, pairs)
    wanted = signed(query, pairs)
    problems = []
    for how, variant in body_rearrangements(pairs):
        names = [n for n, _ in variant]
        if not all(names) or len(set(names)) != len(names) or signed(query, variant) != wanted:
            continue
        if accepted(query, variant) and meaning(query, variant) != meaning(query, pairs):
            problems.append(f"{how}: {sorted(set(variant) - set(pairs))}")
    assert problems == []
