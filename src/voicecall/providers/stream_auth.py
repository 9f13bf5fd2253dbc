"""Per-call media-stream tokens, shared by every streaming carrier: created once per call,
persisted in the call's carrier state (so a restart keeps them), and checked in constant time
when the carrier opens the stream."""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Any

from voicecall.providers.base import ProviderContext
from voicecall.providers.streams import StreamStart

TOKEN_KEY = "streamToken"


async def stream_token(context: ProviderContext, call_id: str,
                       defaults: dict[str, Any] | None = None) -> str:
    """The call's stream token: 16 random bytes, base64url, created once and persisted together
    with `defaults` (carrier state the call must keep, unless already set)."""
    state = await context.get_provider_state(call_id) or {}
    token = state.get(TOKEN_KEY)
    if not token:
        token = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        await context.put_provider_state(call_id, {**(defaults or {}), **state, TOKEN_KEY: token})
    return str(token)


async def is_valid_stream_token(context: ProviderContext, call_id: str, token: str) -> bool:
    """Constant-time check of a stream's token against the call's."""
    state = await context.get_provider_state(call_id) or {}
    expected = str(state.get(TOKEN_KEY) or "")
    return bool(expected) and hmac.compare_digest(expected.encode(), token.encode())


async def authorize_stream(context: ProviderContext, start: StreamStart,
                           query_token: str | None) -> str | None:
    """Our call id when `start.call_sid` is a live call and the token (the start message's, else
    the stream URL's) is that call's; None otherwise."""
    call = context.live(start.call_sid)
    token = start.token or query_token
    if call is None or call.is_terminal or call.provider_call_id != start.call_sid or not token:
        return None
    return call.call_id if await is_valid_stream_token(context, call.call_id, token) else None
