"""The one network probe: can a TCP connection to host:port open within a timeout?

kerakit probes before anything that would otherwise hang with no network (a
tfds download, ImageNet weights, a TPU address), so that an offline machine
fails in seconds with what to do. The connect runs in a daemon thread because
a DNS lookup has no timeout of its own.
"""

from __future__ import annotations

import socket
import threading


def unreachable(host: str, port: int = 443, timeout: float = 3.0) -> str | None:
    """Why `host:port` cannot be reached, or None when it can; takes at most `timeout` s.

    Example:
        >>> unreachable("localhost", 1, timeout=1.0)  # doctest: +SKIP
        '[Errno 111] Connection refused'
    """
    outcome: dict = {}

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome["ok"] = True
        except OSError as e:  # refused, unreachable, timed out, unknown host
            outcome["error"] = e

    thread = threading.Thread(target=probe, name="kerakit-network-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome.get("ok"):
        return None
    return str(outcome.get("error") or f"no answer from {host}:{port} in {timeout:.0f} s")


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to `host:port` opens within `timeout` seconds."""
    return unreachable(host, port, timeout) is None
