"""Console sign-in bookkeeping: codes are single-use and expire, sessions expire, the CSRF
check wants the session's own token."""

from __future__ import annotations

import time

import pytest

from voicecall.server.console.auth import MAX_CODES, ConsoleAuth

TOKEN = "control-token-0123456789"


def test_a_code_signs_in_once_and_an_unknown_one_never() -> None:
    auth = ConsoleAuth(TOKEN)
    code = auth.issue_code()
    session = auth.redeem_code(code)
    assert session is not None and auth.session(session.session_id) is session
    assert auth.redeem_code(code) is None
    assert auth.redeem_code("made-up") is None


def test_an_expired_code_is_refused_and_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = ConsoleAuth(TOKEN, code_ttl_s=60)
    code = auth.issue_code()
    later = time.monotonic() + 61
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert auth.redeem_code(code) is None


def test_sessions_expire_and_sign_out_ends_them(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = ConsoleAuth(TOKEN, session_ttl_s=100)
    first = auth.sign_in_with_token(TOKEN)
    second = auth.sign_in_with_token(TOKEN)
    assert first is not None and second is not None and first.session_id != second.session_id
    auth.sign_out(first.session_id)
    assert auth.session(first.session_id) is None
    assert auth.session(second.session_id) is second
    later = time.monotonic() + 101
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert auth.session(second.session_id) is None


def test_the_token_must_match_exactly_and_csrf_must_be_the_sessions_own() -> None:
    auth = ConsoleAuth(TOKEN)
    assert auth.sign_in_with_token("") is None
    assert auth.sign_in_with_token(TOKEN + "x") is None
    session = auth.sign_in_with_token(TOKEN)
    other = auth.sign_in_with_token(TOKEN)
    assert session is not None and other is not None
    assert auth.csrf_ok(session, session.csrf)
    assert not auth.csrf_ok(session, other.csrf)
    assert not auth.csrf_ok(session, None)
    assert not auth.csrf_ok(session, "")


def test_old_codes_give_way_to_new_ones_beyond_the_cap() -> None:
    auth = ConsoleAuth(TOKEN)
    first = auth.issue_code()
    codes = [auth.issue_code() for _ in range(MAX_CODES)]
    assert auth.redeem_code(first) is None
    assert auth.redeem_code(codes[-1]) is not None
