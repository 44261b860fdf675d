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

For answers (relay/answers/slack_in.py): `apps.connections.open` with app-level tokens
(`app_tokens`), a Socket Mode WebSocket (`hello`, `push_event` envelopes, acks recorded,
`disconnect`), `events_request` signing Events API requests as Slack does, `human_message`
for a person's message to reply or react to, and `reactions.add`.

What both fakes share is in tests/fakes/base.py; the message rules in tests/fakes/blockkit.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.base import FakeServer, Fault, RateWindow, request_params
from tests.fakes.blockkit import SlackRefusal, check_message

BOT_TOKEN = "xoxb-1111-2222-fakeslacktoken"
APP_TOKEN = "xapp-1-A0FAKE-3333-fakeslackapptoken"
SIGNING_SECRET = "fakeslacksigningsecret0123456789"
CHANNEL = "C0FAKE00001"
TEAM = "T0FAKE"
APP_ID = "A0FAKE"
BOT_ID = "B0FAKE"
BOT_USER = "U0FAKE"  # the bot's own user id (auth.test's user_id)
HUMAN = "U0HUMAN01"  # the person `human_message` writes as by default
BOT_NAME = "relay"  # the bot user auth.test names (`/invite @relay`)
DEFAULT_SCOPES = frozenset({"chat:write", "channels:read", "groups:read"})
DEFAULT_APP_SCOPES = frozenset({"connections:write"})
MAX_RETRIES = 3  # Slack retries an unacknowledged event this many times


@dataclass
class SlackChannel:
    id: str
    name: str
    private: bool = False
    member: bool = True
    archived: bool = False


@dataclass(frozen=True)
class SlackPost:
    """An accepted message. `via` is "api", "webhook" or "human" (`human_message`, written
    by `user`; its `text` is stored as Slack stores it, `&`, `<` and `>` escaped);
    `thread_found` is None outside threads, False for a `thread_ts` that names no message
    in the channel."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    at: float
    via: str
    payload: dict[str, Any] = field(repr=False)
    thread_found: bool | None = None
    user: str | None = None


@dataclass(frozen=True)
class SlackReaction:
    """A reaction `reactions.add` accepted: emoji `name` on the message `ts` in `channel`."""

    channel: str
    ts: str
    name: str
    at: float


@dataclass
class SocketConnection:
    """One Socket Mode WebSocket. `retiring`: sent a `disconnect`, so it gets no new
    events (as Slack does while the client moves to a new connection)."""

    number: int
    ws: web.WebSocketResponse = field(repr=False)
    outbox: asyncio.Queue[dict[str, Any] | None] = field(repr=False)
    retiring: bool = False
    closing: bool = False  # the fake is closing it (`disconnect(close=True)`)
    unacked: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)


class FakeSlack(FakeServer):
    """Slack's `chat.postMessage`, `auth.test`, `conversations.info` and incoming webhooks."""

    def __init__(
        self,
        *,
        tokens: Iterable[str] = (BOT_TOKEN,),
        app_tokens: Iterable[str] = (APP_TOKEN,),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock)
        self.tokens = set(tokens)
        self.app_tokens = set(app_tokens)  # app-level tokens: apps.connections.open only
        self.scopes: set[str] = set(DEFAULT_SCOPES)  # granted to every known token
        self.app_scopes: set[str] = set(DEFAULT_APP_SCOPES)  # granted to every app token
        self.reactions: list[SlackReaction] = []
        self.envelopes: dict[str, dict[str, Any]] = {}  # every envelope pushed, by id
        self.acks: list[str] = []  # envelope ids acknowledged, in order
        self.sockets: list[SocketConnection] = []  # open Socket Mode connections
        self.socket_connections = 0  # how many were ever opened
        self._tickets: set[str] = set()
        self._undelivered: list[dict[str, Any]] = []  # envelopes waiting for a connection
        self._writers: set[asyncio.Task[None]] = set()
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
            "conversations.history": self._conversation_history,
            "reactions.add": self._add_reaction,
            "apps.connections.open": self._open_connection,
        }
        self.add_channel(CHANNEL, name="relay-tests")
        self.app.router.add_route("*", "/api/{method}", self._api)
        self.app.router.add_post("/services/{team}/{bot}/{secret}", self._webhook)
        self.app.router.add_get("/socket-mode", self._socket)

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

    # -------------------------------------------------------------- people and events

    def human_message(
        self,
        channel: str = CHANNEL,
        text: str = "hello",
        *,
        user: str = HUMAN,
        thread_ts: str | None = None,
    ) -> str:
        """A person writes `text` in `channel` (in the thread of `thread_ts`, which must be a
        message there); returns its `ts`. Stored as Slack stores text: `&`, `<`, `>`
        escaped. Nothing is pushed: `push_event(message_event(ts))` does that."""
        if channel not in self.channels:
            raise ValueError(f"no channel {channel} in the fake")
        if thread_ts is not None and not any(m.ts == thread_ts for m in self.messages_in(channel)):
            raise ValueError(f"no message {thread_ts} in {channel} to reply to")
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        post = self._record(
            channel,
            {"text": escaped},
            escaped,
            None,
            "human",
            thread_ts,
            True if thread_ts else None,
            user,
        )
        return post.ts

    def message_event(self, ts: str, channel: str = CHANNEL, **extra: Any) -> dict[str, Any]:
        """The `message` event Slack sends for a message in the channel (a person's, or
        one the bot posted: those carry `bot_id` and `bot_profile`), updated by `extra`."""
        post = next((m for m in self.messages_in(channel) if m.ts == ts), None)
        if post is None:
            raise ValueError(f"no message {ts} in {channel}")
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "text": post.text or "",
            "ts": ts,
            "event_ts": ts,
            "team": TEAM,
            "channel_type": "group" if self.channels[channel].private else "channel",
        }
        if post.via == "human":
            event["user"] = post.user
            event["client_msg_id"] = f"{random.getrandbits(128):032x}"
        else:
            event |= {
                "user": BOT_USER,
                "bot_id": BOT_ID,
                "app_id": APP_ID,
                "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": self.bot_name},
            }
        if post.thread_ts is not None:
            event["thread_ts"] = post.thread_ts
        return event | extra

    def event_payload(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """The `event_callback` Slack wraps an event in, for Socket Mode and the Events API
        alike; `event_id` stays the same for Slack's retries of one event."""
        return {
            "token": "fake-verification-token",
            "team_id": TEAM,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{random.getrandbits(40):010X}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "team_id": TEAM,
                    "user_id": BOT_USER,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-fake-{random.getrandbits(32):08x}",
        }

    def events_request(
        self,
        signing_secret: str,
        payload: dict[str, Any] | bytes,
        timestamp: int | None = None,
        *,
        retry_num: int = 0,
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body of an Events API request, signed as Slack signs them: `v0=` and
        the HMAC-SHA256 of `v0:{timestamp}:{body}` (`payload` JSON-encoded, or bytes sent
        as they are). `retry_num` > 0 adds Slack's retry headers."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = hmac.new(
            signing_secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={digest}",
        }
        if retry_num:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return headers, body

    # -------------------------------------------------------------- Socket Mode

    def push_event(
        self, event: dict[str, Any], retry_attempt: int = 0, *, event_id: str | None = None
    ) -> str:
        """Send an `events_api` envelope for `event` to the newest open connection (that was
        not told to disconnect), or to the next one to connect; returns its envelope id.
        A retry (`retry_attempt` > 0) of the same event should pass the same `event_id`.
        If the connection closes before the client acknowledges it, it goes to the next
        one again, as Slack's retry (`retry_attempt` + 1, up to MAX_RETRIES)."""
        envelope_id = f"{random.getrandbits(128):032x}"
        envelope = {
            "envelope_id": envelope_id,
            "type": "events_api",
            "payload": self.event_payload(event, event_id),
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        self._deliver(envelope)
        return envelope_id

    def _deliver(self, envelope: dict[str, Any]) -> None:
        self.envelopes[envelope["envelope_id"]] = envelope
        live = [s for s in self.sockets if not s.retiring]
        if live:
            live[-1].outbox.put_nowait(envelope)
        else:
            self._undelivered.append(envelope)

    def disconnect(self, reason: str = "refresh_requested", *, close: bool = False) -> None:
        """Tell every open connection to reconnect (`{"type": "disconnect", "reason"}`), as
        Slack does every few hours; `close=True` also closes them (a server going away)."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}
        for socket in self.sockets:
            socket.retiring = True
            socket.outbox.put_nowait(message)
            if close:
                socket.outbox.put_nowait(None)

    async def stop(self) -> None:
        for socket in list(self.sockets):
            await socket.ws.close()
        for writer in list(self._writers):
            writer.cancel()
        await asyncio.gather(*self._writers, return_exceptions=True)
        await super().stop()

    def _open_connection(self, params: dict[str, Any]) -> dict[str, Any]:
        if "connections:write" not in self.app_scopes:
            raise SlackRefusal(
                "missing_scope",
                needed="connections:write",
                provided=",".join(sorted(self.app_scopes)),
            )
        ticket = f"{random.getrandbits(96):024x}"
        self._tickets.add(ticket)
        ws_url = self.base_url.replace("http://", "ws://", 1)
        return {"url": f"{ws_url}/socket-mode?ticket={ticket}&app_id={APP_ID}"}

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:  # each URL connects once
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        # Answers the client's pings; waits at most 1 s for the client's side of a close.
        ws = web.WebSocketResponse(timeout=1.0)
        await ws.prepare(request)
        self.socket_connections += 1
        socket = SocketConnection(self.socket_connections, ws, asyncio.Queue())
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self.sockets) + 1,
                "debug_info": {"host": "fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        self.sockets.append(socket)
        for envelope in self._undelivered:
            socket.outbox.put_nowait(envelope)
        self._undelivered.clear()
        writer = asyncio.create_task(self._write(socket))
        self._writers.add(writer)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    with contextlib.suppress(ValueError):
                        answer = json.loads(message.data)
                        if isinstance(answer, dict) and isinstance(answer.get("envelope_id"), str):
                            self.acks.append(answer["envelope_id"])
                            socket.unacked.pop(answer["envelope_id"], None)
        finally:
            self.sockets.remove(socket)
            if not socket.closing:  # else the writer is finishing the close handshake
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            self._writers.discard(writer)
            self._redeliver(socket)
        return ws

    def _redeliver(self, socket: SocketConnection) -> None:
        """What a closed connection never got goes to the next one as it was; what it got
        but did not acknowledge goes as Slack's retry."""
        while not socket.outbox.empty():
            item = socket.outbox.get_nowait()
            if item is not None and item.get("type") == "events_api":
                self._deliver(item)
        for envelope in socket.unacked.values():
            if envelope["retry_attempt"] < MAX_RETRIES:
                retry = envelope["retry_attempt"] + 1
                self._deliver(envelope | {"retry_attempt": retry, "retry_reason": "timeout"})
        socket.unacked.clear()

    async def _write(self, socket: SocketConnection) -> None:
        while True:
            item = await socket.outbox.get()
            if item is None:
                socket.closing = True
                await socket.ws.close()
                return
            envelope = item if item.get("type") == "events_api" else None
            if envelope is not None:  # before sending: the ack may come back at once
                socket.unacked[envelope["envelope_id"]] = envelope
            try:
                await socket.ws.send_json(item)
            except ConnectionError:
                socket.retiring = True
                if envelope is not None:
                    socket.unacked.pop(envelope["envelope_id"], None)
                    self._deliver(envelope)
                return

    def _add_reaction(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need("reactions:write")
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None or (channel.private and not channel.member):
            raise SlackRefusal("channel_not_found")
        if channel.archived:
            raise SlackRefusal("is_archived")
        ts, name = str(params.get("timestamp", "")), str(params.get("name", "")).strip(":")
        if not name:
            raise SlackRefusal("invalid_name")
        if not any(m.ts == ts for m in self.messages_in(channel.id)):
            raise SlackRefusal("message_not_found")
        if any((r.channel, r.ts, r.name) == (channel.id, ts, name) for r in self.reactions):
            raise SlackRefusal("already_reacted")
        self.reactions.append(SlackReaction(channel.id, ts, name, self.clock()))
        return {}

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
            self._authorize(request, params, method)
            result = handler(params)
        except SlackRefusal as refusal:
            return self._refuse(method, refusal)
        except ValueError:
            return self._refuse(method, SlackRefusal("invalid_json"))
        self.note(method, 200, None)
        return web.json_response({"ok": True, **result}, headers=self._scope_header(method))

    def _scope_header(self, method: str = "") -> dict[str, str]:
        scopes = self.app_scopes if method == "apps.connections.open" else self.scopes
        return {"x-oauth-scopes": ",".join(sorted(scopes))}

    def _need(self, *scopes: str) -> None:
        """Refuse with `missing_scope` unless the token has one of `scopes`."""
        if not self.scopes.intersection(scopes):
            raise SlackRefusal(
                "missing_scope", needed=",".join(scopes), provided=",".join(sorted(self.scopes))
            )

    def _authorize(self, request: web.Request, params: dict[str, Any], method: str) -> None:
        header = request.headers.get("Authorization", "")
        if method == "apps.connections.open":
            # Slack: the app-level token must come in the Authorization header.
            token = header.removeprefix("Bearer ").strip()
            if not token:
                raise SlackRefusal("not_authed")
            if token in self.tokens:
                raise SlackRefusal("not_allowed_token_type")
            if token not in self.app_tokens:
                raise SlackRefusal("invalid_auth")
            return
        token = header.removeprefix("Bearer ").strip() or params.get("token")
        if not token:
            raise SlackRefusal("not_authed")
        if token in self.app_tokens:
            raise SlackRefusal("not_allowed_token_type")
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
        if refusal.error not in ("not_authed", "invalid_auth", "not_allowed_token_type"):
            headers |= self._scope_header(method)
        return web.json_response(body, status=refusal.status, headers=headers)

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"{self.base_url}/",
            "team": "Fake Team",
            "user": self.bot_name,
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
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

    def _conversation_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """The channel's latest messages (`limit`, newest first): needs `channels:history`
        (`groups:history` for a private channel) and, as Slack, membership."""
        channel = self.channels.get(str(params.get("channel", "")))
        self._need("groups:history" if channel and channel.private else "channels:history")
        if channel is None or (channel.private and not channel.member):
            raise SlackRefusal("channel_not_found")
        if not channel.member:
            raise SlackRefusal("not_in_channel")
        limit = int(params.get("limit", 100))
        posts = [m for m in self.messages_in(channel.id) if m.thread_ts is None][::-1][:limit]
        messages = [{"type": "message", "ts": m.ts, "text": m.text or ""} for m in posts]
        return {"messages": messages, "has_more": False}

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
        user: str | None = None,
    ) -> SlackPost:
        self._ts_seq += 1
        ts = f"{self._ts_base}.{self._ts_seq:06d}"  # unique, increasing, Slack-shaped
        payload = {k: v for k, v in params.items() if k != "token"}
        post = SlackPost(
            channel, ts, text, blocks, thread_ts, self.clock(), via, payload, thread_found, user
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
