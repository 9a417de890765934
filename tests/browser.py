"""Opening a report in headless Chromium (Debian's, driven by Playwright) with the network cut: what the
page logged, what it asked for, and a screenshot. The report's tests use it, and so does `make screenshot`:

    python tests/browser.py results/breast_cancer/report.html docs/report.png
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
# True once plotly has drawn every chart of the page (on a loaded machine, well after the page's load).
DRAWN = "[...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('.main-svg'))"


def chromium() -> str | None:
    """The browser's path, where one is installed."""
    return next((p for p in map(shutil.which, CHROMIUM) if p), None)


@dataclass
class Visit:
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    requests: list[str] = field(default_factory=list)  # every URL the page asked for but itself
    counts: dict[str, int] = field(default_factory=dict)  # CSS selector -> elements found
    texts: dict[str, list[str]] = field(default_factory=dict)  # CSS selector -> their texts


def visit(
    page_path: Path, screenshot: Path | None, count: tuple[str, ...] = (), text: tuple[str, ...] = ()
) -> Visit:
    """Open ``page_path`` offline (no proxy reachable, the context offline), wait until the page and its
    scripts ran, then read ``count`` and ``text`` selectors and take a screenshot of the first screen."""
    from playwright.sync_api import sync_playwright

    path = chromium()
    if path is None:
        raise RuntimeError("no Chromium installed (Debian: apt-get install chromium)")
    url = page_path.resolve().as_uri()
    out = Visit()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=path,
            args=["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--no-sandbox"],
        )
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("console", lambda m: out.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: out.errors.append(str(e)))
            page.on("request", lambda r: out.requests.append(r.url) if r.url != url else None)
            page.goto(url, wait_until="load")
            page.wait_for_function(DRAWN, timeout=60_000)
            for selector in count:
                out.counts[selector] = page.locator(selector).count()
            for selector in text:
                out.texts[selector] = page.locator(selector).all_text_contents()
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/browser.py REPORT.html SHOT.png")
    seen = visit(Path(sys.argv[1]), Path(sys.argv[2]))
    if seen.errors or seen.requests:
        sys.exit(f"the page logged {seen.errors} and asked for {seen.requests}")
    print(f"wrote {sys.argv[2]}")
