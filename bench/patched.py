"""`python -m bench.patched --patch NAME[,NAME] serve -c FILE ...`: apply bench patches
(bench/patches.py) in this process, then run the relay's CLI with the remaining arguments."""

from __future__ import annotations

import sys

from bench.patches import apply


def main() -> int:
    args = sys.argv[1:]
    names: list[str] = []
    if args[:1] == ["--patch"]:
        names = [n for n in args[1].split(",") if n]
        args = args[2:]
    apply(names)
    from relay.cli import main as relay_main

    return relay_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
