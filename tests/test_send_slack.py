"""The Slack senders: classify_slack as a table, then the real slack-sdk clients against
the fake Slack (tests/fakes/slack.py)."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from relay.integrations.slack.classify import classify_slack
from relay.integrations.slack.render import SlackMessage
from relay.integrations.slack.send import SlackSender, SlackWebhookSender
from relay.outcome import Permanent, RetryLater, Sent
from tests.fakes.slack import BOT_TOKEN, CHANNEL, FakeSlack

IMAGE = "https://cdn.example.com/cat.png"


def text(body: str = "hello") -> SlackMessage:
    return SlackMessage({"text": body, "blocks": [section(body)]})


def section(body: str) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": body}}


def with_image(url: str = IMAGE, fallback: bool = True) -> SlackMessage:
    blocks = [section("a photo"), {"type": "image", "image_url": url, "alt_text": "photo"}]
    plain = {"text": "a photo", "blocks": [section(f"a photo <{url}|(image)>")]}
    return SlackMessage({"text": "a photo", "blocks": blocks}, plain if fallback else None)


def sender(slack: FakeSlack, **kwargs: object) -> SlackSender:
    options: dict[str, object] = {
        "token": BOT_TOKEN,
        "channel": CHANNEL,
        "api_url": slack.api_url,
        "timeout": 2.0,
        **kwargs,
    }
    return SlackSender(**options)  # type: ignore[arg-type]


@pytest.fixture
async def bot(fake_slack: FakeSlack):
    sender_ = sender(fake_slack)
    yield sender_
    await sender_.close()


# ------------------------------------------------------------------ classify_slack


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # rate limits: Retry-After whole, fractional, missing, nonsense
        (
            {"status": 429, "error": "ratelimited", "retry_after": "2"},
            RetryLater("rate_limited", "ratelimited", 2.0, rate_limited=True),
        ),
        (
            {"status": 429, "error": "ratelimited", "retry_after": "0.5"},
            RetryLater("rate_limited", "ratelimited", 0.5, rate_limited=True),
        ),
        ({"status": 429, "retry_after": 3}, RetryLater("rate_limited", "HTTP 429", 3.0, True)),
        (
            {"status": 429, "error": "ratelimited"},
            RetryLater("rate_limited", "ratelimited", None, rate_limited=True),
        ),
        (
            {"status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"},
            RetryLater("rate_limited", "HTTP 429", None, rate_limited=True),
        ),
        ({"status": 429, "retry_after": "-4"}, RetryLater("rate_limited", "HTTP 429", 0.0, True)),
        (
            {"status": 200, "error": "rate_limited"},
            RetryLater("rate_limited", "rate_limited", None, rate_limited=True),
        ),
        # Slack's trouble
        ({"status": 503}, RetryLater("server_error", "HTTP 503")),
        ({"status": 500}, RetryLater("server_error", "HTTP 500")),
        ({"status": 502, "error": "bad_gateway"}, RetryLater("server_error", "bad_gateway")),
        ({"status": 200, "error": "fatal_error"}, RetryLater("server_error", "fatal_error")),
        ({"status": 200, "error": "internal_error"}, RetryLater("server_error", "internal_error")),
        (
            {"status": 200, "error": "service_unavailable"},
            RetryLater("server_error", "service_unavailable"),
        ),
        (
            {"status": 200, "error": "request_timeout"},
            RetryLater("server_error", "request_timeout"),
        ),
        ({"status": 500, "error": "rollup_error"}, RetryLater("server_error", "rollup_error")),
        ({"status": 408}, RetryLater("timeout", "HTTP 408")),
        # not Slack's answer at all (a proxy's page, garbled JSON): no error word
        ({"status": 200}, RetryLater("bad_answer", "HTTP 200")),
        ({"status": 403}, RetryLater("bad_answer", "HTTP 403")),
        # credentials
        *[
            ({"status": 200, "error": word}, Permanent("unauthorized", word))
            for word in (
                "invalid_auth",
                "not_authed",
                "token_revoked",
                "account_inactive",
                "token_expired",
            )
        ],
        (
            {"status": 200, "error": "not_allowed_token_type"},
            Permanent("unauthorized", "not_allowed_token_type"),
        ),
        ({"status": 200, "error": "missing_scope"}, Permanent("forbidden", "missing_scope")),
        # where to post
        (
            {"status": 200, "error": "channel_not_found"},
            Permanent("channel_not_found", "channel_not_found"),
        ),
        ({"status": 200, "error": "not_in_channel"}, Permanent("not_in_channel", "not_in_channel")),
        ({"status": 200, "error": "is_archived"}, Permanent("is_archived", "is_archived")),
        # what was posted
        *[
            ({"status": 200, "error": word}, Permanent("bad_request", word))
            for word in (
                "invalid_blocks",
                "invalid_arguments",
                "msg_too_long",
                "no_text",
                "too_many_attachments",
                "invalid_thread_ts",
            )
        ],
        ({"status": 200, "error": "brand_new_error"}, Permanent("bad_request", "brand_new_error")),
        ({"status": 400}, RetryLater("bad_answer", "HTTP 400")),
        # incoming webhooks: HTTP status plus a bare word
        ({"status": 403, "error": "invalid_token"}, Permanent("unauthorized", "invalid_token")),
        ({"status": 404, "error": "no_service"}, Permanent("unauthorized", "no_service")),
        ({"status": 404, "error": "no_team"}, Permanent("unauthorized", "no_team")),
        (
            {"status": 404, "error": "channel_not_found"},
            Permanent("channel_not_found", "channel_not_found"),
        ),
        (
            {"status": 410, "error": "channel_is_archived"},
            Permanent("is_archived", "channel_is_archived"),
        ),
        ({"status": 400, "error": "invalid_payload"}, Permanent("bad_request", "invalid_payload")),
        (
            {"status": 403, "error": "action_prohibited"},
            Permanent("forbidden", "action_prohibited"),
        ),
        (
            {"status": 429, "error": "rate_limited", "retry_after": "1"},
            RetryLater("rate_limited", "rate_limited", 1.0, rate_limited=True),
        ),
    ],
)
def test_classify_slack_answers(answer: dict[str, object], expected: object) -> None:
    assert classify_slack(**answer) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), "timeout"),
        (aiohttp.ConnectionTimeoutError("connect timed out"), "timeout"),
        (aiohttp.ServerTimeoutError("read timed out"), "timeout"),
        (aiohttp.ClientConnectionError("refused"), "network"),
        (aiohttp.ServerDisconnectedError(), "network"),
        (ConnectionRefusedError(111, "Connection refused"), "network"),
        (OSError("network unreachable"), "network"),
    ],
)
def test_classify_slack_transport_errors(exc: BaseException, reason: str) -> None:
    outcome = classify_slack(exc=exc)
    assert isinstance(outcome, RetryLater)
    assert (outcome.reason, outcome.rate_limited) == (reason, False)


async def test_senders_mask_their_own_secret_in_what_they_report(
    fake_slack: FakeSlack, bot: SlackSender
) -> None:
    # A proxy or an explanation may echo the token or the webhook URL back.
    echo = {"ok": False, "error": "invalid_blocks",
            "response_metadata": {"messages": [f"token {BOT_TOKEN.upper()} refused"]}}
    fake_slack.faults.answer_next(
        status=200, body=json.dumps(echo).encode(), content_type="application/json"
    )
    outcome = await bot.send(text())
    assert isinstance(outcome, Permanent) and "[REDACTED]" in outcome.detail
    assert BOT_TOKEN.lower() not in outcome.detail.lower()
    url = fake_slack.add_webhook()
    hook = SlackWebhookSender(url=url, timeout=2.0)
    fake_slack.faults.answer_next(status=404, body=f"<h1>No route to {url}</h1>".encode())
    outcome = await hook.send(text())
    await hook.close()
    secret_path = url.split("/services/")[1]
    assert isinstance(outcome, RetryLater) and secret_path not in outcome.detail


# ------------------------------------------------------------------ SlackSender


async def test_sends_and_returns_the_ts(fake_slack: FakeSlack, bot: SlackSender) -> None:
    first = await bot.send(text("one"))
    second = await bot.send(text("two"))
    assert isinstance(first, Sent) and isinstance(second, Sent)
    posted = fake_slack.messages_in(CHANNEL)
    assert [(m.ts, m.text) for m in posted] == [(first.ref, "one"), (second.ref, "two")]
    assert posted[0].blocks == [section("one")]
    assert first.ref is not None and second.ref is not None and first.ref < second.ref


async def test_thread_ts_is_passed_through(fake_slack: FakeSlack, bot: SlackSender) -> None:
    parent = await bot.send(text("parent"))
    assert isinstance(parent, Sent)
    reply = await bot.send(text("reply"), parent.ref)
    assert isinstance(reply, Sent)
    last = fake_slack.messages[-1]
    assert (last.thread_ts, last.thread_found) == (parent.ref, True)


async def test_sends_the_payload_as_given(fake_slack: FakeSlack, bot: SlackSender) -> None:
    await bot.send(SlackMessage({"text": "hi", "unfurl_links": False, "mrkdwn": True}))
    assert fake_slack.messages[0].payload == {
        "channel": CHANNEL,
        "text": "hi",
        "unfurl_links": False,
        "mrkdwn": True,
    }


@pytest.mark.parametrize(
    ("channel", "message", "reason", "error"),
    [
        ("C0ARCHIVED", text(), "is_archived", "is_archived"),
        ("C0PRIVATE", text(), "not_in_channel", "not_in_channel"),
        ("C0NOWHERE", text(), "channel_not_found", "channel_not_found"),
        (CHANNEL, SlackMessage({"text": ""}), "bad_request", "no_text"),
        (CHANNEL, SlackMessage({"text": "x" * 40_001}), "bad_request", "msg_too_long"),
        (
            CHANNEL,
            SlackMessage({"text": "x", "blocks": [section("x")] * 51}),
            "bad_request",
            "invalid_blocks",
        ),
        (
            CHANNEL,
            SlackMessage(
                {
                    "text": "x",
                    "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "not plain"}}],
                }
            ),
            "bad_request",
            "invalid_blocks",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_permanent_refusals(
    fake_slack: FakeSlack, channel: str, message: SlackMessage, reason: str, error: str
) -> None:
    fake_slack.add_channel("C0ARCHIVED", archived=True)
    fake_slack.add_channel("C0PRIVATE", private=True, member=False)
    sender_ = sender(fake_slack, channel=channel)
    outcome = await sender_.send(message)
    await sender_.close()
    assert isinstance(outcome, Permanent)
    assert (outcome.reason, outcome.detail.split(";")[0]) == (reason, error)
    assert fake_slack.messages == []


async def test_bad_token(fake_slack: FakeSlack) -> None:
    sender_ = sender(fake_slack, token="xoxb-not-a-known-token")
    outcome = await sender_.send(text())
    await sender_.close()
    assert outcome == Permanent("unauthorized", "invalid_auth")


async def test_503_is_retried_later(fake_slack: FakeSlack, bot: SlackSender) -> None:
    fake_slack.faults.fail_next(1, status=503)
    outcome = await bot.send(text())
    assert isinstance(outcome, RetryLater) and outcome.reason == "server_error"
    assert not outcome.rate_limited and fake_slack.messages == []
    assert isinstance(await bot.send(text()), Sent)


@pytest.mark.parametrize("retry_after", [2, 0.5])
async def test_429_honours_retry_after(
    fake_slack: FakeSlack, bot: SlackSender, retry_after: float
) -> None:
    fake_slack.faults.rate_limit_next(1, retry_after=retry_after)
    outcome = await bot.send(text())
    assert outcome == RetryLater("rate_limited", "ratelimited", retry_after, rate_limited=True)


async def test_enforced_channel_rate_limit(fake_slack: FakeSlack, bot: SlackSender) -> None:
    fake_slack.enforce_rate_limit(messages=1, per=1.0)
    assert isinstance(await bot.send(text("one")), Sent)
    outcome = await bot.send(text("two"))
    assert outcome == RetryLater("rate_limited", "ratelimited", 1.0, rate_limited=True)
    assert fake_slack.count(429) == 1


async def test_timeout(fake_slack: FakeSlack) -> None:
    fake_slack.faults.delay_next(1, seconds=2)
    sender_ = sender(fake_slack, timeout=0.2)
    outcome = await sender_.send(text())
    await sender_.close()
    assert isinstance(outcome, RetryLater) and outcome.reason == "timeout"


async def test_connection_refused(unused_tcp_port: int) -> None:
    sender_ = SlackSender(
        token=BOT_TOKEN,
        channel=CHANNEL,
        timeout=2.0,
        api_url=f"http://127.0.0.1:{unused_tcp_port}/api/",
    )
    outcome = await sender_.send(text())
    await sender_.close()
    assert isinstance(outcome, RetryLater) and outcome.reason == "network"


async def test_unreachable_image_falls_back(
    fake_slack: FakeSlack, bot: SlackSender, caplog: pytest.LogCaptureFixture
) -> None:
    fake_slack.break_image(IMAGE)
    outcome = await bot.send(with_image())
    assert isinstance(outcome, Sent)
    [posted] = fake_slack.messages
    assert all(block["type"] != "image" for block in posted.blocks or [])
    assert IMAGE in str(posted.blocks)
    assert "without it" in caplog.text


async def test_unreachable_image_without_fallback(fake_slack: FakeSlack, bot: SlackSender) -> None:
    fake_slack.break_image(IMAGE)
    outcome = await bot.send(with_image(fallback=False))
    assert isinstance(outcome, Permanent) and outcome.reason == "bad_request"
    assert "downloading image failed" in outcome.detail


async def test_other_invalid_blocks_do_not_fall_back(
    fake_slack: FakeSlack, bot: SlackSender
) -> None:
    message = SlackMessage({"text": "x", "blocks": [section("x" * 3001)]}, {"text": "x"})
    outcome = await bot.send(message)
    assert isinstance(outcome, Permanent) and fake_slack.messages == []


async def test_close_then_send_again(fake_slack: FakeSlack, bot: SlackSender) -> None:
    await bot.close()
    await bot.close()
    assert isinstance(await bot.send(text()), Sent)


# ------------------------------------------------------------------ SlackWebhookSender


async def test_webhook_success(fake_slack: FakeSlack) -> None:
    hook = SlackWebhookSender(url=fake_slack.add_webhook(CHANNEL), timeout=2.0)
    outcome = await hook.send(text("via hook"))
    await hook.close()
    assert outcome == Sent(ref=None)
    [posted] = fake_slack.messages
    assert (posted.channel, posted.text, posted.via) == (CHANNEL, "via hook", "webhook")


async def test_webhook_has_no_threads(fake_slack: FakeSlack) -> None:
    hook = SlackWebhookSender(url=fake_slack.add_webhook(), timeout=2.0)
    with pytest.raises(ValueError, match="threads"):
        await hook.send(text(), "1700000000.000001")
    await hook.close()


@pytest.mark.parametrize(
    ("break_it", "reason", "error"),
    [
        (lambda slack, url: slack.revoke_webhook(url), "unauthorized", "invalid_token"),
        (
            lambda slack, url: slack.revoke_webhook(url, error="no_service"),
            "unauthorized",
            "no_service",
        ),
        (
            lambda slack, url: setattr(slack.channels[CHANNEL], "archived", True),
            "is_archived",
            "channel_is_archived",
        ),
        (lambda slack, url: slack.channels.pop(CHANNEL), "channel_not_found", "channel_not_found"),
    ],
)
async def test_webhook_refusals(fake_slack: FakeSlack, break_it, reason: str, error: str) -> None:
    url = fake_slack.add_webhook(CHANNEL)
    break_it(fake_slack, url)
    hook = SlackWebhookSender(url=url, timeout=2.0)
    outcome = await hook.send(text())
    await hook.close()
    assert isinstance(outcome, Permanent) and outcome.reason == reason
    assert outcome.detail.endswith(f": {error}")


async def test_webhook_unknown_url_and_bad_payload(fake_slack: FakeSlack) -> None:
    unknown = SlackWebhookSender(url=fake_slack.base_url + "/services/T0/B0/nothing-here")
    empty = SlackWebhookSender(url=fake_slack.add_webhook())
    assert (await unknown.send(text())).reason == "unauthorized"  # type: ignore[union-attr]
    assert (await empty.send(SlackMessage({}))).reason == "bad_request"  # type: ignore[union-attr]
    await unknown.close()
    await empty.close()


async def test_webhook_transient_failures(fake_slack: FakeSlack) -> None:
    hook = SlackWebhookSender(url=fake_slack.add_webhook(), timeout=2.0)
    fake_slack.faults.rate_limit_next(1, retry_after=2)
    fake_slack.faults.fail_next(1, status=500)
    limited, failed, sent = [await hook.send(text()) for _ in range(3)]
    await hook.close()
    assert isinstance(limited, RetryLater) and (limited.after, limited.rate_limited) == (2.0, True)
    assert isinstance(failed, RetryLater) and failed.reason == "server_error"
    assert isinstance(sent, Sent)


async def test_webhook_unreachable_image_falls_back(fake_slack: FakeSlack) -> None:
    fake_slack.break_image(IMAGE)
    hook = SlackWebhookSender(url=fake_slack.add_webhook(), timeout=2.0)
    outcome = await hook.send(with_image())
    await hook.close()
    assert isinstance(outcome, Sent)
    assert all(b["type"] != "image" for b in fake_slack.messages[0].blocks or [])


# ------------------------------------------------------------------ secrets


async def test_token_never_leaks(
    fake_slack: FakeSlack, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "xoxb-9999-8888-leakcheck-secret"
    outcomes = []
    for api_url in (fake_slack.api_url, f"http://127.0.0.1:{unused_tcp_port}/api/"):
        sender_ = SlackSender(token=secret, channel=CHANNEL, api_url=api_url, timeout=10.0)
        outcomes.append(await sender_.send(text()))
        await sender_.close()
    assert [o.reason for o in outcomes] == ["unauthorized", "network"]  # type: ignore[union-attr]
    assert "Sending a request" in caplog.text  # slack-sdk did log at DEBUG
    assert secret not in caplog.text
    assert all(secret not in o.detail for o in outcomes)  # type: ignore[union-attr]


async def test_webhook_url_never_leaks(
    fake_slack: FakeSlack, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = fake_slack.add_webhook()
    revoked = fake_slack.add_webhook()
    fake_slack.revoke_webhook(revoked)
    gone = f"http://127.0.0.1:{unused_tcp_port}/services/T0/B0/leakchecksecret"
    fake_slack.faults.fail_next(1, status=503)
    outcomes = []
    for url in (good, good, revoked, gone):
        hook = SlackWebhookSender(url=url, timeout=10.0)  # none of them is meant to time out
        outcomes.append(await hook.send(text()))
        await hook.close()
    assert [type(o).__name__ for o in outcomes] == ["RetryLater", "Sent", "Permanent", "RetryLater"]
    assert "Sending a request" in caplog.text
    for url in (good, revoked, gone):
        path = url.split("/", 3)[3]
        assert path not in caplog.text
        assert all(path not in getattr(o, "detail", "") for o in outcomes)
