"""A Slack destination in relay.yaml: a bot token and channel, or an incoming webhook."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from relay.config.types import DestinationBase, HttpUrl, OptionalSecret, OptionalText

SLACK_API_URL = "https://slack.com/api/"


class SlackDestination(DestinationBase):
    type: Literal["slack"]
    token: OptionalSecret = Field(
        None, description="bot token (xoxb-...): chat.postMessage, threads"
    )
    webhook_url: OptionalSecret = Field(
        None, description="incoming webhook URL, instead of a token"
    )
    channel: OptionalText = Field(None, description="channel id (C0123456789) or name")
    thread_by_conversation: bool = False
    unfurl_links: bool = Field(False, description="let Slack unfurl customer-supplied links")
    api_url: HttpUrl = SLACK_API_URL

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackDestination:
        if not self.enabled:
            return self
        if (self.token is None) == (self.webhook_url is None):
            raise ValueError("set either token (with channel) or webhook_url, not both or neither")
        if self.token is not None and not self.channel:
            raise ValueError("channel is required with token (e.g. channel: C0123456789)")
        if self.webhook_url is not None and self.channel:
            raise ValueError("an incoming webhook posts to its own channel: remove channel")
        if self.webhook_url is not None and self.thread_by_conversation:
            raise ValueError(
                "thread_by_conversation needs a bot token: incoming webhooks cannot thread"
            )
        if self.webhook_url is not None and not self.webhook_url.get_secret_value().startswith(
            ("https://", "http://")
        ):
            # Not the value: a webhook URL is a secret.
            raise ValueError(
                "webhook_url is not an http(s) URL (it looks like "
                "https://hooks.slack.com/services/T…/B…/…)"
            )
        return self
