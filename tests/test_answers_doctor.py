"""`relay doctor` checks what answers need (relay/answers/doctor.py), against the fakes."""

from __future__ import annotations

import textwrap

import pytest

from relay.config.load import parse_config
from relay.config.model import Config
from relay.doctor import Diagnosis, diagnose
from tests.fakes import slack as fake_slack_module
from tests.fakes import telegram as fake_telegram_module
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

API_KEY = "doctor-oneroute-api-key"


def config(slack: FakeSlack, telegram: FakeTelegram, *, api_key: bool = True,
           app_token: str = fake_slack_module.APP_TOKEN) -> Config:
    key = f"api_key: {API_KEY}" if api_key else ""
    return parse_config(textwrap.dedent(f"""
        oneroute:
          secrets: ["doctor-secret-123"]
          {key}
        destinations:
          support:
            type: slack
            token: {fake_slack_module.BOT_TOKEN}
            channel: {fake_slack_module.CHANNEL}
            api_url: {slack.api_url}
            thread_by_conversation: true
            replies: {{app_token: {app_token}}}
          ops:
            type: telegram
            token: "{fake_telegram_module.TOKEN}"
            chat_id: {fake_telegram_module.CHAT_ID}
            api_url: {telegram.api_url}
            replies: {{}}
    """), environ={})


async def verdicts(config: Config) -> dict[str, Diagnosis]:
    found = {d.destination: d for d in await diagnose(config, timeout=5.0)}
    for diagnosis in found.values():
        for secret in (API_KEY, fake_slack_module.APP_TOKEN, fake_slack_module.BOT_TOKEN,
                       fake_telegram_module.TOKEN):
            assert secret not in diagnosis.message
    return found


async def test_replies_that_work_are_ok(
    fake_slack: FakeSlack, fake_telegram: FakeTelegram
) -> None:
    fake_slack.scopes |= {"channels:history", "reactions:write"}
    found = await verdicts(config(fake_slack, fake_telegram))
    assert found["support"].status == "ok", found["support"].message
    assert "the app token opens Socket Mode, the bot reads the channel" in found["support"].message
    assert found["ops"].status == "ok" and "no webhook blocks getUpdates" in found["ops"].message


async def test_what_breaks_replies_is_named(
    fake_slack: FakeSlack, fake_telegram: FakeTelegram
) -> None:
    found = await verdicts(config(fake_slack, fake_telegram, api_key=False))
    assert found["support"].status == found["ops"].status == "broken"
    assert "oneroute.api_key is not set" in found["support"].message

    fake_telegram.set_webhook("https://example.com/hook")
    found = await verdicts(config(fake_slack, fake_telegram))
    assert found["support"].status == "broken"
    assert "channels:history" in found["support"].message
    assert found["ops"].status == "broken" and "deleteWebhook" in found["ops"].message

    fake_slack.scopes |= {"channels:history"}
    found = await verdicts(config(fake_slack, fake_telegram))
    assert found["support"].status == "ok"
    assert "add reactions:write" in found["support"].message

    found = await verdicts(config(fake_slack, fake_telegram, app_token="xapp-1-unknown-token"))
    assert found["support"].status == "broken"
    assert "Slack refused replies.app_token (invalid_auth)" in found["support"].message


async def test_topics_need_a_forum_and_the_right_to_manage_them(
    fake_slack: FakeSlack, fake_telegram: FakeTelegram
) -> None:
    def topics_config() -> Config:
        return parse_config(textwrap.dedent(f"""
            oneroute: {{secrets: ["doctor-secret-123"]}}
            destinations:
              ops:
                type: telegram
                token: "{fake_telegram_module.TOKEN}"
                chat_id: {fake_telegram_module.CHAT_ID}
                api_url: {fake_telegram.api_url}
                topic_per_conversation: true
        """), environ={})

    found = await verdicts(topics_config())
    assert found["ops"].status == "broken" and "is not a forum" in found["ops"].message
    chat = fake_telegram.add_chat(fake_telegram_module.CHAT_ID, forum=True)
    assert (await verdicts(topics_config()))["ops"].status == "ok"
    chat.bot_rights = {"can_manage_topics": False}
    found = await verdicts(topics_config())
    assert found["ops"].status == "broken" and "Manage Topics" in found["ops"].message
