"""What every integration provides, and the one shape the rest of the relay sees.

An `Integration` (one per platform, listed in relay/destinations.py) turns a configured
destination into a `Courier` for its lane, and checks it for `relay doctor`. A Courier
pairs the platform's pure renderer (event -> messages) with its sender. Every sender
has the same two methods:

- `request(message, thread) -> Request`: pure, the exact API call for one message;
  `relay route --render` prints these, so the preview is what is sent;
- `send(message, thread) -> Outcome`: make that call and classify whatever comes back
  (relay/outcome.py). It never raises for anything the platform, a proxy or the network
  can answer; the lane still guards against bugs (relay/lanes.py).

`thread` is the parent message of the conversation (Slack `ts`, Telegram message id), or
None for the first message and destinations without threads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from relay.coalesce import Joiner, pack
from relay.config.types import DestinationBase
from relay.events import conversation_key
from relay.outcome import Outcome
from relay.pacing import Limit
from relay.redact import Redactor
from relay.render.template import Flavor, Template, compile_template

M = TypeVar("M")  # one platform's message type
D = TypeVar("D", bound=DestinationBase, contravariant=True)


@dataclass(frozen=True)
class Request:
    """One API call exactly as a sender makes it: `call` names it (`chat.postMessage`,
    `sendPhoto`, `incoming webhook`, `console`), `body` holds its parameters."""

    call: str
    body: dict[str, Any]

    def preview(self) -> dict[str, Any]:
        return {"call": self.call, "body": self.body}


class Sender(Protocol[M]):
    def request(self, message: M, thread: str | None) -> Request: ...
    async def send(self, message: M, thread: str | None) -> Outcome: ...
    async def close(self) -> None: ...


@dataclass
class Courier(Generic[M]):
    """What a destination's lane uses: render (pure), send, the limits to pace by, whether
    later messages of a conversation go under its first one, and how several events share
    one message (`joiner`; None when the destination says `coalesce: false`)."""

    render: Callable[[Mapping[str, Any]], Sequence[M]]
    sender: Sender[M]
    limits: tuple[Limit, ...] = ()
    threads: bool = False
    joiner: Joiner[M] | None = None
    fingerprint: str = ""  # what the courier was built from, beyond the config (templates)
    # Told (ref, conversation) of every message sent for one conversation, when replies to
    # it are answers (relay/answers/intake.py); None: nothing is remembered.
    remember: Callable[[str, str], Awaitable[None]] | None = None
    # Told the bodies of rows the lane gave up on after `give_up_after` (it sends nothing
    # then): where an answer was written, the people hear of it (relay/answers/send.py).
    gave_up: Callable[[Sequence[bytes], Any], Awaitable[None]] | None = None

    async def send(self, message: M, thread: str | None) -> Outcome:
        return await self.sender.send(message, thread)

    def preview(self, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The exact calls for `events` due at once, coalesced as the lane would (thread
        fields are left out: they depend on what was sent before)."""
        waiting = list(range(len(events)))
        calls: list[dict[str, Any]] = []
        while waiting:
            packed = pack(
                waiting,
                lambda index: self.render(events[index]),
                self.joiner,
                lambda index: conversation_key(events[index]) or f"#{index}",
                self.threads,
            )
            calls += [self.sender.request(message, None).preview() for message in packed.messages]
            waiting = [index for index in waiting if index not in packed.rows]
        return calls

    async def close(self) -> None:
        await self.sender.close()


@dataclass(frozen=True)
class BuildContext:
    """What building a courier needs besides the destination's own config."""

    base: Path  # the config file's directory: template files are relative to it
    timeout: float  # seconds per API call (delivery.timeout)
    redactor: Redactor  # the relay's, for what a sender prints itself (the console)


Status = Literal["ok", "broken", "off", "unchecked"]


class Finding(Exception):  # a verdict that ends the checks
    """Ends a destination's doctor checks early with a verdict."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Link:
    """Where one destination's calls go, as doctor messages may name it: the host only (a
    Telegram token is in every Bot API path, a Slack webhook's path is its secret), the
    per-call time limit, and the config key holding the URL."""

    host: str
    per_call: float
    setting: str = "api_url"

    @classmethod
    def to(cls, url: str, per_call: float, setting: str = "api_url") -> Link:
        parts = urlsplit(url)
        host = parts.hostname or "the server"
        return cls(f"{host}:{parts.port}" if parts.port else host, per_call, setting)

    def unreachable(self, timed_out: bool) -> str:
        why = f"no answer within {self.per_call:g} s" if timed_out else "connection failed"
        return (
            f"cannot reach {self.host} ({why}) — check the network connection, any proxy or "
            f"firewall, and {self.setting}"
        )


class Integration(Protocol[D]):
    """One platform, as the relay sees it."""

    def courier(self, name: str, destination: D, context: BuildContext) -> Courier[Any]:
        """The courier for one enabled destination (reads its template file, if any)."""
        ...

    def limits(self, name: str, destination: D) -> tuple[Limit, ...]:
        """The documented rate limits a destination's sends are paced by."""
        ...

    async def diagnose(
        self, name: str, destination: D, send_test: bool, per_call: float
    ) -> tuple[Status, str]:
        """`relay doctor`'s verdict for one enabled destination (may raise Finding)."""
        ...


def load_template(destination: DestinationBase, base: Path, flavor: Flavor) -> Template | None:
    """The destination's template (inline or `template_file`), compiled; None if it has none.
    Raises OSError or TemplateError: a reload then keeps the running config."""
    if destination.template_file:
        source = (base / destination.template_file).read_text(encoding="utf-8")
    elif destination.template:
        source = destination.template
    else:
        return None
    return compile_template(source, flavor)


def template_fingerprint(template: Template | None) -> str:
    """What a reload compares besides the config: a template file's text may change alone."""
    return "" if template is None else template.source


def configured_limit(name: str, destination: DestinationBase) -> tuple[Limit, ...] | None:
    """`max_per_second`, which replaces a platform's documented limits when set."""
    if destination.max_per_second is None:
        return None
    return (Limit(f"destination:{name}", destination.max_per_second),)
