"""A real headless Chromium for tests: Debian's /usr/bin/chromium driven by Playwright (never a downloaded
browser), a fresh profile each time, and a record of what the page did: console errors and warnings,
uncaught exceptions, and every URL it requested."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page, Request, ViewportSize, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP: ViewportSize = {"width": 1366, "height": 768}
PHONE: ViewportSize = {"width": 390, "height": 844}


@dataclass
class Watched:
    page: Page
    #: console errors and warnings, and uncaught exceptions
    problems: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.requests]

    def screenshot(self, name: str) -> Path:
        """A full-page screenshot kept under test-artifacts/ for people to look at."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            self.problems.append(f"console.{msg.type}: {msg.text} ({msg.location.get('url', '')})")


@contextmanager
def chromium(viewport: ViewportSize = LAPTOP) -> Iterator[Watched]:
    """One page in a fresh browser profile, watched from before its first request."""
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS, viewport=viewport
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            watched = Watched(page)
            page.on("console", watched._console)
            page.on("pageerror", lambda exc: watched.problems.append(f"uncaught: {exc}"))
            context.on("request", lambda r: watched.requests.append(r))  # every page and worker
            yield watched
        finally:
            context.close()
