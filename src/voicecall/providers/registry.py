"""Carrier lookup: built-in adapters plus third-party ones from the `voicecall.providers`
entry-point group. An entry point is a callable `factory(config) -> Provider`."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from voicecall.providers.base import Provider
from voicecall.providers.mock import MockBehaviour, MockProvider

if TYPE_CHECKING:
    from voicecall.config import VoiceCallConfig

ProviderFactory = Callable[["VoiceCallConfig"], Provider]


def mock_from_config(config: VoiceCallConfig) -> Provider:
    m = config.mock
    return MockProvider(MockBehaviour(
        answer_after_ms=m.answer_after_ms, ring_ms=m.ring_ms, outcome=m.outcome,
        caller_replies=tuple(m.caller_replies), speak_ms_per_char=m.speak_ms_per_char))


BUILTIN: dict[str, ProviderFactory] = {"mock": mock_from_config}


def available_providers() -> list[str]:
    names = set(BUILTIN)
    names.update(ep.name for ep in entry_points(group="voicecall.providers"))
    return sorted(names)


def build_provider(config: VoiceCallConfig) -> Provider:
    """The adapter for `config.provider`."""
    name = config.provider or "mock"
    factory = BUILTIN.get(name)
    if factory is None:
        for ep in entry_points(group="voicecall.providers", name=name):
            factory = ep.load()
            break
    if factory is None:
        raise ValueError(f"provider {name!r} is not available (available: "
                         f"{', '.join(available_providers())})")
    return factory(config)
