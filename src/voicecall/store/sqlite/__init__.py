"""The call store on SQLite (see `store.py`; docs/store.md describes the tables)."""

from voicecall.store.sqlite.connection import DB_NAME
from voicecall.store.sqlite.schema import SCHEMA_VERSION, SchemaTooNew
from voicecall.store.sqlite.store import SQLiteCallStore
from voicecall.store.sqlite.writer import StoreClosed

__all__ = ["DB_NAME", "SCHEMA_VERSION", "SQLiteCallStore", "SchemaTooNew", "StoreClosed"]
