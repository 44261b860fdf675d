"""Reload when the config file changes (`relay serve --watch`), as SIGHUP does.

The file is read and hashed every two seconds rather than watched with inotify: that works
on every filesystem, including network and bind mounts and the symlink swap by which
Kubernetes updates a mounted ConfigMap, needs no dependency, and cannot miss a change that
keeps the size and the (coarse) mtime. A config file is a few kilobytes. A change is acted
on once the file has held still for one look, so an editor's half-written save is not
loaded; a file that is only touched, or rewritten unchanged, is not reloaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from relay.logs import fields

log = logging.getLogger("relay.watch")

INTERVAL = 2.0  # seconds between looks at the file


def stamp(path: Path) -> bytes | None:
    """A digest of the file's contents; None while it is missing or unreadable."""
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).digest()  # follows symlinks
    except OSError:
        return None


async def watch(
    path: Path, reload: Callable[[], Awaitable[object]], interval: float = INTERVAL
) -> None:
    """Call `reload` after each change of `path`, forever (cancel the task to stop)."""
    loaded = await asyncio.to_thread(stamp, path)  # a thread: a network mount may stall
    candidate = loaded
    while True:
        await asyncio.sleep(interval)
        current = await asyncio.to_thread(stamp, path)
        if current == loaded:
            candidate = loaded
            continue
        if current != candidate:  # changed since the last look: wait until it holds still
            candidate = current
            continue
        if current is None:  # gone (mid-replace, or deleted): keep the running config
            continue
        loaded = current
        log.info("config file changed; reloading", extra=fields(file=str(path)))
        await reload()
