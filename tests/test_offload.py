"""The re-serialisation of large bodies in a worker process (relay/ingest/offload.py): same
bytes as inline, bounded, a dead worker is replaced, and it never outlives the relay."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.errors import JSONParseError, Overloaded
from relay.ingest.jsjson import js_reserialise
from relay.ingest.offload import Reserialiser
from tests.process import alive
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
    await reserialiser.close()


async def test_small_bodies_are_reserialised_inline(reserialiser: Reserialiser) -> None:
    body = b'{"a": 1.0, "1": [true, 1e21]}'
    assert len(body) <= reserialiser.inline_max
    assert await reserialiser(body) == b'{"1":[true,1e+21],"a":1}'
    with pytest.raises(JSONParseError):
        await reserialiser(b'{"a": NaN}')
    assert reserialiser.worker_pid is None  # no process for what is cheap


async def test_large_bodies_come_back_from_the_worker_as_inline(
    reserialiser: Reserialiser,
) -> None:
    assert len(LARGE) > reserialiser.inline_max
    assert await reserialiser(LARGE) == js_reserialise(LARGE)
    pid = reserialiser.worker_pid
    assert pid is not None and pid != os.getpid()
    with pytest.raises(JSONParseError, match="char"):  # raised in the worker, raised here
        await reserialiser(LARGE[:-1])
    bodies = [LARGE.replace(b"1.0", b"%d.0" % n) for n in range(3)]
    answers = await asyncio.gather(*(reserialiser(body) for body in bodies))
    assert answers == [js_reserialise(body) for body in bodies]  # each gets its own answer
    assert reserialiser.worker_pid == pid  # one worker for them all


async def test_beyond_capacity_is_overloaded_not_queued() -> None:
    reserialiser = Reserialiser(inline_max=0, capacity=2)
    try:
        results = await asyncio.gather(
            *(reserialiser(LARGE) for _ in range(3)), return_exceptions=True
        )
        assert results[:2] == [js_reserialise(LARGE)] * 2
        assert isinstance(results[2], Overloaded)
        assert await reserialiser(LARGE) == results[0]  # room again once they are done
    finally:
        await reserialiser.close()


async def test_a_dead_worker_is_replaced(reserialiser: Reserialiser) -> None:
    expected = js_reserialise(LARGE)
    assert await reserialiser(LARGE) == expected
    pid = reserialiser.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await until(lambda: not alive(pid), within=10)
    outcomes: list[bytes | None] = []
    for _ in range(2):
        try:
            outcomes.append(await reserialiser(LARGE))
            break
        except Overloaded:  # the one that found the worker dead: 503, OneRoute retries
            outcomes.append(None)
    assert outcomes[-1] == expected, outcomes
    assert reserialiser.worker_pid not in (None, pid)


async def test_close_stops_the_worker(reserialiser: Reserialiser) -> None:
    await reserialiser(LARGE)
    pid = reserialiser.worker_pid
    assert pid is not None
    await reserialiser.close()
    assert reserialiser.worker_pid is None
    await until(lambda: not alive(pid), within=10)


ORPHAN = """
import asyncio, os, signal
from relay.ingest.offload import Reserialiser
from tests.test_offload import LARGE

async def main():
    reserialiser = Reserialiser()
    await reserialiser(LARGE)
    print(reserialiser.worker_pid, flush=True)
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
        process.stdout.close()
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the worker outlived the relay by 15 s")
