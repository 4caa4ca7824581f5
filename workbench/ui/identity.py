"""The signed-in user of a dashboard page (the kernel side of sign-in).

The server (workbench.ui.server / workbench.ui.auth) signs the user's name into the page
request; `who()` waits for the request (ui.request.query_params) and returns that user's
Principal from the hub, or None when the page has no valid identity. Pages act as `who()`:
case steps take it as their actor, reads are scoped by it (access.scope), personal data is
revealed only through workbench.privacy.reveal with it.
"""
from __future__ import annotations

import os
from html import escape
from urllib.parse import quote

from workbench import access
from workbench.access import Principal


def who(eng=None) -> Principal | None:
    """The page's user (after its request has arrived); None without a valid identity."""
    from workbench.ui.request import wait_for_request

    wait_for_request()
    try:
        return access.current(eng)
    except access.AccessDenied:
        return None


def banner(p: Principal | None) -> str:
    """The line at the top of a page: who is signed in, and how to sign out."""
    if p is None:
        return f'<div class="wb-user wb-user-none">未登录：请先<a href="{_base()}login">登录</a></div>'
    scope = "（仅本区县数据）" if not p.sees_all else ""
    out = "" if p.system else f' · <a href="{_base()}logout">退出登录</a>'
    return f'<div class="wb-user">当前用户：{escape(p.describe)}{escape(scope)}{out}</div>'


def _base() -> str:
    base = os.environ.get("VOILA_BASE_URL") or "/"
    return base if base.endswith("/") else base + "/"


def evidence_url(violation_id: str, original: bool = False) -> str:
    """The URL of a kitchen violation's snapshot, served by the application to the signed-in user
    (workbench.ui.auth.EvidenceHandler): the face-blurred image, or with `original` the unblurred
    frame (reviewer role only, each view audited). Pages put it in an <img src>, never a file."""
    url = f"{_base()}workbench/evidence/{quote(str(violation_id), safe='')}"
    return url + "/original" if original else url


__all__ = ["who", "banner", "evidence_url"]
