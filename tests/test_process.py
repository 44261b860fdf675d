"""The relay as a process: kill -9 mid-delivery loses nothing; SIGTERM drains and exits 0."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.fakes import slack as fake_slack_module
from tests.fakes.slack import FakeSlack
from tests.process import (
    RelayProcess,
    assert_in_order,
    free_port,
    numbered_event,
    numbered_texts,
)
from tests.waiting import until

SECRET = "process-test-secret"


def write_config(
    tmp_path: Path,
    slack: FakeSlack,
    port: int,
    rate: float,
    coalesce: bool = False,
    storage: str | None = None,
) -> Path:
    """One Slack destination; one message per event unless `coalesce`. The store is SQLite
    in tmp_path, or `storage` (the `storage` fixture's URL: SQLite or PostgreSQL)."""
    # PostgreSQL: a killed relay's lanes are free again soon (SQLite holds no lane leases).
    delivery = "delivery: {lane_lease: 3s}\n" if storage else ""
    config = tmp_path / "relay.yaml"
    config.write_text(
        f"""
server: {{host: 127.0.0.1, port: {port}}}
oneroute: {{secrets: ["{SECRET}"]}}
storage: {storage or f"sqlite:///{tmp_path}/relay.db"}
{delivery}destinations:
  dest:
    type: slack
    token: {fake_slack_module.BOT_TOKEN}
    channel: {fake_slack_module.CHANNEL}
    api_url: {slack.api_url}
    max_per_second: {rate}
    coalesce: {str(coalesce).lower()}
routes:
  - to: [dest]
"""
    )
    return config


async def start_relay(
    tmp_path: Path,
    slack: FakeSlack,
    processes: list[RelayProcess],
    rate: float,
    coalesce: bool = False,
    storage: str | None = None,
) -> RelayProcess:
    """A relay process delivering to `slack`, started; stopped by the `processes` fixture."""
    port = free_port()
    config = write_config(tmp_path, slack, port, rate, coalesce, storage)
    relay = RelayProcess(config, port, SECRET)
    processes.append(relay)
    await relay.start()
    return relay


async def test_kill_9_mid_delivery_then_restart_delivers_every_acknowledged_event(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess]
) -> None:
    relay = await start_relay(tmp_path, fake_slack, processes, rate=5)
    config, port = relay.config, relay.port
    # Four sends go through, the fifth is held (until the fake stops): the kill lands
    # mid-delivery however slowly a loaded machine posts, with that send in flight.
    fake_slack.faults.delay_next(4, seconds=0)
    fake_slack.faults.delay_next(1, seconds=600)
    sent = [(c, n) for n in range(8) for c in ("a", "b", "c")]
    for conversation, n in sent:
        assert await relay.post(numbered_event(conversation, n)) == 200
    await until(lambda: fake_slack.faults.scripted == 0, within=20)
    await relay.kill()
    delivered_before = len(fake_slack.messages)
    assert delivered_before == 4, "the kill should land mid-delivery"

    restarted = RelayProcess(config, port, SECRET)
    processes.append(restarted)
    await restarted.start()
    received = lambda: numbered_texts([post.text for post in fake_slack.messages])  # noqa: E731
    await until(lambda: len(set(received())) == len(sent), within=30)
    # In order; at most the send that was in flight at the kill is repeated.
    assert_in_order(received(), "abc", 8, repeats=1)
    restarted.signal(signal.SIGTERM)
    assert await restarted.wait() == 0


async def test_sigterm_stops_intake_finishes_the_send_in_flight_and_exits_0(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess]
) -> None:
    relay = await start_relay(tmp_path, fake_slack, processes, rate=100)
    config, port = relay.config, relay.port
    fake_slack.faults.delay_next(1, seconds=1.5)
    assert await relay.post(numbered_event("z", 0)) == 200
    # The send is in flight once the fake has taken the delay (it holds the call 1.5 s):
    # waited for, not slept for, so a slow machine cannot send SIGTERM before it.
    await until(lambda: fake_slack.faults.scripted == 0, within=15)
    relay.signal(signal.SIGTERM)
    assert await relay.wait(timeout=15) == 0
    assert numbered_texts([post.text for post in fake_slack.messages]) == ["z-msg-0"]
    assert "stopped" in relay.output()
    # Nothing is left pending: a restart sends nothing again.
    again = RelayProcess(config, port, SECRET)
    processes.append(again)
    await again.start()
    await asyncio.sleep(0.5)
    assert len(fake_slack.messages) == 1
    again.signal(signal.SIGTERM)
    assert await again.wait() == 0


async def serve_once(config: Path) -> tuple[int, str]:
    """`relay serve` that is expected to give up at start: its exit code and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "serve", "-c", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, stderr.decode()


async def test_a_busy_port_or_a_missing_store_directory_is_one_clear_line(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess]
) -> None:
    first = await start_relay(tmp_path, fake_slack, processes, rate=1)
    config, port = first.config, first.port
    second = tmp_path / "second"
    second.mkdir()
    (second / "relay.yaml").write_text(config.read_text().replace(
        f"{tmp_path}/relay.db", f"{second}/relay.db"))
    code, stderr = await serve_once(second / "relay.yaml")
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in stderr and "Traceback" not in stderr
    (second / "relay.yaml").write_text(config.read_text().replace(
        f"{tmp_path}/relay.db", f"{tmp_path}/no/such/dir/relay.db"))
    code, stderr = await serve_once(second / "relay.yaml")
    assert code == 1
    assert "cannot open the store" in stderr and "does not exist" in stderr
    assert "Traceback" not in stderr


async def test_sigterm_exits_0_after_odd_answers_and_with_a_lane_paused(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess]
) -> None:
    relay = await start_relay(tmp_path, fake_slack, processes, rate=100)
    # A JSON list (slack-sdk cannot read it), invalid UTF-8, then a huge Retry-After.
    fake_slack.faults.answer_next(status=200, body=b"[1]", content_type="application/json")
    fake_slack.faults.answer_next(status=200, body=b"\xff\xfe", content_type="text/plain")
    fake_slack.faults.rate_limit_next(1, retry_after=1_000_000)
    assert await relay.post(numbered_event("t", 0)) == 200
    await until(lambda: fake_slack.count(429) == 1, within=15)
    status, body = await relay.get("/readyz")
    assert status == 200 and '"paused"' in body
    relay.signal(signal.SIGTERM)
    assert await relay.wait(timeout=15) == 0
    output = relay.output()
    assert "Traceback" not in output and "stopped" in output


async def test_a_second_relay_on_the_same_sqlite_file_refuses_to_start_with_one_line(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess]
) -> None:
    """Two relays on one file would both deliver everything: the second one stops at start,
    and the first one goes on as if nothing happened."""
    first = await start_relay(tmp_path, fake_slack, processes, rate=100)
    config, port = first.config, first.port
    assert first.process is not None
    (tmp_path / "second").mkdir()
    other_port = free_port()
    other_config = tmp_path / "second" / "relay.yaml"
    other_config.write_text(config.read_text().replace(f"port: {port}", f"port: {other_port}"))
    second = RelayProcess(other_config, other_port, SECRET)
    processes.append(second)
    with pytest.raises(AssertionError, match="relay exited at start"):
        await second.start()
    assert await second.wait() == 1
    (line,) = second.output().strip().splitlines()
    assert line.endswith(
        f"cannot open the store: {tmp_path}/relay.db is already served by another relay"
        f" (pid {first.process.pid}); stop it first, or use PostgreSQL to run several instances"
    )
    assert await first.post(numbered_event("a", 0)) == 200
    await until(lambda: numbered_texts([m.text for m in fake_slack.messages]) == ["a-msg-0"])
    # The operator's commands open the file next to the serving relay, without the lock.
    listing = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "dead", "list", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(listing.communicate(), 30)
    assert listing.returncode == 0, output.decode()


async def test_kill_9_in_the_middle_of_a_coalesced_send_sends_it_again(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess], storage: str
) -> None:
    # A message every 4 s: the ten events below, posted one by one, are all stored before
    # the next message may go (even on a loaded machine), so it carries all ten.
    relay = await start_relay(
        tmp_path, fake_slack, processes, rate=0.25, coalesce=True, storage=storage
    )
    assert await relay.post(numbered_event("k", 0)) == 200  # alone, at once
    await until(lambda: len(fake_slack.messages) == 1)
    fake_slack.faults.delay_next(1, seconds=5)  # the next message hangs, then lands anyway
    for n in range(1, 6):
        for conversation in "kj":
            assert await relay.post(numbered_event(conversation, n)) == 200
    # When the pacer allows it the coalesced send goes out; the fake taking the delay means
    # it is in flight (waited for, not slept for: a loaded machine may be slower).
    await until(lambda: fake_slack.faults.scripted == 0, within=15)
    await relay.kill()
    before = relay.output()  # the two processes write one log file
    restarted = RelayProcess(relay.config, relay.port, SECRET)
    processes.append(restarted)
    await restarted.start()
    received = lambda: numbered_texts([post.text for post in fake_slack.messages])  # noqa: E731
    await until(lambda: len(set(received())) == 11, within=30)
    # The first relay died with the coalesced message in flight; the second sent it again.
    assert "events_in_message=10" not in before
    after = lambda: restarted.output()[len(before):]  # noqa: E731
    await until(lambda: after().count("events_in_message=10") == 10, within=10)
    for conversation, first in (("k", 0), ("j", 1)):
        numbers = [int(m.split("-")[-1]) for m in received() if m.startswith(conversation)]
        assert sorted(set(numbers)) == list(range(first, 6))  # nothing lost
        firsts = list(dict.fromkeys(numbers))  # each number's first arrival
        assert firsts == sorted(firsts)  # in order; a repeat is the whole message again
    restarted.signal(signal.SIGTERM)
    assert await restarted.wait() == 0
