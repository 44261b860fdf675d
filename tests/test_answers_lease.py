"""Leased (relay/answers/lease.py): a listener runs only while its instance holds the lease."""

from __future__ import annotations

from relay.answers.lease import Leased
from tests.waiting import until


class Listener:
    def __init__(self) -> None:
        self.starts = self.closes = 0

    async def start(self) -> None:
        self.starts += 1

    async def close(self) -> None:
        self.closes += 1


class Lanes:
    """hold_lane as the store's: `holder` holds it; `down` makes the store fail."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.down = False
        self.released: list[str] = []

    async def hold_lane(self, destination: str, owner: str, ttl: float, now: float) -> bool:
        if self.down:
            raise OSError("the store is away")
        if self.holder is None:
            self.holder = owner
        return self.holder == owner

    async def release_lane(self, destination: str, owner: str) -> None:
        self.released.append(owner)
        if self.holder == owner:
            self.holder = None


async def test_the_holder_listens_and_the_other_waits_its_turn() -> None:
    lanes = Lanes()
    one, other = Listener(), Listener()
    first = Leased(one, lanes, key="k", owner="a", ttl=0.1)
    second = Leased(other, lanes, key="k", owner="b", ttl=0.1)
    await first.start()
    await until(lambda: one.starts == 1)
    await second.start()
    await until(lambda: lanes.holder == "a" and not second.running)
    await first.close()
    assert one.closes == 1 and lanes.released == ["a"]
    await until(lambda: other.starts == 1)
    lanes.holder = "c"  # taken over elsewhere (the lease ran out): stop reading
    await until(lambda: other.closes == 1)
    await second.close()
    assert other.closes == 1  # not closed twice


async def test_a_store_outage_stops_listening_once_the_lease_has_run_out() -> None:
    lanes = Lanes()
    listener = Listener()
    leased = Leased(listener, lanes, key="k", owner="a", ttl=0.1)
    await leased.start()
    await until(lambda: listener.starts == 1)
    lanes.down = True
    await until(lambda: listener.closes == 1)
    lanes.down = False
    await until(lambda: listener.starts == 2)
    await leased.close()
