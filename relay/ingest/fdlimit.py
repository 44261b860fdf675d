"""Running out of file descriptors: one log line per episode, not a traceback per accept().

When the process reaches its open-file limit (EMFILE) or the system's (ENFILE), asyncio's
accept loop reports every failed accept() to the loop's exception handler, with a
traceback — and Python 3.11 goes on trying up to `backlog` times per loop tick and
schedules as many retries, so a few seconds at the limit wrote thousands of tracebacks
(tests/test_fdlimit.py reproduces it with a real process). Connections are not lost
meanwhile: they wait in the listen queue and asyncio retries once a second.

This handler logs the first such error of an episode as one line that says what to do,
then at most a reminder at growing intervals (REMIND_FIRST doubling up to REMIND_MAX)
while it lasts, and one line when no such error has come for QUIET seconds. Every other
error goes to the handler that was there before, unchanged — except one more echo of the
same episode: asyncio's scheduled accept() retries do not check that the listening socket
is still open, so one firing after the relay closed it fails on fd -1 (`settle()` waits
them out at shutdown; `_late_retry` drops them).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from asyncio.constants import ACCEPT_RETRY_DELAY
from collections.abc import Callable
from typing import Any

from relay.logs import fields

__all__ = ["FDExhaustionLog"]

log = logging.getLogger("relay.ingest")

QUIET = 10.0  # seconds without such an error: the episode is over
REMIND_FIRST = 60.0
REMIND_MAX = 3600.0
RETRY_WINDOW = ACCEPT_RETRY_DELAY + 0.5  # asyncio's retries fire this long after an error

_FD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})

Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def _fd_error(context: dict[str, Any]) -> OSError | None:
    exception = context.get("exception")
    if isinstance(exception, OSError) and exception.errno in _FD_ERRNOS:
        return exception
    return None


def _open_file_limit() -> str:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft)


class FDExhaustionLog:
    """A loop exception handler that rate-limits file-descriptor exhaustion."""

    def __init__(self, quiet: float = QUIET, remind_first: float = REMIND_FIRST) -> None:
        self.quiet = quiet
        self.remind_first = remind_first
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Handler | None = None
        self._started: float | None = None  # the episode's first error, None between episodes
        self._last: float | None = None  # the latest error, of any episode
        self._count = 0  # errors in the episode
        self._reported = 0  # of which already told about
        self._next_reminder = 0.0
        self._interval = remind_first
        self._end_check: asyncio.TimerHandle | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self) -> None:
        if self._end_check is not None:
            self._end_check.cancel()
            self._end_check = None
        if self._loop is not None and self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)
        self._loop = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = _fd_error(context)
        if error is None:
            if self._late_retry(loop, context):
                log.debug("dropped a late accept() retry on a closed socket")
            elif self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = loop.time()
        self._last = now
        self._count += 1
        if self._started is None:
            self._start(loop, now, error, context)
        elif now >= self._next_reminder:
            log.error(
                "still out of file descriptors after %.0f s: %d more failures since the last "
                "report (open-file limit %s)",
                now - self._started,
                self._count - self._reported,
                _open_file_limit(),
            )
            self._reported = self._count
            self._interval = min(self._interval * 2, REMIND_MAX)
            self._next_reminder = now + self._interval

    def _late_retry(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> bool:
        exception = context.get("exception")
        return (
            isinstance(exception, ValueError)
            and str(exception).startswith("Invalid file descriptor")
            and self._last is not None
            and loop.time() - self._last < RETRY_WINDOW
        )

    async def settle(self) -> None:
        """Wait until asyncio's accept() retries from a recent episode have fired."""
        if self._loop is not None and self._last is not None:
            remaining = self._last + RETRY_WINDOW - self._loop.time()
            if remaining > 0:
                await asyncio.sleep(remaining)

    def _start(
        self, loop: asyncio.AbstractEventLoop, now: float, error: OSError, context: dict[str, Any]
    ) -> None:
        self._started = now
        self._reported = self._count
        self._interval = self.remind_first
        self._next_reminder = now + self._interval
        which = "the system's (fs.file-max)" if error.errno == errno.ENFILE else "the process's"
        log.error(
            "out of file descriptors (%s: %s): %s limit is reached; new connections wait "
            "until some close. Open-file limit %s: raise it (LimitNOFILE= in "
            "deploy/relay.service) or look for what holds connections open",
            errno.errorcode.get(error.errno or 0, "?"),
            error.strerror,
            which,
            _open_file_limit(),
            extra=fields(during=context.get("message")),
        )
        self._end_check = loop.call_later(self.quiet, self._check_end)

    def _check_end(self) -> None:
        loop, started, last = self._loop, self._started, self._last
        if loop is None or started is None or last is None:
            return
        now = loop.time()
        if now - last < self.quiet:
            self._end_check = loop.call_later(last + self.quiet - now, self._check_end)
            return
        log.warning(
            "no file-descriptor errors for %.0f s: episode over (%d failures in %.0f s)",
            self.quiet,
            self._count,
            last - started,
        )
        self._started = None
        self._count = self._reported = 0
        self._end_check = None
