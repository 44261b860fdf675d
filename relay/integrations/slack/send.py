"""Slack senders over slack-sdk: `chat.postMessage` with a bot token, or an incoming webhook.

Each builds the exact call with its pure `request()` and turns whatever comes back into
one Outcome through `classify_slack` (relay/integrations/slack/classify.py). The delivery
lanes own retrying and pacing, so slack-sdk's own retry handlers are switched off.

The two SDK clients fail differently: `AsyncWebClient` raises `SlackApiError` for any
answer that is not HTTP 200 with `"ok": true` (the parsed body and headers ride on
`exc.response`), while `AsyncWebhookClient` returns a `WebhookResponse` whatever the
status, with the error as a bare word in the text body (`invalid_token`, `no_service`).
Both let aiohttp's transport errors through, and both raise assorted exceptions for
answers they cannot parse (a JSON list, a text body that is not UTF-8); all of those are
classified, never raised.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from relay.integrations.base import Request
from relay.integrations.slack.classify import classify_slack, slack_failure
from relay.integrations.slack.config import SLACK_API_URL
from relay.integrations.slack.render import SlackMessage
from relay.outcome import Outcome, Sent, short_detail
from relay.redact import Redactor, scrub_loggers

_log = logging.getLogger("relay.integrations.slack")
# Handed to slack-sdk instead of its own loggers. The webhook client logs the full webhook
# URL (a secret) at DEBUG: each sender scrubs its own secret from it while it is open.
_sdk_log = logging.getLogger("slack_sdk.relay")

_WORD = re.compile(r"[a-z_]{3,64}")


def _image_refused(error: str | None, notes: list[str]) -> bool:
    # Slack words it "downloading image failed [json-pointer:/blocks/0/image_url]", and
    # "invalid_url [json-pointer:/blocks/0/slack_file.url]" for files; both are about
    # fetching the image, not the shape of the message.
    return error == "invalid_blocks" and any(
        "downloading image" in n.lower() or "image_url" in n or "slack_file" in n for n in notes
    )


def _session(timeout: float) -> aiohttp.ClientSession:
    # One session per sender keeps connections alive between messages. Given a session,
    # slack-sdk ignores its own `timeout` argument, so the timeout lives here.
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))


def web_client(
    token: str, *, api_url: str = SLACK_API_URL, timeout: float = 10.0
) -> AsyncWebClient:
    """A Web API client as the relay configures it: `timeout` per call, no SDK retries, and
    the SDK's logging on a scrubbed logger. Build it inside the running event loop (its
    aiohttp session belongs to that loop); close it with `close_web_client`."""
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


def post_message(channel: str, payload: dict[str, Any], thread: str | None) -> Request:
    """The `chat.postMessage` call for one rendered message (pure)."""
    body = {"channel": channel, **payload}
    if thread is not None:
        body["thread_ts"] = thread
    return Request("chat.postMessage", body)


class SlackSender:
    """Posts to one channel with a bot token (`chat.postMessage`); threads by `thread_ts`."""

    def __init__(
        self, *, token: str, channel: str, api_url: str = SLACK_API_URL, timeout: float = 10.0
    ) -> None:
        self.channel = channel
        self.redact = Redactor(token)
        self._token = token
        self._api_url = api_url
        self._timeout = timeout
        self._client: AsyncWebClient | None = None
        self._unscrub: Callable[[], None] | None = None

    def request(self, message: SlackMessage, thread: str | None) -> Request:
        return post_message(self.channel, message.payload, thread)

    async def send(self, message: SlackMessage, thread: str | None = None) -> Outcome:
        outcome, image_refused = await self._post(self.request(message, thread))
        if image_refused and message.fallback is not None:
            _log.warning(
                "Slack could not download an image for channel %s; posting without it",
                self.channel,
            )
            outcome, _ = await self._post(post_message(self.channel, message.fallback, thread))
        return outcome

    async def close(self) -> None:
        if self._client is not None:
            await close_web_client(self._client)
        self._client = None
        if self._unscrub is not None:
            self._unscrub()
            self._unscrub = None

    async def _post(self, request: Request) -> tuple[Outcome, bool]:
        try:
            response = await self._web().api_call(request.call, json=request.body)
            ts = response.get("ts")
        except SlackApiError as exc:
            refusal = slack_failure(exc)
            image = _image_refused(refusal.error, refusal.notes)
            return self._masked(refusal.outcome), image
        except Exception as exc:  # transport errors, and answers the SDK cannot parse
            return self._masked(classify_slack(exc=exc)), False
        return Sent(ref=ts if isinstance(ts, str) else None), False

    def _masked(self, outcome: Outcome) -> Outcome:
        return outcome if isinstance(outcome, Sent) else outcome.masked(self.redact)

    def _web(self) -> AsyncWebClient:
        # Built on first use: an aiohttp session belongs to the running event loop.
        if self._client is None:
            self._unscrub = scrub_loggers([_sdk_log.name], self.redact)
            self._client = web_client(self._token, api_url=self._api_url, timeout=self._timeout)
        return self._client


class SlackWebhookSender:
    """Posts through an incoming webhook. Webhooks have no threads and answer no `ts`."""

    def __init__(self, *, url: str, timeout: float = 10.0) -> None:
        self.redact = Redactor(url)
        self._url = url
        self._timeout = timeout
        self._client: AsyncWebhookClient | None = None
        self._unscrub: Callable[[], None] | None = None

    def request(self, message: SlackMessage, thread: str | None) -> Request:
        if thread is not None:
            raise ValueError("incoming webhooks cannot post into threads; pass thread=None")
        return Request("incoming webhook", message.payload)

    async def send(self, message: SlackMessage, thread: str | None = None) -> Outcome:
        outcome, status, error = await self._post(self.request(message, thread))
        # A webhook says only "invalid_blocks", not which block; when the message has an
        # image-free fallback, one more try tells an unreachable image from a bad message.
        if status == 400 and error == "invalid_blocks" and message.fallback is not None:
            _log.warning("Slack webhook refused the blocks; posting without the image blocks")
            outcome, _, _ = await self._post(Request("incoming webhook", message.fallback))
        return outcome

    async def close(self) -> None:
        if self._client is not None and self._client.session is not None:
            await self._client.session.close()
        self._client = None
        if self._unscrub is not None:
            self._unscrub()
            self._unscrub = None

    async def _post(self, request: Request) -> tuple[Outcome, int | None, str | None]:
        try:
            response = await self._webhook().send_dict(body=request.body)
        except Exception as exc:  # transport errors, and bodies the SDK cannot decode
            return classify_slack(exc=exc).masked(self.redact), None, None
        status = response.status_code
        if 200 <= status < 300:
            return Sent(), status, None
        body = (response.body or "").strip() if isinstance(response.body, str) else ""
        error = body if _WORD.fullmatch(body) else None
        outcome = classify_slack(
            status=status,
            error=error,
            retry_after=response.headers.get("Retry-After") if response.headers else None,
            detail=short_detail(f"webhook answered HTTP {status}: {body[:200]}"),
        )
        return outcome.masked(self.redact), status, error

    def _webhook(self) -> AsyncWebhookClient:
        if self._client is None:
            self._unscrub = scrub_loggers([_sdk_log.name], self.redact)
            self._client = AsyncWebhookClient(
                url=self._url,
                session=_session(self._timeout),
                logger=_sdk_log,
                retry_handlers=[],
            )
        return self._client
