"""Telnyx Call Control v2 behind the carrier interface (docs/carriers.md)."""
