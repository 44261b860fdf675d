"""relay.yaml: the config model, and loading it with file:line errors."""

from relay.config.load import ConfigError, load_config, parse_config
from relay.config.model import (
    Config,
    ConsoleDestination,
    Destination,
    Route,
    SlackDestination,
    TelegramDestination,
)

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
