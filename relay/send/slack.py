"""Slack senders over slack-sdk: `chat.postMessage` with a bot token, or an incoming webhook.

Each turns every answer into one Outcome. The delivery lanes own retrying and pacing, so
slack-sdk's own retry handlers are switched off. `classify_slack` is the one place that
decides what a failed call means; it is pure and table-tested.

The two SDK clients fail differently: `AsyncWebClient` raises `SlackApiError` for any
answer that is not HTTP 200 with `"ok": true` (the parsed body and headers ride on
`exc.response`), while `AsyncWebhookClient` returns a `WebhookResponse` whatever the
status, with the error as a bare word in the text body (`invalid_token`, `no_service`).
Both let aiohttp's transport errors (timeouts, refused connections) through.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from relay.redact import redact, register, scrub_loggers
from relay.render.messages import SlackMessage
from relay.send.outcome import Outcome, Permanent, RetryLater, Sent

DEFAULT_API_URL = "https://slack.com/api/"

_log = logging.getLogger("relay.send.slack")
# Handed to slack-sdk instead of its own loggers: the webhook client logs the full webhook
# URL (a secret) at DEBUG, and a filter can only scrub records on the logger they start at.
_sdk_log = logging.getLogger("relay.send.slack.sdk")

_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)

# Slack error words -> our reasons. The incoming-webhook vocabulary
# (https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks#handling_errors)
# shares the table with the Web API's, as both describe the same situations.
_PERMANENT_WORDS: dict[str, str] = {
    "unauthorized": "invalid_auth not_authed token_revoked account_inactive token_expired"
    " invalid_token no_service no_service_id no_team team_disabled no_active_hooks",
    "forbidden": "missing_scope not_allowed_token_type no_permission access_denied"
    " restricted_action ekm_access_denied action_prohibited posting_to_general_channel_denied"
    " team_access_not_granted",
    "channel_not_found": "channel_not_found",
    "not_in_channel": "not_in_channel",
    "is_archived": "is_archived channel_is_archived",
}
_PERMANENT = {word: reason for reason, words in _PERMANENT_WORDS.items() for word in words.split()}
_RETRYABLE: frozenset[str] = frozenset(
    {"fatal_error", "internal_error", "service_unavailable", "request_timeout", "rollup_error"}
)
_RATE_LIMITED: frozenset[str] = frozenset({"ratelimited", "rate_limited"})
_WORD = re.compile(r"[a-z_]{3,64}")


def classify_slack(
    *,
    status: int | None = None,
    error: str | None = None,
    retry_after: str | float | None = None,
    exc: BaseException | None = None,
    detail: str = "",
) -> Outcome:
    """Decide what a failed Slack call means.

    `status` is the HTTP status, `error` Slack's error word (the Web API's `error` field or
    a webhook's text body), `retry_after` the `Retry-After` header, `exc` a transport error
    raised instead of an answer. `detail` is redacted and carried into the outcome.
    """
    detail = redact(detail or error or (f"{type(exc).__name__}: {exc}" if exc else ""))
    if exc is not None:
        # TimeoutError first: aiohttp's timeouts are also ClientErrors/OSErrors.
        reason = "timeout" if isinstance(exc, TimeoutError) else "network"
        return RetryLater(reason, detail)
    if status == 429 or error in _RATE_LIMITED:
        return RetryLater("rate_limited", detail, _seconds(retry_after), rate_limited=True)
    if error in _RETRYABLE:
        return RetryLater("server_error", detail)
    if error in _PERMANENT:
        return Permanent(_PERMANENT[error], detail)
    if status is not None and status >= 500:
        return RetryLater("server_error", detail or f"HTTP {status}")
    if status == 408:
        return RetryLater("timeout", detail or "HTTP 408")
    if error is not None or (status is not None and 400 <= status < 500):
        # An error word we do not know, or a bare 4xx: Slack reports trouble on its side as
        # 5xx, 429 or one of the retryable words above, so what is left is a refusal of this
        # request (a new method-specific error, a malformed body) that resending the same
        # body cannot fix. Dead-lettering it at once beats retrying it for hours.
        return Permanent("bad_request", detail or f"HTTP {status}")
    # 2xx/3xx without an error word: a proxy page or a body slack-sdk could not parse.
    return RetryLater("server_error", detail or f"unexpected answer (HTTP {status})")


def _seconds(retry_after: str | float | None) -> float | None:
    """Retry-After as seconds; None when absent or not a number (the lane's backoff decides).

    Slack sends whole seconds, but fractions are accepted. The HTTP-date form is not: turning
    it into seconds needs a clock, and Slack does not use it.
    """
    if retry_after is None:
        return None
    try:
        seconds = float(retry_after)
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _api_failure(exc: SlackApiError) -> tuple[Outcome, bool]:
    """Classify a Web API refusal; also say whether it was an image Slack could not fetch."""
    # Usually a SlackResponse; for a JSON content type with a body that is not JSON,
    # slack-sdk hands over aiohttp's raw response instead, hence the getattr defaults.
    response = exc.response
    data: Any = getattr(response, "data", None)
    body: dict[str, Any] = data if isinstance(data, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), str) else None
    notes = _notes(body)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    outcome = classify_slack(
        status=status,
        error=error,
        retry_after=(getattr(response, "headers", None) or {}).get("Retry-After"),
        detail="; ".join([error or f"HTTP {status} without a Slack error", *notes[:2]]),
    )
    return outcome, error == "invalid_blocks" and any(_mentions_image(n) for n in notes)


def _notes(body: dict[str, Any]) -> list[str]:
    """Slack's explanations: `errors` and `response_metadata.messages` of an ok:false body."""
    notes: list[Any] = list(body.get("errors") or [])
    metadata = body.get("response_metadata")
    if isinstance(metadata, dict):
        notes += metadata.get("messages") or []
    return [note for note in notes if isinstance(note, str)]


def _mentions_image(note: str) -> bool:
    # Slack words it "downloading image failed [json-pointer:/blocks/0/image_url]", and
    # "invalid_url [json-pointer:/blocks/0/slack_file.url]" for files; both are about
    # fetching the image, not the shape of the message.
    note = note.lower()
    return "downloading image" in note or "image_url" in note or "slack_file" in note


def _session(timeout: float) -> aiohttp.ClientSession:
    # One session per sender keeps connections alive between messages. Given a session,
    # slack-sdk ignores its own `timeout` argument, so the timeout lives here.
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))


def web_client(
    token: str, *, api_url: str = DEFAULT_API_URL, timeout: float = 10.0
) -> AsyncWebClient:
    """A Web API client as the relay configures it: `timeout` per call, no SDK retries, and
    the SDK's logging on a scrubbed logger. Build it inside the running event loop (its
    aiohttp session belongs to that loop); close it with `close_web_client`."""
    register(token)
    return AsyncWebClient(
        token=token,
        base_url=api_url if api_url.endswith("/") else api_url + "/",
        session=_session(timeout),
        logger=_sdk_log,
        retry_handlers=[],
    )


async def close_web_client(client: AsyncWebClient) -> None:
    if client.session is not None:
        await client.session.close()


class SlackSender:
    """Posts to one channel with a bot token (`chat.postMessage`); threads by `thread_ts`."""

    def __init__(
        self, *, token: str, channel: str, api_url: str = DEFAULT_API_URL, timeout: float = 10.0
    ) -> None:
        register(token)
        self.channel = channel
        self._token = token
        self._api_url = api_url if api_url.endswith("/") else api_url + "/"
        self._timeout = timeout
        self._client: AsyncWebClient | None = None

    async def send(self, message: SlackMessage, *, thread_ts: str | None = None) -> Outcome:
        outcome, image_refused = await self._post(message.payload, thread_ts)
        if image_refused and message.fallback is not None:
            _log.warning(
                "Slack could not download an image for channel %s; posting without it",
                self.channel,
            )
            outcome, _ = await self._post(message.fallback, thread_ts)
        return outcome

    async def close(self) -> None:
        if self._client is not None and self._client.session is not None:
            await self._client.session.close()
        self._client = None

    async def _post(self, payload: dict[str, Any], thread_ts: str | None) -> tuple[Outcome, bool]:
        try:
            response = await self._web().chat_postMessage(
                channel=self.channel, thread_ts=thread_ts, **payload
            )
        except SlackApiError as exc:
            return _api_failure(exc)
        except _TRANSPORT_ERRORS as exc:
            return classify_slack(exc=exc), False
        ts = response.get("ts")
        return Sent(ref=ts if isinstance(ts, str) else None), False

    def _web(self) -> AsyncWebClient:
        # Built on first use: an aiohttp session belongs to the running event loop.
        if self._client is None:
            self._client = web_client(self._token, api_url=self._api_url, timeout=self._timeout)
        return self._client


class SlackWebhookSender:
    """Posts through an incoming webhook. Webhooks have no threads and answer no `ts`."""

    def __init__(self, *, url: str, timeout: float = 10.0) -> None:
        register(url)
        self._url = url
        self._timeout = timeout
        self._client: AsyncWebhookClient | None = None

    async def send(self, message: SlackMessage, *, thread_ts: str | None = None) -> Outcome:
        if thread_ts is not None:
            raise ValueError("incoming webhooks cannot post into threads; pass thread_ts=None")
        outcome, status, error = await self._post(message.payload)
        # A webhook says only "invalid_blocks", not which block; when the message has an
        # image-free fallback, one more try tells an unreachable image from a bad message.
        if status == 400 and error == "invalid_blocks" and message.fallback is not None:
            _log.warning("Slack webhook refused the blocks; posting without the image blocks")
            outcome, _, _ = await self._post(message.fallback)
        return outcome

    async def close(self) -> None:
        if self._client is not None and self._client.session is not None:
            await self._client.session.close()
        self._client = None

    async def _post(self, payload: dict[str, Any]) -> tuple[Outcome, int | None, str | None]:
        try:
            response = await self._webhook().send_dict(body=payload)
        except _TRANSPORT_ERRORS as exc:
            return classify_slack(exc=exc), None, None
        if 200 <= response.status_code < 300:
            return Sent(), response.status_code, None
        body = (response.body or "").strip()
        error = body if _WORD.fullmatch(body) else None
        outcome = classify_slack(
            status=response.status_code,
            error=error,
            retry_after=response.headers.get("Retry-After"),
            detail=f"webhook answered HTTP {response.status_code}: {body[:200]}",
        )
        return outcome, response.status_code, error

    def _webhook(self) -> AsyncWebhookClient:
        if self._client is None:
            self._client = AsyncWebhookClient(
                url=self._url,
                session=_session(self._timeout),
                logger=_sdk_log,
                retry_handlers=[],
            )
        return self._client


scrub_loggers([_sdk_log.name, _log.name])
