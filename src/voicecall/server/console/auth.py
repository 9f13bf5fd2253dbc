"""Console sign-in: one-time login codes, cookie sessions and their CSRF tokens (D111).

A login code is handed out over the authenticated control API (`voicecall console`) and can be
exchanged once, within its lifetime, for a session. The session id travels only in an HttpOnly,
SameSite=Strict cookie; every state-changing console request must also carry the session's CSRF
token in a header, which a page on another origin cannot read or send.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass

CODE_TTL_S = 300.0
SESSION_TTL_S = 12 * 3600.0
MAX_CODES = 64
MAX_SESSIONS = 256
COOKIE = "voicecall_console"


@dataclass
class ConsoleSession:
    """A signed-in browser: its id (the cookie), CSRF token, expiry and a short public name."""

    session_id: str
    csrf: str
    expires_at: float
    name: str


class ConsoleAuth:
    """Login codes and sessions of one gateway, in memory (a restart signs everyone out)."""

    def __init__(self, token: str, *, code_ttl_s: float = CODE_TTL_S,
                 session_ttl_s: float = SESSION_TTL_S) -> None:
        self._token = token
        self.code_ttl_s = code_ttl_s
        self.session_ttl_s = session_ttl_s
        self._codes: dict[str, float] = {}
        self._sessions: dict[str, ConsoleSession] = {}
        self.closing = asyncio.Event()
        """Set when the gateway stops: open console streams end."""

    def close(self) -> None:
        """The gateway is stopping: end the live streams of open pages."""
        self.closing.set()

    def issue_code(self) -> str:
        """A new one-time login code."""
        now = time.monotonic()
        self._codes = {c: t for c, t in self._codes.items() if t > now}
        while len(self._codes) >= MAX_CODES:
            self._codes.pop(next(iter(self._codes)))
        code = secrets.token_urlsafe(24)
        self._codes[code] = now + self.code_ttl_s
        return code

    def redeem_code(self, code: str) -> ConsoleSession | None:
        """A new session for a valid, unused, unexpired code; the code is spent either way."""
        expires = self._codes.pop(code, None)
        if expires is None or expires <= time.monotonic():
            return None
        return self._new_session()

    def sign_in_with_token(self, given: str) -> ConsoleSession | None:
        """A new session when `given` is the control token."""
        if not given or not hmac.compare_digest(given.encode(), self._token.encode()):
            return None
        return self._new_session()

    def session(self, session_id: str | None) -> ConsoleSession | None:
        """The live session with this id, or None."""
        if not session_id:
            return None
        found = self._sessions.get(session_id)
        if found is None or found.expires_at <= time.monotonic():
            self._sessions.pop(session_id or "", None)
            return None
        return found

    def sign_out(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    @staticmethod
    def csrf_ok(session: ConsoleSession, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())

    def _new_session(self) -> ConsoleSession:
        now = time.monotonic()
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        session = ConsoleSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                                 now + self.session_ttl_s, secrets.token_hex(4))
        self._sessions[session.session_id] = session
        return session
