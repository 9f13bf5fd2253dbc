"""The web console served by the gateway on its control listener (docs/decisions.md D111)."""

from voicecall.server.console.auth import ConsoleAuth
from voicecall.server.console.routes import console_routes

__all__ = ["ConsoleAuth", "console_routes"]
