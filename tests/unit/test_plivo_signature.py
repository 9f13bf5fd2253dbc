"""Plivo V3/V2 webhook signatures: the SDK's vectors, agreement with the official SDK on
generated requests, and the refusals (forged, altered URL or body, wrong nonce).

The official SDK (`plivo.utils.signature_v3`, test dependency only) is the oracle."""

from __future__ import annotations

import string
from collections.abc import Sequence
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plivo.utils.signature_v3 import construct_get_url, construct_post_url, validate_v3_signature

from voicecall.providers.base import WebhookRequest
from voicecall.providers.plivo.signature import (
    sign_v2,
    sign_v3,
    v3_base_string,
    verify_plivo_webhook,
)
from voicecall.security.public_url import ForwardingPolicy

TOKEN = "PLIVO_TEST_AUTH_TOKEN_0123456789abcdef"
NONCE = "05429567804466091622"
UUID = "2a3b4c5d-0000-1111-2222-333344445555"
P1_PARAMS = [("CallUUID", UUID), ("From", "14155550100"), ("To", "14155550199"),
             ("CallStatus", "in-progress"), ("Direction", "outbound"), ("ALegUUID", UUID),
             ("ALegRequestUUID", "9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"), ("Event", "StartApp")]
P2_PARAMS = [("CallUUID", UUID), ("InputType", "speech"), ("Speech", "book a table for two"),
             ("SpeechConfidenceScore", "0.87"), ("Digits", ""), ("From", "14155550100"),
             ("To", "14155550199"), ("CallStatus", "in-progress"), ("Direction", "inbound")]
P1_URL = "https://agent.example.test/plivo/answer/"
P1_SIGNATURE = "TRt72XYDP0SjpozU0U2QIJ6PMNoMpg/nJ8v3/SSLiYk="
PUBLIC = "https://agent.example.test/plivo/answer/"


def sdk_params(pairs: Sequence[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Pairs as the SDK takes them: one value as a string, several as a list."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in grouped.items()}


def sdk_base(method: str, url: str, pairs: Sequence[tuple[str, str]]) -> str:
    params = sdk_params(pairs)
    raw = construct_get_url(url, params) if method == "GET" else construct_post_url(url, params)
    return bytes(raw).decode("utf-8")


# --- the vectors of the official SDK -----------------------------------------------------------

@pytest.mark.parametrize("method,url,pairs,base,signature", [
    ("POST", P1_URL, P1_PARAMS,
     "https://agent.example.test/plivo/answer/?ALegRequestUUID9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"
     f"ALegUUID{UUID}CallStatusin-progressCallUUID{UUID}DirectionoutboundEventStartApp"
     "From14155550100To14155550199", P1_SIGNATURE),
    ("POST", "https://agent.example.test/plivo/getinput/?turn=2&q=a%20b", P2_PARAMS,
     f"https://agent.example.test/plivo/getinput/?q=a b&turn=2.CallStatusin-progressCallUUID{UUID}"
     "DigitsDirectioninboundFrom14155550100InputTypespeechSpeechbook a table for two"
     "SpeechConfidenceScore0.87To14155550199", "C4xKvb6aqj7zSX+Qztd2DIrym2G5s9t/70AbQdllIqA="),
    ("GET", f"https://agent.example.test/plivo/hangup/?CallUUID={UUID}&HangupCause=NORMAL_CLEARING"
     "&Duration=17", [],
     f"https://agent.example.test/plivo/hangup/?CallUUID={UUID}&Duration=17"
     "&HangupCause=NORMAL_CLEARING", "Lzx463P0+pFL4MDpe6cuNFtKYv/X7aYEn6hh/6gBblE="),
    ("POST", "https://agent.example.test/plivo/ring/", [], "https://agent.example.test/plivo/ring/",
     "EMCm7aTErqKcQ6nFvjFjk6QatoKDo+RrfQOVEzDaNTs="),
])
def test_v3_base_string_and_signature_match_the_sdk_vectors(
        method: str, url: str, pairs: list[tuple[str, str]], base: str, signature: str) -> None:
    assert v3_base_string(method, url, pairs) == base
    assert sign_v3(TOKEN, method, url, pairs, NONCE) == signature


@pytest.mark.parametrize("method,url,pairs", [
    ("POST", P1_URL, P1_PARAMS),
    ("POST", "https://agent.example.test/plivo/getinput/?turn=2&q=a%20b", P2_PARAMS),
    ("GET", f"https://agent.example.test/plivo/hangup/?CallUUID={UUID}&Duration=17", []),
    ("POST", "https://agent.example.test/plivo/ring/", []),
])
def test_the_sdk_accepts_our_signatures_on_the_vector_requests(
        method: str, url: str, pairs: list[tuple[str, str]]) -> None:
    ours = sign_v3(TOKEN, method, url, pairs, NONCE)
    assert validate_v3_signature(method, url, NONCE, TOKEN, ours, sdk_params(pairs) or None)
    assert not validate_v3_signature(method, url, NONCE, "another-token", ours,
                                     sdk_params(pairs) or None)


def test_multi_valued_post_params_are_signed_sorted_without_separators() -> None:
    pairs = [("a", "2"), ("a", "1"), ("b", "z")]
    assert v3_base_string("POST", "https://agent.example.test/x/", pairs) == \
        "https://agent.example.test/x/?a1a2bz"


def test_v2_signs_the_url_without_its_query_then_the_nonce() -> None:
    assert sign_v2(TOKEN, "https://agent.example.test/plivo/answer/?x=1", NONCE) == \
        "LiM97/60UA2dZ0v9o4UIJYreyefm2P8NsAfYQBDJMRw="


# --- agreement with the SDK on generated requests -------------------------------------------------

_ascii = st.text(alphabet=string.ascii_letters + string.digits + " -_.+/:@", max_size=12)
_text = st.text(alphabet=string.ascii_letters + string.digits + " -_.+/:@é", max_size=12)
"""Query values stay ASCII: the SDK decodes a query's bytes as Latin-1 and breaks on others."""
_names = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(method=st.sampled_from(["GET", "POST"]),
       path=st.text(alphabet=string.ascii_lowercase + "/", max_size=10),
       query=st.lists(st.tuples(_names, _ascii), max_size=3),
       body=st.lists(st.tuples(_names, _text), max_size=5),
       nonce=st.text(alphabet=string.digits, min_size=1, max_size=20))
def test_v3_agrees_with_the_sdk_on_generated_requests(
        method: str, path: str, query: list[tuple[str, str]], body: list[tuple[str, str]],
        nonce: str) -> None:
    url = f"https://agent.example.test:8443/{path}" + (f"?{urlencode(query)}" if query else "")
    pairs = body if method == "POST" else []
    assert v3_base_string(method, url, pairs) == sdk_base(method, url, pairs)
    ours = sign_v3(TOKEN, method, url, pairs, nonce)
    assert validate_v3_signature(method, url, nonce, TOKEN, ours, sdk_params(pairs) or None)


# --- verifying webhooks -------------------------------------------------------------------------

def webhook(body_pairs: Sequence[tuple[str, str]], headers: dict[str, str], *,
            url: str = P1_URL) -> WebhookRequest:
    query = url.partition("?")[2]
    from urllib.parse import parse_qsl

    return WebhookRequest(method="POST", url=url, path="/plivo/answer/",
                          query=dict(parse_qsl(query)), headers=headers,
                          body=urlencode(list(body_pairs)).encode(), remote_addr="127.0.0.1")


def verify(request: WebhookRequest):  # type: ignore[no-untyped-def]
    return verify_plivo_webhook(request, auth_token=TOKEN, public_url=PUBLIC,
                                policy=ForwardingPolicy())


def v3_headers(signature: str = P1_SIGNATURE, nonce: str = NONCE) -> dict[str, str]:
    return {"x-plivo-signature-v3": signature, "x-plivo-signature-v3-nonce": nonce,
            "x-plivo-signature-ma-v3": signature}


def test_a_genuine_v3_webhook_verifies_with_a_request_key_of_the_signed_string() -> None:
    result = verify(webhook(P1_PARAMS, v3_headers()))
    assert result.ok and result.request_key and result.request_key.startswith("plivo:v3:")
    reordered = verify(webhook(list(reversed(P1_PARAMS)), v3_headers()))
    assert reordered.request_key == result.request_key


def test_any_of_several_comma_separated_signatures_may_match() -> None:
    old = sign_v3("OLDTOKEN", "POST", P1_URL, P1_PARAMS, NONCE)
    assert old == "uB/Av1nfSoQev8SfZcDf0OikOVl1jdMmUt7++9tJMOY="
    assert verify(webhook(P1_PARAMS, v3_headers(f"{old},{P1_SIGNATURE}"))).ok
    assert not verify(webhook(P1_PARAMS, v3_headers(f"{old},not-base64!"))).ok


def test_forged_signature_is_refused_naming_the_checked_url() -> None:
    forged = sign_v3("someone-elses-token", "POST", P1_URL, P1_PARAMS, NONCE)
    result = verify(webhook(P1_PARAMS, v3_headers(forged)))
    assert not result.ok and result.reason == f"Invalid Plivo V3 signature for URL: {P1_URL}"


def test_altered_body_is_refused() -> None:
    altered = [(k, "completed" if k == "CallStatus" else v) for k, v in P1_PARAMS]
    assert not verify(webhook(altered, v3_headers())).ok
    assert not verify(webhook([*P1_PARAMS, ("Digits", "1")], v3_headers())).ok


def test_altered_url_is_refused() -> None:
    assert not verify(webhook(P1_PARAMS, v3_headers(), url=P1_URL + "?callId=other")).ok


def test_wrong_nonce_is_refused() -> None:
    assert not verify(webhook(P1_PARAMS, v3_headers(nonce="05429567804466091623"))).ok


def test_the_same_request_under_another_nonce_has_another_request_key() -> None:
    other_nonce = "99999999999999999999"
    signature = sign_v3(TOKEN, "POST", P1_URL, P1_PARAMS, other_nonce)
    first = verify(webhook(P1_PARAMS, v3_headers()))
    second = verify(webhook(P1_PARAMS, v3_headers(signature, other_nonce)))
    assert first.ok and second.ok and first.request_key != second.request_key


def test_v2_is_the_fallback_when_only_v2_headers_are_present() -> None:
    signature = sign_v2(TOKEN, P1_URL, NONCE)
    headers = {"x-plivo-signature-v2": signature, "x-plivo-signature-v2-nonce": NONCE}
    result = verify(webhook(P1_PARAMS, headers))
    assert result.ok and (result.request_key or "").startswith("plivo:v2:")
    headers["x-plivo-signature-v2-nonce"] = "1"
    assert not verify(webhook(P1_PARAMS, headers)).ok


def test_missing_headers_are_refused_with_a_clear_reason() -> None:
    result = verify(webhook(P1_PARAMS, {"x-plivo-signature-v3": P1_SIGNATURE}))
    assert not result.ok and result.reason == "Missing Plivo signature headers (V3 or V2)"


def test_other_methods_are_refused_for_v3() -> None:
    request = webhook(P1_PARAMS, v3_headers())._replace(method="PUT")
    result = verify(request)
    assert not result.ok and "GET and POST only" in (result.reason or "")


def test_a_refusal_names_the_checked_url_without_credentials() -> None:
    request = webhook(P1_PARAMS, v3_headers("AAAA"))
    result = verify_plivo_webhook(request, auth_token=TOKEN, public_url="https://u:secret@agent.example.test/plivo/answer/",
                                  policy=ForwardingPolicy())
    assert not result.ok and "secret" not in (result.reason or "")
    assert result.reason == f"Invalid Plivo V3 signature for URL: {P1_URL}"
