"""Durable call storage: current records, the append-only log, replay keys and carrier state."""

from voicecall.store.protocol import CallStore, LogEntry
from voicecall.store.sqlite import SQLiteCallStore

__all__ = ["CallStore", "LogEntry", "SQLiteCallStore"]
