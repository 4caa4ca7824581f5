"""Open a dashboard in headless Chromium and check it rendered: for the browser tests,
the first-render benchmark, and anyone checking a deployment. Needs `playwright` (the
test extra) and a Chromium (Debian's /usr/bin/chromium, or $WORKBENCH_CHROMIUM).

Every page needs a signed-in user (workbench.ui.auth): `sign_in(page, base_url, user, password)`
signs a page's browser context in through the Chinese form at /login. `remember(base_url, user,
password)` (the tests' voila fixture does it) lets `render` sign in by itself when a page it
opens lands on /login.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from workbench.chromium import CHROMIUM_ARGS, chromium, chromium_path  # noqa: F401 - this module's API too

READY = ".wb-footer"  # the last cell of every dashboard: when it shows, all cells ran
# every interactive chart drawn (charts.interactive: plotly.js is loaded on a page's first chart,
# after the cells' widgets show), or showing why not
CHARTS_DRAWN = ("() => [...document.querySelectorAll('.wb-plotly')]"
                ".every(e => e.querySelector('.main-svg') || e.querySelector('.wb-error'))")
ERROR_SELECTORS = (
    '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]',
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
    ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']",
    ".wb-error",
)
ERROR_TEXT = re.compile(r"Traceback|There was an error when executing cell|Error displaying widget"
                        r"|\b[A-Z][A-Za-z]*(?:Error|Exception)\b")


@dataclass
class Render:
    url: str
    seconds: float                       # from navigation to READY visible and every chart drawn
    errors: list[str] = field(default_factory=list)         # error outputs, tracebacks, outside requests
    console_errors: list[str] = field(default_factory=list)  # uncaught page errors, console.error
    text: str = ""                       # the page's visible text

    @property
    def ok(self) -> bool:
        return not self.errors


LOGIN_PATH = "/login"
_CREDENTIALS: dict[str, tuple[str, str]] = {}


class SignInFailed(RuntimeError):
    """The sign-in form refused: the message it showed."""


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def remember(base_url: str, username: str | None, password: str | None = None) -> None:
    """Credentials `render` signs in with when a page of `base_url` sends it to /login (None: forget)."""
    if username is None:
        _CREDENTIALS.pop(_origin(base_url), None)
    else:
        _CREDENTIALS[_origin(base_url)] = (username, password or "")


def on_login_page(page) -> bool:
    from urllib.parse import urlsplit

    return urlsplit(page.url).path.rstrip("/").endswith(LOGIN_PATH)


def sign_in(page, base_url: str, username: str, password: str, *, timeout: float = 30,
            next_url: str | None = None) -> None:
    """Sign `page`'s browser context in as `username` through the form at /login (the session
    cookie then serves every page of that context). Raises SignInFailed with the form's message."""
    if not on_login_page(page):
        target = base_url.rstrip("/") + LOGIN_PATH
        if next_url:
            from urllib.parse import quote, urlsplit

            parts = urlsplit(next_url)
            target += "?next=" + quote(parts.path + (f"?{parts.query}" if parts.query else ""), safe="")
        page.goto(target, wait_until="domcontentloaded", timeout=timeout * 1000)
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation(wait_until="commit", timeout=timeout * 1000):
        page.click("#login_submit")
    if on_login_page(page):
        page.wait_for_load_state("domcontentloaded")
        msg = page.query_selector(".wb-login-error")
        raise SignInFailed(msg.inner_text() if msg else "登录失败")


def render(page, url: str, *, timeout: float = 120, ready: str = READY) -> Render:
    """Open `url` in `page`, wait until `ready` is visible and every interactive chart is drawn
    (`CHARTS_DRAWN`), and collect what went wrong.
    A page sent to /login is signed in with the `remember`ed credentials of its server first."""
    from urllib.parse import urlsplit

    console: list[str] = []
    external: list[str] = []
    origin = urlsplit(url).netloc

    def on_request(request):  # a department's network may have no internet: nothing from outside
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != origin:
            external.append(request.url)

    page.on("request", on_request)
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: console.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=timeout * 1000)
    if on_login_page(page) and _origin(url) in _CREDENTIALS:
        user, password = _CREDENTIALS[_origin(url)]
        page.wait_for_selector("#username", timeout=timeout * 1000)
        sign_in(page, url, user, password, timeout=timeout)   # back to `url` (the form's next)
    errors: list[str] = []
    try:
        page.wait_for_selector(ready, state="visible", timeout=timeout * 1000)
    except Exception as exc:  # the page never finished: report what it shows
        errors.append(f"{ready} 未出现：{type(exc).__name__}")
    else:
        try:
            left = min(60.0, max(1.0, timeout - (time.perf_counter() - t0)))
            page.wait_for_function(CHARTS_DRAWN, timeout=left * 1000, polling=50)
        except Exception as exc:  # noqa: BLE001 - a chart never drawn: reported, the page still read
            errors.append(f"交互图未画出：{type(exc).__name__}")
    seconds = time.perf_counter() - t0
    page.wait_for_timeout(300)  # let late widget views attach
    errors += check(page)
    errors += [f"request outside the server: {u}" for u in external]
    return Render(url=url, seconds=seconds, errors=errors, console_errors=console,
                  text=page.inner_text("body"))


def leave(page, settle: float = 0.3) -> None:
    """Close `page` as a visitor closing the tab does: Voilà's `beforeunload` handler asks the
    server to shut the page's kernel down (a beacon), so the kernel and its timers (the live
    board's polling) do not outlive the visit until culling. Then its browser context closes."""
    context = page.context
    try:
        if not page.is_closed():
            page.close(run_before_unload=True)
            time.sleep(settle)  # the beacon leaves with the page; give it time before the context goes
    finally:
        context.close()


def check(page) -> list[str]:
    """Error outputs, tracebacks and failed widgets visible in the page."""
    found = []
    for sel in ERROR_SELECTORS:
        for el in page.query_selector_all(sel):
            found.append(f"{sel}: {el.inner_text()[:500]}")
    text = page.inner_text("body")
    for m in ERROR_TEXT.finditer(text):
        start = max(0, m.start() - 120)
        found.append(f"page text: …{text[start:m.end() + 200]}…")
    return found


__all__ = ["CHROMIUM_ARGS", "READY", "chromium_path", "chromium", "Render", "render", "leave", "check", "sign_in",
           "remember", "on_login_page", "SignInFailed"]
