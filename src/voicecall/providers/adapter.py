"""The plumbing every carrier adapter shares, whether it drives calls with documents
(`MarkupProvider`: Twilio, Plivo) or with REST commands (Telnyx): the binding to the call
service, its REST client's lifecycle, the waits for confirmed playback (D20), and per-call
media-stream tokens with stream authorization. A carrier adapter subclasses `CarrierAdapter`
(directly or through `MarkupProvider`) and adds its own protocol."""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from voicecall.calls.model import CallRecord
from voicecall.providers.base import ProviderContext, ProviderError
from voicecall.providers.http import CarrierHttp, ErrorParser
from voicecall.providers.playback_waits import PlaybackWaits
from voicecall.providers.streams import MediaStreams, StreamSerializer, StreamStart

__all__ = ["CarrierAdapter", "CarrierSettings"]

log = logging.getLogger(__name__)

STREAM_TOKEN_KEY = "streamToken"


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrierSettings:
    """Settings every carrier adapter takes; each carrier's settings extend them."""

    api_base_url: str
    """The carrier's REST API root (a simulator's when overridden)."""
    skip_signature_verification: bool = False
    voice: str
    """The carrier-native voice speech is said in (each carrier sets its own default)."""
    language: str = "en-US"
    machine_detection: bool = False
    """Answering-machine detection on notify calls; a machine ends them as `voicemail`."""
    timeout_s: float = 10.0
    streaming: bool = False
    """Media streaming on: answered calls get a stream to the gateway's stream URL."""
    stream_url: str | None = None
    """Overrides the stream URL the gateway derives from its webhook URL (implies streaming)."""

    real_api_hosts: ClassVar[tuple[str, ...]] = ()
    """The carrier's own API base URLs (each carrier's settings name them)."""

    @property
    def streams(self) -> bool:
        """Whether answered calls are streamed."""
        return self.streaming or bool(self.stream_url)

    @property
    def uses_real_api(self) -> bool:
        """Whether `api_base_url` is the carrier's own API rather than, say, a simulator."""
        return self.api_base_url.rstrip("/") in self.real_api_hosts


class CarrierAdapter:
    """Shared state and lifecycle of one carrier adapter (see the module docstring)."""

    name: str
    settings: CarrierSettings
    serializer: StreamSerializer

    def __init__(self, settings: CarrierSettings, *, label: str, signature_headers: tuple[str, ...],
                 parse_error: ErrorParser, auth: tuple[str, str] | None = None,
                 headers: dict[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`label` names the carrier in errors; `signature_headers` are the webhook's
        `required_headers` unless signature checks are off."""
        self.settings = settings
        self.http = CarrierHttp(label, settings.api_base_url, auth=auth, headers=headers,
                                timeout_s=settings.timeout_s, parse_error=parse_error,
                                transport=transport)
        self.required_headers: tuple[str, ...] = (
            () if settings.skip_signature_verification else signature_headers)
        """Headers every genuine webhook has: a request without them gets 401 unread."""
        self._context: ProviderContext | None = None
        self._played = PlaybackWaits(self.name)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def requires_public_webhook(self) -> bool:
        """The real carrier must reach us; a local simulator (apiBaseUrl override) need not."""
        return self.settings.uses_real_api

    @property
    def media_streams(self) -> MediaStreams | None:
        """This adapter (its `serializer` and `authorize_stream`) when calls are streamed."""
        return self if self.settings.streams else None

    def _stream_url(self) -> str | None:
        """Where answered calls stream to; None when streaming is off."""
        if self.settings.stream_url:
            return self.settings.stream_url
        return self.context.stream_url if self.settings.streaming else None

    def bind(self, context: ProviderContext) -> None:
        self._context = context

    @property
    def context(self) -> ProviderContext:
        if self._context is None:
            raise ProviderError(f"{self.name}: provider is not bound to a call service")
        return self._context

    async def start(self) -> None:
        if not self.settings.uses_real_api:
            log.warning("%s.apiBaseUrl is %s, not the carrier's API: calls go to that server",
                        self.name, self.settings.api_base_url)

    async def stop(self) -> None:
        """Cancel what is pending (playback waits, background work), then close the REST client."""
        self._cancel_pending()
        await self.http.aclose()

    def _cancel_pending(self) -> None:
        self._played.cancel_all()

    # -- media-stream tokens -------------------------------------------------------------------
    def _new_stream_token(self) -> str:
        """16 random bytes, base64url (a carrier that allows fewer characters overrides it)."""
        return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()

    async def _state_defaults(self, call_id: str) -> dict[str, Any]:
        """Carrier state a call keeps together with its stream token (none by default)."""
        return {}

    async def stream_token(self, call_id: str) -> str:
        """The call's media-stream token, created once and persisted in its carrier state (so a
        restart keeps it)."""
        state = await self.context.get_provider_state(call_id) or {}
        token = state.get(STREAM_TOKEN_KEY)
        if not token:
            token = self._new_stream_token()
            defaults = await self._state_defaults(call_id)
            await self.context.put_provider_state(
                call_id, {**defaults, **state, STREAM_TOKEN_KEY: token})
        return str(token)

    async def is_valid_stream_token(self, call_id: str, token: str) -> bool:
        """Constant-time check of a media stream's token against the call's."""
        state = await self.context.get_provider_state(call_id) or {}
        expected = str(state.get(STREAM_TOKEN_KEY) or "")
        return bool(expected) and hmac.compare_digest(expected.encode(), token.encode())

    def _stream_call(self, carrier_call_id: str) -> CallRecord | None:
        """The live call a stream's `start` names by the carrier's call id."""
        call = self.context.live(carrier_call_id)
        return call if call is not None and call.provider_call_id == carrier_call_id else None

    async def authorize_stream(self, start: StreamStart, query_token: str | None) -> str | None:
        """Our call id when `start.call_sid` is a live call and the token (the start message's,
        else the stream URL's) is that call's; None otherwise."""
        call = self._stream_call(start.call_sid)
        token = start.token or query_token
        if call is None or call.is_terminal or not token:
            return None
        return call.call_id if await self.is_valid_stream_token(call.call_id, token) else None
