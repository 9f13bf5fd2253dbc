"""Connection limits for the public (webhook) port, below HTTP: a deadline for each request's
headers, and caps on open connections per client address and in all (D65).

uvicorn puts no deadline on a request's headers, so slow senders (slowloris) can hold sockets
until the process runs out of file descriptors, and then neither port accepts anything. The
guard wraps uvicorn's HTTP protocol class: a connection that has not completed a request's
headers within `header_timeout_s` of opening, or of its previous response, is closed; over a
cap, the oldest connection still waiting for its headers makes room (a carrier sends its
headers at once), and only when none is waiting is the newcomer closed. A connection upgraded
to a WebSocket leaves the guard: the media endpoint has its own caps.
"""

from __future__ import annotations

import asyncio
import resource
from collections import OrderedDict
from typing import Any, Protocol, cast

__all__ = ["HEADER_TIMEOUT_S", "MAX_CONNECTIONS_PER_CLIENT", "ConnectionGuard", "default_max_connections",
           "guarded_protocol"]

HEADER_TIMEOUT_S = 10.0
MAX_CONNECTIONS_PER_CLIENT = 256
_NO_CYCLE = object()


def default_max_connections() -> int:
    """Half the process's file descriptors (the other half is for the control port, the store
    and outgoing requests), between 64 and 4096."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(64, min(4096, soft // 2))


class Guarded(Protocol):
    """What the guard needs of a wrapped connection."""

    @property
    def waiting_for_headers(self) -> bool: ...
    def drop(self) -> None: ...


class ConnectionGuard:
    """Open connections of one port, by client address, with their counters."""

    def __init__(self, *, per_client: int = MAX_CONNECTIONS_PER_CLIENT, total: int | None = None,
                 header_timeout_s: float = HEADER_TIMEOUT_S) -> None:
        self.per_client = per_client
        self.total = total if total is not None else default_max_connections()
        self.header_timeout_s = header_timeout_s
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self._all: OrderedDict[Guarded, str] = OrderedDict()
        self._by_client: dict[str, OrderedDict[Guarded, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def admit(self, conn: Guarded, client: str) -> bool:
        """Count `conn`; over a cap, drop the oldest connection still waiting for headers (of
        that client, then of all), or refuse `conn` when there is none."""
        mine = self._by_client.get(client)
        if mine is not None and len(mine) >= self.per_client and not self._evict(mine):
            self.refused += 1
            return False
        if len(self._all) >= self.total and not self._evict(self._all):
            self.refused += 1
            return False
        self._all[conn] = client
        self._by_client.setdefault(client, OrderedDict())[conn] = None
        return True

    def release(self, conn: Guarded) -> None:
        client = self._all.pop(conn, None)
        if client is None:
            return
        mine = self._by_client[client]
        mine.pop(conn, None)
        if not mine:
            del self._by_client[client]

    def _evict(self, among: OrderedDict[Guarded, Any]) -> bool:
        victim = next((c for c in among if c.waiting_for_headers), None)
        if victim is None:
            return False
        self.release(victim)
        self.evicted += 1
        victim.drop()
        return True


def guarded_protocol(base: type[asyncio.Protocol], guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """`base` (one of uvicorn's HTTP protocol classes) under `guard`."""

    class GuardedHttp(base):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None
        _awaited_cycle: Any = _NO_CYCLE

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if peer else ""
            if not guard.admit(self, client):
                transport.close()
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            guard.release(self)
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            idle = self.cycle is None or self.cycle.response_complete  # no pipelined request
            if idle and not self.transport.is_closing():
                self._arm()  # the next request's headers have a deadline too

        def handle_websocket_upgrade(self, *args: Any) -> None:
            self._disarm()
            guard.release(self)
            super().handle_websocket_upgrade(*args)

        @property
        def waiting_for_headers(self) -> bool:
            """No request has begun since the deadline was set (its headers are incomplete)."""
            return self._deadline is not None and self.cycle is self._awaited_cycle

        def drop(self) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self.transport.close()

        def _arm(self) -> None:
            self._disarm()
            self._awaited_cycle = self.cycle
            self._deadline = asyncio.get_running_loop().call_later(guard.header_timeout_s,
                                                                   self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            waiting = self.cycle is self._awaited_cycle
            self._deadline = None
            if waiting:
                guard.timed_out += 1
                guard.release(self)
                if not self.transport.is_closing():
                    self.transport.close()

    GuardedHttp.__name__ = f"Guarded{base.__name__}"
    return cast(type[asyncio.Protocol], GuardedHttp)
