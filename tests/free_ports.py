"""Ports for the listeners that tests start in other processes (``lhpipe run --port N``).

A port found free by binding port 0 comes from the kernel's ephemeral range, the same range the
test process's own outgoing connections (Kafka, LittleHorse, the registry) take their local
ports from: between the check and the listener's bind, a new connection may hold it. These
ports come from below that range instead, where no outgoing connection is ever given one, and
each is handed out once per test process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: Where the ports come from when the ephemeral range cannot be read (Linux's default range
#: starts at 32768).
LOWEST = 20000
_given: set[int] = set()


def _ephemeral_start() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port that nothing listens on now (checked on every interface) and that no other
    call of this process has returned."""
    highest = _ephemeral_start() - 1
    if highest <= LOWEST:
        raise RuntimeError(f"no room for test ports below the ephemeral range ({highest + 1})")
    for _ in range(1000):
        port = random.randint(LOWEST, highest)
        if port in _given:
            continue
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port found between {LOWEST} and {highest}")
