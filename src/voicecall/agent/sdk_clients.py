"""The model SDK clients the chat API shapes keep: one per base URL, key and event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from voicecall.agent.models import ResolvedModel
from voicecall.agent.turn import DEFAULT_TIMEOUT_S, PerLoop


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class SdkClients(Generic[C]):
    """Builds SDK clients with `factory(base_url=, api_key=, max_retries=0, timeout=)` on first use
    (the SDK's own retries off) and reuses them within the event loop that built them."""

    def __init__(self, factory: Callable[..., C]) -> None:
        self._factory = factory
        self._clients: PerLoop[C] = PerLoop()

    def get(self, resolved: ResolvedModel) -> C:
        """The running loop's client for this model's base URL and key."""
        return self._clients.get(
            (resolved.base_url, resolved.api_key),
            lambda: self._factory(base_url=resolved.base_url, api_key=resolved.api_key, max_retries=0,
                                  timeout=DEFAULT_TIMEOUT_S))

    async def aclose(self) -> None:
        """Close the running loop's clients and forget every other loop's."""
        for client in self._clients.take_current():
            await client.close()
