"""A headless Chromium for the console's browser tests, driven by selenium.

It is Debian's Chromium and its driver (`apt-get install -y chromium chromium-driver`:
/usr/bin/chromium, /usr/bin/chromedriver); nothing is downloaded. Without them the tests
are skipped with that command. Selenium blocks; the tests' fakes and the relay's clients
run on the event loop, so every call goes through a thread (`Browser` wraps them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Set by .ci/run, which installs Chromium: there a missing browser fails, never skips.
REQUIRED_ENV = "RELAY_BROWSER_TESTS_REQUIRED"
INSTALL = "apt-get install -y chromium chromium-driver"

T = TypeVar("T")


def _missing() -> str | None:
    found = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if found:
        return f"{' and '.join(found)} not installed: {INSTALL} (Debian) runs these tests"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


class Browser:
    """One Chromium window; each method runs selenium on a thread."""

    def __init__(self, driver: Any, shots: Path) -> None:
        self.driver = driver
        self.shots = shots

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(function, *args)

    async def get(self, url: str) -> None:
        await self._run(self.driver.get, url)

    async def script(self, source: str, *args: Any) -> Any:
        return await self._run(self.driver.execute_script, source, *args)

    async def async_script(self, source: str, *args: Any) -> Any:
        return await self._run(self.driver.execute_async_script, source, *args)

    async def wait_for(
        self, css: str, text: str | None = None, within: float = 20.0, visible: bool = True
    ) -> Any:
        """The first element matching `css` (that shows `text`), once it is there."""
        from selenium.common.exceptions import StaleElementReferenceException

        def look() -> Any:
            for element in self.driver.find_elements("css selector", css):
                try:
                    if (not visible or element.is_displayed()) and (
                        text is None or text in element.text
                    ):
                        return element
                except StaleElementReferenceException:  # the page re-rendered meanwhile
                    continue
            return None

        deadline = time.monotonic() + within
        while (found := await self._run(look)) is None:
            if time.monotonic() > deadline:
                body = await self._run(lambda: self.driver.find_element("tag name", "body").text)
                raise AssertionError(f"no {css!r} showing {text!r} within {within} s:\n{body}")
            await asyncio.sleep(0.1)
        return found

    async def texts(self, css: str) -> list[str]:
        from selenium.common.exceptions import StaleElementReferenceException

        def read() -> list[str] | None:
            try:
                return [e.text for e in self.driver.find_elements("css selector", css)]
            except StaleElementReferenceException:  # re-rendered while read: read again
                return None

        for _ in range(50):
            if (found := await self._run(read)) is not None:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"{css!r} kept being replaced")

    async def click(self, css: str, text: str | None = None) -> None:
        """Click the element; again if the page re-rendered it between finding and clicking
        (lists refresh themselves)."""
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(50):
            element = await self.wait_for(css, text)
            try:
                await self._run(element.click)
                return
            except StaleElementReferenceException:
                await asyncio.sleep(0.05)
        raise AssertionError(f"{css!r} kept being replaced")

    async def type(self, css: str, text: str) -> None:
        element = await self.wait_for(css)
        await self._run(element.clear)
        await self._run(element.send_keys, text)

    async def url(self) -> str:
        return await self._run(lambda: str(self.driver.current_url))

    async def size(self, width: int, height: int) -> None:
        await self._run(self.driver.set_window_size, width, height)

    async def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self._run(self.driver.save_screenshot, str(path))
        return path


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """A headless Chromium; screenshots go to tmp_path/screenshots."""
    if (missing := _missing()) is not None:
        if os.environ.get(REQUIRED_ENV):  # CI installs them: missing there is a failure
            pytest.fail(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"):  # fmt: skip
        options.add_argument(argument)
    driver = await asyncio.to_thread(
        webdriver.Chrome, options=options, service=Service(shutil.which(CHROMEDRIVER))
    )
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        yield Browser(driver, shots)
    finally:
        await asyncio.to_thread(driver.quit)
