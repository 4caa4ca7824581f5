"""The signed-in user of a dashboard page (the kernel side of sign-in).

The server (workbench.ui.server / workbench.ui.auth) signs the user's name into the page
request; `who()` waits for the request (ui.request.query_params) and returns that user's
Principal from the hub, or None when the page has no valid identity. Pages act as `who()`:
case steps take it as their actor, reads are scoped by it (access.scope), personal data is
revealed only through workbench.privacy.reveal with it.
"""
from __future__ import annotations

from html import escape

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
        return '<div class="wb-user wb-user-none">未登录：请先<a href="/login">登录</a></div>'
    scope = "（仅本区县数据）" if not p.sees_all else ""
    out = "" if p.system else ' · <a href="/logout">退出登录</a>'
    return f'<div class="wb-user">当前用户：{escape(p.describe)}{escape(scope)}{out}</div>'


__all__ = ["who", "banner"]
