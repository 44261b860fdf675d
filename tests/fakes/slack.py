"""A stateful stand-in for Slack's Web API and incoming webhooks, served on 127.0.0.1.

The real slack-sdk clients talk to it (point `api_url` at `fake.api_url`, or use a URL
from `fake.add_webhook()`), and it enforces the rules the relay must live with: known
bot tokens, existing channels the bot is in, archived channels, Block Kit limits, images
Slack cannot download, and 429 with `Retry-After`. Every accepted message is recorded in
order (`fake.messages`), every call with its answer (`fake.calls`).

    async with FakeSlack.running() as slack:        # or the `fake_slack` fixture
        sender = SlackSender(token=BOT_TOKEN, channel=CHANNEL, api_url=slack.api_url)
        slack.faults.rate_limit_next(1, retry_after=2)
        ...
        assert [m.text for m in slack.messages_in(CHANNEL)] == [...]

Choices where Slack is vague (see tests/fakes/README.md): a well-formed `thread_ts` that
names no message is accepted, as Slack does, but recorded with `thread_found=False`; a
malformed one is `invalid_thread_ts`. A channel the bot is not in answers `not_in_channel`
to chat.postMessage (unless it is public and the token has `chat:write.public`), and
`channel_not_found` to conversations.info when it is private. Every Web API answer carries
the token's scopes in `x-oauth-scopes`, as Slack's do; a method whose scope is missing
answers `missing_scope` with `needed` and `provided`.

`Faults`, `Fault`, `RateWindow` and `FakeServer` are shared with tests/fakes/telegram.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import re
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Self

from aiohttp import web

BOT_TOKEN = "xoxb-1111-2222-fakeslacktoken"
CHANNEL = "C0FAKE00001"
BOT_NAME = "relay"  # the bot user auth.test names (`/invite @relay`)
DEFAULT_SCOPES = frozenset({"chat:write", "channels:read", "groups:read"})
MAX_BLOCKS, MAX_SECTION_TEXT, MAX_HEADER_TEXT, MAX_MESSAGE_TEXT = 50, 3000, 150, 40_000


# ---------------------------------------------------------------- shared by both fakes


@dataclass(frozen=True)
class Fault:
    """One call's misbehaviour: wait `delay` seconds, then answer `status` if set."""

    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0


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

    def take(self) -> Fault:
        fault = self._script.popleft() if self._script else Fault()
        if fault.status is None and self._storm and self._random.random() < self._storm[0]:
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


@dataclass
class SlackChannel:
    id: str
    name: str
    private: bool = False
    member: bool = True
    archived: bool = False


@dataclass(frozen=True)
class SlackPost:
    """An accepted message. `via` is "api" or "webhook"; `thread_found` is None outside
    threads, False for a `thread_ts` that names no message in the channel."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    at: float
    via: str
    payload: dict[str, Any] = field(repr=False)
    thread_found: bool | None = None


class SlackRefusal(Exception):
    """An answer other than success: Slack's error word, its notes, an HTTP status."""

    def __init__(
        self,
        error: str,
        notes: Iterable[str] = (),
        status: int = 200,
        retry_after: int | None = None,
        **fields: str,
    ) -> None:
        super().__init__(error)
        self.error, self.notes, self.status = error, list(notes), status
        self.retry_after = retry_after
        self.fields = fields  # extra top-level keys of the answer (`needed`, `provided`)


class FakeSlack(FakeServer):
    """Slack's `chat.postMessage`, `auth.test`, `conversations.info` and incoming webhooks."""

    def __init__(
        self, *, tokens: Iterable[str] = (BOT_TOKEN,), clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(clock)
        self.tokens = set(tokens)
        self.scopes: set[str] = set(DEFAULT_SCOPES)  # granted to every known token
        self.bot_name = BOT_NAME
        self.channels: dict[str, SlackChannel] = {}
        self.broken_images: set[str] = set()
        self.messages: list[SlackPost] = []
        self.rate_limit: RateWindow | None = None
        self._hooks: dict[str, tuple[str, str | None]] = {}  # path -> (channel, refusal)
        self._ts_base, self._ts_seq = int(time.time()), 0
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "chat.postMessage": self._post_message,
            "auth.test": self._auth_test,
            "conversations.info": self._conversation_info,
        }
        self.add_channel(CHANNEL, name="relay-tests")
        self.app.router.add_route("*", "/api/{method}", self._api)
        self.app.router.add_post("/services/{team}/{bot}/{secret}", self._webhook)

    @property
    def api_url(self) -> str:
        """The Web API base, as slack-sdk's `base_url` wants it (trailing slash)."""
        return f"{self.base_url}/api/"

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        private: bool = False,
        member: bool = True,
        archived: bool = False,
    ) -> SlackChannel:
        channel = SlackChannel(channel_id, name or channel_id.lower(), private, member, archived)
        self.channels[channel_id] = channel
        return channel

    def add_webhook(self, channel: str = CHANNEL) -> str:
        """A fresh incoming-webhook URL posting into `channel`."""
        path = f"/services/T0FAKE/B{len(self._hooks):07d}/{random.randbytes(12).hex()}"
        self._hooks[path] = (channel, None)
        return self.base_url + path

    def revoke_webhook(self, url: str, *, error: str = "invalid_token") -> None:
        """Make a webhook answer `invalid_token` (403) or `no_service` (404) from now on."""
        path = url.removeprefix(self.base_url)
        self._hooks[path] = (self._hooks[path][0], error)

    def break_image(self, url: str) -> None:
        """Slack will fail to download this image URL (`invalid_blocks`)."""
        self.broken_images.add(url)

    def enforce_rate_limit(self, messages: int = 1, per: float = 1.0) -> None:
        """Answer 429 (with Retry-After) to more than `messages` per `per` s in a channel."""
        self.rate_limit = RateWindow(messages, per)

    def messages_in(self, channel: str = CHANNEL) -> list[SlackPost]:
        return [m for m in self.messages if m.channel == channel]

    # -------------------------------------------------------------- Web API

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        fault = self.faults.take()
        if not await self.pause(fault.delay):
            return web.Response(status=503)
        if fault.status is not None:
            return self._fault_answer(method, fault)
        try:
            params = await request_params(request)
            handler = self._methods.get(method)
            if handler is None:
                raise SlackRefusal("unknown_method", status=404)
            self._authorize(request, params)
            result = handler(params)
        except SlackRefusal as refusal:
            return self._refuse(method, refusal)
        except ValueError:
            return self._refuse(method, SlackRefusal("invalid_json"))
        self.note(method, 200, None)
        return web.json_response({"ok": True, **result}, headers=self._scope_header())

    def _scope_header(self) -> dict[str, str]:
        return {"x-oauth-scopes": ",".join(sorted(self.scopes))}

    def _need(self, *scopes: str) -> None:
        """Refuse with `missing_scope` unless the token has one of `scopes`."""
        if not self.scopes.intersection(scopes):
            raise SlackRefusal(
                "missing_scope", needed=",".join(scopes), provided=",".join(sorted(self.scopes))
            )

    def _authorize(self, request: web.Request, params: dict[str, Any]) -> None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() or params.get("token")
        if not token:
            raise SlackRefusal("not_authed")
        if token not in self.tokens:
            raise SlackRefusal("invalid_auth")

    def _fault_answer(self, method: str, fault: Fault) -> web.Response:
        self.note(method, fault.status or 503, None)
        if fault.status == 429:
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": f"{fault.retry_after or 1:g}"},
            )
        # Like a load balancer in trouble: HTML, not Slack's JSON.
        return web.Response(
            status=fault.status or 503,
            content_type="text/html",
            text="<html><body>Service Unavailable</body></html>",
        )

    def _refuse(self, method: str, refusal: SlackRefusal) -> web.Response:
        self.note(method, refusal.status, refusal.error)
        body: dict[str, Any] = {"ok": False, "error": refusal.error, **refusal.fields}
        if refusal.notes:
            body["errors"] = refusal.notes
            body["response_metadata"] = {"messages": [f"[ERROR] {n}" for n in refusal.notes]}
        headers = _retry_header(refusal)
        if refusal.error not in ("not_authed", "invalid_auth"):
            headers |= self._scope_header()
        return web.json_response(body, status=refusal.status, headers=headers)

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"{self.base_url}/",
            "team": "Fake Team",
            "user": self.bot_name,
            "team_id": "T0FAKE",
            "user_id": "U0FAKE",
            "bot_id": "B0FAKE",
        }

    def _conversation_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self.channels.get(str(params.get("channel", "")))
        self._need("groups:read" if channel and channel.private else "channels:read")
        if channel is None or (channel.private and not channel.member):
            raise SlackRefusal("channel_not_found")  # bots cannot see such private channels
        return {
            "channel": {
                "id": channel.id,
                "name": channel.name,
                "is_channel": True,
                "is_private": channel.private,
                "is_archived": channel.archived,
                "is_member": channel.member,
            }
        }

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need("chat:write")
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None:
            raise SlackRefusal("channel_not_found")
        if not channel.member and (channel.private or "chat:write.public" not in self.scopes):
            raise SlackRefusal("not_in_channel")
        if channel.archived:
            raise SlackRefusal("is_archived")
        thread_ts, thread_found = self._thread(channel.id, params.get("thread_ts"))
        text, blocks = check_message(params, self.broken_images)
        self._pace(channel.id)
        post = self._record(channel.id, params, text, blocks, "api", thread_ts, thread_found)
        return {
            "channel": channel.id,
            "ts": post.ts,
            "message": {"type": "message", "text": text or "", "ts": post.ts},
        }

    def _thread(self, channel: str, thread_ts: Any) -> tuple[str | None, bool | None]:
        if thread_ts in (None, ""):
            return None, None
        if not re.fullmatch(r"\d{10}\.\d{6}", str(thread_ts)):
            raise SlackRefusal("invalid_thread_ts", [f"{thread_ts} is not a valid thread_ts"])
        found = any(m.ts == thread_ts for m in self.messages_in(channel))
        return str(thread_ts), found

    def _pace(self, channel: str) -> None:
        if self.rate_limit is not None:
            wait = self.rate_limit.wait(channel, self.clock())
            if wait > 0:
                raise SlackRefusal("ratelimited", status=429, retry_after=max(1, math.ceil(wait)))

    def _record(
        self,
        channel: str,
        params: dict[str, Any],
        text: str | None,
        blocks: list[dict[str, Any]] | None,
        via: str,
        thread_ts: str | None = None,
        thread_found: bool | None = None,
    ) -> SlackPost:
        self._ts_seq += 1
        ts = f"{self._ts_base}.{self._ts_seq:06d}"  # unique, increasing, Slack-shaped
        payload = {k: v for k, v in params.items() if k != "token"}
        post = SlackPost(
            channel, ts, text, blocks, thread_ts, self.clock(), via, payload, thread_found
        )
        self.messages.append(post)
        return post

    # -------------------------------------------------------------- incoming webhooks

    async def _webhook(self, request: web.Request) -> web.Response:
        fault = self.faults.take()
        if not await self.pause(fault.delay):
            return web.Response(status=503)
        if fault.status is not None:
            self.note("webhook", fault.status, None)
            text = "rate_limited" if fault.status == 429 else "service_unavailable"
            headers = {"Retry-After": f"{fault.retry_after or 1:g}"} if fault.status == 429 else {}
            return web.Response(status=fault.status, text=text, headers=headers)
        try:
            channel = self._hook_channel(request.path)
            try:
                params = json.loads(await request.text())
            except ValueError:
                raise SlackRefusal("invalid_payload", status=400) from None
            if not isinstance(params, dict):
                raise SlackRefusal("invalid_payload", status=400)
            text, blocks = check_message(params, self.broken_images)
            self._pace(channel)
        except SlackRefusal as refusal:
            status = _WEBHOOK_STATUS.get(refusal.error, refusal.status)
            self.note("webhook", status, refusal.error)
            return web.Response(status=status, text=refusal.error, headers=_retry_header(refusal))
        self._record(channel, params, text, blocks, "webhook")
        self.note("webhook", 200, None)
        return web.Response(text="ok", content_type="text/html")

    def _hook_channel(self, path: str) -> str:
        if path not in self._hooks:
            raise SlackRefusal("no_service")
        channel_id, refusal = self._hooks[path]
        if refusal is not None:
            raise SlackRefusal(refusal)
        channel = self.channels.get(channel_id)
        if channel is None:
            raise SlackRefusal("channel_not_found")
        if channel.archived:
            raise SlackRefusal("channel_is_archived")
        return channel_id


def _retry_header(refusal: SlackRefusal) -> dict[str, str]:
    return {"Retry-After": str(refusal.retry_after)} if refusal.retry_after is not None else {}


# Incoming webhooks answer with HTTP statuses and a bare word; the Web API with 200 + JSON.
_WEBHOOK_STATUS = {
    "invalid_payload": 400,
    "no_text": 400,
    "invalid_blocks": 400,
    "invalid_blocks_format": 400,
    "msg_too_long": 400,
    "too_many_attachments": 400,
    "invalid_token": 403,
    "action_prohibited": 403,
    "no_service": 404,
    "channel_not_found": 404,
    "channel_is_archived": 410,
    "ratelimited": 429,
}


# ---------------------------------------------------------------- message rules


def check_message(
    params: dict[str, Any], broken_images: Collection[str]
) -> tuple[str | None, list[dict[str, Any]] | None]:
    """Slack's content rules for a message body; returns (text, blocks) or refuses."""
    text = params.get("text")
    blocks = _decoded(params.get("blocks"), "invalid_blocks_format")
    attachments = _decoded(params.get("attachments"), "invalid_attachments")
    if not text and not blocks and not attachments:
        raise SlackRefusal("no_text")
    if text is not None and len(str(text)) > MAX_MESSAGE_TEXT:
        raise SlackRefusal("msg_too_long")
    if attachments and len(attachments) > 100:
        raise SlackRefusal("too_many_attachments")
    if blocks is not None:
        if not isinstance(blocks, list):
            raise SlackRefusal("invalid_blocks_format")
        notes = block_errors(blocks, broken_images)
        if notes:
            raise SlackRefusal("invalid_blocks", notes)
    return (str(text) if text is not None else None), blocks


def _decoded(value: Any, error: str) -> Any:
    """Blocks and attachments arrive as JSON values, or as JSON text in form bodies."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise SlackRefusal(error) from None
    return value


def block_errors(blocks: list[Any], broken_images: Collection[str] = ()) -> list[str]:
    """Block Kit violations, worded like Slack's `errors` (with json-pointers)."""
    if len(blocks) > MAX_BLOCKS:
        return [f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"]
    errors: list[str] = []
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"missing required field: type [json-pointer:{where}]")
            continue
        check = _BLOCK_CHECKS.get(block["type"])
        if check is None:
            errors.append(f"unsupported type: {block['type']} [json-pointer:{where}/type]")
            continue
        errors += check(block, where, broken_images)
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                errors.append(f"duplicate block_id [json-pointer:{where}/block_id]")
            block_ids.add(block_id)
    return errors


def _text_errors(obj: Any, where: str, limit: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return [f"must provide an object [json-pointer:{where}]"]
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if obj.get("type") not in kinds:
        return [f"must be one of {', '.join(kinds)} [json-pointer:{where}/type]"]
    if not obj["text"]:
        return [f"must be more than 0 characters [json-pointer:{where}/text]"]
    if len(obj["text"]) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{where}/text]"]
    return []


def _section(block: dict[str, Any], where: str, _: Collection[str]) -> list[str]:
    if "text" not in block and "fields" not in block:
        return [f"must provide either text or fields [json-pointer:{where}]"]
    errors = (
        _text_errors(block["text"], f"{where}/text", MAX_SECTION_TEXT) if "text" in block else []
    )
    fields = block.get("fields", [])
    if not isinstance(fields, list) or len(fields) > 10:
        return [*errors, f"no more than 10 items allowed [json-pointer:{where}/fields]"]
    for j, item in enumerate(fields):
        errors += _text_errors(item, f"{where}/fields/{j}", 2000)
    return errors


def _header(block: dict[str, Any], where: str, _: Collection[str]) -> list[str]:
    return _text_errors(block.get("text"), f"{where}/text", MAX_HEADER_TEXT, plain_only=True)


def _image(block: dict[str, Any], where: str, broken: Collection[str]) -> list[str]:
    url = block.get("image_url")
    if not isinstance(url, str) or not url or len(url) > 3000:
        return [f"must provide a valid image_url [json-pointer:{where}/image_url]"]
    if not isinstance(block.get("alt_text"), str) or not block["alt_text"]:
        return [f"missing required field: alt_text [json-pointer:{where}]"]
    if "title" in block:
        errors = _text_errors(block["title"], f"{where}/title", 2000, plain_only=True)
        if errors:
            return errors
    if url in broken:  # checked last: Slack fetches the image only for a valid block
        return [f"downloading image failed [json-pointer:{where}/image_url]"]
    return []


def _context(block: dict[str, Any], where: str, broken: Collection[str]) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
        return [f"must have 1 to 10 items [json-pointer:{where}/elements]"]
    errors: list[str] = []
    for j, element in enumerate(elements):
        at = f"{where}/elements/{j}"
        if isinstance(element, dict) and element.get("type") == "image":
            errors += _image(element, at, broken)
        else:
            errors += _text_errors(element, at, 3000)
    return errors


def _markdown(block: dict[str, Any], where: str, _: Collection[str]) -> list[str]:
    text = block.get("text")
    if not isinstance(text, str) or not 0 < len(text) <= 12_000:
        return [f"must be 1 to 12000 characters [json-pointer:{where}/text]"]
    return []


def _anything(block: dict[str, Any], where: str, _: Collection[str]) -> list[str]:
    return []  # blocks the relay does not render; accepted as they are


_BLOCK_CHECKS: dict[str, Callable[[dict[str, Any], str, Collection[str]], list[str]]] = {
    "section": _section,
    "header": _header,
    "image": _image,
    "context": _context,
    "markdown": _markdown,
    "divider": _anything,
    "actions": _anything,
    "rich_text": _anything,
    "video": _anything,
    "file": _anything,
    "input": _anything,
}
