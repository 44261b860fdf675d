"""The webhook handler's own CPU per request, without the network or the disk.

`Ingest.handle` of the real relay (config, gate, logging to /dev/null as `relay serve`
sets it up) is called on prebuilt aiohttp requests carrying unique signed events, with a
store that accepts at once. What remains is the relay's Python work per request: client
check, signature, parsing, routing, metrics, the log line and the answer. It is a
profiling aid for the hot path, steadier than req/s on a shared machine; each variant
(the shipped code, each --patch) runs in its own process:

    python -m bench handler [--patch NAME[+NAME]] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

from bench.common import (
    ROOT,
    conversation_id,
    render_body,
    sign,
    table,
    template_spec,
    write_config,
)
from bench.common import save as save_result
from bench.patches import apply

REQUESTS = 20_000
REPEATS = 5  # the figure is the best of these slices: the least disturbed by other jobs


class _Store:
    def __init__(self) -> None:
        self.n = 0

    async def accept(self, incoming: Any) -> Any:
        from relay.store.base import Accepted

        self.n += 1
        return Accepted(self.n, duplicate=False)


class _Protocol:  # what aiohttp's StreamReader needs from a protocol
    transport = None
    _reading_paused = False

    def pause_reading(self, **_: Any) -> None: ...

    def resume_reading(self, **_: Any) -> None: ...


def _ingest() -> Any:
    """The relay's Ingest as `relay serve` builds it; relay is imported only now, after the
    patches (a `src=` patch must come before any import of relay)."""
    from relay import logs, redact
    from relay.config.load import load_config
    from relay.ingest.server import Gate, Ingest

    with tempfile.TemporaryDirectory() as temp:
        config = load_config(
            write_config(
                Path(temp),
                8080,
                "s: {type: slack, token: xoxb-1111-2222-benchtoken, channel: C0BENCH}",
                "- {name: everything, to: [s]}",
            )
        )
    logs.setup(redact.Redactor(*config.secrets()), "info", "text")
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # type: ignore[attr-defined]  # noqa: SIM115
    return Ingest(Gate.from_config(config), _Store())  # type: ignore[arg-type]


async def measure(requests: int) -> float:
    from aiohttp import streams
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict

    ingest = _ingest()
    transport = mock.Mock()
    transport.get_extra_info = lambda name, default=None: (
        ("127.0.0.1", 40000) if name == "peername" else default
    )
    loop = asyncio.get_running_loop()
    protocol = SimpleNamespace(
        peername=("127.0.0.1", 40000), sockname=("127.0.0.1", 8080), ssl_context=None,
        max_field_size=8190, max_line_length=8190, max_headers=128, transport=transport,
    )  # fmt: skip
    shared = {"app": mock.Mock(), "protocol": protocol, "writer": mock.Mock()}  # mocks are slow
    spec = template_spec()
    prepared = []
    for n in range(requests):
        body = render_body(spec, f"handler-{n}", conversation_id(n))
        payload = streams.StreamReader(_Protocol(), 2**16, loop=loop)  # type: ignore[arg-type]
        payload.feed_data(body)
        payload.feed_eof()
        headers = CIMultiDict(
            {"x-oneroute-signature": sign(body), "Content-Type": "application/json",
             "Content-Length": str(len(body))}
        )  # fmt: skip
        prepared.append(
            make_mocked_request(
                "POST", "/webhooks/oneroute", headers=headers, payload=payload,
                transport=transport, client_max_size=1 << 20, **shared,
            )
        )  # fmt: skip
    best = float("inf")
    size = requests // REPEATS
    for start in range(0, size * REPEATS, size):
        cpu = time.process_time()
        for request in prepared[start : start + size]:
            response = await ingest.handle(request)
            if response.status != 200:
                raise RuntimeError(f"answered {response.status}: {response.text}")
        best = min(best, (time.process_time() - cpu) / size)
    return best


def child() -> None:
    """In a fresh process: apply the patches, measure, print microseconds per request."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--patch", default="")
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args()
    apply([name for name in args.patch.split("+") if name])
    print(json.dumps({"us_per_request": 1e6 * asyncio.run(measure(args.requests))}))


async def run(variants: list[str], requests: int = REQUESTS) -> dict[str, Any]:
    figures: dict[str, float] = {}
    for variant in ["", *variants]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.handler", "--patch", variant,
            "--requests", str(requests), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"bench.handler {variant}: {err.decode()}")
        figures["+".join(["relay", variant]) if variant else "relay"] = json.loads(out)[
            "us_per_request"
        ]
    shipped = figures["relay"]
    text = table(
        f"Handler CPU per request (Ingest.handle in process, stub store, best of {REPEATS})",
        ["variant", "us/request", "x shipped"],
        [[name, us, us / shipped] for name, us in figures.items()],
    )
    return {"us_per_request": figures, "table": text}


async def main(patches: list[str], quick: bool = False) -> dict[str, Any]:
    result = await run(patches, requests=5_000 if quick else REQUESTS)
    print(result["table"])
    save_result("handler", result)
    return result


if __name__ == "__main__":
    child()
