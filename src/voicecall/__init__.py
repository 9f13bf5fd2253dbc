"""voicecall: a voice-call gateway for AI agents.

The public API: embed the gateway (`Runtime`), drive a running one (`ControlClient`), read and
model calls (`CallRecord`, `CallState`, `EndReason`, `CallEvent`), load configuration
(`load_config`), and publish the agent tool (`tool_schema`, `dispatch_tool`).
"""

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
