"""The listening sockets of ``eventctl serve``, bound before anything else starts.

Binding first means that a busy port or a wrong ``HOST`` stops the start before a database file is created or
a worker claims an event, with one line that names the setting.
"""

from __future__ import annotations

import errno
import socket

from eventctl.errors import ConfigError


def listening_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Sockets bound to every address ``host`` names on ``port``, already listening, so that no other
    process can take the port from now on. With ``port`` 0, every address gets the port the first one got.

    Raises ``ConfigError`` naming ``HOST`` or ``PORT`` when the address cannot be used.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"invalid HOST={host!r}: not an address of this machine ({exc.strerror})") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, address in dict.fromkeys((f, k, p, a) for f, k, p, _, a in found):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio does: "::" is IPv6 only; IPv4 needs its own address
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
                sock.listen(backlog)
            except OSError as exc:
                raise _unusable(host, port, str(address[0]), exc) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _unusable(host: str, port: int, ip: str, exc: OSError) -> ConfigError:
    where = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"invalid PORT={port}: the address {where} is in use by another process")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"invalid HOST={host!r}: not an address of this machine ({exc.strerror})")
    if exc.errno == errno.EACCES:
        return ConfigError(f"invalid PORT={port}: not allowed to listen on {where} ({exc.strerror})")
    return ConfigError(f"invalid HOST={host!r} or PORT={port}: cannot listen on {where} ({exc.strerror})")
