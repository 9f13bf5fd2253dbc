"""Telnyx Ed25519 webhook verification: the reference vector, every key form, refusals, replay
keys, and agreement with PyNaCl and with the official `telnyx` SDK's verifier."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey, VerifyKey
from telnyx.lib.webhook_verification import WebhookVerificationError, verify_webhook_signature

from voicecall.providers.base import WebhookRequest
from voicecall.providers.telnyx.signature import (
    decode_signature,
    load_public_key,
    telnyx_request_key,
    verify_telnyx_webhook,
)
from voicecall.testing.telnyx.signing import TestKey

# Reference vector (provider-protocols §5.3), computed with the official SDK.
SEED = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
PUBLIC_B64 = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
TS = "1767225600"
BODY = (b'{"data":{"event_type":"call.initiated","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",'
        b'"occurred_at":"2026-01-01T00:00:00.000000Z","payload":{"call_control_id":"v3:test-call-'
        b'control-id","call_leg_id":"428c31b6-7af4-4bcb-b7f5-5013ef9657c1","call_session_id":"428c'
        b'31b6-abf3-3bc1-b7f4-5013ef9657c1","client_state":null,"connection_id":"7267xxxxxxxxxxxxxx",'
        b'"direction":"incoming","from":"+15551230000","to":"+15005550006","start_time":"2026-01-01'
        b'T00:00:00.000000Z","state":"parked"},"record_type":"event"},"meta":{"attempt":1,'
        b'"delivered_to":"https://agent.example.test/telnyx/webhook"}}')
SIGNATURE = "4FRpC/g94H82buVRUProMU7LvMu6nttF5xY/tc95NNQUqmeAmo2GbSjhxKVTOR1FyFRaRMbphyZ5Z0ZEeno4AQ=="


def request(body: bytes, headers: dict[str, str]) -> WebhookRequest:
    return WebhookRequest(method="POST", url="http://127.0.0.1/voice/webhook", path="/voice/webhook",
                          query={}, headers={k.lower(): v for k, v in headers.items()}, body=body,
                          remote_addr="127.0.0.1")


def signed(body: bytes = BODY, ts: str = TS, sig: str = SIGNATURE) -> WebhookRequest:
    return request(body, {"telnyx-signature-ed25519": sig, "telnyx-timestamp": ts})


def verify(req: WebhookRequest, *, at: float = int(TS) + 10, key: str = PUBLIC_B64) -> Any:
    return verify_telnyx_webhook(req, public_key=load_public_key(key), now=lambda: at)


def test_the_reference_vector_verifies_and_yields_a_telnyx_request_key() -> None:
    result = verify(signed())
    assert result.ok and result.request_key is not None and result.request_key.startswith("telnyx:")


def test_the_test_key_from_the_reference_seed_signs_the_reference_vector() -> None:
    key = TestKey.from_seed(SEED)
    assert key.public_key_base64 == PUBLIC_B64
    assert key.sign(TS, BODY) == SIGNATURE


@pytest.mark.parametrize("skew", [300, -300])
def test_a_timestamp_exactly_300_s_away_is_still_accepted(skew: int) -> None:
    assert verify(signed(), at=int(TS) + skew).ok


@pytest.mark.parametrize("skew", [301, -301, 86_400])
def test_a_timestamp_more_than_300_s_away_is_refused_as_stale(skew: int) -> None:
    result = verify(signed(), at=int(TS) + skew)
    assert not result.ok and result.request_key is None
    assert "Timestamp too old or too new" in (result.reason or "")


def test_a_body_changed_after_signing_is_refused() -> None:
    tampered = BODY.replace(b"+15551230000", b"+15551230001")
    result = verify(signed(body=tampered))
    assert not result.ok and "Invalid signature" in (result.reason or "")


def test_a_signature_made_with_another_key_is_refused() -> None:
    other = TestKey.generate()
    result = verify(signed(sig=other.sign(TS, BODY)))
    assert not result.ok and "Invalid signature" in (result.reason or "")


def test_the_right_signature_checked_against_the_wrong_public_key_is_refused() -> None:
    result = verify(signed(), key=TestKey.generate().public_key_base64)
    assert not result.ok and "Invalid signature" in (result.reason or "")


def test_a_timestamp_changed_after_signing_is_refused() -> None:
    result = verify(signed(ts=str(int(TS) + 1)), at=int(TS))
    assert not result.ok and "Invalid signature" in (result.reason or "")


@pytest.mark.parametrize("headers", [
    {}, {"telnyx-signature-ed25519": SIGNATURE}, {"telnyx-timestamp": TS},
    {"telnyx-signature-ed25519": " ", "telnyx-timestamp": TS},
])
def test_missing_headers_are_refused_by_name(headers: dict[str, str]) -> None:
    result = verify(request(BODY, headers))
    assert not result.ok and result.reason == "Missing signature or timestamp header"


@pytest.mark.parametrize("ts", ["1767225600.5", "-1767225600", "soon", "\uff11\uff17\uff16\uff17"])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(ts: str) -> None:
    result = verify(signed(ts=ts))
    assert not result.ok and result.reason == "Invalid timestamp header"


@pytest.mark.parametrize("sig", ["not base64!", base64.b64encode(b"x" * 63).decode(), "AAAA"])
def test_a_malformed_signature_is_refused_without_raising(sig: str) -> None:
    result = verify(signed(sig=sig))
    assert not result.ok and (result.reason or "").startswith("Invalid signature")


def test_without_a_public_key_verification_fails_with_a_hint() -> None:
    result = verify_telnyx_webhook(signed(), public_key=None, now=lambda: int(TS))
    assert not result.ok and "telnyx.publicKey" in (result.reason or "")


def test_skipped_verification_still_gives_a_replay_key_from_the_request() -> None:
    result = verify_telnyx_webhook(request(BODY, {}), public_key=None, skip_verification=True)
    again = verify_telnyx_webhook(request(BODY, {}), public_key=None, skip_verification=True)
    other = verify_telnyx_webhook(request(BODY + b" ", {}), public_key=None, skip_verification=True)
    assert result.ok and result.request_key == again.request_key != other.request_key
    assert (result.request_key or "").startswith("telnyx:skip:")


def test_base64url_and_unpadded_spellings_of_a_signature_give_the_same_request_key() -> None:
    url_form = SIGNATURE.replace("+", "-").replace("/", "_").rstrip("=")
    plain, alt = verify(signed()), verify(signed(sig=url_form))
    assert plain.ok and alt.ok and plain.request_key == alt.request_key


def test_the_request_key_covers_timestamp_body_and_signature() -> None:
    sig = decode_signature(SIGNATURE)
    key = telnyx_request_key(TS, sig, BODY)
    assert key != telnyx_request_key(str(int(TS) + 1), sig, BODY)
    assert key != telnyx_request_key(TS, sig, BODY + b" ")
    assert key != telnyx_request_key(TS, bytes(64), BODY)


def test_the_public_key_loads_from_raw_base64_base64url_pem_and_der() -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    der = base64.b64encode(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()
    url = PUBLIC_B64.replace("+", "-").replace("/", "_").rstrip("=")
    for form in (PUBLIC_B64, url, pem, der, f"  {PUBLIC_B64}\n"):
        assert verify(signed(), key=form).ok, form


@pytest.mark.parametrize("text", ["", "not a key", base64.b64encode(b"x" * 31).decode(),
                                  "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"])
def test_a_public_key_in_no_known_form_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"telnyx\.publicKey"):
        load_public_key(text)


def test_a_non_ed25519_public_key_is_named_as_such() -> None:
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
    pem = generate_private_key(SECP256R1()).public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        load_public_key(pem)


# -- cross-checks on generated vectors -------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), body=st.binary(max_size=300),
       ts=st.integers(min_value=1_000_000_000, max_value=4_000_000_000), tamper=st.booleans())
def test_our_verifier_agrees_with_pynacl_on_generated_vectors(seed: bytes, body: bytes, ts: int,
                                                             tamper: bool) -> None:
    nacl_key = SigningKey(seed)
    message = f"{ts}|".encode() + body
    signature = nacl_key.sign(message).signature
    checked_body = body + b"!" if tamper else body
    public = base64.b64encode(bytes(nacl_key.verify_key)).decode()
    ours = verify_telnyx_webhook(
        request(checked_body, {"telnyx-signature-ed25519": base64.b64encode(signature).decode(),
                               "telnyx-timestamp": str(ts)}),
        public_key=load_public_key(public), now=lambda: ts).ok
    try:
        VerifyKey(bytes(nacl_key.verify_key)).verify(f"{ts}|".encode() + checked_body, signature)
        theirs = True
    except Exception:
        theirs = False
    assert ours == theirs == (not tamper)
    # and our simulator's signer makes the very signature PyNaCl makes (Ed25519 is deterministic)
    assert TestKey.from_seed(seed).sign(str(ts), body) == base64.b64encode(signature).decode()


def _sdk_accepts(body: bytes, headers: dict[str, str], public: str, at: float,
                 monkeypatch: pytest.MonkeyPatch) -> bool:
    import telnyx.lib.webhook_verification as sdk

    monkeypatch.setattr(sdk.time, "time", lambda: at)
    try:
        verify_webhook_signature(body.decode("utf-8"), headers, public)
    except WebhookVerificationError:
        return False
    return True


@pytest.mark.parametrize("case", ["valid", "tampered", "stale", "wrong-key", "edge-300"])
def test_our_verifier_agrees_with_the_official_telnyx_sdk(case: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The `telnyx` SDK ships `telnyx.lib.webhook_verification.verify_webhook_signature`, which
    works offline (PyNaCl), so it is the second opinion on every case."""
    key = TestKey.generate()
    ts = 1_800_000_000
    body = b'{"data":{"event_type":"call.answered","id":"e1","payload":{"call_control_id":"v3:x"}}}'
    headers = {"telnyx-signature-ed25519": key.sign(str(ts), body), "telnyx-timestamp": str(ts)}
    public, at, checked = key.public_key_base64, float(ts), body
    if case == "tampered":
        checked = body.replace(b"answered", b"hangup")
    elif case == "stale":
        at = ts + 301
    elif case == "wrong-key":
        public = TestKey.generate().public_key_base64
    elif case == "edge-300":
        at = ts + 300
    ours = verify_telnyx_webhook(request(checked, headers), public_key=load_public_key(public),
                                 now=lambda: at).ok
    assert ours == _sdk_accepts(checked, headers, public, at, monkeypatch) == (
        case in ("valid", "edge-300"))
