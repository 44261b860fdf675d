"""The building blocks of the config model: strict models, checked value types, and the
fields every destination has. relay/config/model.py assembles the file from them, and each
integration's `config.py` (relay/integrations/) its destination type.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
)


class Strict(BaseModel):
    """Frozen, and every unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable from this machine only."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name, "" or a wildcard address: other machines may reach it


def _ip_network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(
            f"'{value}' is not an IP address or CIDR (e.g. 203.0.113.7, 10.0.0.0/8)"
        ) from None


class SecretField:
    """Marks a field that holds a secret without being a SecretStr (the storage URL, for
    its password): like a SecretStr's, its value is never quoted in a config error
    (relay/config/load.py, `is_secret_path`)."""


SECRET = SecretField()

_NOT_SHOWN = "(the value is not shown: it is a secret)"


def _secret_text(value: SecretStr) -> SecretStr:
    # Messages never quote the value: it is a secret, and a reload's refusal is logged.
    text = value.get_secret_value()
    if len(text) < 8:
        raise ValueError("a secret must be at least 8 characters (it keys the HMAC)")
    if not text.replace(" ", "x").isprintable():
        raise ValueError(
            "holds a line break, tab or other invisible character (a newline read from a "
            f"file?): remove it {_NOT_SHOWN}"
        )
    if text != text.strip():
        raise ValueError(f"starts or ends with a space: remove it {_NOT_SHOWN}")
    return value


def _no_spaces(value: SecretStr) -> SecretStr:
    if " " in value.get_secret_value():
        raise ValueError(f"holds a space, which no token has: remove it {_NOT_SHOWN}")
    return value


def http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"'{value}' is not an http(s) URL")
    return value


def _empty_is_false(value: Any) -> Any:
    # `enabled: ${SLACK_BOT_TOKEN:+true}` becomes an empty (null) value when the variable
    # is unset: that means "off", so the example config works with and without credentials.
    return False if value is None or value == "" else value


def empty_is_none(value: Any) -> Any:
    # `token: "${SLACK_BOT_TOKEN:-}"` is empty when the variable is unset: not given.
    return None if value == "" else value


def _finite_number(value: Any) -> Any:
    # YAML's `.nan`, `.inf` and `true` (and the texts "nan", "inf") are numbers to pydantic;
    # none is a rate.
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value  # pydantic says it is not a number
    if isinstance(number, bool) or (isinstance(number, float) and not math.isfinite(number)):
        raise ValueError("expected a finite number above 0 (e.g. 1 or 0.5)")
    return value


IPNetwork = Annotated[str, AfterValidator(_ip_network)]
Secret = Annotated[SecretStr, AfterValidator(_secret_text)]
Token = Annotated[SecretStr, AfterValidator(_secret_text), AfterValidator(_no_spaces)]
HttpUrl = Annotated[str, AfterValidator(http_url)]
Enabled = Annotated[
    bool,
    BeforeValidator(_empty_is_false),
    WithJsonSchema({"type": ["boolean", "null"], "default": True}),
]
OptionalSecret = Annotated[Secret | None, BeforeValidator(empty_is_none)]
OptionalToken = Annotated[Token | None, BeforeValidator(empty_is_none)]
OptionalText = Annotated[str | None, BeforeValidator(empty_is_none)]
Rate = Annotated[float, Field(gt=0, le=1000), BeforeValidator(_finite_number)]


class DestinationBase(Strict):
    """What every destination type has; each integration adds its own keys and `type`.

    Templates (relay/render/template.py) replace the body of Slack and Telegram messages;
    the loader reports a template on any other type as an error."""

    type: str
    enabled: Enabled = Field(True, description="false (or empty) turns the destination off")
    max_per_second: Rate | None = Field(
        None, description="replaces the platform's documented rate limits for this destination"
    )
    coalesce: bool = Field(
        True,
        description="when several events are due at once, send them in one message (within "
        "the platform's limits); false sends each event on its own",
    )

    template: str | None = Field(
        None,
        description="a Jinja2 template (sandboxed) for the message body; every value is escaped "
        "for the destination",
    )
    template_file: str | None = Field(
        None, description="a file holding the template, relative to the config file"
    )

    def secrets(self) -> list[str]:
        """The secrets this destination holds (tokens, URLs), for redaction."""
        return [
            value.get_secret_value()
            for value in self.__dict__.values()
            if isinstance(value, SecretStr)
        ]
