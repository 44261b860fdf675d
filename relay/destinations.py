"""The integrations the relay knows, by destination `type`; the only place that lists them.

Everything else asks this table for a destination's integration (relay/integrations/),
so adding a platform is one package and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from relay.config.model import Destination
from relay.integrations.base import BuildContext, Courier, Integration
from relay.integrations.console import CONSOLE
from relay.integrations.slack import SLACK
from relay.integrations.telegram import TELEGRAM
from relay.pacing import Limit

INTEGRATIONS: Mapping[str, Integration[Any]] = {
    "slack": SLACK,
    "telegram": TELEGRAM,
    "console": CONSOLE,
}


def integration_for(destination: Destination) -> Integration[Any]:
    return INTEGRATIONS[destination.type]


def build_courier(name: str, destination: Destination, context: BuildContext) -> Courier[Any]:
    """The courier for one enabled destination. Raises OSError or TemplateError when its
    template file cannot be read or compiled."""
    return integration_for(destination).courier(name, destination, context)


def limits_for(name: str, destination: Destination) -> tuple[Limit, ...]:
    return integration_for(destination).limits(name, destination)


def preview(
    name: str,
    destination: Destination,
    events: Sequence[Mapping[str, Any]],
    context: BuildContext,
) -> list[dict[str, Any]]:
    """The exact API calls a destination would receive for `events` due at once (`relay
    route --render`): built by the same renderer, coalescing and request builder as the
    lane's."""
    return build_courier(name, destination, context).preview(events)
