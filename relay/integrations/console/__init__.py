"""The console: prints what Slack and Telegram would show (`make run` without credentials).

config.py    the destination's keys (ConsoleDestination)
render.py    event -> both renderings as terminal text, pure
send.py      writes them to standard output
"""

from __future__ import annotations

from typing import Any

from relay.integrations.base import BuildContext, Courier, Status
from relay.integrations.console.config import ConsoleDestination
from relay.integrations.console.render import ConsoleJoiner, view
from relay.integrations.console.send import ConsoleSender
from relay.pacing import Limit


class Console:
    def limits(self, name: str, destination: ConsoleDestination) -> tuple[Limit, ...]:
        if destination.max_per_second is None:
            return ()
        return (Limit(f"destination:{name}", destination.max_per_second),)

    def courier(
        self, name: str, destination: ConsoleDestination, context: BuildContext
    ) -> Courier[Any]:
        return Courier(
            render=lambda event: [view(event)],
            sender=ConsoleSender(name, context.redactor),
            limits=self.limits(name, destination),
            joiner=ConsoleJoiner() if destination.coalesce else None,
        )

    async def diagnose(
        self, name: str, destination: ConsoleDestination, send_test: bool, per_call: float
    ) -> tuple[Status, str]:
        return "ok", "prints to the relay's terminal; nothing to check"


CONSOLE = Console()
