"""`relay serve --watch`: the config file is reloaded after it changes, once it holds still."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from relay.watch import stamp, watch
from tests.waiting import until

LOOK = 0.02  # seconds between looks, for the tests


class Reloads:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> bool:
        self.count += 1
        return True


@pytest.fixture
async def watching(tmp_path: Path) -> AsyncIterator[Callable[[Path], Reloads]]:
    tasks: list[asyncio.Task[None]] = []

    def start(path: Path, interval: float = LOOK) -> Reloads:
        reloads = Reloads()
        tasks.append(asyncio.create_task(watch(path, reloads, interval=interval)))
        return reloads

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def looks(n: int) -> None:
    await asyncio.sleep(n * LOOK + LOOK / 2)


async def test_a_change_is_reloaded_once(tmp_path: Path, watching: Callable[..., Reloads]) -> None:
    file = tmp_path / "relay.yaml"
    file.write_text("a: 1\n")
    reloads = watching(file)
    await looks(5)
    assert reloads.count == 0
    file.write_text("a: 2\n")  # same size, and likely the same coarse mtime: still seen
    await until(lambda: reloads.count == 1, within=5)
    await looks(5)
    assert reloads.count == 1


async def test_touching_or_rewriting_the_same_text_does_not_reload(
    tmp_path: Path, watching: Callable[..., Reloads]
) -> None:
    file = tmp_path / "relay.yaml"
    file.write_text("a: 1\n")
    reloads = watching(file)
    await looks(2)
    file.write_text("a: 1\n")
    os.utime(file, (1, 1))
    await looks(6)
    assert reloads.count == 0


async def test_a_file_still_being_written_waits_until_it_holds_still(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer is tied to the looks rather than to the clock, so a loaded machine cannot
    # let two looks see the same version: each of the first ten looks finds a new one.
    file = tmp_path / "relay.yaml"
    file.write_text("a: 1\n")
    looked = 0

    def stamp_while_writing(path: Path) -> bytes | None:
        nonlocal looked
        looked += 1
        if looked <= 10:
            path.write_text(f"a: {looked + 1}\n")
        return stamp(path)

    monkeypatch.setattr("relay.watch.stamp", stamp_while_writing)
    reloaded_at: list[int] = []

    async def reload() -> None:
        reloaded_at.append(looked)

    task = asyncio.create_task(watch(file, reload, interval=LOOK))
    try:
        await until(lambda: reloaded_at, within=5)
        await looks(5)
    finally:
        task.cancel()
    # Looks 1-10 each saw a new version; look 11 saw look 10's again: it held still.
    assert reloaded_at == [11]


async def test_a_missing_file_keeps_the_config_until_it_is_back(
    tmp_path: Path, watching: Callable[..., Reloads]
) -> None:
    file = tmp_path / "relay.yaml"
    file.write_text("a: 1\n")
    reloads = watching(file)
    await looks(2)
    file.unlink()
    await looks(6)
    assert reloads.count == 0
    file.write_text("a: 3\n")
    await until(lambda: reloads.count == 1, within=5)


async def test_a_replace_by_rename_is_seen(
    tmp_path: Path, watching: Callable[..., Reloads]
) -> None:
    file = tmp_path / "relay.yaml"
    file.write_text("a: 1\n")
    reloads = watching(file)
    await looks(2)
    (tmp_path / "relay.yaml.tmp").write_text("a: 2\n")
    (tmp_path / "relay.yaml.tmp").replace(file)  # how editors and config managers save
    await until(lambda: reloads.count == 1, within=5)


async def test_a_kubernetes_configmap_symlink_swap_is_seen(
    tmp_path: Path, watching: Callable[..., Reloads]
) -> None:
    # A mounted ConfigMap: relay.yaml -> ..data/relay.yaml, ..data -> ..<timestamp>/;
    # an update writes a new directory and swaps ..data atomically.
    for version, text in (("..v1", "a: 1\n"), ("..v2", "a: 2\n")):
        (tmp_path / version).mkdir()
        (tmp_path / version / "relay.yaml").write_text(text)
    (tmp_path / "..data").symlink_to("..v1")
    file = tmp_path / "relay.yaml"
    file.symlink_to("..data/relay.yaml")
    reloads = watching(file)
    await looks(2)
    (tmp_path / "..data.new").symlink_to("..v2")
    (tmp_path / "..data.new").replace(tmp_path / "..data")
    await until(lambda: reloads.count == 1, within=5)
