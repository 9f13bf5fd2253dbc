"""Public URL reconstruction: host normalisation, forwarding trust, publicUrl overlay
(docs/decisions.md D28, D29)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicecall.providers.base import WebhookRequest
from voicecall.security.public_url import (
    ForwardingPolicy,
    apply_public_url,
    is_loopback,
    normalize_host,
    normalize_ip,
    reconstruct_webhook_url,
    request_query_string,
    request_target,
    trusts_forwarding,
)


def make_request(target: str = "/voice/webhook", *, host: str | None = "agent.example.test",
                 headers: dict[str, str] | None = None, remote: str = "203.0.113.9") -> WebhookRequest:
    """A request shaped like the server builds it: url = http://<Host><path>[?<query>]."""
    path, _, query = target.partition("?")
    url = f"http://{host if host is not None else 'localhost'}{path}" + (f"?{query}" if query else "")
    all_headers = dict(headers or {})
    if host is not None:
        all_headers["host"] = host
    return WebhookRequest(method="POST", url=url, path=path,
                          query=dict(parse_qsl(query, keep_blank_values=True)),
                          headers=all_headers, body=b"", remote_addr=remote)


# --- normalize_host ---------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("Example.COM", "example.com"),
    ("example.com:8443", "example.com"),
    ("example.com:", "example.com"),
    ("  example.com  ", "example.com"),
    ("1.2.3.4:80", "1.2.3.4"),
    ("localhost", "localhost"),
    ("a-b.c-d.example", "a-b.c-d.example"),
    ("[2001:DB8::1]:443", "[2001:db8::1]"),
    ("[::1]", "[::1]"),
    ("[::ffff:127.0.0.1]:80", "[::ffff:127.0.0.1]"),
    ("x" * 63 + ".example", "x" * 63 + ".example"),
])
def test_normalize_host_accepts_valid_hosts_lowercased_without_port(value: str, expected: str) -> None:
    assert normalize_host(value) == expected


@pytest.mark.parametrize("value", [
    None, "", "   ",
    "user@evil.example", "evil.example@good.example", "good.example:80@evil.example",
    "-bad.example", "bad-.example", "a..b", ".example", "example.com.", "exa_mple.com",
    "exa mple.com", "example.com/path", "example.com?x", "x" * 64 + ".example",
    "exämple.com", "\u212aexample.com",  # Kelvin sign lower-cases to ASCII 'k'
    "[::1", "[::1]x", "[::1]:abc", "[not-an-ip]", "[1.2.3.4]", "[fe80::1%eth0]", "::1",
])
def test_normalize_host_rejects_invalid_values(value: str | None) -> None:
    assert normalize_host(value) is None


def test_normalize_host_limits_the_whole_name_to_253_characters() -> None:
    label = "a" * 63
    name_253 = ".".join([label, label, label, "a" * 61])
    assert len(name_253) == 253
    assert normalize_host(name_253) == name_253
    assert normalize_host(name_253 + "a") is None


# --- IP handling ------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b"), [
    ("::ffff:1.2.3.4", "1.2.3.4"),
    ("::FFFF:1.2.3.4", "1.2.3.4"),
    ("2001:db8:0:0:0:0:0:1", "2001:db8::1"),
    ("2001:DB8::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
])
def test_normalize_ip_makes_equivalent_spellings_equal(a: str, b: str) -> None:
    assert normalize_ip(a) == normalize_ip(b)


def test_normalize_ip_keeps_distinct_addresses_distinct() -> None:
    assert normalize_ip("::ffff:1.2.3.4") != normalize_ip("1.2.3.5")
    assert normalize_ip("not-an-ip") == "not-an-ip"


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.8.9.10", "::1", "0:0:0:0:0:0:0:1",
                                  "::ffff:127.0.0.1", "[::1]"])
def test_is_loopback_true_for_loopback_addresses(addr: str) -> None:
    assert is_loopback(addr)


@pytest.mark.parametrize("addr", ["10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1", "", "localhost",
                                  "garbage", "128.0.0.1"])
def test_is_loopback_false_otherwise(addr: str) -> None:
    assert not is_loopback(addr)


def test_trusts_forwarding_needs_allowed_hosts_or_the_trust_flag() -> None:
    assert not trusts_forwarding(ForwardingPolicy(), "10.0.0.1")
    assert trusts_forwarding(ForwardingPolicy(trust_forwarding_headers=True), "10.0.0.1")
    assert trusts_forwarding(ForwardingPolicy(allowed_hosts=("pub.example",)), "10.0.0.1")


def test_trusts_forwarding_ignores_allowed_hosts_that_normalise_to_nothing() -> None:
    assert not trusts_forwarding(ForwardingPolicy(allowed_hosts=("bad host", "a@b")), "10.0.0.1")


@pytest.mark.parametrize(("proxies", "remote", "trusted"), [
    (("10.0.0.5",), "10.0.0.5", True),
    (("10.0.0.5",), "::ffff:10.0.0.5", True),
    (("::ffff:10.0.0.5",), "10.0.0.5", True),
    (("2001:db8::5",), "2001:DB8:0::5", True),
    (("10.0.0.5",), "10.0.0.6", False),
    (("10.0.0.5",), "", False),
    (("10.0.0.5",), "garbage", False),
])
def test_trusts_forwarding_gates_on_trusted_proxy_ips_with_normalised_addresses(
        proxies: tuple[str, ...], remote: str, trusted: bool) -> None:
    policy = ForwardingPolicy(trust_forwarding_headers=True, trusted_proxy_ips=proxies)
    assert trusts_forwarding(policy, remote) is trusted


# --- request target ---------------------------------------------------------------------------

def test_request_target_is_path_and_raw_query_verbatim() -> None:
    request = make_request("/voice/webhook?callId=a%20b&x=1+2&x=3&blank=")
    assert request_target(request) == "/voice/webhook?callId=a%20b&x=1+2&x=3&blank="
    assert request_query_string(request) == "callId=a%20b&x=1+2&x=3&blank="


@pytest.mark.parametrize("host", ["evil.example/other?x=1", "evil.example?a=b", "h#frag", ""])
def test_request_target_is_not_confused_by_a_hostile_host_header(host: str) -> None:
    request = make_request("/voice/webhook?callId=abc", host=host)
    assert request_target(request) == "/voice/webhook?callId=abc"


def test_request_target_without_query_has_no_question_mark() -> None:
    assert request_target(make_request("/voice/webhook")) == "/voice/webhook"
    assert request_query_string(make_request("/voice/webhook")) == ""


# --- reconstruct_webhook_url ------------------------------------------------------------------

FORWARDED = {"x-forwarded-proto": "http", "x-forwarded-host": "pub.example"}


def test_reconstruct_defaults_to_https_and_the_host_header_without_port() -> None:
    request = make_request("/voice/webhook?callId=1", host="Agent.Example.Test:3334", headers=FORWARDED)
    assert reconstruct_webhook_url(request, ForwardingPolicy()) == \
        "https://agent.example.test/voice/webhook?callId=1"


def test_reconstruct_uses_forwarding_headers_when_trusted() -> None:
    request = make_request("/voice/webhook", host="127.0.0.1:3334", headers=FORWARDED)
    policy = ForwardingPolicy(trust_forwarding_headers=True)
    assert reconstruct_webhook_url(request, policy) == "http://pub.example/voice/webhook"


@pytest.mark.parametrize(("proto", "expected"), [
    ("HTTP", "http"), ("https", "https"), ("ftp", "https"), ("", "https"), ("http, https", "http"),
    ("javascript", "https"),
])
def test_reconstruct_only_takes_http_or_https_from_x_forwarded_proto(proto: str, expected: str) -> None:
    request = make_request(headers={"x-forwarded-proto": proto})
    url = reconstruct_webhook_url(request, ForwardingPolicy(trust_forwarding_headers=True))
    assert url.startswith(expected + "://")


def test_reconstruct_uses_only_the_first_comma_separated_forwarded_host() -> None:
    request = make_request(headers={"x-forwarded-host": "pub.example:443, inner.proxy"})
    url = reconstruct_webhook_url(request, ForwardingPolicy(trust_forwarding_headers=True))
    assert url == "https://pub.example/voice/webhook"


def test_reconstruct_consults_forwarded_host_headers_in_order() -> None:
    policy = ForwardingPolicy(trust_forwarding_headers=True)
    both = make_request(headers={"x-original-host": "original.example", "ngrok-forwarded-host": "ng.example",
                                 "x-forwarded-host": "forwarded.example"})
    assert reconstruct_webhook_url(both, policy) == "https://forwarded.example/voice/webhook"
    later = make_request(headers={"x-original-host": "original.example",
                                  "ngrok-forwarded-host": "ng.example"})
    assert reconstruct_webhook_url(later, policy) == "https://original.example/voice/webhook"
    ngrok = make_request(headers={"ngrok-forwarded-host": "abc.ngrok-free.app"})
    assert reconstruct_webhook_url(ngrok, policy) == "https://abc.ngrok-free.app/voice/webhook"


def test_reconstruct_skips_an_invalid_forwarded_host_for_the_next_header() -> None:
    request = make_request(headers={"x-forwarded-host": "evil@x", "x-original-host": "ok.example"})
    url = reconstruct_webhook_url(request, ForwardingPolicy(trust_forwarding_headers=True))
    assert url == "https://ok.example/voice/webhook"


def test_reconstruct_filters_forwarded_hosts_through_allowed_hosts() -> None:
    policy = ForwardingPolicy(allowed_hosts=("PUB.example:443",))
    allowed = make_request(host="127.0.0.1", headers={"x-forwarded-host": "pub.example"})
    assert reconstruct_webhook_url(allowed, policy) == "https://pub.example/voice/webhook"
    other = make_request(host="127.0.0.1", headers={"x-forwarded-host": "evil.example"})
    assert reconstruct_webhook_url(other, policy) == "https://127.0.0.1/voice/webhook"
    second = make_request(host="127.0.0.1", headers={"x-forwarded-host": "evil.example",
                                                       "x-original-host": "pub.example"})
    assert reconstruct_webhook_url(second, policy) == "https://pub.example/voice/webhook"


def test_reconstruct_ignores_forwarding_headers_from_an_untrusted_proxy() -> None:
    policy = ForwardingPolicy(trust_forwarding_headers=True, trusted_proxy_ips=("10.0.0.5",))
    trusted = make_request(host="internal:80", headers=FORWARDED, remote="::ffff:10.0.0.5")
    assert reconstruct_webhook_url(trusted, policy) == "http://pub.example/voice/webhook"
    stranger = make_request(host="internal:80", headers=FORWARDED, remote="10.0.0.6")
    assert reconstruct_webhook_url(stranger, policy) == "https://internal/voice/webhook"


def test_reconstruct_force_trust_keeps_the_proxy_gate_and_host_filter() -> None:
    request = make_request(host="127.0.0.1:3334", headers=FORWARDED, remote="127.0.0.1")
    assert reconstruct_webhook_url(request, ForwardingPolicy(), force_trust=True) == \
        "http://pub.example/voice/webhook"
    gated = ForwardingPolicy(trusted_proxy_ips=("10.0.0.5",))
    assert reconstruct_webhook_url(request, gated, force_trust=True) == \
        "https://127.0.0.1/voice/webhook"
    filtered = ForwardingPolicy(allowed_hosts=("other.example",))  # the proto is still trusted
    assert reconstruct_webhook_url(request, filtered, force_trust=True) == \
        "http://127.0.0.1/voice/webhook"


def test_reconstruct_keeps_ipv6_brackets() -> None:
    request = make_request(host="[2001:DB8::1]:3334")
    assert reconstruct_webhook_url(request, ForwardingPolicy()) == "https://[2001:db8::1]/voice/webhook"


def test_reconstruct_without_host_header_falls_back_to_the_url_host() -> None:
    request = make_request(host=None)
    assert reconstruct_webhook_url(request, ForwardingPolicy()) == "https://localhost/voice/webhook"


@pytest.mark.parametrize("host", ["user@evil.example", "[::1", "bad host", "a/b", "?", "", "\x00"])
def test_reconstruct_with_a_malformed_host_yields_an_empty_host(host: str) -> None:
    request = make_request("/voice/webhook?callId=1", host=host)
    assert reconstruct_webhook_url(request, ForwardingPolicy()) == "https:///voice/webhook?callId=1"


@settings(max_examples=200, deadline=None)
@given(host=st.text(max_size=40), forwarded=st.text(max_size=40), proto=st.text(max_size=10),
       remote=st.text(max_size=20))
def test_reconstruct_never_raises_and_keeps_the_target(host: str, forwarded: str, proto: str,
                                                        remote: str) -> None:
    request = make_request("/voice/webhook?callId=1", host=host, remote=remote,
                           headers={"x-forwarded-host": forwarded, "x-forwarded-proto": proto})
    for policy in (ForwardingPolicy(), ForwardingPolicy(trust_forwarding_headers=True),
                   ForwardingPolicy(allowed_hosts=(forwarded,), trusted_proxy_ips=(remote,))):
        url = reconstruct_webhook_url(request, policy)
        assert url.startswith(("https://", "http://"))
        assert url.endswith("/voice/webhook?callId=1")
        host_part = url[url.index("://") + 3:url.index("/voice/webhook")]
        assert host_part == "" or normalize_host(host_part) == host_part  # valid, lower-case, no port


# --- apply_public_url -------------------------------------------------------------------------

def test_apply_public_url_keeps_scheme_host_port_and_path_and_applies_the_query() -> None:
    request = make_request("/rewritten/by/proxy?callId=abc&type=status", host="127.0.0.1:3334")
    assert apply_public_url("https://pub.example:8443/voice/webhook", request) == \
        "https://pub.example:8443/voice/webhook?callId=abc&type=status"


def test_apply_public_url_replaces_the_public_urls_own_query_and_fragment() -> None:
    request = make_request("/voice/webhook?token=t&callId=abc")
    assert apply_public_url("https://pub.example/voice/webhook?token=t#frag", request) == \
        "https://pub.example/voice/webhook?token=t&callId=abc"


def test_apply_public_url_without_request_query_has_no_question_mark() -> None:
    assert apply_public_url("https://pub.example/voice/webhook?x=1", make_request("/w")) == \
        "https://pub.example/voice/webhook"
