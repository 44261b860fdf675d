"""Answers in a running relay: which listeners run, which answer lanes exist, and the
`POST /slack/events` endpoint (relay/service.py uses this module).

From the config: every destination with `replies` gets an answer lane (`@answers:<name>`,
relay/answers/send.py); every Slack app token a Socket Mode listener, every signing secret
a say in `/slack/events`, every Telegram bot with replies a getUpdates poller
(relay/answers/slack_in.py, relay/answers/telegram_in.py), each serving every destination
that uses it. They all hand replies to one `AnswerIntake` (relay/answers/intake.py).

A reload that changes what the listeners are built from closes them all and starts the new
ones; replies that arrive meanwhile are not acknowledged, so the platforms deliver them again.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from aiohttp import web

from relay.answers.feedback import Feedback, SlackFeedback, TelegramFeedback
from relay.answers.intake import AnswerIntake, answer_lane
from relay.answers.lease import Leased, LeaseStore
from relay.answers.model import ReplySource
from relay.answers.oneroute import OneRouteClient
from relay.answers.send import AnswerSender, SenderStore, answer_courier
from relay.answers.slack_in import Handler, SlackSocketListener, slack_events_handler
from relay.answers.telegram_in import TelegramPoller
from relay.config.model import Config
from relay.integrations.base import Courier
from relay.integrations.slack import fingerprint
from relay.integrations.slack.config import SlackDestination
from relay.integrations.telegram.config import TelegramDestination
from relay.metrics import Metrics

log = logging.getLogger("relay.answers")


class Listener(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...


def taking_replies(config: Config) -> dict[str, SlackDestination | TelegramDestination]:
    """The enabled destinations that take replies."""
    return {
        name: destination
        for name, destination in config.destinations.items()
        if destination.enabled
        and isinstance(destination, SlackDestination | TelegramDestination)
        and destination.replies is not None
    }


def answer_lanes(config: Config) -> list[str]:
    return [answer_lane(name) for name in taking_replies(config)]


def answer_couriers(
    config: Config, store: SenderStore, metrics: Metrics, timeout: float
) -> dict[str, Courier[Any]]:
    """The courier of every answer lane (built, not started: nothing connects yet)."""
    key = config.oneroute.api_key
    couriers: dict[str, Courier[Any]] = {}
    for name, destination in taking_replies(config).items():
        assert destination.token is not None
        token = destination.token.get_secret_value()
        feedback: Feedback
        if isinstance(destination, SlackDestination):
            feedback = SlackFeedback(token=token, api_url=destination.api_url, timeout=timeout)
        else:
            feedback = TelegramFeedback(token=token, api_url=destination.api_url, timeout=timeout)
        client = (
            OneRouteClient(
                api_key=key.get_secret_value(), api_url=config.oneroute.api_url, timeout=timeout
            )
            if key is not None
            else None
        )
        sender = AnswerSender(
            destination=name,
            client=client,
            numbers=config.oneroute.reply_numbers,
            store=store,
            feedback=feedback,
            metrics=metrics,
        )
        couriers[answer_lane(name)] = answer_courier(sender)
    return couriers


def listeners_signature(config: Config) -> tuple[Any, ...]:
    """What the listeners are built from: when it changes, a reload rebuilds them."""
    # The models themselves, not their repr: a repr hides secrets, so a new token would
    # look like no change.
    destinations = sorted(taking_replies(config).items(), key=lambda item: item[0])
    return (*destinations, config.delivery.timeout, config.delivery.lane_lease)


def _source(name: str, destination: SlackDestination | TelegramDestination) -> ReplySource:
    assert destination.replies is not None
    place = destination.channel if isinstance(destination, SlackDestination) else None
    if isinstance(destination, TelegramDestination):
        place = destination.chat_id
    assert place is not None
    return ReplySource(
        destination=name,
        place=place,
        from_users=frozenset(str(user) for user in destination.replies.from_users),
        note_prefix=destination.replies.note_prefix,
    )


class Answering:
    """The listeners of one config, and the Events API endpoint (swapped on reload)."""

    def __init__(self, intake: AnswerIntake, store: LeaseStore, owner: str) -> None:
        self.intake = intake
        self.store = store
        self.owner = owner
        self.listeners: list[Listener] = []
        self.signature: tuple[Any, ...] = ()
        self._events: Handler | None = None  # /slack/events now; None: no signing secret

    async def start(self, config: Config) -> None:
        self.signature = listeners_signature(config)
        timeout = config.delivery.timeout
        sockets: dict[tuple[str, str], list[ReplySource]] = {}
        secrets: dict[str, list[ReplySource]] = {}
        pollers: dict[tuple[str, str], list[ReplySource]] = {}
        for name, destination in taking_replies(config).items():
            source = _source(name, destination)
            if isinstance(destination, SlackDestination):
                replies = destination.replies
                assert replies is not None
                if replies.app_token is not None:
                    app = (replies.app_token.get_secret_value(), destination.api_url)
                    sockets.setdefault(app, []).append(source)
                if replies.signing_secret is not None:
                    secrets.setdefault(replies.signing_secret.get_secret_value(), []).append(source)
            else:
                assert destination.token is not None
                bot = (destination.token.get_secret_value(), destination.api_url)
                pollers.setdefault(bot, []).append(source)
        listeners: list[Listener] = [
            SlackSocketListener(
                app_token=token,
                sources=sources,
                on_reply=self.intake,
                api_url=api_url,
                timeout=timeout,
            )
            for (token, api_url), sources in sockets.items()
        ]
        # One instance at a time reads a bot's updates (relay/answers/lease.py).
        listeners += [
            Leased(
                TelegramPoller(
                    token=token,
                    sources=sources,
                    on_reply=self.intake,
                    api_url=api_url,
                    timeout=timeout,
                ),
                self.store,
                key=f"@telegram-updates:{fingerprint(token)}",
                owner=self.owner,
                ttl=config.delivery.lane_lease,
            )
            for (token, api_url), sources in pollers.items()
        ]
        self._events = slack_events_handler(secrets, self.intake) if secrets else None
        for listener in listeners:
            try:
                await listener.start()
            except Exception:  # one listener's trouble must not keep the relay from running
                log.exception("could not start an answer listener")
        self.listeners = listeners

    async def close(self) -> None:
        """Close every listener; never raises (a stopping relay must exit cleanly)."""
        listeners, self.listeners = self.listeners, []
        self._events = None
        for listener in listeners:
            try:
                await listener.close()
            except Exception:
                log.exception("could not close an answer listener cleanly")

    async def reload(self, config: Config) -> None:
        if listeners_signature(config) == self.signature:
            return
        await self.close()
        await self.start(config)

    async def slack_events(self, request: web.Request) -> web.StreamResponse:
        """`POST /slack/events`: not subject to allowed_ips (Slack posts from many
        addresses); every request is verified by a signing secret instead."""
        handler = self._events
        if handler is None:
            return web.json_response(
                {"ok": False, "error": "no destination takes replies by the Events API"},
                status=404,
            )
        return await handler(request)
