"""The headless Chromium the workbench drives (Debian's /usr/bin/chromium, or $WORKBENCH_CHROMIUM)
through Playwright: for printing reports to PDF (workbench.reports) and for the browser checks
(workbench.ui.browser). The browser is the system's own: nothing is downloaded."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium_path() -> str | None:
    """$WORKBENCH_CHROMIUM, else Debian's chromium, else None (Playwright's own browser)."""
    for candidate in (os.environ.get("WORKBENCH_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@contextmanager
def chromium(headless: bool = True):
    """A headless Chromium (Playwright sync API), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=headless, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
