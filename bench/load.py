"""Drive a server with unique signed events from another process: wrk, or bench.loadgen.

Both report requests/s and latency percentiles over a closed loop of `connections`
keep-alive connections; wrk is preferred (C, and light on the CPU the server needs).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import PATH, ROOT, SECRET, template_spec

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"


def pick(generator: str) -> str:
    if generator == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if generator == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk), use --loadgen python")
    return generator


async def run_load(
    port: int, seconds: float, connections: int, prefix: str, generator: str
) -> dict[str, Any]:
    if generator == "wrk":
        return await _wrk(port, seconds, connections, prefix)
    return await _python(port, seconds, connections, prefix)


async def _wrk(port: int, seconds: float, connections: int, prefix: str) -> dict[str, Any]:
    spec = template_spec()
    with tempfile.NamedTemporaryFile("w", suffix=".tpl", delete=False) as file:
        file.write("".join(spec["order"]) + "\n" + str(spec["conversations"]) + "\n")
        file.write("\1".join(spec["parts"]))
    try:
        process = await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
            "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}{PATH}",
            env={"BENCH_TEMPLATE": file.name, "BENCH_SECRET": SECRET, "BENCH_PREFIX": prefix,
                 "BENCH_PATH": PATH},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
    finally:
        os.remove(file.name)
    for line in out.decode().splitlines():
        if line.startswith("BENCH_RESULT "):
            raw = json.loads(line.removeprefix("BENCH_RESULT "))
            break
    else:
        raise RuntimeError(f"wrk failed:\n{out.decode()}\n{err.decode()}")
    seconds_run = raw["duration_us"] / 1e6
    errors = raw["errors"]
    return {
        "generator": "wrk",
        "requests": raw["requests"],
        "seconds": seconds_run,
        "rps": raw["requests"] / seconds_run,
        "non_200": errors["status"] + errors["connect"] + errors["read"] + errors["write"]
        + errors["timeout"],
        "errors": errors,
        "latency_ms": {k: v / 1000 for k, v in raw["latency_us"].items()},
    }  # fmt: skip


async def run_count(port: int, requests: int, connections: int, prefix: str) -> dict[str, Any]:
    """Send exactly `requests` unique events (bench.loadgen: wrk cannot stop at a count)."""
    return await _python(port, 0.0, connections, prefix, requests)


async def _python(
    port: int, seconds: float, connections: int, prefix: str, requests: int = 0
) -> dict[str, Any]:
    limit = ["--requests", str(requests)] if requests else ["--duration", str(seconds)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", "--port", str(port),
        "--connections", str(connections), *limit, "--prefix", prefix,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"bench.loadgen failed:\n{err.decode()}")
    return json.loads(out)
