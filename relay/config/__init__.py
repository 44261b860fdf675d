"""relay.yaml: the config model, and loading it with file:line errors."""

from relay.config.load import load_config, parse_config
from relay.config.model import (
    Config,
    ConsoleDestination,
    Destination,
    Route,
    SlackDestination,
    TelegramDestination,
)
from relay.errors import ConfigError

__all__ = [
    "Config",
    "ConfigError",
    "ConsoleDestination",
    "Destination",
    "Route",
    "SlackDestination",
    "TelegramDestination",
    "load_config",
    "parse_config",
]
