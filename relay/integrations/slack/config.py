"""A Slack destination in relay.yaml: a bot token and channel, or an incoming webhook."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator

from relay.config.types import (
    DestinationBase,
    HttpUrl,
    OptionalSecret,
    OptionalText,
    OptionalToken,
    Secret,
    Strict,
    empty_is_none,
)

SLACK_API_URL = "https://slack.com/api/"
_WEBHOOK_URL = re.compile(r"https?://[^\s/?#@]+/\S*")
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]+")  # a public or private channel's id


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


class SlackReplies(Strict):
    """Answers written in the destination's threads go to the customer (README: "Answering
    customers"): by Socket Mode (`app_token`), the Events API (`signing_secret`), or both."""

    app_token: OptionalToken = Field(
        None, description="app-level token (xapp-..., connections:write): Socket Mode"
    )
    signing_secret: OptionalSecret = Field(
        None, description="the app's signing secret: Slack posts to POST /slack/events"
    )
    from_users: list[str] = Field(
        default_factory=list, description="Slack user ids who may answer; empty: anyone"
    )
    note_prefix: str = Field("note:", description="messages starting with it stay in Slack")

    @model_validator(mode="after")
    def _some_way_in(self) -> SlackReplies:
        if self.app_token is None and self.signing_secret is None:
            raise ValueError("set app_token (Socket Mode) or signing_secret (Events API), or both")
        return self

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.app_token, self.signing_secret) if s]


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
    replies: SlackReplies | None = Field(
        None, description="answers written in the conversation's thread reach the customer"
    )

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
        if self.replies is not None and (self.token is None or not self.thread_by_conversation):
            raise ValueError(
                "replies need a bot token and thread_by_conversation: true (an answer is "
                "written in the conversation's thread)"
            )
        if self.replies is not None and not _CHANNEL_ID.fullmatch(self.channel or ""):
            raise ValueError(
                "replies need the channel id (e.g. C0123456789; in Slack: the channel's "
                "details, at the bottom), not its name: Slack's events name channels by id"
            )
        return self

    def secrets(self) -> list[str]:
        return super().secrets() + (self.replies.secrets() if self.replies else [])
