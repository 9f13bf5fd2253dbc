"""X-Twilio-Signature: the SDK's vectors and algorithm, URL candidates, forwarding rules, replay keys.

The official SDK (`twilio.request_validator`, test dependency only) is the oracle: requests in
these tests are signed with it, and its `validate()` bounds what we must accept.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from voicecall.providers.base import Verification, WebhookRequest
from voicecall.providers.twilio.signature import (
    compute_signature,
    signature_url_candidates,
    signing_string,
    twilio_request_key,
    verify_twilio_webhook,
)
from voicecall.security.public_url import ForwardingPolicy, apply_public_url

TOKEN = "test_auth_token_0123456789abcdef"
HOST = "agent.example.test"
ACCOUNT = "AC" + "0" * 32
CALL = "CA" + "1" * 32

Pairs = Sequence[tuple[str, str]]


class MultiDict(dict[str, list[str]]):
    """The multi-valued mapping shape the SDK understands (`getall`, like Flask's MultiDict)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def multi(pairs: Pairs) -> MultiDict:
    result = MultiDict()
    for name, value in pairs:
        result.setdefault(name, []).append(value)
    return result


def sdk_sign(url: str, pairs: Pairs = (), token: str = TOKEN, algorithm: str | None = None) -> str:
    signature: str = RequestValidator(token).compute_signature(url, multi(pairs), algorithm)
    return signature


def sdk_validate(url: str, pairs: Pairs | str, signature: str, token: str = TOKEN) -> bool:
    params = pairs if isinstance(pairs, str) else multi(pairs)
    return bool(RequestValidator(token).validate(url, params, signature))


def make_request(target: str, *, host: str = HOST, params: Pairs = (), body: bytes | None = None,
                 signature: str | None = None, headers: dict[str, str] | None = None,
                 remote: str = "203.0.113.9", method: str = "POST") -> WebhookRequest:
    """A request shaped like the server builds it: url = http://<Host><path>[?<query>]."""
    path, _, query = target.partition("?")
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    all_headers = {"host": host, **(headers or {})}
    if signature is not None:
        all_headers["x-twilio-signature"] = signature
    return WebhookRequest(
        method=method, url=url, path=path, query=dict(parse_qsl(query, keep_blank_values=True)),
        headers=all_headers, body=urlencode(list(params)).encode() if body is None else body,
        remote_addr=remote)


def verify(request: WebhookRequest, *, public_url: str | None = None,
           policy: ForwardingPolicy | None = None, token: str = TOKEN,
           ngrok_loopback_bypass: bool = False, skip_verification: bool = False) -> Verification:
    return verify_twilio_webhook(request, auth_token=token, public_url=public_url,
                                 policy=policy or ForwardingPolicy(),
                                 ngrok_loopback_bypass=ngrok_loopback_bypass,
                                 skip_verification=skip_verification)


# --- signature test vectors -------------------------------------------------------------------

T1_PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"),
             ("From", "+12349013030"), ("To", "+18005551212")]
T1_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
T2_URL = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
T2B_URL = "https://mycompany.com:8443/myapp.php"
T3_URL = "https://agent.example.test/twilio/status?call=42"
T3_PARAMS = [("AccountSid", ACCOUNT), ("CallSid", CALL), ("CallStatus", "completed"),
             ("Direction", "outbound-api"), ("From", "+15005550006"), ("To", "+15551230000"),
             ("CallDuration", "17"), ("ApiVersion", "2010-04-01"), ("SequenceNumber", "3"),
             ("CallbackSource", "call-progress-events"), ("Timestamp", "Tue, 02 Sep 2025 14:00:00 +0000")]
T4_URL = "https://agent.example.test/twilio/gather"
T4_PARAMS = [("AccountSid", ACCOUNT), ("CallSid", CALL), ("SpeechResult", "I would like to book a table."),
             ("Confidence", "0.9124"), ("Language", "en-US"), ("CallStatus", "in-progress"),
             ("Direction", "inbound"), ("From", "+15551230000"), ("To", "+15005550006")]
T5_PARAMS = [("b", "2"), ("b", "1"), ("a", "x")]
T6_BODY = '{"event":"example","CallSid":"CA11111111111111111111111111111111"}'
T6_HASH = "50ef48b9c15064177ea3fd8aec6455c8bd695b275e1c6644925e28365d02da89"
T6_URL = f"https://agent.example.test/twilio/json?bodySHA256={T6_HASH}"
T8_URL = "wss://agent.example.test/twilio/media"

VECTORS = [
    pytest.param("12345", T1_URL, T1_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", id="T1"),
    pytest.param("12345", T2_URL, T1_PARAMS, "EpDEmp1PyjDYp77YxYU3GILBWzE=", id="T2"),
    pytest.param("12345", T2B_URL, T1_PARAMS, "AeayrKX0+rSV4w5++Gk6XtZJxk8=", id="T2b"),
    pytest.param(TOKEN, T3_URL, T3_PARAMS, "OQytFK+umoZ4qgrpGF1RxsmBGzE=", id="T3"),
    pytest.param(TOKEN, T4_URL, T4_PARAMS, "buD8As/EL7rRmrqWBwO69Rc/pGY=", id="T4"),
    pytest.param(TOKEN, T4_URL, T5_PARAMS, "p9lDSogQ3XXvNbu/e7u5J07CK0M=", id="T5"),
    pytest.param(TOKEN, T6_URL, [], "YioNNKhlphN9zbp6dGYRwzlNYIc=", id="T6"),
    pytest.param(TOKEN, T8_URL, [], "4rc0+sZm+1ZTYyG1f8lkWW4gCsM=", id="T8"),
]


@pytest.mark.parametrize(("token", "url", "params", "expected"), VECTORS)
def test_compute_signature_matches_the_documented_vector_and_the_sdk(
        token: str, url: str, params: Pairs, expected: str) -> None:
    assert compute_signature(token, url, params) == expected
    assert sdk_sign(url, params, token) == expected


def test_t1_signed_string_is_the_documented_one() -> None:
    assert signing_string(T1_URL, T1_PARAMS) == (
        "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+12349013030"
        "Digits1234From+12349013030To+18005551212")


def test_t5_multi_valued_parameters_are_sorted_per_name() -> None:
    assert signing_string(T4_URL, T5_PARAMS) == "https://agent.example.test/twilio/gatheraxb1b2"


def test_t6_body_hash_is_the_documented_one() -> None:
    assert hashlib.sha256(T6_BODY.encode()).hexdigest() == T6_HASH


def test_t7_sha256_variant_matches_the_vector_and_the_sdk() -> None:
    expected = "4ttQRRjikW1cZCsz+oHXJsKhCY3fofEadK+F38wnVBw="
    assert compute_signature("shared_secret_xyz", T4_URL, T4_PARAMS, algorithm="sha256") == expected
    assert sdk_sign(T4_URL, T4_PARAMS, "shared_secret_xyz", "HMAC_SHA256") == expected


def test_compute_signature_refuses_an_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        compute_signature(TOKEN, T4_URL, algorithm="md5")  # type: ignore[arg-type]


def test_t2_port_forms_validate_each_other_in_the_sdk_and_here() -> None:
    t1_sig, t2_sig = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "EpDEmp1PyjDYp77YxYU3GILBWzE="
    for url in (T1_URL, T2_URL):
        for sig in (t1_sig, t2_sig):
            assert sdk_validate(url, T1_PARAMS, sig, "12345")
    target = "/myapp.php?foo=1&bar=2"
    for host in ("mycompany.com", "mycompany.com:443"):
        for sig in (t1_sig, t2_sig):
            request = make_request(target, host=host, params=T1_PARAMS, signature=sig)
            assert verify(request, token="12345").ok, (host, sig)


def test_t2b_non_standard_port_fails_in_the_sdk_but_verifies_from_the_host_header_port() -> None:
    sig = "AeayrKX0+rSV4w5++Gk6XtZJxk8="
    assert sdk_validate(T2B_URL, T1_PARAMS, sig, "12345")
    assert not sdk_validate("https://mycompany.com/myapp.php", T1_PARAMS, sig, "12345")
    with_port = make_request("/myapp.php", host="mycompany.com:8443", params=T1_PARAMS, signature=sig)
    assert verify(with_port, token="12345").ok
    without_port = make_request("/myapp.php", host="mycompany.com", params=T1_PARAMS, signature=sig)
    assert not verify(without_port, token="12345").ok


@pytest.mark.parametrize(("token", "url", "params", "signature"),
                         [v for v in VECTORS if v.id in ("T1", "T3", "T4", "T5")])
def test_form_vectors_verify_end_to_end(token: str, url: str, params: Pairs, signature: str) -> None:
    host, _, target = url.removeprefix("https://").partition("/")
    request = make_request("/" + target, host=host, params=params, signature=signature)
    result = verify(request, token=token)
    assert result.ok and result.reason is None
    assert result.request_key is not None and result.request_key.startswith("twilio:req:")


# --- the algorithm against the SDK, property-based --------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
NAMES = st.one_of(TEXT, st.sampled_from(["a", "A", "b", "B", "Digits", "digits", "From", "é", "Ω", ""]))
VALUES = st.one_of(TEXT, st.sampled_from(["", " ", "+1555", "1", "2", "é", "a b"]))
PAIRS = st.lists(st.tuples(NAMES, VALUES), max_size=10)


@settings(max_examples=300, deadline=None)
@given(url=st.one_of(TEXT.map(lambda path: f"https://{HOST}/{path}"), TEXT), pairs=PAIRS,
       extra=st.lists(st.integers(min_value=0, max_value=9), max_size=4))
def test_compute_signature_agrees_with_the_sdk(url: str, pairs: list[tuple[str, str]],
                                               extra: list[int]) -> None:
    pairs = pairs + [pairs[i] for i in extra if i < len(pairs)]  # exact duplicates too
    assert compute_signature(TOKEN, url, pairs) == sdk_sign(url, pairs)
    assert compute_signature(TOKEN, url, pairs, algorithm="sha256") == \
        sdk_sign(url, pairs, algorithm="HMAC_SHA256")


def test_duplicate_values_of_one_name_count_once_as_in_the_sdk() -> None:
    assert signing_string("u", [("a", "1"), ("a", "1"), ("a", "0")]) == "ua0a1"
    assert compute_signature(TOKEN, "u", [("a", "1"), ("a", "1")]) == \
        compute_signature(TOKEN, "u", [("a", "1")])


def test_names_sort_by_codepoint_case_sensitively() -> None:
    assert signing_string("u", [("a", "1"), ("B", "2"), ("_", "3"), ("é", "4")]) == "uB2_3a1é4"


# --- mutating a signed request is never accepted ----------------------------------------------

TARGET_CHARS = string.ascii_letters + string.digits + "-._~/%=&+?"
HOST_CHARS = string.ascii_lowercase + string.digits + "."
SIG_CHARS = string.ascii_letters + string.digits + "+/="


def _substitute(data: st.DataObject, text: str, alphabet: str, start: int = 0) -> str:
    index = data.draw(st.integers(min_value=start, max_value=len(text) - 1))
    char = data.draw(st.sampled_from([c for c in alphabet if c != text[index]]))
    return text[:index] + char + text[index + 1:]


@st.composite
def signed_requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]]]:
    labels = draw(st.lists(st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8),
                           min_size=1, max_size=3))
    path = draw(st.text(TARGET_CHARS.replace("?", ""), max_size=12))
    query = draw(st.none() | st.text(TARGET_CHARS, max_size=12))
    target = "/" + path + (f"?{query}" if query else "")
    pairs = draw(st.lists(st.tuples(st.text(st.characters(codec="utf-8"), min_size=1, max_size=6),
                                    st.text(st.characters(codec="utf-8"), max_size=6)),
                          max_size=6, unique=True))
    return ".".join(labels), target, pairs


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signed=signed_requests(), data=st.data(),
       kind=st.sampled_from(["target", "host", "param", "add", "remove", "signature", "truncate",
                             "other-token", "sha256-header"]))
def test_a_mutated_signed_request_is_never_accepted(
        signed: tuple[str, str, list[tuple[str, str]]], data: st.DataObject, kind: str) -> None:
    host, target, pairs = signed
    signature = sdk_sign(f"https://{host}{target}", pairs)
    original = make_request(target, host=host, params=pairs, signature=signature)
    assert verify(original).ok  # the unmutated request verifies

    headers: dict[str, str] = {}
    if kind == "target" and target == "/":
        target += data.draw(st.sampled_from(TARGET_CHARS.replace("?", "")))
    elif kind == "target":
        target = _substitute(data, target, TARGET_CHARS, start=1)
    elif kind == "host":
        host = _substitute(data, host, HOST_CHARS)
    elif kind == "param":
        if not pairs:
            pairs = [("x", "")]
        else:
            i = data.draw(st.integers(min_value=0, max_value=len(pairs) - 1))
            name, value = pairs[i]
            field = data.draw(st.sampled_from(["name", "value"] if value else ["name"]))
            alphabet = "aZ0 +é&="
            if field == "name":
                name = _substitute(data, name, alphabet)
            else:
                value = _substitute(data, value, alphabet)
            pairs = [*pairs[:i], (name, value), *pairs[i + 1:]]
    elif kind == "add":
        extra = data.draw(st.tuples(st.text(min_size=1, max_size=4), st.text(max_size=4))
                          .filter(lambda pair: pair not in pairs))
        pairs = [*pairs, extra]
    elif kind == "remove":
        pairs = data.draw(st.permutations(pairs))[1:] if pairs else [("x", "")]
    elif kind == "signature":
        signature = _substitute(data, signature, SIG_CHARS)
    elif kind == "truncate":
        signature = signature[:data.draw(st.integers(min_value=0, max_value=len(signature) - 1))]
    elif kind == "other-token":
        signature = sdk_sign(f"https://{host}{target}", pairs, token=TOKEN + "x")
    elif kind == "sha256-header":
        headers["x-twilio-webhooks-signature-settings"] = "key=k,algorithm=HMAC_SHA256"
    mutated = make_request(target, host=host, params=pairs, signature=signature, headers=headers)
    assert not verify(mutated).ok


# --- everything the SDK accepts, we accept (port variants) ------------------------------------

PORTS = ["", ":443", ":80", ":8443"]


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_public_url_mode_accepts_every_port_form_the_sdk_accepts(scheme: str) -> None:
    accepted_by_sdk = 0
    for configured in PORTS:
        public_url = f"{scheme}://pub.example{configured}/voice/webhook"
        for signed_port in PORTS:
            signed_url = f"{scheme}://pub.example{signed_port}/voice/webhook?callId=abc"
            signature = sdk_sign(signed_url, T4_PARAMS)
            request = make_request("/webhook?callId=abc", host="127.0.0.1", params=T4_PARAMS,
                                   signature=signature)
            verification_url = apply_public_url(public_url, request)
            if sdk_validate(verification_url, T4_PARAMS, signature):
                accepted_by_sdk += 1
                assert verify(request, public_url=public_url).ok, (public_url, signed_url)
    assert accepted_by_sdk >= 8  # the grid really exercises the SDK's port normalisation


def test_reconstructed_mode_accepts_every_port_form_the_sdk_accepts() -> None:
    accepted_by_sdk = 0
    for host_port in PORTS:
        for signed_port in PORTS:
            signature = sdk_sign(f"https://{HOST}{signed_port}/voice?callId=1", T4_PARAMS)
            request = make_request("/voice?callId=1", host=HOST + host_port, params=T4_PARAMS,
                                   signature=signature)
            # an app handing the SDK the URL it sees (port included) vs. the portless public one
            for sdk_url in (f"https://{HOST}{host_port}/voice?callId=1", f"https://{HOST}/voice?callId=1"):
                if sdk_validate(sdk_url, T4_PARAMS, signature):
                    accepted_by_sdk += 1
                    assert verify(request).ok, (host_port, signed_port, sdk_url)
    assert accepted_by_sdk >= 8


@settings(max_examples=200, deadline=None)
@given(scheme=st.sampled_from(["https", "http", "wss"]),
       configured=st.none() | st.integers(min_value=1, max_value=65535),
       signed=st.none() | st.sampled_from([80, 443]) | st.integers(min_value=1, max_value=65535),
       path=st.text(TARGET_CHARS.replace("?", ""), max_size=10), pairs=PAIRS)
def test_anything_the_sdk_validates_verifies_here(scheme: str, configured: int | None, signed: int | None,
                                                  path: str, pairs: list[tuple[str, str]]) -> None:
    def port(value: int | None) -> str:
        return f":{value}" if value is not None else ""

    public_url = f"{scheme}://pub.example{port(configured)}/{path}"
    signature = sdk_sign(f"{scheme}://pub.example{port(signed)}/{path}?callId=x", pairs)
    request = make_request("/in?callId=x", host="127.0.0.1:3334", params=pairs, signature=signature)
    if sdk_validate(apply_public_url(public_url, request), pairs, signature):
        assert verify(request, public_url=public_url).ok


# --- URL candidates ---------------------------------------------------------------------------

def test_candidates_order_primary_first_then_port_variants_deduplicated() -> None:
    assert signature_url_candidates("https://h.example/p?x=1", public_url=None,
                                    host_header="h.example:8443") \
        == ["https://h.example/p?x=1", "https://h.example:8443/p?x=1", "https://h.example:443/p?x=1"]
    assert signature_url_candidates("https://h.example:8443/p", public_url="https://h.example:8443/p",
                                    host_header="127.0.0.1:3334") \
        == ["https://h.example:8443/p", "https://h.example/p", "https://h.example:3334/p"]


def test_candidates_handle_ipv6_ports_unlike_the_sdk() -> None:
    # the SDK's remove_port splits the netloc on the first ':' and would try "https://[/p"
    assert signature_url_candidates("https://[2001:db8::1]:8443/p", public_url=None, host_header=None) \
        == ["https://[2001:db8::1]:8443/p", "https://[2001:db8::1]/p"]
    assert signature_url_candidates("https://[2001:db8::1]/p", public_url=None, host_header="[::1]:9") \
        == ["https://[2001:db8::1]/p", "https://[2001:db8::1]:9/p", "https://[2001:db8::1]:443/p"]


def test_candidates_use_port_80_for_non_https_schemes_like_the_sdk() -> None:
    assert signature_url_candidates("wss://h.example/media", public_url=None, host_header=None) \
        == ["wss://h.example/media", "wss://h.example:80/media"]


def test_candidates_ignore_non_numeric_ports_and_relative_urls() -> None:
    assert signature_url_candidates("https://h.example/p", public_url="https://h.example:abc/p",
                                    host_header="h.example:²") \
        == ["https://h.example/p", "https://h.example:443/p"]
    assert signature_url_candidates("/relative", public_url=None, host_header="h:1") == ["/relative"]


# --- verification paths -----------------------------------------------------------------------

def test_missing_signature_header_is_rejected() -> None:
    for request in (make_request("/voice", params=T4_PARAMS),
                    make_request("/voice", params=T4_PARAMS, signature="")):
        result = verify(request)
        assert not result.ok and result.reason == "Missing X-Twilio-Signature header"


def test_truncated_or_padded_signature_is_rejected() -> None:
    signature = sdk_sign(f"https://{HOST}/voice", T4_PARAMS)
    for bad in (signature[:-1], signature[:20], signature + "=", " " + signature):
        assert not verify(make_request("/voice", params=T4_PARAMS, signature=bad)).ok


def test_non_ascii_signature_header_is_rejected_without_raising() -> None:
    assert not verify(make_request("/voice", params=T4_PARAMS, signature="é" * 28)).ok


@pytest.mark.parametrize(("host", "target"), [
    (HOST, "/voice/other"), (HOST, "/voice?callId=2"), (HOST, "/voice?callId=1&x="),
    ("other.example.test", "/voice?callId=1"), ("agent.example.tes", "/voice?callId=1"),
])
def test_signature_for_another_url_is_rejected_with_the_verification_url(host: str, target: str) -> None:
    signature = sdk_sign(f"https://{HOST}/voice?callId=1", T4_PARAMS)
    result = verify(make_request(target, host=host, params=T4_PARAMS, signature=signature))
    assert not result.ok
    assert result.reason == f"Invalid signature for URL: https://{host}{target}"


def test_http_signature_is_rejected_when_the_public_scheme_is_https() -> None:
    signature = sdk_sign(f"http://{HOST}/voice", T4_PARAMS)
    assert not verify(make_request("/voice", params=T4_PARAMS, signature=signature)).ok


def test_failure_reason_never_reveals_the_token_or_the_expected_signature() -> None:
    expected = sdk_sign(f"https://{HOST}/voice", T4_PARAMS)
    result = verify(make_request("/voice", params=T4_PARAMS, signature="A" * 28))
    assert not result.ok and result.reason is not None
    assert TOKEN not in result.reason and expected not in result.reason


def test_ngrok_urls_get_a_hint_in_the_reason() -> None:
    ngrok = verify(make_request("/voice", host="abc.ngrok-free.app", params=T4_PARAMS, signature="A" * 28))
    assert ngrok.reason is not None and "ngrok" in ngrok.reason.removeprefix(
        "Invalid signature for URL: https://abc.ngrok-free.app/voice")
    legacy = verify(make_request("/voice", host="abc.ngrok.io", params=T4_PARAMS, signature="A" * 28))
    assert legacy.reason is not None and "publicUrl" in legacy.reason
    plain = verify(make_request("/voice", params=T4_PARAMS, signature="A" * 28))
    assert plain.reason == f"Invalid signature for URL: https://{HOST}/voice"


def test_blank_form_values_are_signed() -> None:
    pairs = [("Digits", ""), ("CallSid", CALL)]
    signature = sdk_sign(f"https://{HOST}/voice", pairs)
    assert verify(make_request("/voice", params=pairs, signature=signature)).ok
    assert not verify(make_request("/voice", params=[("CallSid", CALL)], signature=signature)).ok


# --- JSON bodies (bodySHA256) -----------------------------------------------------------------

def _json_request(body: str, *, query_hash: str = T6_HASH, signature: str | None = None) -> WebhookRequest:
    target = f"/twilio/json?bodySHA256={query_hash}"
    signature = signature or sdk_sign(f"https://{HOST}{target}")
    return make_request(target, body=body.encode(), signature=signature,
                        headers={"content-type": "application/json"})


def test_json_body_with_matching_body_sha256_verifies_on_the_url_alone() -> None:
    result = verify(_json_request(T6_BODY, signature="YioNNKhlphN9zbp6dGYRwzlNYIc="))
    assert result.ok
    assert sdk_validate(T6_URL, T6_BODY, "YioNNKhlphN9zbp6dGYRwzlNYIc=")


def test_json_body_tampered_after_signing_is_rejected() -> None:
    tampered = T6_BODY.replace("example", "exampl3")
    assert not sdk_validate(T6_URL, tampered, "YioNNKhlphN9zbp6dGYRwzlNYIc=")
    result = verify(_json_request(tampered, signature="YioNNKhlphN9zbp6dGYRwzlNYIc="))
    assert not result.ok and result.reason == "bodySHA256 does not match the request body"


def test_json_body_hash_must_be_lowercase_hex_as_in_the_sdk() -> None:
    upper = T6_HASH.upper()
    signature = sdk_sign(f"https://{HOST}/twilio/json?bodySHA256={upper}")
    assert not sdk_validate(f"https://{HOST}/twilio/json?bodySHA256={upper}", T6_BODY, signature)
    assert not verify(_json_request(T6_BODY, query_hash=upper, signature=signature)).ok


def test_json_signature_that_also_covers_params_is_rejected() -> None:
    pairs = list(json.loads(T6_BODY).items())
    signature = sdk_sign(T6_URL, pairs)
    assert not verify(_json_request(T6_BODY, signature=signature)).ok


# --- signature settings header ----------------------------------------------------------------

def test_shared_key_sha256_signatures_are_rejected_with_a_clear_reason() -> None:
    signature = sdk_sign(f"https://{HOST}/voice", T4_PARAMS, algorithm="HMAC_SHA256")
    request = make_request("/voice", params=T4_PARAMS, signature=signature, headers={
        "x-twilio-webhooks-signature-settings": "key=webhooks_sharedkey_0001,algorithm=HMAC_SHA256"})
    result = verify(request)
    assert not result.ok and result.reason is not None
    assert "HMAC_SHA256" in result.reason and "not supported" in result.reason


def test_unknown_signature_algorithm_is_rejected() -> None:
    signature = sdk_sign(f"https://{HOST}/voice", T4_PARAMS)
    request = make_request("/voice", params=T4_PARAMS, signature=signature,
                           headers={"x-twilio-webhooks-signature-settings": "algorithm=HMAC_MD5"})
    result = verify(request)
    assert not result.ok and result.reason is not None and "HMAC_MD5" in result.reason


@pytest.mark.parametrize("settings_header", ["key=k,algorithm=HMAC_SHA1", "key=k", "", "algorithm=hmac_sha1"])
def test_settings_header_naming_sha1_or_no_algorithm_keeps_the_auth_token_scheme(
        settings_header: str) -> None:
    signature = sdk_sign(f"https://{HOST}/voice", T4_PARAMS)
    request = make_request("/voice", params=T4_PARAMS, signature=signature,
                           headers={"x-twilio-webhooks-signature-settings": settings_header})
    assert verify(request).ok


# --- publicUrl: its path, the request's query -------------------------------------------------

def test_public_url_path_is_kept_and_the_request_query_applied() -> None:
    public_url = "https://pub.example/voice/webhook"
    signature = sdk_sign("https://pub.example/voice/webhook?callId=abc&type=status", T3_PARAMS)
    # the reverse proxy rewrote /voice/webhook to /hook and the Host to the local listener
    request = make_request("/hook?callId=abc&type=status", host="127.0.0.1:3334", params=T3_PARAMS,
                           signature=signature)
    assert verify(request, public_url=public_url).ok
    other_query = make_request("/hook?callId=abd&type=status", host="127.0.0.1:3334", params=T3_PARAMS,
                               signature=signature)
    assert not verify(other_query, public_url=public_url).ok


def test_public_url_mode_rejects_the_request_path_variant_of_older_releases() -> None:
    public_url = "https://pub.example/voice/webhook"
    signature = sdk_sign("https://pub.example/hook?callId=abc", T3_PARAMS)
    request = make_request("/hook?callId=abc", host="127.0.0.1:3334", params=T3_PARAMS, signature=signature)
    result = verify(request, public_url=public_url)
    assert not result.ok
    assert result.reason == "Invalid signature for URL: https://pub.example/voice/webhook?callId=abc"


def test_public_url_mode_ignores_forwarding_headers() -> None:
    signature = sdk_sign("https://pub.example/voice", T4_PARAMS)
    request = make_request("/voice", host="127.0.0.1", params=T4_PARAMS, signature=signature,
                           headers={"x-forwarded-host": "evil.example", "x-forwarded-proto": "http"})
    policy = ForwardingPolicy(trust_forwarding_headers=True)
    assert verify(request, public_url="https://pub.example/voice", policy=policy).ok


# --- forwarding headers (webhookSecurity) -----------------------------------------------------

FORWARDED = {"x-forwarded-host": "pub.example", "x-forwarded-proto": "https"}


def _forwarded_request(remote: str = "10.0.0.5", headers: dict[str, str] | None = None,
                       signature: str | None = None) -> WebhookRequest:
    signature = signature or sdk_sign("https://pub.example/voice?callId=1", T4_PARAMS)
    return make_request("/voice?callId=1", host="127.0.0.1:3334", params=T4_PARAMS, signature=signature,
                        headers=headers or FORWARDED, remote=remote)


def test_forwarded_host_is_ignored_by_default() -> None:
    assert not verify(_forwarded_request()).ok


def test_forwarded_host_is_honoured_with_trust_forwarding_headers() -> None:
    assert verify(_forwarded_request(), policy=ForwardingPolicy(trust_forwarding_headers=True)).ok


def test_forwarded_host_is_honoured_only_when_in_allowed_hosts() -> None:
    assert verify(_forwarded_request(), policy=ForwardingPolicy(allowed_hosts=("pub.example",))).ok
    assert not verify(_forwarded_request(), policy=ForwardingPolicy(allowed_hosts=("other.example",))).ok


@pytest.mark.parametrize(("remote", "ok"), [("10.0.0.5", True), ("::ffff:10.0.0.5", True),
                                            ("10.0.0.6", False), ("127.0.0.1", False)])
def test_forwarded_host_is_honoured_only_from_trusted_proxy_ips(remote: str, ok: bool) -> None:
    policy = ForwardingPolicy(trust_forwarding_headers=True, trusted_proxy_ips=("10.0.0.5",))
    assert verify(_forwarded_request(remote=remote), policy=policy).ok is ok


def test_forwarded_proto_http_is_used_when_trusted() -> None:
    signature = sdk_sign("http://pub.example/voice?callId=1", T4_PARAMS)
    request = _forwarded_request(headers={"x-forwarded-host": "pub.example", "x-forwarded-proto": "http"},
                                 signature=signature)
    assert verify(request, policy=ForwardingPolicy(trust_forwarding_headers=True)).ok
    assert not verify(request).ok


# --- ngrok loopback rule ----------------------------------------------------------------------

NGROK = {"x-forwarded-host": "abc.ngrok-free.app", "x-forwarded-proto": "https"}


def _ngrok_request(remote: str, signature: str | None = None) -> WebhookRequest:
    signature = signature or sdk_sign("https://abc.ngrok-free.app/voice?callId=1", T4_PARAMS)
    return _forwarded_request(remote=remote, headers=NGROK, signature=signature)


@pytest.mark.parametrize("remote", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_ngrok_bypass_trusts_forwarding_headers_from_loopback(remote: str) -> None:
    assert verify(_ngrok_request(remote), ngrok_loopback_bypass=True).ok
    assert not verify(_ngrok_request(remote)).ok  # only with the rule on


@pytest.mark.parametrize("remote", ["10.0.0.1", "::ffff:10.0.0.1", "203.0.113.9", ""])
def test_ngrok_bypass_does_nothing_for_non_loopback_remotes(remote: str) -> None:
    assert not verify(_ngrok_request(remote), ngrok_loopback_bypass=True).ok


def test_ngrok_bypass_still_requires_a_valid_signature() -> None:
    result = verify(_ngrok_request("127.0.0.1", signature="A" * 28), ngrok_loopback_bypass=True)
    assert not result.ok and result.reason is not None and "ngrok" in result.reason


def test_ngrok_bypass_respects_the_trusted_proxy_gate() -> None:
    policy = ForwardingPolicy(trusted_proxy_ips=("10.0.0.5",))
    assert not verify(_ngrok_request("127.0.0.1"), policy=policy, ngrok_loopback_bypass=True).ok


# --- replay keys ------------------------------------------------------------------------------

def _key(request: WebhookRequest, **kwargs: object) -> str:
    result = verify(request, **kwargs)  # type: ignore[arg-type]
    assert result.ok, result.reason
    assert result.request_key is not None
    return result.request_key


def _signed(target: str, pairs: Pairs, *, host: str = HOST, body: bytes | None = None) -> WebhookRequest:
    return make_request(target, host=host, params=pairs, body=body,
                        signature=sdk_sign(f"https://{host}{target}", pairs))


def test_replay_key_is_stable_for_identical_requests() -> None:
    first = _key(_signed("/voice?callId=1", T4_PARAMS))
    assert first == _key(_signed("/voice?callId=1", T4_PARAMS))
    assert first.startswith("twilio:req:") and len(first) == len("twilio:req:") + 64
    assert TOKEN not in first


def test_replay_key_differs_for_different_requests() -> None:
    keys = {
        _key(_signed("/voice?callId=1", T4_PARAMS)),
        _key(_signed("/voice?callId=2", T4_PARAMS)),
        _key(_signed("/voice?callId=1", [*T4_PARAMS, ("Digits", "1")])),
        _key(_signed("/voice?callId=1", T4_PARAMS[:-1])),
        _key(_signed("/voice?callId=1", T4_PARAMS, host="other.example.test")),
    }
    assert len(keys) == 5


def test_replay_key_is_the_documented_hash_of_the_signed_string_and_signature() -> None:
    signature = sdk_sign(f"https://{HOST}/voice", T4_PARAMS)
    expected = "twilio:req:" + hashlib.sha256(
        f"{signing_string(f'https://{HOST}/voice', T4_PARAMS)}\n{signature}".encode()).hexdigest()
    assert twilio_request_key(f"https://{HOST}/voice", T4_PARAMS, signature) == expected
    assert _key(make_request("/voice", params=T4_PARAMS, signature=signature)) == expected


def test_replay_key_uses_the_candidate_url_that_matched() -> None:
    signature = sdk_sign(f"https://{HOST}:8443/voice", T4_PARAMS)
    request = make_request("/voice", host=f"{HOST}:8443", params=T4_PARAMS, signature=signature)
    assert _key(request) == twilio_request_key(f"https://{HOST}:8443/voice", T4_PARAMS, signature)
    assert _key(request) == _key(make_request("/voice", host=f"{HOST}:8443", params=T4_PARAMS,
                                              signature=signature))


def test_reencoded_bodies_that_still_verify_share_the_replay_key() -> None:
    """Twilio's signed string has no separators and ignores repeats, so some altered bodies still
    verify; they must all map to the original key, or a captured request could be replayed."""
    pairs = [("a", "b"), ("c", "d")]
    url = f"https://{HOST}/voice?x=1"
    signature = sdk_sign(url, pairs)
    original = _key(make_request("/voice?x=1", params=pairs, signature=signature))
    variants = [
        (pairs[::-1], "/voice?x=1"),                          # reordered
        ([*pairs, ("a", "b")], "/voice?x=1"),                 # exact duplicate pair
        ([*pairs, ("", "")], "/voice?x=1"),                   # empty `=` pair
        ([("a", "b"), ("cd", "")], "/voice?x=1"),             # name/value boundary moved
        ([("a", "bc"), ("d", "")], "/voice?x=1"),             # boundary between two pairs moved
        ([("b", ""), ("c", "d")], "/voice?x=1a"),             # URL/param boundary moved
    ]
    for variant_pairs, target in variants:
        request = make_request(target, params=variant_pairs, signature=signature)
        assert sdk_validate(f"https://{HOST}{target}", variant_pairs, signature)  # the SDK accepts it too
        assert _key(request) == original, (variant_pairs, target)


def test_form_body_with_raw_extra_separators_shares_the_replay_key() -> None:
    pairs = [("a", "b"), ("c", "d")]
    signature = sdk_sign(f"https://{HOST}/voice", pairs)
    plain = _key(make_request("/voice", params=pairs, signature=signature))
    assert _key(make_request("/voice", body=b"a=b&&c=%64", signature=signature)) == plain


# --- skip mode --------------------------------------------------------------------------------

def test_skip_mode_accepts_unsigned_requests_with_a_method_url_body_key() -> None:
    request = make_request("/voice?callId=1", params=T4_PARAMS)
    result = verify(request, skip_verification=True)
    expected = "twilio:skip:" + hashlib.sha256(
        b"POST\n" + request.url.encode() + b"\n" + request.body).hexdigest()
    assert result.ok and result.request_key == expected
    assert verify(make_request("/voice?callId=1", params=T4_PARAMS), skip_verification=True) == result
    other = verify(make_request("/voice?callId=1", params=T4_PARAMS[:-1]), skip_verification=True)
    assert other.request_key != result.request_key
