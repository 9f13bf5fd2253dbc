"""The call service: the one owner of live calls (commands, event application, timers, restore)."""

from voicecall.service.commands import CallService
from voicecall.service.errors import CallError, CallNotFound
from voicecall.service.protocols import MediaPlayer, TurnHandler
from voicecall.service.settings import DEFAULT_GREETING, ServiceSettings

__all__ = [
    "DEFAULT_GREETING",
    "CallError",
    "CallNotFound",
    "CallService",
    "MediaPlayer",
    "ServiceSettings",
    "TurnHandler",
]
