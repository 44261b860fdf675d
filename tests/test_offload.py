"""The re-serialisation of large bodies in a worker process (relay/ingest/offload.py): same
bytes as inline, bounded, and a dead worker is replaced."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.errors import JSONParseError
from relay.ingest.jsjson import js_reserialise
from relay.ingest.offload import Overloaded, Reserialiser
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent

LARGE = (  # over INLINE_MAX, and far from its re-serialisation
    b'{ "b": [1.0, 2e0, "\\u00e9"], "10": {"a": 1e999}, "2": null, "pad": "' + b"x" * 8000 + b'" }'
)


@pytest.fixture
async def reserialiser() -> AsyncIterator[Reserialiser]:
    """A Reserialiser whose worker (if started) is stopped after the test."""
    reserialiser = Reserialiser()
    yield reserialiser
    reserialiser.close()


def children() -> set[multiprocessing.process.BaseProcess]:
    return set(multiprocessing.active_children())


async def test_small_bodies_are_reserialised_inline(reserialiser: Reserialiser) -> None:
    before = children()
    body = b'{"a": 1.0, "1": [true, 1e21]}'
    assert len(body) <= reserialiser.inline_max
    assert await reserialiser(body) == b'{"1":[true,1e+21],"a":1}'
    with pytest.raises(JSONParseError):
        await reserialiser(b'{"a": NaN}')
    assert children() == before  # no process for what is cheap


async def test_large_bodies_come_back_from_the_worker_as_inline(
    reserialiser: Reserialiser,
) -> None:
    before = children()
    assert len(LARGE) > reserialiser.inline_max
    assert await reserialiser(LARGE) == js_reserialise(LARGE)
    assert len(children() - before) == 1
    with pytest.raises(JSONParseError):  # raised in the worker, raised here
        await reserialiser(LARGE[:-1])


async def test_beyond_capacity_is_overloaded_not_queued() -> None:
    reserialiser = Reserialiser(inline_max=0, capacity=1)
    try:
        results = await asyncio.gather(
            reserialiser(LARGE), reserialiser(LARGE), return_exceptions=True
        )
        assert results[0] == js_reserialise(LARGE)
        assert isinstance(results[1], Overloaded)
        assert await reserialiser(LARGE) == results[0]  # room again once it is done
    finally:
        reserialiser.close()


async def test_a_dead_worker_is_replaced(reserialiser: Reserialiser) -> None:
    before = children()
    expected = js_reserialise(LARGE)
    assert await reserialiser(LARGE) == expected
    (worker,) = children() - before
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    await until(lambda: not worker.is_alive(), within=10)
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(await reserialiser(LARGE))
        except Overloaded:  # the one that found the worker dead: 503, OneRoute retries
            outcomes.append(None)
        if outcomes[-1] is not None:
            break
    assert outcomes[-1] == expected and len(outcomes) <= 2, outcomes


async def test_close_stops_the_worker(reserialiser: Reserialiser) -> None:
    before = children()
    await reserialiser(LARGE)
    (worker,) = children() - before
    reserialiser.close()
    await until(lambda: not worker.is_alive(), within=10)


ORPHAN = """
import asyncio, multiprocessing, os, signal
from relay.ingest.offload import Reserialiser
from tests.test_offload import LARGE

async def main():
    reserialiser = Reserialiser()
    await reserialiser(LARGE)
    (worker,) = multiprocessing.active_children()  # spawn's resource tracker is not ours
    print(worker.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no chance to stop the worker

asyncio.run(main())
"""


def test_the_worker_exits_when_the_relay_is_killed() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, cwd=ROOT
    ) as process:
        assert process.stdout is not None
        pid = int(process.stdout.readline())
        assert process.wait(30) == -signal.SIGKILL
        process.stdout.close()  # the orphan holds it open: do not wait for its end
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the worker outlived the relay by 15 s")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
