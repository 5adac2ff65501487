"""A real browser for the UI tests: Debian's chromium, headless, driven by Playwright for Python
(its own browser downloads are never used), and where the tests leave screenshots for review."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("VMSCORE_SCREENSHOTS", ROOT / "test-artifacts" / "screenshots"))
VIEWPORT = {"width": 1920, "height": 1080}


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is missing: run scripts/install-test-deps"
    return path


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            # As root (containers, CI) chromium runs only without its sandbox.
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            yield browser
        finally:
            browser.close()


class UiPage:
    """One logged-in browser tab; collects the page's script errors, which fail the test."""

    def __init__(self, browser: Browser, base: str, user: str, password: str) -> None:
        self.context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(base + "/")
        self.page.fill("#login-user", user)
        self.page.fill("#login-password", password)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_selector("#app:not([hidden])")

    def go(self, hash_: str) -> None:
        self.page.evaluate("h => { location.hash = h; }", hash_)

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def wait(self, expression: str, arg: Any = None, timeout: float = 15, what: str = "") -> Any:
        """Polls a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression, arg)
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {what or expression}"
            time.sleep(0.1)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"script errors in the page: {self.errors}"


def video_advances(ui: UiPage, selector: str, seconds: float = 1.5) -> Callable[[], bool]:
    """Whether the video element at ``selector`` plays: its time advances over ``seconds``."""

    def check() -> bool:
        t0 = ui.js(f"() => document.querySelector({selector!r})?.currentTime ?? -1")
        time.sleep(seconds)
        t1 = ui.js(f"() => document.querySelector({selector!r})?.currentTime ?? -1")
        return bool(t0 >= 0 and t1 > t0 + 0.3 * seconds)

    return check
