"""`relay doctor` for a Slack destination: check it for real, and say what to do next.

Bot tokens: `auth.test` (the token works; its scopes), then `conversations.info` (the
channel exists, is not archived, and the bot is in it or may post publicly). An incoming
webhook cannot be checked without posting. With `send_test`, a short test message goes
through the relay's own sender. Every failed call is read by the senders' classifier
(relay/integrations/slack/classify.py), so the doctor and the lanes agree on what an
answer means; only the advice is the doctor's.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Mapping

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from relay.errors import Reason
from relay.integrations.base import Finding, Link, Status
from relay.integrations.slack.classify import classify_slack, slack_failure
from relay.integrations.slack.config import SlackDestination
from relay.integrations.slack.render import SlackMessage
from relay.integrations.slack.send import (
    SlackSender,
    SlackWebhookSender,
    close_web_client,
    web_client,
)
from relay.outcome import Failure, Outcome, Sent
from relay.render.markup import escape_mrkdwn

TEST_TEXT = (
    "Test message from relay doctor (oneroute-relay) for destination {name}: the relay can "
    "post here. You may delete this message."
)
# Slack ids: C… public or private channel, G… older private channel, D… direct message.
_SLACK_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
REISSUE = (
    "copy the Bot User OAuth Token (xoxb-…) again from your Slack app's OAuth & Permissions "
    "page; if the app was uninstalled, reinstall it"
)


async def diagnose(
    name: str, destination: SlackDestination, send_test: bool, per_call: float
) -> tuple[Status, str]:
    if destination.webhook_url is not None:
        return await _webhook(name, destination, send_test, per_call)
    return await _bot(name, destination, send_test, per_call)


def test_message(name: str) -> SlackMessage:
    return SlackMessage({"text": escape_mrkdwn(TEST_TEXT.format(name=name))})


async def _bot(
    name: str, destination: SlackDestination, send_test: bool, per_call: float
) -> tuple[Status, str]:
    assert destination.token is not None and destination.channel is not None
    token, channel = destination.token.get_secret_value(), destination.channel
    link = Link.to(destination.api_url, per_call)
    client = web_client(token, api_url=destination.api_url, timeout=per_call)
    try:
        auth = await _call(client.auth_test(), "auth.test", link, {})
        bot = str(auth.get("user") or "your-bot")
        scopes = _scopes(auth)
        if scopes is not None and "chat:write" not in scopes:
            raise Finding(
                "broken",
                f"bot @{bot} lacks the chat:write scope — add it under OAuth & Permissions → "
                "Bot Token Scopes, reinstall the app and use the new token",
            )
        status, message = await _channel(client, channel, bot, scopes, link)
    finally:
        await close_web_client(client)
    if not send_test:
        return status, message
    sender = SlackSender(
        token=token, channel=channel, api_url=destination.api_url, timeout=per_call
    )
    outcome = await _post_test(sender, test_message(name))
    if isinstance(outcome, Sent):
        if status == "ok":
            return "ok", f"{message}; test message posted"
        return "ok", f"bot @{bot} posted a test message in {channel}"
    return "broken", _post_failure(outcome, _post_advice(bot, channel), link)


async def _post_test(sender: SlackSender | SlackWebhookSender, message: SlackMessage) -> Outcome:
    try:
        return await sender.send(message, None)
    finally:
        await sender.close()


async def _call(
    call: Awaitable[AsyncSlackResponse],
    method: str,
    link: Link,
    advice: Mapping[str, Finding],
) -> AsyncSlackResponse:
    """Await a Web API call; a refusal becomes the `advice` for its error word, or what the
    classifier's reason calls for."""
    try:
        return await call
    except SlackApiError as exc:
        refusal = slack_failure(exc)
        if refusal.error is not None and refusal.error in advice:
            raise advice[refusal.error] from None
        what = refusal.error or f"HTTP {refusal.status}"
        raise Finding("broken", _trouble(method, refusal.outcome, what, link)) from None
    except Exception as exc:  # transport errors, and answers slack-sdk cannot parse
        outcome = classify_slack(exc=exc)
        raise Finding("broken", _trouble(method, outcome, outcome.detail, link)) from None


def _trouble(method: str, outcome: Failure, what: str, link: Link) -> str:
    reason = outcome.reason
    if reason in (Reason.NETWORK, Reason.TIMEOUT):
        return link.unreachable(reason == Reason.TIMEOUT)
    if reason == Reason.UNAUTHORIZED:
        return f"Slack rejected the token ({what}) — {REISSUE}"
    if reason == Reason.FORBIDDEN:
        return (
            f"Slack refused {method} ({what}): the app lacks a permission — add it under "
            "OAuth & Permissions → Bot Token Scopes and reinstall the app"
        )
    if reason == Reason.RATE_LIMITED:
        return f"Slack is rate limiting {method} — wait a minute and run relay doctor again"
    if reason in (Reason.SERVER_ERROR, Reason.BAD_ANSWER):
        return (
            f"Slack answered {what} to {method} — Slack (or a proxy on the way) is in trouble; "
            "try again in a few minutes (https://slack-status.com)"
        )
    return (
        f"Slack refused {method} ({what}) — see https://api.slack.com/methods/{method} for "
        "what it means"
    )


def _scopes(response: AsyncSlackResponse) -> set[str] | None:
    """The token's scopes, from Slack's `x-oauth-scopes` header; None when absent."""
    header = (response.headers or {}).get("x-oauth-scopes")
    return {s.strip() for s in header.split(",")} if isinstance(header, str) else None


async def _channel(
    client: AsyncWebClient, channel: str, bot: str, scopes: set[str] | None, link: Link
) -> tuple[Status, str]:
    """Whether the bot may post in `channel`, from conversations.info."""
    if not _SLACK_ID.fullmatch(channel):
        # chat.postMessage takes names, conversations.info only ids.
        return "unchecked", (
            f"bot @{bot} works, but channel '{channel}' is a name and doctor checks channel "
            "ids — put the id from the channel's details (C0123456789) in the config, or run "
            "relay doctor --send-test"
        )
    response = await _call(
        client.conversations_info(channel=channel),
        "conversations.info",
        link,
        _channel_advice(channel, bot),
    )
    info = response.get("channel") or {}
    where = f"#{info['name']} ({channel})" if info.get("name") else channel
    if info.get("is_archived"):
        raise Finding("broken", f"{where} is archived — unarchive it, or set another channel")
    if info.get("is_im") or info.get("is_member", True):
        return "ok", f"bot @{bot} in {where}"
    # Without membership only chat:write.public lets a bot post, and only in public channels.
    if not info.get("is_private") and scopes is not None and "chat:write.public" in scopes:
        return "ok", f"bot @{bot} may post in {where} (not a member; it has chat:write.public)"
    raise Finding(
        "broken", f"bot @{bot} is not in {where} — invite it: type /invite @{bot} in the channel"
    )


def _channel_advice(channel: str, bot: str) -> dict[str, Finding]:
    return {
        "channel_not_found": Finding(
            "broken",
            f"channel {channel} not found — check the id (channel details → Channel ID, at the "
            f"bottom); a private channel shows up only once the bot is in it: type /invite @{bot} "
            "in the channel",
        ),
        # The bot may well post without channels:read; only the check is impossible.
        "missing_scope": Finding(
            "unchecked",
            f"bot @{bot} works, but its token lacks the channels:read scope (groups:read for a "
            f"private channel), so channel {channel} cannot be checked — add the scope and "
            "reinstall the app, or run relay doctor --send-test",
        ),
    }


def _post_advice(bot: str, channel: str) -> dict[Reason, str]:
    """Test-post failures the checks could not foresee (a channel given by name)."""
    return {
        Reason.NOT_IN_CHANNEL: f"bot @{bot} is not in {channel} — invite it: type /invite @{bot} "
        "in the channel",
        Reason.CHANNEL_NOT_FOUND: f"channel {channel} not found — use the channel's id (channel "
        f"details → Channel ID) and, for a private channel, /invite @{bot} first",
    }


async def _webhook(
    name: str, destination: SlackDestination, send_test: bool, per_call: float
) -> tuple[Status, str]:
    assert destination.webhook_url is not None
    if not send_test:
        return "unchecked", (
            "incoming webhook: not checkable without posting — run relay doctor --send-test to "
            "post a test message"
        )
    url = destination.webhook_url.get_secret_value()
    outcome = await _post_test(SlackWebhookSender(url=url, timeout=per_call), test_message(name))
    if isinstance(outcome, Sent):
        return "ok", "incoming webhook accepted a test message"
    advice = {
        Reason.UNAUTHORIZED: f"Slack refused the webhook ({outcome.detail}): it was removed or "
        "the URL is wrong — add a new one (your Slack app → Incoming Webhooks → Add New "
        "Webhook) and set webhook_url",
        Reason.CHANNEL_NOT_FOUND: "the webhook's channel no longer exists — add a new webhook for "
        "an existing channel and set webhook_url",
        Reason.IS_ARCHIVED: "the webhook's channel is archived — unarchive it, or add a webhook "
        "for another channel and set webhook_url",
    }
    return "broken", _post_failure(outcome, advice, Link.to(url, per_call, "webhook_url"))


def _post_failure(outcome: Failure, advice: Mapping[Reason, str], link: Link) -> str:
    """What a failed test post means, from the sender's classification of it."""
    detail = outcome.detail or outcome.reason
    if outcome.reason in advice:
        return advice[outcome.reason]
    if outcome.reason in (Reason.NETWORK, Reason.TIMEOUT):
        return link.unreachable(outcome.reason == Reason.TIMEOUT)
    table = {
        Reason.UNAUTHORIZED: f"Slack rejected the token ({detail}) — {REISSUE}",
        Reason.FORBIDDEN: f"Slack refused the test message ({detail}) — the app lacks a "
        "permission (e.g. chat:write); add it under OAuth & Permissions and reinstall the app",
        Reason.IS_ARCHIVED: "the channel is archived — unarchive it, or set another channel",
        Reason.RATE_LIMITED: "Slack is rate limiting — wait a minute and run relay doctor again",
        Reason.SERVER_ERROR: f"Slack answered {detail} — Slack (or a proxy on the way) is in "
        "trouble; try again in a few minutes",
        Reason.BAD_ANSWER: f"Slack answered {detail} — Slack (or a proxy on the way) is in "
        "trouble; try again in a few minutes",
    }
    return table.get(
        outcome.reason,
        f"Slack refused the test message ({detail}) — see Slack's documentation of this error",
    )
