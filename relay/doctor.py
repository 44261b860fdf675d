"""`relay doctor`: check every configured destination for real, and say what to do next.

Each integration does its own checks (relay/integrations/*/doctor.py) and reads failures
with the same classifier its sender uses. This module runs them concurrently, never lets
one end in a traceback, and writes the verdicts, every line masked by a redactor that
knows the config's secrets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from relay.answers.doctor import check_replies
from relay.config.model import Config, Destination
from relay.destinations import integration_for
from relay.integrations.base import Finding, Status
from relay.integrations.slack.config import SlackDestination
from relay.integrations.telegram.config import TelegramDestination
from relay.redact import Redactor

LABELS: dict[Status, str] = {"ok": "ok", "broken": "BROKEN", "off": "off", "unchecked": "unchecked"}


@dataclass(frozen=True)
class Diagnosis:
    """One destination's verdict. `message` is redacted and says what to do when broken."""

    destination: str
    type: str
    status: Status
    message: str


async def diagnose(
    config: Config,
    *,
    send_test: bool = False,
    timeout: float = 10.0,  # noqa: ASYNC109 - a limit per API call, handed to the SDK clients
) -> list[Diagnosis]:
    """Check every destination (concurrently); the verdicts come back in config order."""
    redact = Redactor(*config.secrets())
    key = config.oneroute.api_key is not None
    checks = [
        _diagnose_one(name, destination, send_test, timeout, redact, key)
        for name, destination in config.destinations.items()
    ]
    return list(await asyncio.gather(*checks))


def format_diagnoses(diagnoses: Sequence[Diagnosis]) -> str:
    """One line per destination, then a summary line naming every broken one."""
    lines = [f"{LABELS[d.status]:<9} {d.destination} ({d.type}): {d.message}" for d in diagnoses]
    lines.append(_summary(diagnoses))
    return "\n".join(lines)


def exit_code(diagnoses: Sequence[Diagnosis]) -> int:
    """1 when any destination is broken, else 0 (unchecked and off do not fail)."""
    return 1 if any(d.status == "broken" for d in diagnoses) else 0


def _summary(diagnoses: Sequence[Diagnosis]) -> str:
    if not diagnoses:
        return "no destinations configured — add some under destinations: in the config"
    broken = [d.destination for d in diagnoses if d.status == "broken"]
    if broken:
        return f"{len(broken)} broken: {', '.join(broken)} — fix them and run relay doctor again"
    counts = {status: sum(d.status == status for d in diagnoses) for status in LABELS}
    return (
        f"no broken destinations ({counts['ok']} ok, {counts['unchecked']} unchecked, "
        f"{counts['off']} off)"
    )


async def _diagnose_one(
    name: str,
    destination: Destination,
    send_test: bool,
    per_call: float,
    redact: Redactor,
    api_key_set: bool = False,
) -> Diagnosis:
    if not destination.enabled:
        return Diagnosis(name, destination.type, "off", "enabled is false or empty: skipped")
    status: Status
    try:
        integration = integration_for(destination)
        status, message = await integration.diagnose(name, destination, send_test, per_call)
        if status == "ok" and getattr(destination, "replies", None) is not None:
            assert isinstance(destination, SlackDestination | TelegramDestination)
            status, said = await check_replies(destination, api_key_set, per_call)
            message = f"{message}; {said}" if status == "ok" else said
    except Finding as finding:
        status, message = finding.status, finding.message
    except Exception as exc:  # a doctor reports; it never ends in a traceback
        status = "broken"
        message = (
            f"unexpected error while checking ({type(exc).__name__}: {exc}) — run relay doctor "
            "again; if it persists, report it with this line"
        )
    return Diagnosis(name, destination.type, status, redact(message))
