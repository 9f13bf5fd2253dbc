"""Listening sockets we bind ourselves, so a busy port is reported plainly (and by whom)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


class PortInUse(Exception):
    """The port is taken; the message says which process holds it when we can tell."""

    def __init__(self, host: str, port: int, what: str) -> None:
        holder = find_port_holder(port)
        who = f" (held by {holder})" if holder else ""
        super().__init__(
            f"{what} port {host}:{port} is already in use{who}. Stop that process, or set "
            f"{'serve.port' if what == 'webhook' else 'control.port'} to a free port.")
        self.host, self.port, self.holder = host, port, holder


def bind_listener(host: str, port: int, what: str) -> socket.socket:
    """A bound, listening TCP socket on host:port (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise PortInUse(host, port, what) from exc
        raise OSError(f"cannot listen on {host}:{port} for the {what} server: {exc}") from exc
    # Accepted connections inherit TCP_NODELAY: replies written in more than one piece (headers,
    # then body) must not wait ~40 ms for Nagle and the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def find_port_holder(port: int) -> str | None:
    """`pid <n> (<command>)` of the process listening on `port`, on Linux; None if unknown."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    return f"pid {pid} ({cmd.decode(errors='replace').strip()[:120]})"
            except OSError:
                continue
    return None
