"""Run `relay serve` as a real process, for tests of signals, crashes and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from relay.ingest.signature import sign


def numbered_event(conversation: str, n: int) -> bytes:
    """The n-th message of a conversation; its text `<conversation>-msg-<n>` shows up in
    what the fakes receive, so order and completeness can be read off them."""
    return json.dumps({
        "event": "newMessage",
        "message": {"sender": {"name": "C"}, "content": f"{conversation}-msg-{n}"},
        "conversation": {"id": conversation},
    }).encode()


def numbered_texts(texts: list[str]) -> list[str]:
    """The `<conversation>-msg-<n>` marks in received message texts, in order."""
    return [mark for text in texts for mark in re.findall(r"\w-msg-\d+", text)]


def assert_in_order(marks: list[str], conversations: str, count: int, repeats: int = 0) -> None:
    """Every conversation's messages 0..count-1 arrived, in order; at most `repeats` arrived
    twice (what was in flight at a crash), each right after its first copy."""
    for conversation in conversations:
        numbers = [int(m.split("-")[-1]) for m in marks if m.startswith(conversation)]
        deduplicated = [n for i, n in enumerate(numbers) if i == 0 or n != numbers[i - 1]]
        assert deduplicated == list(range(count)), numbers
    assert len(marks) - len(conversations) * count <= repeats


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RelayProcess:
    """`python -m relay serve` on a config file, with its output captured to a file."""

    def __init__(self, config: Path, port: int, secret: str, *args: str) -> None:
        self.config = config
        self.port = port
        self.secret = secret
        self.args = args
        self.log = config.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 20.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - started, not waited on
                [sys.executable, "-m", "relay", "serve", "-c", str(self.config), *self.args],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.config.parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"relay exited at start:\n{self.output()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"relay did not start:\n{self.output()}")

    async def post(self, body: bytes) -> int:
        async with aiohttp.ClientSession() as session, session.post(
            f"{self.url}/webhooks/oneroute", data=body,
            headers={"x-oneroute-signature": sign(self.secret, body)},
        ) as response:
            return response.status

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            return response.status, await response.text()

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    async def wait(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"relay did not exit in {timeout} s:\n{self.output()}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await self.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
