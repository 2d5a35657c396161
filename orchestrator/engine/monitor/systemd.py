"""systemd's notify protocol, without libsystemd: `Type=notify` learns when the daemon is ready,
and `WatchdogSec=` restarts a daemon that stopped making progress.

The protocol is a datagram of `KEY=value` lines to the socket named by `NOTIFY_SOCKET` (a path,
or an abstract name written with a leading `@`). Without that variable (not under systemd) every
call does nothing. The watchdog is fed from the scheduler's tick, and only while the daemon is
live by its own health rules (ticking, and the database not failing beyond its grace): a daemon
whose loop is stuck or whose database is gone stops feeding it, and systemd restarts it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable


class SystemdNotifier:
    def __init__(
        self, environ: dict[str, str] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        env = os.environ if environ is None else environ
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._clock = clock
        self.watchdog_seconds = _watchdog_seconds(env)
        self._fed_at = 0.0

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *lines: str) -> bool:
        if self._address is None:
            return False
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(self._address)
            sock.sendall("\n".join(lines).encode())
            return True
        return False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def alive(self, live: bool) -> None:
        """Feed the watchdog (at twice the rate it needs) while the daemon is live."""
        if self.watchdog_seconds is None or not live:
            return
        now = self._clock()
        if now - self._fed_at >= self.watchdog_seconds / 2:
            self._fed_at = now
            self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")


def _address(value: str) -> str | None:
    if not value:
        return None
    return "\0" + value[1:] if value.startswith("@") else value


def _watchdog_seconds(env: dict[str, str] | os._Environ[str]) -> float | None:
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000
    except ValueError:
        return None
