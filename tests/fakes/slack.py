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

What both fakes share is in tests/fakes/base.py; the message rules in tests/fakes/blockkit.py.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer, Fault, RateWindow, request_params
from tests.fakes.blockkit import SlackRefusal, check_message

BOT_TOKEN = "xoxb-1111-2222-fakeslacktoken"
CHANNEL = "C0FAKE00001"
BOT_NAME = "relay"  # the bot user auth.test names (`/invite @relay`)
DEFAULT_SCOPES = frozenset({"chat:write", "channels:read", "groups:read"})


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
        if fault.raw is not None:
            self.note(method, fault.raw.status, "raw")
            return fault.raw.response()
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
        if fault.raw is not None:
            self.note("webhook", fault.raw.status, "raw")
            return fault.raw.response()
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
