"""`relay doctor` for what answers need, after a destination's own checks passed.

- an API key is set (`oneroute.api_key`): without it every answer is refused;
- Slack: the app token opens a Socket Mode connection (`apps.connections.open`; the
  ticket it gives is not used), and the bot can read the channel's messages
  (`conversations.history`: `channels:history`, or `groups:history` for a private channel);
  `reactions:write`, for the ✅, is named when missing but does not break answers;
- Telegram: no webhook is set on the bot (`getWebhookInfo`), since Telegram then gives no
  updates to the long polling that reads replies.

The answer is a verdict and a sentence that says what to do, never a secret.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from relay.integrations.base import Link, Status
from relay.integrations.slack.config import SlackDestination
from relay.integrations.slack.send import close_web_client, web_client
from relay.integrations.telegram.config import TelegramDestination
from relay.integrations.telegram.send import build_bot
from relay.outcome import describe, short_detail

NO_KEY = (
    "replies are on but oneroute.api_key is not set: every answer would be refused — set it "
    "(OneRoute settings → API key)"
)


async def check_replies(
    destination: SlackDestination | TelegramDestination, api_key_set: bool, per_call: float
) -> tuple[Status, str]:
    """The verdict on a destination's replies ("ok" with what was checked, or "broken")."""
    if not api_key_set:
        return "broken", NO_KEY
    if isinstance(destination, SlackDestination):
        return await _slack(destination, per_call)
    return await _telegram(destination, per_call)


async def _slack(destination: SlackDestination, per_call: float) -> tuple[Status, str]:
    replies = destination.replies
    assert replies is not None and destination.token is not None
    link = Link.to(destination.api_url, per_call)
    checked = []
    if replies.app_token is not None:
        app_token = replies.app_token.get_secret_value()
        client = web_client(app_token, api_url=destination.api_url, timeout=per_call)
        try:
            await client.apps_connections_open(app_token=app_token)
        except SlackApiError as exc:
            error = exc.response.get("error")
            return "broken", (
                f"Slack refused replies.app_token ({error}) — it must be the app-level token "
                "(xapp-…) with connections:write, and Socket Mode must be on in the app settings"
            )
        except Exception as exc:
            return "broken", _unreachable(link, exc)
        finally:
            await close_web_client(client)
        checked.append("the app token opens Socket Mode")
    bot = web_client(
        destination.token.get_secret_value(), api_url=destination.api_url, timeout=per_call
    )
    try:
        answer = await bot.conversations_history(channel=destination.channel, limit=1)
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error == "missing_scope":
            return "broken", (
                "the bot cannot read the channel's messages (missing_scope) — add "
                "channels:history (groups:history for a private channel) under OAuth & "
                "Permissions → Bot Token Scopes, reinstall the app and use the new token"
            )
        return "broken", f"the bot cannot read the channel's messages ({error})"
    except Exception as exc:
        return "broken", _unreachable(link, exc)
    finally:
        await close_web_client(bot)
    checked.append("the bot reads the channel")
    scopes = _scopes(answer.headers)
    note = (
        "; add reactions:write to see ✅ on sent answers"
        if scopes is not None and "reactions:write" not in scopes
        else ""
    )
    return "ok", "replies: " + ", ".join(checked) + note


async def _telegram(destination: TelegramDestination, per_call: float) -> tuple[Status, str]:
    assert destination.token is not None
    bot, request = build_bot(
        destination.token.get_secret_value(), api_url=destination.api_url, timeout=per_call
    )
    try:
        info = await bot.do_api_request("getWebhookInfo", return_type=None)
    except Exception as exc:
        return "broken", f"cannot ask for the bot's webhook ({short_detail(describe(exc))})"
    finally:
        await request.shutdown()
    url = info.get("url") if isinstance(info, dict) else None
    if url:
        return "broken", (
            "the bot has a webhook set, so Telegram gives no updates to the relay's long "
            "polling and replies are not read — delete it (deleteWebhook), or use another bot"
        )
    return "ok", "replies: no webhook blocks getUpdates"


def _scopes(headers: Any) -> set[str] | None:
    value = headers.get("x-oauth-scopes") if headers is not None else None
    if not isinstance(value, str):
        return None
    return {scope.strip() for scope in value.split(",") if scope.strip()}


def _unreachable(link: Link, exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return link.unreachable(isinstance(exc, TimeoutError))
    return f"unexpected answer from Slack ({short_detail(describe(exc))})"
