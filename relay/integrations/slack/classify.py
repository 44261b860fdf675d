"""What a Slack answer means: the one classifier for the senders and `relay doctor` alike.

`classify_slack` is pure and table-tested. It takes what is known of one answer — the HTTP
status, Slack's error word (the Web API's `error` field, or an incoming webhook's bare-word
body), `Retry-After`, whether the body was Slack's own JSON at all, or the exception raised
instead of an answer — and returns one Outcome with a Reason (relay/errors.py).

Anything that is not an answer of Slack's API — an HTML page from a proxy or a captive
portal, `text/plain`, a JSON list, bytes that are not UTF-8, a JSON object without `ok` —
is a transient `bad_answer`: Slack itself does not answer like that, so whatever stood in
its way may be gone next time. `slack_failure` reads the odd shapes slack-sdk hands over.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import aiohttp
from slack_sdk.errors import SlackApiError

from relay.errors import Reason
from relay.outcome import Failure, Permanent, RetryLater, describe, short_detail

TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)

# Slack error words -> reasons. The incoming-webhook vocabulary
# (https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks#handling_errors)
# shares the table with the Web API's, as both describe the same situations.
_PERMANENT_WORDS: dict[Reason, str] = {
    Reason.UNAUTHORIZED: "invalid_auth not_authed token_revoked account_inactive token_expired"
    " invalid_token no_service no_service_id no_team team_disabled no_active_hooks"
    " not_allowed_token_type",
    Reason.FORBIDDEN: "missing_scope no_permission access_denied restricted_action"
    " ekm_access_denied action_prohibited posting_to_general_channel_denied"
    " team_access_not_granted",
    Reason.CHANNEL_NOT_FOUND: "channel_not_found",
    Reason.NOT_IN_CHANNEL: "not_in_channel",
    Reason.IS_ARCHIVED: "is_archived channel_is_archived",
}
PERMANENT: dict[str, Reason] = {
    word: reason for reason, words in _PERMANENT_WORDS.items() for word in words.split()
}
RETRYABLE: frozenset[str] = frozenset(
    {"fatal_error", "internal_error", "service_unavailable", "request_timeout", "rollup_error"}
)
RATE_LIMITED: frozenset[str] = frozenset({"ratelimited", "rate_limited"})


def classify_slack(
    *,
    status: int | None = None,
    error: str | None = None,
    retry_after: str | float | None = None,
    exc: BaseException | None = None,
    detail: str = "",
) -> Failure:
    """Decide what a failed Slack call means.

    `error` is Slack's error word when the body was Slack's own answer, else None; `exc` an
    exception raised instead of an answer. `detail` is carried into the outcome (shortened).
    """
    if exc is not None:
        return _exception(exc, detail)
    detail = short_detail(detail or error or f"HTTP {status}")
    if status == 429 or error in RATE_LIMITED:
        return RetryLater(Reason.RATE_LIMITED, detail, _seconds(retry_after), rate_limited=True)
    if error in RETRYABLE:
        return RetryLater(Reason.SERVER_ERROR, detail)
    if error in PERMANENT:
        return Permanent(PERMANENT[error], detail)
    if status is not None and status >= 500:
        return RetryLater(Reason.SERVER_ERROR, detail)
    if status == 408:
        return RetryLater(Reason.TIMEOUT, detail)
    if error is not None:
        # An error word we do not know: Slack reports trouble on its side as 5xx, 429 or
        # one of the retryable words above, so what is left is a refusal of this request
        # (a new method-specific error, a malformed body) that resending cannot fix.
        return Permanent(Reason.BAD_REQUEST, detail)
    # No error word: not Slack's answer (a proxy page, garbled JSON), whatever the status.
    return RetryLater(Reason.BAD_ANSWER, detail)


def _exception(exc: BaseException, detail: str) -> RetryLater:
    text = short_detail(detail or describe(exc))
    # TimeoutError first: aiohttp's timeouts are also ClientErrors/OSErrors.
    if isinstance(exc, TimeoutError):
        return RetryLater(Reason.TIMEOUT, text)
    if isinstance(exc, TRANSPORT_ERRORS):
        return RetryLater(Reason.NETWORK, text)
    # slack-sdk could not make sense of what came back (it raises AttributeError for a
    # JSON list, UnicodeDecodeError for a text body that is not UTF-8, ...).
    return RetryLater(Reason.BAD_ANSWER, short_detail(f"unreadable answer: {text}"))


def _seconds(retry_after: str | float | None) -> float | None:
    """Retry-After as seconds; None when absent or not a number (the lane's backoff decides).

    Slack sends whole seconds, but fractions are accepted. The HTTP-date form is not: turning
    it into seconds needs a clock, and Slack does not use it. How long the lane really
    waits is capped by the lane (relay/lanes.py)."""
    if retry_after is None:
        return None
    try:
        seconds = float(retry_after)
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class Refusal(NamedTuple):
    """A Web API refusal, read: its outcome, Slack's error word (when the body was Slack's),
    its explanations (`errors`, `response_metadata.messages`) and the HTTP status."""

    outcome: Failure
    error: str | None
    notes: list[str]
    status: int | None


def slack_failure(exc: SlackApiError) -> Refusal:
    """Classify a Web API refusal as slack-sdk raises it.

    `exc.response` is usually a SlackResponse, but its `data` may be {} (a body that was not
    JSON), a str or a list; for a JSON content type with a body that is not JSON, slack-sdk
    hands over aiohttp's raw response instead. Hence the careful reading."""
    response = exc.response
    data: Any = getattr(response, "data", None)
    body: dict[str, Any] = data if isinstance(data, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), str) else None
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    notes = _notes(body)
    if error is not None:
        detail = "; ".join([error, *notes[:2]])
    elif "ok" in body:
        detail = f"HTTP {status}: Slack answered without an error word"
    else:
        detail = f"HTTP {status}: the answer is not Slack's JSON"
    headers = getattr(response, "headers", None) or {}
    status = status if isinstance(status, int) else None
    outcome = classify_slack(
        status=status,
        error=error,
        retry_after=headers.get("Retry-After") if hasattr(headers, "get") else None,
        detail=detail,
    )
    return Refusal(outcome, error, notes, status)


def _notes(body: dict[str, Any]) -> list[str]:
    notes: list[Any] = (
        list(body.get("errors") or []) if isinstance(body.get("errors"), list) else []
    )
    metadata = body.get("response_metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("messages"), list):
        notes += metadata["messages"]
    return [note for note in notes if isinstance(note, str)]
