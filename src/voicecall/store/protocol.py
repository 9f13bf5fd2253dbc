"""What the rest of the gateway needs from a call store, independent of how it is stored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

from voicecall.calls.model import CallRecord


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One row of the append-only log: a record snapshot, an event, or a completed turn."""

    seq: int
    at: int
    call_id: str
    kind: str
    data: dict[str, Any]

    def to_json_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "callId": self.call_id, "kind": self.kind,
                "data": self.data}


@dataclass(frozen=True, slots=True)
class CallQuery:
    """Which calls `CallStore.list_calls` returns: live and ended ones, newest start first."""

    states: tuple[str, ...] = ()
    """Only calls in one of these states (all when empty)."""
    direction: str | None = None
    """Only `inbound` or `outbound` calls."""
    since_ms: int | None = None
    """Only calls changed at or after this time (epoch ms)."""
    limit: int = 50
    offset: int = 0


class CallStore(Protocol):
    """Durable call storage. Every write is committed before its coroutine returns."""

    directory: Path
    path: Path

    # -- lifecycle
    def open(self) -> None: ...
    def close(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...

    # -- call records and the log
    async def save(self, record: CallRecord, *, events: Iterable[dict[str, Any]] = (),
                   turn: dict[str, Any] | None = None) -> bool: ...
    async def get(self, call_id: str) -> CallRecord | None: ...
    async def live_calls(self) -> list[CallRecord]: ...
    async def recent_calls(self, limit: int = 50) -> list[CallRecord]: ...
    async def list_calls(self, query: CallQuery) -> list[CallRecord]: ...
    async def state_history(self, call_id: str) -> list[dict[str, Any]]: ...
    async def log_since(self, after_seq: int, limit: int = 500,
                        kinds: tuple[str, ...] | None = None) -> list[LogEntry]: ...
    async def last_log(self, limit: int,
                       kinds: tuple[str, ...] | None = None) -> list[LogEntry]: ...
    async def prune(self) -> None: ...

    # -- replayed webhooks and rejected inbound calls
    async def lookup_replay(self, key: str) -> dict[str, Any] | None: ...
    async def remember_reply(self, key: str, reply: dict[str, Any]) -> None: ...
    async def add_rejected_key(self, key: str) -> bool: ...
    async def is_rejected(self, key: str) -> bool: ...
    async def forget_rejected_key(self, key: str) -> None: ...

    # -- carrier-side state and conversation memory
    async def put_provider_state(self, call_id: str, data: dict[str, Any]) -> None: ...
    async def get_provider_state(self, call_id: str) -> dict[str, Any] | None: ...
    async def session_messages(self, key: str) -> list[dict[str, Any]]: ...
    async def append_session(self, key: str, messages: list[dict[str, Any]], *,
                             keep: int = 200) -> None: ...

    # -- calls.jsonl import and export
    async def export_jsonl(self, path: str | Path) -> int: ...
    async def import_jsonl(self, path: str | Path) -> int: ...
