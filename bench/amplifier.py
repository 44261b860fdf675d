"""A wrong signature as a CPU amplifier: valid webhooks while 1 MiB bad bodies are checked.

Four clients (one process of their own, `python -m bench.amplifier --attack`) post the
costliest body to re-serialise — 1 MiB of small floats in a JSON object — with a made-up
signature, back to back on keep-alive connections, from an allowed address. Meanwhile
this process posts valid signed webhooks (the documented sample, unique each) at a
steady 20 per second, each on its own schedule (open loop: a slow answer does not delay
the next request), and records how long each took to be answered.

Variants, each a fresh `relay serve` process, in one invocation:

- quiet: the relay as shipped, no attack — the baseline;
- inline: attacked, with `--patch reserialise-inline` (bench/patches.py): every body is
  re-serialised on the event loop, as before relay/ingest/offload.py;
- shipped: attacked, the relay as shipped (large bodies re-serialised in its worker).

Reported: valid-webhook latency p50 / p99 / max and how many were not answered 200; the
attackers' answers per second by status; CPU of the relay process and of its children
(the worker), in cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    PATH,
    ROOT,
    children_cpu,
    conversation_id,
    cpu_seconds,
    free_port,
    percentile,
    relay_server,
    render_body,
    running,
    save,
    sign,
    table,
    template_spec,
    write_config,
)
from bench.ingest import background_busy

ATTACKERS = 4
RATE = 20.0  # valid webhooks per second
TARGET_P99_MS = 100.0
BAD_SIGNATURE = "0" * 128


def bad_body(size: int = 1024 * 1024 - 64) -> bytes:
    """~1 MiB of small floats: the costliest input per byte to re-serialise (offload.py)."""
    return b'{"event":"x","v":[' + b",".join([b"1.5"] * (size // 4)) + b"]}"


# --- the attackers, in their own process ------------------------------------------------------


async def _attack_one(port: int, until: float, statuses: Counter[int]) -> None:
    body = bad_body()
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"x-oneroute-signature: {BAD_SIGNATURE}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            statuses[0] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < until:
                writer.write(request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                statuses[int(head.split(b" ", 2)[1])] += 1
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError):
            statuses[0] += 1  # the connection was closed: open another
        finally:
            writer.close()


async def _attack(port: int, clients: int, seconds: float) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    await asyncio.gather(*(_attack_one(port, started + seconds, statuses) for _ in range(clients)))
    return {"seconds": time.monotonic() - started, "statuses": dict(statuses)}


def attack_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.amplifier --attack")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=ATTACKERS)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_attack(args.port, args.clients, args.seconds))))
    return 0


# --- the valid webhooks and the variants -------------------------------------------------------


async def _post_valid(
    session: aiohttp.ClientSession, url: str, body: bytes, latencies: list[float]
) -> int:
    started = time.monotonic()
    try:
        async with session.post(url, data=body, headers={"x-oneroute-signature": sign(body)}) as r:
            await r.read()
            status = r.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    latencies.append(time.monotonic() - started)
    return status


async def valid_stream(port: int, seconds: float, tag: str) -> dict[str, Any]:
    spec = template_spec()
    url = f"http://127.0.0.1:{port}{PATH}"
    latencies: list[float] = []
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tasks = []
        started = time.monotonic()
        count = int(seconds * RATE)
        for n in range(count):
            await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
            body = render_body(spec, f"{tag}-{n}", conversation_id(n))
            tasks.append(asyncio.create_task(_post_valid(session, url, body, latencies)))
        statuses = Counter(await asyncio.gather(*tasks))
    ms = [1000 * s for s in latencies]
    return {
        "sent": count,
        "statuses": dict(statuses),
        "non_200": count - statuses.get(200, 0),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms, default=float("nan")),
    }


async def run_variant(
    directory: Path, name: str, patches: list[str], attack: bool, seconds: float, warmup: float
) -> dict[str, Any]:
    port = free_port()
    config = write_config(directory, port, "out: {type: console}", "- {to: [out]}")
    server = relay_server(config, port, patches=patches)
    async with running(server) as relay:
        attackers = None
        if attack:
            attackers = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.amplifier", "--attack", "--port", str(port),
                "--seconds", str(warmup + seconds + 1.0),
                cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
        await asyncio.sleep(warmup)
        cpu_before, children_before = cpu_seconds(relay.pid), children_cpu(relay.pid)
        started = time.monotonic()
        result = await valid_stream(port, seconds, f"{name}-{time.time_ns()}")
        elapsed = time.monotonic() - started
        result["relay_cores"] = (cpu_seconds(relay.pid) - cpu_before) / elapsed
        result["worker_cores"] = max(0.0, children_cpu(relay.pid) - children_before) / elapsed
        if attackers is not None:
            out, _ = await attackers.communicate()
            attack_result = json.loads(out)
            result["attack"] = {
                str(status): count / attack_result["seconds"]
                for status, count in sorted(attack_result["statuses"].items())
            }
    return result


def shapes(size: int = 1024 * 1024 - 64) -> dict[str, bytes]:
    """1 MiB JSON bodies of several shapes, the last one `bad_body()`."""
    return {
        "one long string": b'{"event":"x","text":"' + b"x" * (size - 32) + b'"}',
        "array of small integers": b'{"event":"x","v":[' + b",".join([b"7"] * (size // 2)) + b"]}",
        "object of short keys": b'{"event":"x","o":{'
        + b",".join(b'"k%x":1' % n for n in range(size // 11))
        + b"}}",
        "array of {} objects": b'{"event":"x","v":[' + b",".join([b"{}"] * (size // 3)) + b"]}",
        "array of small floats (the bad body)": bad_body(size),
    }


def check_costs(repeat: int = 3) -> dict[str, dict[str, float]]:
    """CPU ms per body shape, best of `repeat`, in this process: its HMAC (all that checking
    it costs when the signature matches its raw bytes) and its re-serialisation (the cost of
    a wrong signature, relay/ingest/jsjson.py)."""
    from relay.errors import JSONParseError
    from relay.ingest.jsjson import js_reserialise

    def reserialise(body: bytes) -> None:
        with contextlib.suppress(JSONParseError):
            js_reserialise(body)

    costs: dict[str, dict[str, float]] = {}
    for shape, body in shapes().items():
        costs[shape] = {"bytes": len(body)}
        for name, work in (("hmac_ms", sign), ("reserialise_ms", reserialise)):
            times = []
            for _ in range(repeat):
                started = time.thread_time()
                work(body)
                times.append(1000 * (time.thread_time() - started))
            costs[shape][name] = min(times)
    return costs


async def main(quick: bool = False, seconds: float | None = None) -> dict[str, Any]:
    seconds = seconds or (4.0 if quick else 10.0)
    warmup = 1.0
    costs = check_costs()
    busy = await background_busy()
    variants = {
        "quiet (baseline)": ([], False),
        "attacked, re-serialised inline (before)": (["reserialise-inline"], True),
        "attacked, shipped": ([], True),
    }
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-amplifier-") as temp:
        for number, (name, (patches, attack)) in enumerate(variants.items()):
            directory = Path(temp) / f"relay-{number}"
            directory.mkdir()
            runs[name] = await run_variant(
                directory, name.split()[0], patches, attack, seconds, warmup
            )
    baseline = runs["quiet (baseline)"]
    rows = []
    for name, figures in runs.items():
        attack = figures.get("attack", {})
        rows.append(
            [name, figures["p50_ms"], figures["p99_ms"], figures["max_ms"],
             figures["p99_ms"] / baseline["p99_ms"], figures["non_200"],
             " ".join(f"{s}:{rate:.1f}" for s, rate in attack.items()) or "-",
             figures["relay_cores"], figures["worker_cores"]]
        )  # fmt: skip
    shipped = runs["attacked, shipped"]
    checks = {
        "p99_under_target": shipped["p99_ms"] < TARGET_P99_MS,
        "all_200": not shipped["non_200"],
    }
    title = (
        f"5. Valid webhooks ({RATE:g}/s, {seconds:g} s) while {ATTACKERS} clients post 1 MiB "
        f"bodies with a wrong signature; target p99 < {TARGET_P99_MS:g} ms"
    )
    text = table(
        title,
        ["relay", "p50 ms", "p99 ms", "max ms", "p99 x quiet", "non-200",
         "attack answers/s by status", "relay cores", "worker cores"],
        rows,
    )  # fmt: skip
    text += "\n\n" + table(
        "Checking one 1 MiB body, CPU in one process (best of 3)",
        ["body", "HMAC-SHA512 ms", "re-serialisation ms", "ratio"],
        [[shape, c["hmac_ms"], c["reserialise_ms"], c["reserialise_ms"] / c["hmac_ms"]]
         for shape, c in costs.items()],
    )  # fmt: skip
    if busy > 10:
        text += f"\nwarning: the machine was {busy:.0f}% busy before the runs (other jobs)"
    print(text)
    result = {"runs": runs, "checks": checks, "costs": costs, "background_busy_pct": busy,
              "table": text}  # fmt: skip
    save("amplifier", result)
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--attack"]:
        raise SystemExit(attack_main(sys.argv[2:]))
    raise SystemExit("run it as `python -m bench amplifier`")
