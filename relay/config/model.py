"""The config model: relay.yaml as frozen, typed objects (PRODUCT.md section 3).

pydantic validates every key and type at once and gives the JSON Schema that editors use
(config/relay.schema.json, generated from these classes). Checks that span several parts
of the file (a route naming an unknown destination, duplicate route names) are in
`checks.py`, so they are reported together with these.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    WithJsonSchema,
    model_validator,
)

from relay.config.durations import Duration
from relay.routing import Matcher, parse_matcher

SLACK_API_URL = "https://slack.com/api/"
TELEGRAM_API_URL = "https://api.telegram.org"
DEFAULT_STORAGE = "sqlite:///relay.db"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ip_network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(
            f"'{value}' is not an IP address or CIDR (e.g. 203.0.113.7, 10.0.0.0/8)"
        ) from None


def _secret_length(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < 8:
        raise ValueError("a secret must be at least 8 characters (it keys the HMAC)")
    return value


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"'{value}' is not an http(s) URL")
    return value


def _empty_is_false(value: Any) -> Any:
    # `enabled: ${SLACK_BOT_TOKEN:+true}` becomes an empty (null) value when the variable
    # is unset: that means "off", so the example config works with and without credentials.
    return False if value is None or value == "" else value


def _empty_is_none(value: Any) -> Any:
    # `token: "${SLACK_BOT_TOKEN:-}"` is empty when the variable is unset: not given.
    return None if value == "" else value


IPNetwork = Annotated[str, AfterValidator(_ip_network)]
Secret = Annotated[SecretStr, AfterValidator(_secret_length)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Enabled = Annotated[
    bool,
    BeforeValidator(_empty_is_false),
    WithJsonSchema({"type": ["boolean", "null"], "default": True}),
]
OptionalSecret = Annotated[Secret | None, BeforeValidator(_empty_is_none)]
OptionalText = Annotated[str | None, BeforeValidator(_empty_is_none)]
Rate = Annotated[float, Field(gt=0, le=1000)]
MatcherField = Annotated[
    Matcher,
    PlainValidator(parse_matcher),
    WithJsonSchema(
        {
            "description": "A scalar (equality), a list (any of), {regex: R}, {not: M} "
            "or {exists: true|false}",
            "anyOf": [
                {"type": ["string", "number", "boolean", "null"]},
                {"type": "array", "items": {"type": ["string", "number", "boolean", "null"]}},
                {
                    "type": "object",
                    "properties": {"regex": {"type": "string"}},
                    "required": ["regex"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"not": {}},
                    "required": ["not"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"exists": {"type": "boolean"}},
                    "required": ["exists"],
                    "additionalProperties": False,
                },
            ],
        }
    ),
]


class Server(_Strict):
    host: str = "0.0.0.0"  # noqa: S104 - a webhook receiver listens on every interface by default
    port: int = Field(8080, ge=1, le=65535)
    path: str = Field("/webhooks/oneroute", pattern=r"^/\S*$")


def _drop_empty(values: Any) -> Any:
    # `["${NEW_SECRET}", "${OLD_SECRET:-}"]`: an unset rotation slot is simply not there.
    return [v for v in values if v not in ("", None)] if isinstance(values, list) else values


class OneRoute(_Strict):
    secrets: Annotated[list[Secret], BeforeValidator(_drop_empty)] = Field(
        min_length=1, description="HMAC-SHA512 keys; several = rotation (empty entries are ignored)"
    )
    allowed_ips: list[IPNetwork] = Field(
        default_factory=list, description="IPs or CIDRs; an empty list allows every address"
    )
    trusted_proxies: list[IPNetwork] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is believed"
    )


class _Destination(_Strict):
    enabled: Enabled = Field(True, description="false (or empty) turns the destination off")
    max_per_second: Rate | None = Field(
        None, description="replaces the platform's documented rate limits for this destination"
    )
    template: str | None = Field(
        None,
        description="a Jinja2 template (sandboxed) for the message body; every value is escaped "
        "for the destination",
    )
    template_file: str | None = Field(
        None, description="a file holding the template, relative to the config file"
    )


class SlackDestination(_Destination):
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
        if self.webhook_url is not None:
            _http_url(self.webhook_url.get_secret_value())
        return self


class TelegramDestination(_Destination):
    type: Literal["telegram"]
    token: OptionalSecret = Field(None, description="bot token from @BotFather")
    chat_id: Annotated[int | str | None, BeforeValidator(_empty_is_none)] = Field(
        None, description="chat id (-100... for groups) or @channel"
    )
    topic_id: int | None = Field(None, description="forum topic (message_thread_id)")
    thread_by_conversation: bool = Field(
        False, description="later messages of a conversation reply to its first"
    )
    link_preview: bool = Field(False, description="let Telegram preview customer-supplied links")
    api_url: HttpUrl = TELEGRAM_API_URL

    @model_validator(mode="after")
    def _complete(self) -> TelegramDestination:
        if self.enabled and (self.token is None or self.chat_id is None):
            raise ValueError("token and chat_id are required (relay telegram-chats lists chat ids)")
        return self


class ConsoleDestination(_Destination):
    type: Literal["console"]


Destination = Annotated[
    SlackDestination | TelegramDestination | ConsoleDestination, Field(discriminator="type")
]


class Route(_Strict):
    name: str | None = None
    when: dict[str, MatcherField] = Field(
        default_factory=dict, description="every key (a dotted path into the event) must match"
    )
    to: list[str] = Field(min_length=1, description="destination names")
    continue_: bool = Field(False, alias="continue", description="go on matching after this route")


class Delivery(_Strict):
    give_up_after: Duration = Field(
        86400.0, description="retry transient failures this long, then dead-letter (e.g. 24h)"
    )
    timeout: Duration = Field(10.0, description="per API call (e.g. 10s)")


class Config(_Strict):
    server: Server = Server()
    oneroute: OneRoute
    storage: str = Field(DEFAULT_STORAGE, pattern=r"^(sqlite:///|postgres(ql)?://)")
    destinations: dict[str, Destination] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    delivery: Delivery = Delivery()
    retention: Duration = Field(
        7 * 86400.0, description="delivered events are deleted after this long (e.g. 7d)"
    )

    def secrets(self) -> list[str]:
        """Every secret in the config, for redaction."""
        found = [secret.get_secret_value() for secret in self.oneroute.secrets]
        for destination in self.destinations.values():
            for name in ("token", "webhook_url"):
                value = getattr(destination, name, None)
                if isinstance(value, SecretStr):
                    found.append(value.get_secret_value())
        password = urlsplit(self.storage).password  # postgresql://user:PASSWORD@host/db
        if password:
            found.append(password)
        return found
