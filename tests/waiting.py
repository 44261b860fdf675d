"""Waiting in tests for something asynchronous to have happened, with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def until(condition: Callable[[], object], within: float = 20.0) -> None:
    """Poll `condition` until it is true; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


async def until_async(condition: Callable[[], Awaitable[object]], within: float = 20.0) -> None:
    """`until` for a condition that must be awaited (e.g. an HTTP request)."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.05)
