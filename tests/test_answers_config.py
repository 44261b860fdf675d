"""The config of answers (README: "Answering customers"): keys, defaults, the rules that
span keys, and secrets that never show."""

from __future__ import annotations

import textwrap

import pytest

from relay.config.load import parse_config
from relay.errors import ConfigError
from relay.integrations.slack.config import SlackDestination
from relay.integrations.telegram.config import TelegramDestination

APP_TOKEN = "xapp-1-secret-app-token"
SIGNING = "slack-signing-secret-123"
API_KEY = "oneroute-api-key-456789"

BASE = f"""
oneroute:
  secrets: ["a-long-enough-secret"]
  api_key: {API_KEY}
destinations:
  s:
    type: slack
    token: xoxb-bot-token-1
    channel: C1
    thread_by_conversation: true
    replies: {{app_token: {APP_TOKEN}, signing_secret: {SIGNING}, from_users: [U1]}}
  t:
    type: telegram
    token: "123:abc-token"
    chat_id: -1001
    topic_per_conversation: true
    replies: {{from_users: [42]}}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), "relay.yaml", {})
    return caught.value.lines()


def test_answers_keys_and_their_defaults() -> None:
    config = parse_config(BASE, environ={})
    assert config.oneroute.api_url == "https://api.oneroute.io"
    numbers = config.oneroute.reply_numbers
    assert (numbers.business, numbers.customer) == (
        "conversation.Channel.phone",
        "conversation.customer.phone",
    )
    slack = config.destinations["s"]
    assert isinstance(slack, SlackDestination) and slack.replies is not None
    assert slack.replies.note_prefix == "note:" and slack.replies.from_users == ["U1"]
    telegram = config.destinations["t"]
    assert isinstance(telegram, TelegramDestination) and telegram.replies is not None
    assert telegram.topic_per_conversation and telegram.replies.from_users == [42]


def test_secrets_of_answers_are_redacted() -> None:
    config = parse_config(BASE, environ={})
    assert {APP_TOKEN, SIGNING, API_KEY} <= set(config.secrets())
    assert APP_TOKEN not in repr(config) and SIGNING not in repr(config)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("thread_by_conversation: true", "replies need a bot token and thread_by_conversation"),
        (
            f"replies: {{app_token: {APP_TOKEN}, signing_secret: {SIGNING}, from_users: [U1]}}",
            "",
        ),
    ],
)
def test_slack_replies_need_threads(change: str, expected: str) -> None:
    text = BASE.replace("    thread_by_conversation: true\n", "")
    if not expected:
        text = text.replace(change, "replies: {from_users: [U1]}\n    thread_by_conversation: true")
        expected = "set app_token (Socket Mode) or signing_secret (Events API)"
    (line,) = errors(text)
    assert expected in line and line.startswith("relay.yaml:")
    assert APP_TOKEN not in line and SIGNING not in line


def test_a_topic_per_conversation_is_not_one_topic() -> None:
    text = BASE.replace(
        "topic_per_conversation: true", "topic_per_conversation: true\n    topic_id: 3"
    )
    (line,) = errors(text)
    assert "remove topic_id" in line


@pytest.mark.parametrize("channel", ['"#support"', "support", "support-team"])
def test_slack_replies_need_the_channel_id_not_its_name(channel: str) -> None:
    # Slack's events name the channel by id: with a name, no message would ever be an
    # answer, and every one would be acknowledged and dropped without a word.
    (line,) = errors(BASE.replace("channel: C1", f"channel: {channel}"))
    assert "channel id" in line and line.startswith("relay.yaml:")
    assert parse_config(BASE.replace("channel: C1", "channel: C0123ABCD"), environ={})
