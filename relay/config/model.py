"""The config model: relay.yaml as frozen, typed objects (README: "The config file").

pydantic validates every key and type at once and gives the JSON Schema that editors use
(config/relay.schema.json, generated from these classes). Checks that span several parts
of the file (a route naming an unknown destination, duplicate route names) are in
relay/config/load.py, so they are reported together with these. Each destination type's
model lives with its integration (relay/integrations/*/config.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from relay.config.durations import Duration
from relay.config.storage import PATTERN, check_storage_url, storage_passwords
from relay.config.types import (
    SECRET,
    HttpUrl,
    IPNetwork,
    OptionalSecret,
    Secret,
    Strict,
    is_loopback,
)
from relay.integrations.console.config import ConsoleDestination
from relay.integrations.slack.config import SlackDestination
from relay.integrations.telegram.config import TelegramDestination
from relay.routing import Matcher, parse_matcher

DEFAULT_STORAGE = "sqlite:///relay.db"


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


class Server(Strict):
    host: str = "0.0.0.0"  # noqa: S104 - a webhook receiver listens on every interface by default
    port: int = Field(8080, ge=1, le=65535)
    path: str = Field("/webhooks/oneroute", pattern=r"^/\S*$")
    workers: int = Field(
        0,
        ge=0,
        le=64,
        description="processes that answer webhooks beside the relay's own (0: it answers "
        "them itself); for a busy line, about the number of cores",
    )


class Admin(Strict):
    """The operator console's own listener (relay/console/), apart from the public port."""

    host: str = Field("127.0.0.1", description="default 127.0.0.1 (this machine only)")
    port: int = Field(8081, ge=1, le=65535)
    token: OptionalSecret = Field(
        None,
        description="every console request needs `Authorization: Bearer <token>`; required "
        "unless host is a loopback address",
    )

    @model_validator(mode="after")
    def _token_off_this_machine(self) -> Admin:
        # The console can retry dead letters and shows customers' messages: reachable from
        # other machines, it must ask who is there.
        if self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is reachable from other machines, so the console needs "
                'a token: set admin.token: "${RELAY_ADMIN_TOKEN}" (a long random string), '
                "or keep admin.host on 127.0.0.1"
            )
        return self


def _drop_empty(values: Any) -> Any:
    # `["${NEW_SECRET}", "${OLD_SECRET:-}"]`: an unset rotation slot is simply not there.
    return [v for v in values if v not in ("", None)] if isinstance(values, list) else values


ONEROUTE_API_URL = "https://api.oneroute.io"


class ReplyNumbers(Strict):
    """Where an answer's numbers are in the conversation's latest event (dotted paths)."""

    business: str = Field(
        "conversation.Channel.phone", description="the channel's number: the answer's sender"
    )
    customer: str = Field(
        "conversation.customer.phone", description="the customer's number: the answer's receiver"
    )


class OneRoute(Strict):
    secrets: Annotated[list[Secret], BeforeValidator(_drop_empty)] = Field(
        min_length=1, description="HMAC-SHA512 keys; several = rotation (empty entries are ignored)"
    )
    allowed_ips: list[IPNetwork] = Field(
        default_factory=list, description="IPs or CIDRs; an empty list allows every address"
    )
    trusted_proxies: list[IPNetwork] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is believed"
    )
    api_key: OptionalSecret = Field(
        None, description="OneRoute's API key: answers from Slack and Telegram reach customers"
    )
    api_url: HttpUrl = Field(ONEROUTE_API_URL, description="OneRoute's API")
    reply_numbers: ReplyNumbers = ReplyNumbers()


StorageURL = Annotated[str, SECRET, AfterValidator(check_storage_url)]
"""sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB; it may hold a password."""


Destination = Annotated[
    SlackDestination | TelegramDestination | ConsoleDestination, Field(discriminator="type")
]


class Route(Strict):
    name: str | None = None
    when: dict[str, MatcherField] = Field(
        default_factory=dict, description="every key (a dotted path into the event) must match"
    )
    to: list[str] = Field(min_length=1, description="destination names")
    continue_: bool = Field(False, alias="continue", description="go on matching after this route")


class Delivery(Strict):
    give_up_after: Duration = Field(
        86400.0, description="retry transient failures this long, then dead-letter (e.g. 24h)"
    )
    timeout: Duration = Field(10.0, description="per API call (e.g. 10s)")
    lane_lease: Duration = Field(
        15.0,
        description="several instances: how long a destination's lane stays with an instance "
        "that stopped renewing it (it dies) before another takes over (e.g. 15s)",
    )


class Config(Strict):
    server: Server = Server()
    admin: Admin = Admin()
    oneroute: OneRoute
    storage: StorageURL = Field(DEFAULT_STORAGE, json_schema_extra={"pattern": PATTERN})
    destinations: dict[str, Destination] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    delivery: Delivery = Delivery()
    retention: Duration = Field(
        7 * 86400.0, description="delivered events are deleted after this long (e.g. 7d)"
    )

    def secrets(self) -> list[str]:
        """Every secret in the config, for redaction."""
        found = [secret.get_secret_value() for secret in self.oneroute.secrets]
        if self.admin.token is not None:
            found.append(self.admin.token.get_secret_value())
        if self.oneroute.api_key is not None:
            found.append(self.oneroute.api_key.get_secret_value())
        for destination in self.destinations.values():
            found += destination.secrets()
        return found + storage_passwords(self.storage)  # postgresql://user:PASSWORD@host/db
