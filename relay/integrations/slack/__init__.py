"""Slack: Block Kit messages through `chat.postMessage` (bot token, threads) or an
incoming webhook.

    config.py    the destination's keys (SlackDestination)
    render.py    event -> messages (Block Kit and a `text` fallback), pure
    send.py      the senders and their pure `request()` builder
    classify.py  the one classifier of Slack's answers
    doctor.py    `relay doctor`'s checks
"""

from __future__ import annotations

import hashlib
from typing import Any

from relay.integrations.base import (
    BuildContext,
    Courier,
    Status,
    configured_limit,
    load_template,
    template_fingerprint,
)
from relay.integrations.slack import doctor
from relay.integrations.slack.config import SlackDestination
from relay.integrations.slack.render import SlackJoiner, render_slack
from relay.integrations.slack.send import SlackSender, SlackWebhookSender
from relay.pacing import Limit

PER_CHANNEL = 1.0  # chat.postMessage: about one message per second per channel
PER_WEBHOOK = 1.0  # incoming webhooks: one per second


def fingerprint(secret: str) -> str:
    """A stable key for a token or URL that does not reveal it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


class Slack:
    def limits(self, name: str, destination: SlackDestination) -> tuple[Limit, ...]:
        configured = configured_limit(name, destination)
        if configured is not None:
            return configured
        if destination.webhook_url is not None:
            url = destination.webhook_url.get_secret_value()
            return (Limit(f"slack-webhook:{fingerprint(url)}", PER_WEBHOOK),)
        token = fingerprint(destination.token.get_secret_value()) if destination.token else ""
        return (Limit(f"slack:{token}:{destination.channel}", PER_CHANNEL),)

    def courier(
        self, name: str, destination: SlackDestination, context: BuildContext
    ) -> Courier[Any]:
        template = load_template(destination, context.base, "slack")
        sender: SlackSender | SlackWebhookSender
        if destination.webhook_url is not None:
            sender = SlackWebhookSender(
                url=destination.webhook_url.get_secret_value(), timeout=context.timeout
            )
        else:
            assert destination.token is not None and destination.channel is not None
            sender = SlackSender(
                token=destination.token.get_secret_value(),
                channel=destination.channel,
                api_url=destination.api_url,
                timeout=context.timeout,
            )
        unfurl = destination.unfurl_links
        return Courier(
            render=lambda event: render_slack(event, template=template, unfurl_links=unfurl),
            sender=sender,
            limits=self.limits(name, destination),
            threads=destination.thread_by_conversation,
            joiner=SlackJoiner() if destination.coalesce else None,
            fingerprint=template_fingerprint(template),
        )

    async def diagnose(
        self, name: str, destination: SlackDestination, send_test: bool, per_call: float
    ) -> tuple[Status, str]:
        return await doctor.diagnose(name, destination, send_test, per_call)


SLACK = Slack()
