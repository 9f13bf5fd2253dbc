"""The plumbing every REST-driven carrier adapter shares (Twilio, Telnyx): the binding to the
call service, its REST client's lifecycle, the waits for confirmed playback, and stream
authorization. A carrier adapter subclasses `CarrierAdapter` and adds its own protocol."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from voicecall.providers import stream_auth
from voicecall.providers.base import ProviderContext, ProviderError
from voicecall.providers.http import CarrierHttp, ErrorParser
from voicecall.providers.playback_waits import PlaybackWaits
from voicecall.providers.streams import MediaStreams, StreamSerializer, StreamStart

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrierSettings:
    """Settings every carrier adapter takes; each carrier adds its credentials and API URL."""

    api_base_url: str
    """The carrier's REST API root (a simulator's when overridden)."""
    skip_signature_verification: bool = False
    voice: str = ""
    """The carrier-native voice speech is said in (each carrier sets its own default)."""
    language: str = "en-US"
    machine_detection: bool = False
    """Answering-machine detection on notify calls; a machine ends them as `voicemail`."""
    timeout_s: float = 10.0
    streaming: bool = False
    """Media streaming on: answered calls stream to the gateway's stream URL."""
    stream_url: str | None = None
    """Overrides the stream URL the gateway derives from its webhook URL (implies streaming)."""

    @property
    def streams(self) -> bool:
        return self.streaming or bool(self.stream_url)

    @property
    def uses_real_api(self) -> bool:
        """Whether `api_base_url` is the carrier's own API (each carrier knows its hosts)."""
        return False


class CarrierAdapter:
    """Shared state and lifecycle of one carrier adapter (see the module docstring)."""

    name: str
    serializer: StreamSerializer

    def __init__(self, settings: CarrierSettings, *, carrier: str, signature_headers: tuple[str, ...],
                 parse_error: ErrorParser, auth: tuple[str, str] | None = None,
                 headers: dict[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.http = CarrierHttp(carrier, settings.api_base_url, auth=auth, headers=headers,
                                timeout_s=settings.timeout_s, parse_error=parse_error,
                                transport=transport)
        self.required_headers: tuple[str, ...] = (
            () if settings.skip_signature_verification else signature_headers)
        """Headers every genuine webhook has: a request without them gets 401 unread."""
        self._uses_real_api = settings.uses_real_api
        self._streams = settings.streams
        self._context: ProviderContext | None = None
        self._played = PlaybackWaits(self.name)

    @property
    def requires_public_webhook(self) -> bool:
        """The real carrier must reach us; a local simulator (apiBaseUrl override) need not."""
        return self._uses_real_api

    @property
    def media_streams(self) -> MediaStreams | None:
        """This adapter (its `serializer` and `authorize_stream`) when calls are streamed."""
        return self if self._streams else None

    def bind(self, context: ProviderContext) -> None:
        self._context = context

    @property
    def context(self) -> ProviderContext:
        if self._context is None:
            raise ProviderError(f"{self.name}: provider is not bound to a call service")
        return self._context

    async def start(self) -> None:
        if not self._uses_real_api:
            log.warning("%s.apiBaseUrl is %s, not %s's API: calls go to that server",
                        self.name, self.http.base_url, self.http.carrier)

    async def stop(self) -> None:
        self._played.cancel_all()
        await self.http.aclose()

    async def authorize_stream(self, start: StreamStart, query_token: str | None) -> str | None:
        """Our call id when `start.call_sid` is a live call and the token is that call's."""
        return await stream_auth.authorize_stream(self.context, start, query_token)
