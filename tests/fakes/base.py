"""What both fake servers share: fault injection, rate windows, the aiohttp server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any, Self

from aiohttp import web


@dataclass(frozen=True)
class Raw:
    """An answer given byte for byte, as a proxy, a captive portal or a broken server would."""

    status: int
    body: bytes
    content_type: str

    def response(self) -> web.Response:
        return web.Response(
            status=self.status, body=self.body, headers={"Content-Type": self.content_type}
        )


@dataclass(frozen=True)
class Fault:
    """One call's misbehaviour: wait `delay` seconds, then answer `status` (or `raw`) if set."""

    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    raw: Raw | None = None


class Faults:
    """Fault-injection knobs. Each API call consumes at most one scripted fault, in order."""

    def __init__(self, seed: int = 0) -> None:
        self.delay = 0.0  # seconds added to every call
        self._script: deque[Fault] = deque()
        self._storm: tuple[float, float] | None = None
        self._random = random.Random(seed)

    def fail_next(self, n: int = 1, *, status: int = 503) -> None:
        """The next `n` calls answer `status` (a 5xx) without taking effect."""
        self._script.extend([Fault(status=status)] * n)

    def rate_limit_next(self, n: int = 1, *, retry_after: float = 1.0) -> None:
        """The next `n` calls answer 429 with this Retry-After / retry_after."""
        self._script.extend([Fault(status=429, retry_after=retry_after)] * n)

    def answer_next(
        self, n: int = 1, *, status: int = 200, body: bytes = b"", content_type: str = "text/plain"
    ) -> None:
        """The next `n` calls get exactly this answer and take no effect."""
        self._script.extend([Fault(raw=Raw(status, body, content_type))] * n)

    def delay_next(self, n: int = 1, *, seconds: float) -> None:
        """The next `n` calls wait first; they still take effect (a client that timed out
        may have posted anyway, as with the real services)."""
        self._script.extend([Fault(delay=seconds)] * n)

    def storm(self, probability: float, *, retry_after: float = 1.0) -> None:
        """From now on, each call not otherwise scripted answers 429 with this probability
        (seeded, so runs repeat). `storm(0)` ends it."""
        self._storm = (probability, retry_after) if probability > 0 else None

    def clear(self) -> None:
        self.delay, self._storm = 0.0, None
        self._script.clear()

    @property
    def scripted(self) -> int:
        """How many scripted faults no call has taken yet. A call takes its fault as it
        arrives, so 0 after `delay_next` means the delayed call is in flight now: a test
        waits for that instead of guessing how long the client takes to send it."""
        return len(self._script)

    def take(self) -> Fault:
        fault = self._script.popleft() if self._script else Fault()
        if (
            fault.status is None
            and fault.raw is None
            and self._storm
            and self._random.random() < self._storm[0]
        ):
            fault = replace(fault, status=429, retry_after=self._storm[1])
        return replace(fault, delay=fault.delay + self.delay)


class RateWindow:
    """At most `limit` events per `period` seconds per key; answers how long to wait.

    `tolerance` forgives a few milliseconds of network jitter, so a client pacing itself
    exactly at the limit is not punished for it."""

    def __init__(self, limit: int, period: float, tolerance: float = 0.05) -> None:
        self.limit, self.period, self.tolerance = limit, period, tolerance
        self._seen: dict[Any, deque[float]] = defaultdict(deque)

    def wait(self, key: Any, now: float) -> float:
        """0 if an event for `key` may happen now (recording it), else the seconds to wait."""
        seen = self._seen[key]
        while seen and seen[0] <= now - self.period + self.tolerance:
            seen.popleft()
        if len(seen) >= self.limit:
            return seen[0] + self.period - now
        seen.append(now)
        return 0.0


@dataclass(frozen=True)
class Call:
    """One request as the fake answered it (every call, accepted or not)."""

    method: str
    status: int
    error: str | None
    at: float


class FakeServer:
    """Serve `self.app` on 127.0.0.1 with an OS-chosen port; base of both fakes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.faults = Faults()
        self.calls: list[Call] = []
        self.app = web.Application()
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, **kwargs: Any) -> AsyncIterator[Self]:
        fake = cls(**kwargs)
        await fake.start()
        try:
            yield fake
        finally:
            await fake.stop()

    async def start(self) -> None:
        # No access log: it would print request paths, and Telegram's carry the token.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self._closing.set()  # wakes delayed calls so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def count(self, status: int) -> int:
        """How many calls were answered with `status` (e.g. 429 for pacing tests)."""
        return sum(1 for call in self.calls if call.status == status)

    async def pause(self, seconds: float) -> bool:
        """Wait; False when the fake is shutting down and the call should be dropped."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)
        return not self._closing.is_set()

    def note(self, method: str, status: int, error: str | None) -> None:
        self.calls.append(Call(method, status, error, self.clock()))


async def request_params(request: web.Request) -> dict[str, Any]:
    """Query string plus a JSON, form-encoded or multipart body, as one dict."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json(loads=lambda text: json.loads(text or "{}"))
        if not isinstance(body, dict):
            raise ValueError("body is not a JSON object")
        params.update(body)
    elif request.can_read_body:
        params.update(await request.post())
    return params


# ---------------------------------------------------------------- Slack
