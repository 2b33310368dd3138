"""One headless Chromium for a test module, driven by Playwright for Python.

The browser is Debian's ``chromium`` (``apt-get install chromium``; ``FINERCAM_CHROMIUM`` names
another executable); Playwright's own browser download is not used. Where Playwright or the
browser is missing the browser tests skip and say what to install, except on CI (``CI=true``),
where they fail: the browser tests are part of what CI checks.
"""
from __future__ import annotations

import os
import shutil

import pytest

INSTALL = ("install the browser tests' needs: `pip install playwright==1.65.3` (the test extra) "
           "and Debian's chromium (`apt-get install chromium`, or set FINERCAM_CHROMIUM)")


def chromium_path() -> str | None:
    """The system Chromium executable, or None."""
    env = os.environ.get("FINERCAM_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def unavailable(reason: str):
    """Skip with what to install; on CI fail instead."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser tests cannot run on CI: {reason}; {INSTALL}")
    pytest.skip(f"{reason}; {INSTALL}")


def launch():
    """(playwright, browser): a started Playwright and a headless system Chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed")
    exe = chromium_path()
    if exe is None:
        unavailable("no chromium executable on PATH")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=exe, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    except Exception as exc:  # a broken install: say so rather than error in every test
        pw.stop()
        unavailable(f"chromium at {exe} does not start ({exc})")
    return pw, browser


def block_network(page, seen: list) -> None:
    """Record and refuse every request the page makes to anything but data: URLs and `allowed`."""
    def handle(route):
        seen.append(route.request.url)
        route.abort()

    page.route("http*://**/*", handle)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the test module that imports this fixture."""
    pw, browser = launch()
    yield browser
    browser.close()
    pw.stop()
