"""Durable call storage: current records, the append-only log, replay keys and carrier state."""

from voicecall.store.protocol import CallQuery, CallStore, LogEntry
from voicecall.store.sqlite import SQLiteCallStore

__all__ = ["CallQuery", "CallStore", "LogEntry", "SQLiteCallStore"]
