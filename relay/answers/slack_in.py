"""Slack in: people's messages in threads of watched channels, by Socket Mode or the
Events API.

Both ways hand Slack's `event_callback` payload to `slack_replies` (pure), which keeps a
person's new message in a thread of a watched channel and drops everything else. Each
reply is stored (`on_reply`) before Slack hears back: Socket Mode acks the envelope only
then, the Events API answers 200 only then (503 when storing failed), so Slack delivers
again whatever was not stored. Slack expects the answer within 3 seconds.

- `SlackSocketListener`: one Socket Mode connection per app token (xapp-…, with
  `connections:write`), over slack-sdk's aiohttp `SocketModeClient`, which reconnects by
  itself. Opening the connection (`apps.connections.open`) is done here instead, so a
  rejected token is said once and retried slowly rather than logged every few seconds.
- `slack_events_handler`: `POST /slack/events`, verified with each app's signing secret
  (slack-sdk's `SignatureVerifier`: v0 HMAC-SHA256, timestamp within 5 minutes).

Secrets (the app token, signing secrets) are masked in everything logged here, and the
SDK logs on a scrubbed logger while a listener is open, as the senders do
(relay/integrations/slack/send.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from relay.answers.model import DEFAULT_BACKOFF, Backoff, OnReply, Problems, Reply, ReplySource
from relay.errors import Reason
from relay.integrations.slack.classify import classify_slack, slack_failure
from relay.integrations.slack.config import SLACK_API_URL
from relay.integrations.slack.send import close_web_client, web_client
from relay.outcome import Failure, Permanent, RetryLater, describe, short_detail
from relay.redact import Redactor, scrub_loggers

_log = logging.getLogger("relay.answers.slack")
# slack-sdk's Socket Mode client logs through this one; each listener scrubs its app token.
_sdk_log = logging.getLogger("slack_sdk.relay.socket_mode")

MAX_AGE = 5 * 60  # seconds: Slack's own advice for X-Slack-Request-Timestamp
# Subtypes that are a person's new message all the same: a thread reply also sent to the
# channel. Every other subtype (edits, deletions, joins, bot messages, files…) is not.
_PERSON_SUBTYPES = frozenset({None, "thread_broadcast"})


# ---------------------------------------------------------------------------- candidates


def slack_key(destination: str, channel: str, ts: str) -> str:
    """A Reply's key: a Slack message is its channel and `ts`, however it was delivered."""
    return f"{destination}:slack:{channel}:{ts}"


def slack_replies(payload: Mapping[str, Any], sources: Sequence[ReplySource]) -> list[Reply]:
    """The replies in one `event_callback` payload (pure): a person's new message in a
    thread (`thread_ts` set and not its own `ts`) of a watched channel, from an allowed
    user, not a note, with some text — one per source watching that channel."""
    if not isinstance(payload, Mapping) or payload.get("type") != "event_callback":
        return []
    event = payload.get("event")
    if not isinstance(event, Mapping) or event.get("type") != "message":
        return []
    subtype = event.get("subtype")
    if not (subtype is None or isinstance(subtype, str)) or subtype not in _PERSON_SUBTYPES:
        return []
    if event.get("bot_id") or event.get("bot_profile"):
        return []
    found = _strings(event, "channel", "user", "ts", "thread_ts", "text")
    if found is None:
        return []
    channel, user, ts, thread_ts, raw = found
    if not (channel and user and thread_ts) or thread_ts == ts:
        return []
    try:
        at = float(ts)
    except ValueError:
        return []
    text = slack_text(raw)
    if not text.strip():
        return []
    return [
        Reply(
            destination=source.destination,
            platform="slack",
            key=slack_key(source.destination, channel, ts),
            user=user,
            text=text,
            at=at,
            channel=channel,
            ts=ts,
            thread_ts=thread_ts,
        )
        for source in sources
        if source.place == channel and source.allows(user) and not source.is_note(text)
    ]


def _strings(event: Mapping[str, Any], *keys: str) -> tuple[str, ...] | None:
    """The values of `keys`, or None unless all are strings."""
    values = [event.get(key) for key in keys]
    strings = [value for value in values if isinstance(value, str)]
    return tuple(strings) if len(strings) == len(values) else None


_MARKUP = re.compile(r"<([^<>]*)>")
_SPECIAL = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


def slack_text(text: str) -> str:
    """Slack's message text as the customer should read it: `&amp;` `&lt;` `&gt;` unescaped,
    links as their text (`<https://x.io|x.io>` → x.io; a different label keeps the URL in
    brackets), `<#C…|name>` → #name, `<!here>` → @here. User mentions `<@U…>` stay as
    they are: their names would cost an API call per message."""
    out: list[str] = []
    end = 0
    for match in _MARKUP.finditer(text):
        out.append(_unescape(text[end : match.start()]))
        out.append(_markup(match.group(0), match.group(1)))
        end = match.end()
    out.append(_unescape(text[end:]))
    return "".join(out)


def _markup(whole: str, inner: str) -> str:
    target, _, label = inner.partition("|")
    target, label = _unescape(target), _unescape(label)
    if target.startswith("@"):
        return whole
    if target.startswith("#"):
        return f"#{label or target[1:]}"
    if target.startswith("!"):
        word = target[1:].split("^")[0]
        return label or _SPECIAL.get(word, f"@{word}")
    if not label:
        return target
    bare = target.split(":", 1)[1].lstrip("/") if ":" in target else target
    return label if label in (target, bare) else f"{label} ({target})"


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _names(sources: Sequence[ReplySource]) -> str:
    return ", ".join(sorted({source.destination for source in sources}))


# ---------------------------------------------------------------------------- Events API

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


def slack_events_handler(
    apps: Mapping[str, Sequence[ReplySource]],
    on_reply: OnReply,
    *,
    clock: Callable[[], float] = time.time,
) -> Handler:
    """The aiohttp handler for `POST /slack/events`.

    `apps` maps each signing secret to the destinations whose app it signs for: a request
    counts only for the destinations of the secret that verifies it. A bad, missing or
    stale signature is 401 and nothing is stored; `url_verification` is answered with its
    challenge; an `event_callback` is stored, then answered 200 (503 when storing failed,
    so Slack retries; a retry of a stored event has the same key and is a duplicate)."""
    verifiers = [
        (SignatureVerifier(secret, _Clock(clock)), tuple(sources))
        for secret, sources in apps.items()
    ]
    redact = Redactor(*apps)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        sources, refusal = _verify(verifiers, body, request.headers, clock())
        if sources is None:
            _log.warning("refused a request to %s: %s", request.path, refusal)
            return web.json_response({"ok": False, "error": "invalid_signature"}, status=401)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            return web.json_response({"ok": False, "error": "invalid_json"}, status=400)
        if not isinstance(payload, dict):
            return web.json_response({"ok": False, "error": "invalid_json"}, status=400)
        if payload.get("type") == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                return web.json_response({"ok": False, "error": "no_challenge"}, status=400)
            return web.json_response({"challenge": challenge})
        for reply in slack_replies(payload, sources):
            try:
                await on_reply(reply)
            except Exception as exc:  # the store failed: Slack retries on a 5xx
                _log.warning(
                    "could not store a Slack reply for %s (%s); answered 503 so that Slack "
                    "sends it again",
                    reply.destination,
                    redact(short_detail(describe(exc))),
                )
                return web.json_response({"ok": False, "error": "not_stored"}, status=503)
        return web.json_response({"ok": True})

    return handle


def _verify(
    verifiers: Sequence[tuple[SignatureVerifier, tuple[ReplySource, ...]]],
    body: bytes,
    headers: Mapping[str, str],
    now: float,
) -> tuple[tuple[ReplySource, ...] | None, str]:
    """The sources of the secret that signed `body`, or None and why not (no secret in it)."""
    timestamp = headers.get("X-Slack-Request-Timestamp")
    signature = headers.get("X-Slack-Signature")
    if not timestamp or not signature:
        return None, "no X-Slack-Signature or X-Slack-Request-Timestamp header"
    try:
        age = now - int(timestamp)
        text = body.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None, "unreadable timestamp or body"
    if abs(age) > MAX_AGE:
        return None, (
            f"X-Slack-Request-Timestamp is {abs(age):.0f} s off (more than {MAX_AGE} s): a "
            "replayed request, or this machine's clock is wrong"
        )
    for verifier, sources in verifiers:
        if verifier.is_valid(text, timestamp, signature):
            return sources, ""
    return None, "the signature matches no configured signing secret"


# ---------------------------------------------------------------------------- Socket Mode


class _Client(SocketModeClient):
    """slack-sdk's aiohttp client, with the WebSocket URL fetched by the listener and every
    message it dispatches tracked, so closing leaves no task behind."""

    def __init__(self, open_url: Callable[[], Awaitable[str]], **kwargs: Any) -> None:
        self._open_url = open_url
        self.dispatching: set[asyncio.Task[Any]] = set()
        super().__init__(**kwargs)

    async def issue_new_wss_url(self) -> str:
        return await self._open_url()

    async def run_message_listeners(self, message: dict[str, Any], raw_message: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.dispatching.add(task)
        try:
            await super().run_message_listeners(message, raw_message)
        finally:
            if task is not None:
                self.dispatching.discard(task)


class _Closed(Exception):
    """The listener is closing: stop fetching a WebSocket URL."""


class SlackSocketListener:
    """Socket Mode for one app token, serving every destination (`sources`) that uses it.

    `start()` returns at once and connects in the background; `close()` lets replies being
    stored finish (for up to `grace` seconds), then closes the connection and awaits every
    task. `timeout` limits each Web API call; `ping_interval` is the SDK's keep-alive."""

    def __init__(
        self,
        *,
        app_token: str,
        sources: Sequence[ReplySource],
        on_reply: OnReply,
        api_url: str = SLACK_API_URL,
        timeout: float = 10.0,
        ping_interval: float = 5.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        grace: float = 2.0,
    ) -> None:
        self.sources = tuple(sources)
        self.redact = Redactor(app_token)
        self._app_token = app_token
        self._on_reply = on_reply
        self._api_url = api_url
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._backoff = backoff
        self._grace = grace
        self._names = _names(self.sources)
        self._problems = Problems(_log)
        self._closing = asyncio.Event()
        self._client: _Client | None = None
        self._web: AsyncWebClient | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._unscrub: Callable[[], None] | None = None

    @property
    def connected(self) -> bool:
        """A WebSocket is open (for probes); false while connecting or reconnecting."""
        session = self._client.current_session if self._client is not None else None
        return session is not None and not session.closed and not self._closing.is_set()

    async def start(self) -> None:
        if self._client is not None:
            return
        self._closing.clear()
        self._unscrub = scrub_loggers([_sdk_log.name], self.redact)
        self._web = web_client(self._app_token, api_url=self._api_url, timeout=self._timeout)
        self._client = _Client(
            self._open_url,
            app_token=self._app_token,
            logger=_sdk_log,
            web_client=self._web,
            ping_interval=self._ping_interval,
        )
        self._client.socket_mode_request_listeners.append(self._on_request)
        self._connecting = asyncio.create_task(self._client.connect())
        _log.info("reading Slack replies by Socket Mode for %s", self._names)

    async def close(self) -> None:
        client = self._client
        if client is None:
            return
        self._closing.set()
        client.closed = True  # no reconnecting from here on; open sockets still send acks
        if client.dispatching:
            await asyncio.wait(set(client.dispatching), timeout=self._grace)
        tasks: list[asyncio.Future[Any]] = [*client.dispatching]
        if self._connecting is not None:
            tasks.append(self._connecting)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        sdk_tasks = [
            task
            for task in (
                client.message_processor,
                client.current_session_monitor,
                client.message_receiver,
            )
            if task is not None
        ]
        await asyncio.gather(*sdk_tasks, return_exceptions=True)
        if self._web is not None:
            await close_web_client(self._web)
        if self._unscrub is not None:
            self._unscrub()
        self._client = self._web = self._connecting = self._unscrub = None

    async def _on_request(
        self, client: AsyncBaseSocketModeClient, request: SocketModeRequest
    ) -> None:
        if self._closing.is_set():
            return  # not acknowledged: Slack delivers it to the next connection
        replies = (
            slack_replies(request.payload, self.sources) if request.type == "events_api" else []
        )
        for reply in replies:
            try:
                await self._on_reply(reply)
            except Exception as exc:
                _log.warning(
                    "could not store a Slack reply for %s (%s); not acknowledged, so Slack "
                    "delivers it again",
                    reply.destination,
                    self.redact(short_detail(describe(exc))),
                )
                return
        try:
            await client.send_socket_mode_response(
                SocketModeResponse(envelope_id=request.envelope_id)
            )
        except Exception as exc:  # the connection went away: Slack delivers it again
            _log.info(
                "could not acknowledge a Slack event for %s (%s); Slack will deliver it "
                "again and it is stored once",
                self._names,
                self.redact(short_detail(describe(exc))),
            )

    async def _open_url(self) -> str:
        """A WebSocket URL from `apps.connections.open`, trying until it comes or the
        listener closes; problems are said once (`Problems`)."""
        failures = 0
        while not self._closing.is_set():
            assert self._web is not None
            failure: Failure
            try:
                response = await self._web.apps_connections_open(app_token=self._app_token)
                url = response.get("url")
                if isinstance(url, str) and url:
                    self._problems.over(f"Socket Mode connects again for {self._names}")
                    return url
                failure = RetryLater(Reason.BAD_ANSWER, "apps.connections.open gave no url")
            except SlackApiError as exc:
                failure = slack_failure(exc).outcome
            except Exception as exc:  # transport errors, answers the SDK cannot read
                failure = classify_slack(exc=exc)
            failure = failure.masked(self.redact)
            delay = self._delay(failure, failures)
            failures += 1
            self._problems.report(failure.reason, self._say(failure, delay))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
        raise _Closed("the listener is closing")

    def _delay(self, failure: Failure, failures: int) -> float:
        if isinstance(failure, Permanent):
            return self._backoff.refused
        if failure.after is not None:
            return max(failure.after, self._backoff.first)
        return self._backoff.after(failures)

    def _say(self, failure: Failure, delay: float) -> str:
        retry = (
            f"trying again every {delay:g} s"
            if isinstance(failure, Permanent)
            else (f"trying again in {delay:g} s")
        )
        if "not_allowed_token_type" in failure.detail:
            what = (
                "replies.app_token is not an app-level token — use the app's xapp-… token "
                "with connections:write (app settings → Basic Information → App-Level "
                "Tokens), not the bot token"
            )
        elif failure.reason == Reason.UNAUTHORIZED:
            what = (
                f"Slack refused replies.app_token ({failure.detail}) — check it, or make a "
                "new app-level token with connections:write"
            )
        elif failure.reason == Reason.FORBIDDEN:
            what = (
                f"Slack refused to open a Socket Mode connection ({failure.detail}) — the "
                "app-level token needs connections:write, and Socket Mode must be on in the "
                "app settings"
            )
        elif isinstance(failure, Permanent):
            what = f"Slack refused to open a Socket Mode connection ({failure.detail})"
        else:
            what = f"cannot open a Socket Mode connection ({failure.reason}: {failure.detail})"
        return f"Slack replies for {self._names}: {what}; {retry}"
