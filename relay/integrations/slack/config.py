"""A Slack destination in relay.yaml: a bot token and channel, or an incoming webhook."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator

from relay.config.types import (
    DestinationBase,
    HttpUrl,
    OptionalText,
    OptionalToken,
    Secret,
    empty_is_none,
)

SLACK_API_URL = "https://slack.com/api/"
_WEBHOOK_URL = re.compile(r"https?://[^\s/?#@]+/\S*")


def _webhook_url(value: SecretStr) -> SecretStr:
    # Not the value: a webhook URL is a secret (its path is the credential).
    if not _WEBHOOK_URL.fullmatch(value.get_secret_value()):
        raise ValueError(
            "not an http(s) URL without spaces; an incoming webhook URL looks like "
            "https://hooks.slack.com/services/T…/B…/… (the value is not shown: it is a secret)"
        )
    return value


WebhookURL = Annotated[
    Annotated[Secret, AfterValidator(_webhook_url)] | None, BeforeValidator(empty_is_none)
]


class SlackDestination(DestinationBase):
    type: Literal["slack"]
    token: OptionalToken = Field(
        None, description="bot token (xoxb-...): chat.postMessage, threads"
    )
    webhook_url: WebhookURL = Field(None, description="incoming webhook URL, instead of a token")
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
        return self
