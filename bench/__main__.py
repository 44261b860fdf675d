"""`python -m bench [ingest|e2e|drain|memory|handler|floor|amplifier|console|backlog|layout ...]
[--quick]`: run
benchmarks.

Without names, the four figures of BENCHMARKS.md: ingest, e2e, drain, memory.

Results are printed as tables and written to bench/results/<name>.json (git-ignored).
See BENCHMARKS.md for the method and the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bench.common import machine
from bench.floor_server import STAGES

NAMES = ("ingest", "e2e", "drain", "memory")
# Run only when named: not among the four figures.
EXTRAS = ("handler", "floor", "amplifier", "console", "backlog", "layout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run: {', '.join(NAMES)} (default: all of these), handler "
        "(the webhook handler's CPU per request, in process; with --patch), floor "
        "(how close to the bare handler any durable relay can come on this machine), "
        "amplifier (valid webhooks while 1 MiB bodies with a wrong signature are posted), "
        "console (the operator console's API; see BENCHMARKS.md), backlog (claims and "
        "ingest with 1 000 and 100 000 pending; A/B against the store before heads), or "
        "layout (what each index costs a stored event)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs and smaller N, for a quick check"
    )
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="ingest and floor load generator (auto: wrk when installed)",
    )
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        action="append",
        help="ingest: event loop(s) to run (default: both)",
    )
    parser.add_argument(
        "--stage",
        action="append",
        choices=STAGES,
        help="floor: the floor stages to run (default: all)",
    )
    parser.add_argument("--rounds", type=int, help="ingest, floor: rounds (default 3, quick 1)")
    parser.add_argument(
        "--seconds", type=float, help="ingest, floor, amplifier: seconds per run (default 10)"
    )
    parser.add_argument(
        "--patch",
        action="append",
        default=[],
        metavar="NAME[+NAME]",
        help="ingest, handler, e2e, floor: also run the relay with these bench/patches.py "
        "patches, or src=DIR for another checkout's relay "
        "(an A/B in one run); drain: run it with them (all together)",
    )
    parser.add_argument(
        "--batch-stats",
        action="store_true",
        help="ingest: record group-commit batch sizes in the relay process",
    )
    parser.add_argument("--events", type=int, help="memory: events to drive (default 100000)")
    return parser  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench import (
        amplifier,
        backlog,
        console,
        drain,
        e2e,
        floor,
        handler,
        ingest,
        layout,
        memory,
    )

    results: dict[str, Any] = {}
    for name in args.names or NAMES:
        started = time.monotonic()
        if name == "ingest":
            results[name] = await ingest.main(
                quick=args.quick, generator=args.loadgen, patches=args.patch,
                loops=args.loop or ("asyncio", "uvloop"), batch_sizes=args.batch_stats,
                rounds=args.rounds, seconds=args.seconds,
            )  # fmt: skip
        elif name == "e2e":
            patches = [n for p in args.patch for n in p.split("+")]
            results[name] = await e2e.main(quick=args.quick, patches=patches)
        elif name == "drain":
            patches = [n for p in args.patch for n in p.split("+")]
            results[name] = await drain.main(quick=args.quick, patches=patches)
        elif name == "handler":
            results[name] = await handler.main(args.patch, quick=args.quick)
        elif name == "floor":
            results[name] = await floor.main(
                quick=args.quick, generator=args.loadgen, rounds=args.rounds,
                seconds=args.seconds, stages=args.stage or (), patches=args.patch,
            )  # fmt: skip
        elif name == "amplifier":
            results[name] = await amplifier.main(quick=args.quick, seconds=args.seconds)
        elif name == "console":
            results[name] = await console.main(quick=args.quick)
        elif name == "backlog":
            results[name] = await backlog.main(quick=args.quick)
        elif name == "layout":
            results[name] = await layout.main(quick=args.quick)
        elif name == "memory":
            results[name] = await memory.main(quick=args.quick, events=args.events)
        print(f"({name}: {time.monotonic() - started:.0f} s)\n", flush=True)
    return results


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in NAMES + EXTRAS]
    if unknown:
        known = ", ".join(NAMES + EXTRAS)
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {known})")
    info = machine()
    print(
        f"machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"wrk {'installed' if info['wrk'] else 'not installed'}\n",
        flush=True,
    )
    results = asyncio.run(run(args))
    failed = [
        f"{name}: {check}"
        for name, result in results.items()
        for check, ok in _flatten(result.get("checks", {}))
        if not ok
    ]
    print("targets: " + ("all met" if not failed else "NOT met: " + "; ".join(failed)))
    return 0


def _flatten(checks: dict[str, Any], prefix: str = "") -> list[tuple[str, bool]]:
    flat = []
    for key, value in checks.items():
        if isinstance(value, dict):
            flat += _flatten(value, f"{prefix}{key}.")
        else:
            flat.append((f"{prefix}{key}", bool(value)))
    return flat


if __name__ == "__main__":
    sys.exit(main())
