"""The OneRoute API client (relay/answers/oneroute.py): its classifier as a table, then the
real client against the fake OneRoute (tests/fakes/oneroute.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from relay.answers.oneroute import OneRouteClient, SessionMessage, classify_oneroute
from relay.outcome import Permanent, RetryLater, Sent
from tests.fakes import oneroute as fake_module
from tests.fakes.oneroute import FakeOneRoute

CUSTOMER = "+2348099999999"


@pytest.fixture
async def oneroute() -> AsyncIterator[FakeOneRoute]:
    async with FakeOneRoute.running() as fake:
        fake.customer_wrote(CUSTOMER)
        yield fake


def message(text: str = "Your order left this morning.", to: str = CUSTOMER) -> SessionMessage:
    return SessionMessage(business=fake_module.BUSINESS, customer=to, text=text)


async def send(fake: FakeOneRoute, msg: SessionMessage, key: str = fake_module.API_KEY,
               timeout: float = 5.0) -> object:
    client = OneRouteClient(api_key=key, api_url=fake.api_url, timeout=timeout)
    try:
        return await client.send(msg)
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("answer", "reason", "transient"),
    [
        ({"status": 401, "body": {"success": False, "message": "Invalid API Key"}},
         "unauthorized", False),
        ({"status": 400, "body": {"success": False, "message": "outside the window"}},
         "bad_request", False),
        ({"status": 404, "body": {"success": False, "message": "no such conversation"}},
         "bad_request", False),
        ({"status": 200, "body": {"success": False, "message": "refused"}}, "bad_request", False),
        ({"status": 429, "body": None, "retry_after": "3"}, "rate_limited", True),
        ({"status": 503, "body": None}, "server_error", True),
        ({"status": 500, "body": {"success": False}}, "server_error", True),
        ({"status": 408, "body": None}, "timeout", True),
        ({"status": 400, "body": None}, "bad_answer", True),  # a proxy's page, not OneRoute's
        ({"status": 200, "body": [1, 2]}, "bad_answer", True),
        ({"status": 200, "body": {"data": {}}}, "bad_answer", True),
        ({"exc": TimeoutError()}, "timeout", True),
        ({"exc": ConnectionRefusedError(111, "refused")}, "network", True),
        ({"exc": ValueError("garbled")}, "bad_answer", True),
    ],
)
def test_classify(answer: dict[str, object], reason: str, transient: bool) -> None:
    outcome = classify_oneroute(**answer)  # type: ignore[arg-type]
    assert outcome.reason == reason
    assert isinstance(outcome, RetryLater if transient else Permanent)


def test_a_429_says_how_long_to_wait() -> None:
    outcome = classify_oneroute(status=429, body=None, retry_after="7")
    assert isinstance(outcome, RetryLater) and outcome.after == 7.0 and outcome.rate_limited


async def test_sends_a_session_message(oneroute: FakeOneRoute) -> None:
    outcome = await send(oneroute, message("Hello Ada"))
    assert outcome == Sent(ref="msg-1")
    (sent,) = oneroute.sent
    assert (sent.business, sent.customer, sent.text) == (fake_module.BUSINESS, CUSTOMER,
                                                         "Hello Ada")


async def test_a_wrong_key_is_unauthorized_and_never_shown(oneroute: FakeOneRoute) -> None:
    wrong = "wrong-api-key-0123456789"
    outcome = await send(oneroute, message(), key=wrong)
    assert isinstance(outcome, Permanent) and outcome.reason == "unauthorized"
    assert "Invalid API Key" in outcome.detail and wrong not in outcome.detail


async def test_outside_the_session_window_is_refused_with_oneroute_s_words(
    oneroute: FakeOneRoute,
) -> None:
    outcome = await send(oneroute, message(to="+2348011111111"))
    assert isinstance(outcome, Permanent) and outcome.reason == "bad_request"
    assert "24 hours" in outcome.detail and not oneroute.sent


async def test_trouble_is_retried(oneroute: FakeOneRoute) -> None:
    oneroute.faults.rate_limit_next(1, retry_after=2)
    outcome = await send(oneroute, message())
    assert isinstance(outcome, RetryLater)
    assert (outcome.reason, outcome.after) == ("rate_limited", 2)
    oneroute.faults.fail_next(1, status=502)
    assert (await send(oneroute, message())).reason == "server_error"  # type: ignore[union-attr]
    oneroute.faults.answer_next(status=200, body=b"<html>portal</html>", content_type="text/html")
    assert (await send(oneroute, message())).reason == "bad_answer"  # type: ignore[union-attr]
    oneroute.faults.delay_next(1, seconds=2)
    outcome = await send(oneroute, message(), timeout=0.5)
    assert isinstance(outcome, RetryLater) and outcome.reason == "timeout"
    assert await send(oneroute, message()) == Sent(ref=f"msg-{len(oneroute.sent)}")


async def test_a_server_that_is_gone_is_a_network_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OneRouteClient(api_key=fake_module.API_KEY, api_url=f"http://127.0.0.1:{port}")
    outcome = await client.send(message())
    await client.close()
    assert isinstance(outcome, RetryLater) and outcome.reason == "network"


async def test_deeply_nested_garbage_is_a_bad_answer(oneroute: FakeOneRoute) -> None:
    oneroute.faults.answer_next(status=200, body=b"[" * 100_000, content_type="application/json")
    outcome = await send(oneroute, message())
    assert isinstance(outcome, RetryLater) and outcome.reason == "bad_answer"


async def test_a_redirect_is_not_followed_with_the_api_key(oneroute: FakeOneRoute) -> None:
    # aiohttp keeps custom headers (apiKey) across a redirect, even to another host.
    async def redirect(request: web.Request) -> web.Response:
        target = oneroute.api_url.replace("127.0.0.1", "localhost") + request.path
        raise web.HTTPTemporaryRedirect(target)

    app = web.Application()
    app.router.add_post("/api/public/conversation/text", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = OneRouteClient(api_key=fake_module.API_KEY, api_url=f"http://127.0.0.1:{port}")
    try:
        outcome = await client.send(message())
    finally:
        await client.close()
        await runner.cleanup()
    assert not oneroute.sent
    assert isinstance(outcome, RetryLater) and "307" in outcome.detail
    assert fake_module.API_KEY not in outcome.detail
