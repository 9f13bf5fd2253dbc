"""The console's browser calls as a media-stream wire format (docs/decisions.md D112)."""

from voicecall.providers.browser.stream import BrowserStreamSerializer

__all__ = ["BrowserStreamSerializer"]
