"""Everything that can go wrong, in one place: the exceptions the relay raises and the
reasons its deliveries fail.

Exceptions are for what stops an operation (a request, a command, a reload); a delivery
that fails is not an exception but an outcome (relay/outcome.py) carrying a `Reason`.

    RelayError                      a failure the relay reports in its own words
    ├── ConfigError                 relay.yaml cannot be used; lists every issue as
    │                               FILE:LINE: key.path: message (relay check, reload)
    ├── TemplateError               a destination template does not compile (at load)
    ├── TemplateRenderError         a template failed on one event (the renderer falls back
    │                               to the default layout, so nothing is lost)
    ├── InvalidEvent                a webhook body is not a JSON object (HTTP 400)
    ├── JSONParseError              a body Node's JSON.parse would reject (the signature
    │                               can then only match the raw bytes)
    ├── Overloaded                  too many large bodies wait for their signature check
    │                               (relay/ingest/offload.py): not checked, HTTP 503
    ├── StoreUnavailable            the store cannot read or write now: disk full, read-only,
    │   │                           database down (HTTP 503; lanes wait and try again)
    │   └── StoreLocked             another `relay serve` already uses this SQLite file
    └── CLIError                    a command cannot do what was asked (one line, exit 1)
        └── UsageError              the command line itself is wrong (usage, exit 2)

Every message is written for the operator and never contains a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

KeyPath = tuple[str | int, ...]


class RelayError(Exception):
    """Base of the relay's own exceptions."""


# --- the config -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in the config, at a key path (and the line it is on)."""

    path: KeyPath
    message: str
    line: int | None = None


def format_path(path: KeyPath) -> str:
    """`routes[2].to[0]`, `destinations["odd name"].token`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]'
    return text


class ConfigError(RelayError):
    """The config cannot be used; `issues` says everything that is wrong with it."""

    def __init__(self, file: str, issues: tuple[ConfigIssue, ...]) -> None:
        super().__init__(file, issues)
        self.file = file
        self.issues = issues

    def lines(self) -> list[str]:
        ordered = sorted(self.issues, key=lambda issue: (issue.line or 0, format_path(issue.path)))
        return [self._line(issue) for issue in ordered]

    def _line(self, issue: ConfigIssue) -> str:
        where = f"{self.file}:{issue.line}" if issue.line else self.file
        path = format_path(issue.path)
        return f"{where}: {path}: {issue.message}" if path else f"{where}: {issue.message}"

    def __str__(self) -> str:
        return "\n".join(self.lines())


class TemplateError(RelayError, ValueError):
    """A template that cannot be compiled; `line` is its 1-based line number when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line


class TemplateRenderError(RelayError, RuntimeError):
    """A template that failed on one event; the renderer falls back to the default body."""


# --- ingest -----------------------------------------------------------------------------------


class InvalidEvent(RelayError, ValueError):
    """The body is not a JSON object; the message says why, for the 400 answer."""


class JSONParseError(RelayError, ValueError):
    """The body is not something JSON.parse accepts (or is nested too deep to re-serialise)."""


class Overloaded(RelayError):
    """The signature worker already has all the large bodies it may hold, or it just failed:
    the body was not checked; the client should retry later (503)."""


# --- the store --------------------------------------------------------------------------------


class StoreUnavailable(RelayError):
    """The store cannot read or write now (disk full, read-only, database down)."""


class StoreLocked(StoreUnavailable):
    """Another `relay serve` holds this SQLite file: two would deliver everything twice."""


# --- the command line -------------------------------------------------------------------------


class CLIError(RelayError):
    """A user-facing failure of a command: printed as one line, exit 1."""


class UsageError(CLIError):
    """Misuse of the command line: usage on stderr, exit 2."""


# --- why a delivery failed ----------------------------------------------------------------------


class Reason(StrEnum):
    """Why a delivery attempt failed: the one vocabulary of classifiers, lanes, metrics
    (`reason` labels), dead letters and `relay doctor`. The values are stored and shown."""

    # Transient: the lane retries with backoff (or the server's Retry-After).
    RATE_LIMITED = "rate_limited"  # 429, or the platform's "slow down" word
    SERVER_ERROR = "server_error"  # 5xx, or the platform says it is in trouble
    TIMEOUT = "timeout"  # no answer in `delivery.timeout`
    NETWORK = "network"  # no connection, or it broke
    BAD_ANSWER = "bad_answer"  # an answer that is not the API's: HTML, garbled JSON, wrong shape
    INTERNAL_ERROR = "internal_error"  # a bug in the relay while delivering (logged, retried)
    CONSOLE_UNAVAILABLE = "console_unavailable"  # standard output is closed or full

    # Permanent: sending the same again cannot help; dead-lettered at once.
    UNAUTHORIZED = "unauthorized"  # bad, revoked or malformed token
    FORBIDDEN = "forbidden"  # the token lacks a right, the bot was kicked or blocked
    CHANNEL_NOT_FOUND = "channel_not_found"
    NOT_IN_CHANNEL = "not_in_channel"
    IS_ARCHIVED = "is_archived"
    CHAT_NOT_FOUND = "chat_not_found"
    TOPIC_NOT_FOUND = "topic_not_found"
    CHAT_MIGRATED = "chat_migrated"  # a group became a supergroup and following it failed
    BAD_REQUEST = "bad_request"  # the platform refused this message
    NO_API_KEY = "no_api_key"  # an answer, but no oneroute.api_key to send it with
    NO_NUMBER = "no_number"  # an answer, but no business or customer number in the events

    # The lane's own verdicts.
    RENDER_ERROR = "render_error"  # the event could not be rendered at all
    GAVE_UP = "gave_up"  # still failing after `delivery.give_up_after`
    DESTINATION_REMOVED = "destination_removed"  # no longer in the config
    DESTINATION_DISABLED = "destination_disabled"  # `enabled: false`

    @property
    def transient(self) -> bool:
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {
        Reason.RATE_LIMITED,
        Reason.SERVER_ERROR,
        Reason.TIMEOUT,
        Reason.NETWORK,
        Reason.BAD_ANSWER,
        Reason.INTERNAL_ERROR,
        Reason.CONSOLE_UNAVAILABLE,
    }
)
