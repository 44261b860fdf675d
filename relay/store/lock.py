"""One serving relay per SQLite file: an exclusive lock on a sidecar file, `<db>.lock`.

Two relays on one file would each deliver everything (SQLite has no lanes to share: see
relay/store/postgres.py for several instances). The lock is `flock` on a file of its own,
not on the database: SQLite's POSIX locks on the database file are dropped as soon as any
descriptor of it in the process closes. The kernel releases a flock when its holder exits,
even by kill -9, so a crash never leaves the file locked. The holder writes its pid into
the lock file for the message the next one shows.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from relay.errors import StoreLocked, StoreUnavailable


class ServeLock:
    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise StoreLocked naming the relay that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StoreUnavailable(
                f"{self.path}: cannot create the lock file ({error.strerror or error});"
                f" make {self.path.parent} writable for the relay"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd)
            os.close(fd)
            by = f"another relay (pid {holder})" if holder else "another relay"
            raise StoreLocked(
                f"{self.database} is already served by {by}; stop it first,"
                " or use PostgreSQL to run several instances"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the only descriptor of the lock releases it


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
