"""A console destination: prints what Slack and Telegram would receive (`make run`)."""

from __future__ import annotations

from typing import Literal

from relay.config.types import DestinationBase


class ConsoleDestination(DestinationBase):
    type: Literal["console"]
