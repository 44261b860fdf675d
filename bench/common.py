"""What the benchmarks share: the machine, event bodies, configs, processes, tables, results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE = ROOT / "tests" / "data" / "oneroute" / "new-message-text.json"
SECRET = "bench-secret-0123456789"
PATH = "/webhooks/oneroute"

# --- the machine ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk = shutil.which("wrk")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": wrk is not None,
    }


# --- event bodies -----------------------------------------------------------------------------

# A OneRoute newMessage event (the documented sample) with a unique message per request:
# the marker N becomes the request's unique id, C its conversation. Compact, as OneRoute
# sends it. The load generators (Python and wrk's Lua) fill the markers in per request.
_MARKS = {"@@N@@": "n", "@@C@@": "c"}
CONVERSATIONS = 64


def template_spec() -> dict[str, Any]:
    """The event as literal parts around its markers: parts[0] + v0 + parts[1] + v1 + ...,
    where `order` names the value (`n`: unique id, `c`: conversation) at each gap."""
    event = json.loads(SAMPLE.read_text())
    event["message"]["content"] = "Hello, is my order @@N@@ on its way?"
    event["message"]["externalId"] = "wamid.@@N@@"
    event["message"]["conversation_id"] = "@@C@@"
    event["conversation"]["id"] = "@@C@@"
    text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    pieces = re.split("(@@N@@|@@C@@)", text)
    return {
        "parts": pieces[0::2],
        "order": [_MARKS[mark] for mark in pieces[1::2]],
        "conversations": CONVERSATIONS,
    }


def render_body(spec: dict[str, Any], unique: str, conversation: str) -> bytes:
    values = {"n": unique, "c": conversation}
    out = [spec["parts"][0]]
    for mark, part in zip(spec["order"], spec["parts"][1:], strict=True):
        out.append(values[mark])
        out.append(part)
    return "".join(out).encode()


def conversation_id(index: int) -> str:
    return f"0b5e8a52-0000-4000-8000-{index % CONVERSATIONS:012d}"


def sign(body: bytes) -> str:
    from relay.ingest.signature import sign as relay_sign

    return relay_sign(SECRET, body)


# --- configs ----------------------------------------------------------------------------------


def write_config(
    directory: Path,
    port: int,
    destinations: str,
    routes: str,
    name: str = "relay",
    workers: int = 0,
) -> Path:
    """A relay.yaml for a benchmark: 127.0.0.1:port, the bench secret, SQLite in `directory`
    (synchronous=FULL, as shipped), `workers` ingest worker processes. `destinations` and
    `routes` are YAML blocks."""
    config = directory / f"{name}.yaml"
    server_extra = f", workers: {workers}" if workers else ""  # older relays lack the key
    config.write_text(
        f"""server: {{host: 127.0.0.1, port: {port}, path: {PATH}{server_extra}}}
oneroute: {{secrets: ["{SECRET}"], allowed_ips: ["127.0.0.1", "::1"]}}
storage: sqlite:///{directory}/{name}.db
destinations:
{_indent(destinations)}
routes:
{_indent(routes)}
"""
    )
    return config


def platform_destinations(slack_api_url: str, telegram_api_url: str, chat_id: int) -> str:
    """`support-slack` and `ops-telegram` on the fakes, with the platforms' default limits."""
    from tests.fakes import slack as fake_slack
    from tests.fakes import telegram as fake_telegram

    return f"""
support-slack:
  type: slack
  token: {fake_slack.BOT_TOKEN}
  channel: {fake_slack.CHANNEL}
  api_url: {slack_api_url}
ops-telegram:
  type: telegram
  token: "{fake_telegram.TOKEN}"
  chat_id: {chat_id}
  api_url: {telegram_api_url}
"""


def _indent(block: str) -> str:
    lines = [line for line in block.strip("\n").splitlines()]
    return "\n".join("  " + line for line in lines)


def store_files(directory: Path, name: str = "relay") -> dict[str, int]:
    sizes = {}
    for suffix in ("", "-wal", "-shm"):
        path = directory / f"{name}.db{suffix}"
        sizes[f"db{suffix}"] = path.stat().st_size if path.exists() else 0
    return sizes


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process (the relay, or the bare baseline) with its output in a log file."""

    command: list[str]
    port: int
    log: Path
    cwd: Path = ROOT
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, within: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - started, not waited on
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.command[2:4]} exited at start:\n{self.output()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.output()}")

    async def stop(self, within: float = 30.0) -> int | None:
        """SIGTERM, then wait (the relay drains and exits 0); SIGKILL after `within` s."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + within
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                break
            await asyncio.sleep(0.05)
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def status(self) -> dict[str, int]:
        """VmRSS / VmHWM (peak) / VmSize of the process, in kB, from /proc/<pid>/status."""
        return proc_status(self.pid)


def relay_server(config: Path, port: int, *args: str, patches: Sequence[str] = ()) -> Server:
    """`python -m relay serve -c config`; with `patches`, bench.patched applies those
    (proposed changes or instrumentation, see bench/patches.py) and then runs the same."""
    module = ["-m", "bench.patched", "--patch", ",".join(patches)] if patches else ["-m", "relay"]
    return Server(
        [sys.executable, *module, "serve", "-c", str(config), *args],
        port,
        config.with_suffix(".log"),
        cwd=config.parent,
        env={"PYTHONPATH": str(ROOT), "BENCH_STATS": str(config.with_suffix(".stats.json"))}
        if patches
        else {},
    )


def bare_server(directory: Path, port: int, *args: str) -> Server:
    return Server(
        [sys.executable, "-m", "bench.bare", "--port", str(port), *args],
        port,
        directory / f"bare-{port}.log",
        env={"PYTHONPATH": str(ROOT)},
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(pid: int) -> float:
    """CPU seconds of the live children of `pid` (a relay's ingest workers and helpers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += cpu_seconds(int(stat.parent.name))
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live children: all of a relay's processes."""
    return cpu_seconds(pid) + children_cpu(pid)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def proc_status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize", "Threads"):
            values[key] = int(rest.split()[0])
    return values


@contextlib.asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        server.kill()


# --- figures ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title, "-" * len(title)]
    for index, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return str(value)


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        **result,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
