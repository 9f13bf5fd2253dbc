"""Property: every re-arrangement of a genuine Twilio Gather callback that signs the same is
either refused or means the same to the gateway (D61). Re-arrangements are made by shifting
characters across each boundary of the signed string (name|value, value|next name), by a value
swallowing the next pair, and by a value's tail breaking off as a new pair."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from voicecall.providers.base import WebhookRequest
from voicecall.providers.twilio.canonical import NotCanonical, canonical_request, check_twilio_form
from voicecall.providers.twilio.signature import signing_string

ACCOUNT = "AC" + "5" * 32
READ = ("CallSid", "CallStatus", "Direction", "From", "To", "SpeechResult", "Confidence", "Digits",
        "AnsweredBy")

Pairs = list[tuple[str, str]]


def signed(pairs: Pairs) -> str:
    return signing_string("", pairs)


def meaning(pairs: Pairs) -> dict[str, str | None]:
    params = dict(pairs)
    return {name: params.get(name) for name in READ}


def accepted(pairs: Pairs) -> bool:
    request = WebhookRequest("POST", "https://h/voice/webhook", "/voice/webhook", {}, {},
                             urlencode(pairs).encode(), "")
    try:
        check_twilio_form(canonical_request(request), ACCOUNT)
    except NotCanonical:
        return False
    return True


def rearrangements(pairs: Pairs) -> Iterator[tuple[str, Pairs]]:
    ordered = sorted(pairs)
    for i, (name, value) in enumerate(ordered):
        rest_before, rest_after = ordered[:i], ordered[i + 1:]
        for k in range(1, min(len(value), 12) + 1):  # the name takes the value's first k chars
            yield f"{name} takes {k}", [*rest_before, (name + value[:k], value[k:]), *rest_after]
        for k in range(1, len(name)):  # the name gives its tail to the value
            yield f"{name} gives {k}", [*rest_before, (name[:-k], name[-k:] + value), *rest_after]
        if rest_after:
            nxt, nxt_value = rest_after[0]
            yield f"{name} swallows {nxt}", [*rest_before, (name + "", value + nxt + nxt_value),
                                             *rest_after[1:]]
            for k in range(1, min(len(nxt), 12)):  # the next name takes the value's tail
                if k < len(value):
                    yield f"{nxt} takes {k} of {name}", [
                        *rest_before, (name, value[:-k]), (value[-k:] + nxt, nxt_value),
                        *rest_after[1:]]
        for k in range(1, min(len(value), 12)):  # the value's tail breaks off as a new pair
            tail = value[-k:]
            for cut in range(1, len(tail)):
                yield f"{name} splits {k}/{cut}", [*rest_before, (name, value[:-k]),
                                                   (tail[:cut], tail[cut:]), *rest_after]
            yield f"{name} splits {k}", [*rest_before, (name, value[:-k]), (tail, ""), *rest_after]


speech = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'",
                 min_size=1, max_size=40).map(str.strip).filter(bool)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["speech", "digits", "status"]), speech=speech,
       digits=st.text(alphabet="0123456789*#", min_size=1, max_size=6),
       status=st.sampled_from(["ringing", "in-progress", "completed", "busy", "no-answer"]),
       language=st.sampled_from(["en-US", "en-GB", "es-ES"]),
       caller=st.sampled_from(["+15557770001", "client:alice", "Anonymous"]),
       stir=st.sampled_from([None, "TN-Validation-Passed-A"]),
       to_city=st.sampled_from([None, "BOSTON"]))
def test_every_rearrangement_that_signs_the_same_is_refused_or_means_the_same(
        kind: str, speech: str, digits: str, status: str, language: str, caller: str,
        stir: str | None, to_city: str | None) -> None:
    genuine: Pairs = [("AccountSid", ACCOUNT), ("ApiVersion", "2010-04-01"), ("CallSid", "CA" + "7" * 32),
                      ("CallStatus", status if kind == "status" else "in-progress"),
                      ("Direction", "inbound"), ("From", caller), ("To", "+15550000000")]
    if kind == "speech":
        genuine += [("Confidence", "0.92"), ("Language", language), ("SpeechResult", speech)]
    elif kind == "digits":
        genuine += [("Digits", digits), ("FinishedOnKey", "#")]
    genuine += [("StirVerstat", stir)] if stir else []
    genuine += [("ToCity", to_city)] if to_city else []
    assert accepted(genuine)
    wanted = signed(genuine)
    problems = []
    tried = 0
    for how, variant in rearrangements(genuine):
        names = [n for n, _ in variant]
        if not all(names) or len(set(names)) != len(names) or signed(variant) != wanted:
            continue  # not a re-arrangement that signs the same
        tried += 1
        if accepted(variant) and meaning(variant) != meaning(genuine):
            problems.append(f"{how}: {sorted(set(variant) - set(genuine))}")
    assert tried > 20
    assert problems == []
