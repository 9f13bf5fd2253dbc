"""Durable call storage: current records, the append-only log, replay keys and carrier state."""

from voicecall.store.sqlite import LogEntry, SQLiteCallStore

__all__ = ["LogEntry", "SQLiteCallStore"]
