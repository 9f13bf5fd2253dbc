"""voicecall: a voice-call gateway for AI agents.

The public API: embed the gateway (`Runtime`), drive a running one (`ControlClient`), read and
model calls (`CallRecord`, `CallState`, `EndReason`, `CallEvent`), load configuration
(`load_config`), and publish the agent tool (`tool_schema`, `dispatch_tool`).

Names are imported on first use, so `import voicecall.<module>` (the CLI, for one) does not
load the whole gateway.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicecall.agent.tool import dispatch_tool, tool_schema
    from voicecall.calls.events import CallEvent
    from voicecall.calls.model import CallRecord, CallState, EndReason, TranscriptEntry
    from voicecall.config import ConfigError, LoadedConfig, VoiceCallConfig, load_config
    from voicecall.gateway.client import ControlClient, GatewayUnavailable, RpcError
    from voicecall.gateway.runtime import Runtime
    from voicecall.providers.base import Provider
    from voicecall.providers.mock import MockBehaviour, MockProvider
    from voicecall.service import CallError, CallService

__version__ = "0.1.0"

_WHERE = {
    "dispatch_tool": "voicecall.agent.tool",
    "tool_schema": "voicecall.agent.tool",
    "CallEvent": "voicecall.calls.events",
    "CallRecord": "voicecall.calls.model",
    "CallState": "voicecall.calls.model",
    "EndReason": "voicecall.calls.model",
    "TranscriptEntry": "voicecall.calls.model",
    "ConfigError": "voicecall.config",
    "LoadedConfig": "voicecall.config",
    "VoiceCallConfig": "voicecall.config",
    "load_config": "voicecall.config",
    "ControlClient": "voicecall.gateway.client",
    "GatewayUnavailable": "voicecall.gateway.client",
    "RpcError": "voicecall.gateway.client",
    "Runtime": "voicecall.gateway.runtime",
    "Provider": "voicecall.providers.base",
    "MockBehaviour": "voicecall.providers.mock",
    "MockProvider": "voicecall.providers.mock",
    "CallError": "voicecall.service",
    "CallService": "voicecall.service",
}

__all__ = [
    "CallError",
    "CallEvent",
    "CallRecord",
    "CallService",
    "CallState",
    "ConfigError",
    "ControlClient",
    "EndReason",
    "GatewayUnavailable",
    "LoadedConfig",
    "MockBehaviour",
    "MockProvider",
    "Provider",
    "RpcError",
    "Runtime",
    "TranscriptEntry",
    "VoiceCallConfig",
    "__version__",
    "dispatch_tool",
    "load_config",
    "tool_schema",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'voicecall' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
