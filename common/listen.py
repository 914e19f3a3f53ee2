"""Before a server listens: is its port free? A taken port is one line on stderr and exit code
1 (``powerbot run``, ``powerbot serve``, ``powerbot core serve``), not a traceback."""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable

Listener = tuple[str, int, str]  # (host, port, the setting that moves it, e.g. "POWERBOT_PORT")


def port_in_use(host: str, port: int) -> bool:
    """Whether another process listens on ``host:port``: a trial bind, as the server will do
    (with SO_REUSEADDR like asyncio's, so connections in TIME_WAIT do not count)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # an unknown host: the server reports that itself
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def busy_message(host: str, port: int, setting: str) -> str:
    return f"powerbot: port {port} on {host} is in use (set {setting})"


def require_free_ports(*listeners: Listener) -> None:
    """Exit with a one-line error (code 1) when a port to listen on is taken."""
    for host, port, setting in listeners:
        if port_in_use(host, port):
            print(busy_message(host, port, setting), file=sys.stderr, flush=True)
            raise SystemExit(1)


def run_server(run: Callable[[], object], *listeners: Listener) -> None:
    """Check the ports, then ``run()`` the server. A port taken in between, or an address that
    cannot be listened on, is still one line on stderr and exit code 1."""
    require_free_ports(*listeners)
    try:
        run()
    except OSError as exc:
        # asyncio's create_server: "error while attempting to bind on address ...": only that
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES) or "bind" not in str(exc):
            raise
        where = ", ".join(f"{h}:{p}" for h, p, _ in listeners)
        settings = " / ".join(s for _, _, s in listeners)
        print(f"powerbot: cannot listen on {where}: {exc.strerror or exc} (set {settings})", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
