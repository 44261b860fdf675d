"""The operator console in a real browser (headless Chromium, tests/browser.py) against a
real `relay serve` process delivering to the fake Slack: the token prompt, events that
appear by themselves, filters in the URL, an event's page, a phone-sized window, retrying
a dead letter by clicking, and a page of another origin refused. Screenshots of each page
are saved under the test's tmp_path (screenshots/)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.browser import Browser
from tests.fakes import slack as fake_slack_module
from tests.fakes.oneroute import customer_event
from tests.fakes.slack import FakeSlack
from tests.process import RelayProcess, free_port
from tests.waiting import until

SECRET = "console-browser-secret"
TOKEN = "console-browser-token-0123456789"


class Running:
    def __init__(self, process: RelayProcess, console: str) -> None:
        self.process, self.console = process, console

    async def api(self, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.console + path, headers=headers) as response,
        ):
            assert response.status == 200, await response.text()
            return await response.json()


async def start(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess], token: str | None
) -> Running:
    port, admin = free_port(), free_port()
    config = tmp_path / "relay.yaml"
    config.write_text(
        f'oneroute: {{secrets: ["{SECRET}"]}}\n'
        f"storage: sqlite:///{tmp_path}/relay.db\n"
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        f"admin: {{port: {admin}" + (f", token: {token}" if token else "") + "}\n"
        "destinations:\n"
        f"  support-slack: {{type: slack, token: {fake_slack_module.BOT_TOKEN}, "
        f"channel: {fake_slack_module.CHANNEL}, api_url: '{fake_slack.api_url}', "
        "max_per_second: 100}\n"
        "routes:\n  - {name: everything, to: [support-slack]}\n"
    )
    process = RelayProcess(config, port, SECRET)
    processes.append(process)
    await process.start()
    running = Running(process, f"http://127.0.0.1:{admin}")

    async def console_up() -> None:
        for _ in range(200):
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(running.console + "/") as response,
                ):
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"the console did not start:\n{process.output()}")

    await console_up()
    return running


async def test_token_prompt_live_events_filters_and_an_events_page(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess], browser: Browser
) -> None:
    relay = await start(tmp_path, fake_slack, processes, TOKEN)
    assert await relay.process.post(customer_event("c-lagos", 1)) == 200

    # The token is asked for once; a wrong one is refused and asked for again.
    await browser.get(relay.console + "/")
    await browser.type("#token", "not-the-token")
    await browser.click("#token-form button")
    await browser.wait_for("#token-error", "not accepted")
    await browser.type("#token", TOKEN)
    await browser.click("#token-form button")
    await browser.wait_for("#events tbody tr", "c-lagos-msg-1")
    await browser.wait_for("#events tbody tr", "sent")

    # New events appear without a reload (and the token is not asked for again).
    assert await browser.script("window.marker = 1; return window.marker") == 1
    for n in (2, 3):
        assert await relay.process.post(customer_event("c-abuja", n, "newMessage")) == 200
    assert await relay.process.post(customer_event("c-lagos", 4, "campaignDeliveryReport")) == 200
    await browser.wait_for("#events tbody tr", "c-abuja-msg-3")
    assert await browser.script("return window.marker") == 1
    await all_sent(relay)
    await browser.screenshot("events")

    # Filters, submitted with the keyboard, are kept in the URL and survive a reload.
    from selenium.webdriver.common.keys import Keys

    await browser.type("#filters input[name=conversation]", "c-abuja")
    field = await browser.wait_for("#filters input[name=conversation]")
    await asyncio.to_thread(field.send_keys, Keys.ENTER)
    await until_rows(browser, "#events tbody tr", 2)
    assert "conversation=c-abuja" in await browser.url()
    await browser.get(relay.console + "/?event=campaignDeliveryReport&state=sent")
    await until_rows(browser, "#events tbody tr", 1)
    assert "c-lagos" in (await browser.texts("#events tbody tr"))[0]
    await browser.screenshot("events-filtered")

    # An event's page: body, route decision, preview, deliveries and attempts.
    await browser.click("#events tbody tr a")
    await browser.wait_for("#title", "campaignDeliveryReport")
    await browser.wait_for("#decision", "everything")
    await browser.wait_for("#preview pre", "chat.postMessage")
    await browser.wait_for("#body", '"event": "campaignDeliveryReport"')
    await browser.wait_for("#deliveries", "support-slack")
    await browser.wait_for("#deliveries table.attempts td", "sent")  # the attempt history
    await browser.screenshot("event")

    await browser.get(relay.console + "/lanes")
    await browser.wait_for("#lanes tbody tr", "support-slack")
    await browser.screenshot("lanes")

    # A phone: the list becomes cards, nothing wider than the screen.
    await browser.size(390, 844)
    await browser.get(relay.console + "/")
    await browser.wait_for("#events tbody tr", "c-abuja-msg-3")
    assert await browser.script("return document.documentElement.scrollWidth <= window.innerWidth")
    await browser.screenshot("events-phone")
    page = await browser.script("return document.body.innerText")
    assert TOKEN not in page and fake_slack_module.BOT_TOKEN not in page


async def all_sent(relay: Running) -> None:
    for _ in range(200):
        events = (await relay.api("/api/events", TOKEN))["events"]
        if all(d["state"] == "sent" for e in events for d in e["deliveries"]):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not all sent: {events}")


async def until_rows(browser: Browser, css: str, count: int) -> None:
    for _ in range(200):
        if len(await browser.texts(css)) == count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{css}: {await browser.texts(css)}")


async def test_retrying_a_dead_letter_by_clicking_and_another_origin_refused(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess], browser: Browser
) -> None:
    relay = await start(tmp_path, fake_slack, processes, token=None)
    fake_slack.channels[fake_slack_module.CHANNEL].archived = True
    for n in (1, 2):
        assert await relay.process.post(customer_event(f"c-{n}", n)) == 200

    async def dead() -> list[Any]:
        return list((await relay.api("/api/dead"))["dead"])

    for _ in range(200):
        if len(await dead()) == 2:
            break
        await asyncio.sleep(0.1)
    assert [d["reason"] for d in await dead()] == ["is_archived", "is_archived"]

    # A page of another origin (the webhook port) posts to the console: refused, nothing
    # retried. The console has no token here: this is the check that protects it.
    await browser.get(relay.process.url + "/healthz")
    status = await browser.async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0] + "/api/dead/retry", {method: "POST", mode: "no-cors",
              body: JSON.stringify({all: true})}).then(() => done("sent"), (e) => done(String(e)));
        """,
        relay.console,
    )
    assert status == "sent"  # the browser sent it (no-cors); the console refused it
    await asyncio.sleep(0.5)
    assert len(await dead()) == 2 and fake_slack.messages == []

    # No token: no prompt. Retry one by clicking; it is delivered to the fake Slack.
    fake_slack.channels[fake_slack_module.CHANNEL].archived = False
    await browser.get(relay.console + "/dead")
    await browser.wait_for("#dead tbody tr", "is_archived")
    assert not await browser.script("return document.getElementById('token-dialog').open")
    await browser.screenshot("dead")
    first = (await dead())[0]
    await browser.click(f"button.retry[data-delivery-id='{first['id']}']")
    await browser.wait_for("#status", "back in line")
    await until(lambda: len(fake_slack.messages) == 1, within=20)
    assert "c-2-msg-2" in fake_slack.messages[0].text
    await until_rows(browser, "#dead tbody tr", 1)

    # The rest, by "retry all that match the filter".
    await browser.type("#filters input[name=destination]", "support-slack")
    await browser.click("#filters button[type=submit]")
    await browser.click("#retry-all")
    await browser.wait_for("#status", "1 dead deliveries are back in line")
    await until(lambda: len(fake_slack.messages) == 2, within=20)
    await browser.wait_for("#empty", "No dead deliveries match")


def hostile_event(n: int) -> bytes:
    """A customer event whose every shown text is markup that runs script if parsed."""
    import json

    def mark(where: str) -> str:
        return f"<img src=x onerror=\"window.pwned='{where}'\">{where}-{n}"

    return json.dumps(
        {
            "event": f"<script>window.pwned='event'</script>newMessage-{n}",
            "message": {"content": mark("content"), "sender": {"name": mark("sender")}},
            "conversation": {
                "id": f'c-"><svg onload="window.pwned=\'conversation\'">-{n}',
                "customer": {"name": mark("customer")},
                "Channel": {"name": mark("channel"), "medium": mark("medium")},
            },
        }
    ).encode()


async def test_customer_text_is_shown_as_text_never_run(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess], browser: Browser
) -> None:
    relay = await start(tmp_path, fake_slack, processes, token=None)
    fake_slack.channels[fake_slack_module.CHANNEL].archived = True  # dead: the dead page too
    assert await relay.process.post(hostile_event(1)) == 200
    for _ in range(200):
        if (await relay.api("/api/dead"))["dead"]:
            break
        await asyncio.sleep(0.1)
    markup = "main img, main svg, main script, main iframe, main [onerror], main [onload]"

    async def nothing_ran() -> None:
        assert await browser.script("return window.pwned === undefined")
        assert await browser.script(f"return document.querySelectorAll('{markup}').length") == 0

    await browser.get(relay.console + "/")
    row = await browser.wait_for("#events tbody tr", "content-1")
    for shown in ("<img src=x onerror=", "sender-1", "channel-1", "<script>", "<svg onload="):
        assert shown in row.text
    await nothing_ran()

    await browser.click("#events tbody tr a")
    await browser.wait_for("#title", "<script>window.pwned='event'</script>")
    await browser.wait_for("#summary", "customer-1")
    await browser.wait_for("#body", "content-1")
    await browser.wait_for("#preview pre", "content-1")
    await nothing_ran()

    await browser.get(relay.console + "/dead")
    await browser.wait_for("#dead tbody tr", "<svg onload=")
    await nothing_ran()


async def test_older_pages_keep_every_row_while_new_events_arrive(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess], browser: Browser
) -> None:
    relay = await start(tmp_path, fake_slack, processes, token=None)
    for n in range(52):  # a page is 50: "Older events" loads the last 2
        assert await relay.process.post(customer_event(f"c-{n}", n)) == 200
    await browser.get(relay.console + "/")
    await until_rows(browser, "#events tbody tr", 50)
    await browser.click("#more")
    await until_rows(browser, "#events tbody tr", 52)

    # Newer events push rows off the newest page: they must show up, none go missing.
    for n in range(52, 55):
        assert await relay.process.post(customer_event(f"c-{n}", n)) == 200
    await until_rows(browser, "#events tbody tr", 55)
    await asyncio.sleep(2.5)  # another poll: still all of them, once each
    shown = await browser.script(
        "return [...document.querySelectorAll('#events tbody tr')].map(r => r.dataset.eventId)"
    )
    stored = [e["id"] for e in (await relay.api("/api/events?limit=200"))["events"]]
    assert [int(i) for i in shown] == stored and len(stored) == 55
