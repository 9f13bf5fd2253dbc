"""Test helpers shipped with voicecall so users can test their own flows offline."""

from voicecall.testing.gateway import running_gateway

__all__ = ["running_gateway"]
