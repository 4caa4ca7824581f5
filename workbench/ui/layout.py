"""Page furniture shared by the dashboards: header, section titles, notes, empty states; and the
gate every dashboard opens with (who is signed in, and whether the hub answers).

    params = ui.query_params()
    gate = ui.open_page(events_page.load)   # the user (identity.who), then load(who=…)
    gate.top                                # banner; or 请先登录; or 数据暂不可用（自 … 起）
    gate.show(events_page.page, gate.data)  # nothing when the gate is shut; the hub guard again

A page without a signed-in user shows 请先登录 and nothing else. A hub that does not answer
(the database refuses connections, the file cannot be opened) is shown as
数据暂不可用（自 <the first failure, Beijing time> 起）, never as a traceback; the first failure
is remembered in the data folder (`.hub_unreachable`) until the hub answers again.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from workbench.ui.tables import empty_html, esc, format_time, utc_now

FOOTER = "城市数智中心 · 数据来源：数据中台 · 时间均为北京时间（UTC+8）"


def _html(value: str, *classes: str, width: str = "100%"):
    import ipywidgets as widgets

    w = widgets.HTML(value, layout=widgets.Layout(width=width))
    for cls in classes:
        w.add_class(cls)
    return w


def html(value: str, *classes: str):
    """Ready HTML (a table from `table_html`, say) as a full-width widget."""
    return _html(value, "wb-page", *classes)


def header(title: str, subtitle: str = "", *, kicker: str = "城市数智中心", updated=None):
    """The page banner. `updated` (naive UTC) adds 数据更新于 … (北京时间)."""
    parts = [subtitle] if subtitle else []
    if updated is not None:
        parts.append(f"数据更新于 {format_time(updated)}（北京时间）")
    sub = " · ".join(parts)
    return _html(
        f'<div class="wb-header"><div class="wb-kicker">{esc(kicker)}</div>'
        f"<h1>{esc(title)}</h1><div class=\"wb-sub\">{esc(sub)}</div></div>",
        "wb-page", "wb-header-widget",
    )


def section(title: str, hint: str = ""):
    """A section title with an optional one-line explanation."""
    hint_html = f'<div class="wb-hint">{esc(hint)}</div>' if hint else ""
    return _html(f'<div class="wb-section"><h2>{esc(title)}</h2>{hint_html}</div>', "wb-page")


def note(text: str):
    return _html(f'<div class="wb-note">{esc(text)}</div>', "wb-page")


EXPLAIN_LABEL = "说明"


def explain_html(face_html: str, detail_html: str = "", label: str = EXPLAIN_LABEL) -> str:
    """What a finding means in plain words (`face_html`, shown), and how it was found
    (`detail_html`: method names, statistics, p-values, formulas) in a collapsed <details>
    toggle labelled `label`. Both are ready HTML: escape text with `tables.esc` first.
    No detail: the face alone.

        explain_html("该市场农药残留阳性率近三周明显上升，高于全市水平。",
                     "EARS C2（7 天基线，间隔 2 天）：C2 = 4.1 &gt; 3；p = 4.1e-21（Bonferroni 校正后）")
    """
    detail = (f'<details class="wb-explain"><summary>{esc(label)}</summary>'
              f'<div class="wb-explain-body">{detail_html}</div></details>') if detail_html else ""
    face = f'<div class="wb-explain-face">{face_html}</div>' if face_html else ""
    return f'<div class="wb-explained">{face}{detail}</div>'


def explain(face_html: str, detail_html: str = "", label: str = EXPLAIN_LABEL):
    """`explain_html` as a full-width widget (a dashboard cell's output)."""
    return _html(explain_html(face_html, detail_html, label), "wb-page", "wb-explain-widget")


def empty(message: str = "暂无数据", hint: str | None = None):
    """A friendly empty state instead of an empty table or chart."""
    return _html(empty_html(message, hint), "wb-page", "wb-empty-widget")


def error(message: str):
    """A visible error box (class wb-error, which the browser tests fail on)."""
    return _html(f'<div class="wb-empty wb-error"><b>加载失败</b>{esc(message)}</div>', "wb-page")


def footer(text: str = FOOTER, now=None):
    now = utc_now() if now is None else now
    return _html(f'<div class="wb-footer">{esc(text)} · 页面生成于 {format_time(now)}</div>', "wb-page")


def stack(children, *classes: str, width: str = "100%"):
    """Widgets one under another."""
    import ipywidgets as widgets

    box = widgets.VBox(list(children), layout=widgets.Layout(width=width))
    for cls in ("wb-page", *classes):
        box.add_class(cls)
    return box


def grid(children, *classes: str):
    """Widgets side by side in columns of at least 420 px (two on a laptop screen)."""
    import ipywidgets as widgets

    box = widgets.Box(list(children), layout=widgets.Layout(width="100%"))
    for cls in ("wb-page", "wb-grid2", *classes):
        box.add_class(cls)
    return box


# ------------------------------------------------------------------ who is signed in

def banner(who):
    """The signed-in user's line at the top of a page (identity.banner) as a widget."""
    from workbench.ui import identity

    return _html(identity.banner(who), "wb-page", "wb-user-widget")


SIGN_IN_TEXT = "请先登录"


def sign_in_required():
    """What a page without a (valid) signed-in user shows: this, and nothing else."""
    return _html(f'<div class="wb-empty wb-signin"><b>{SIGN_IN_TEXT}</b>'
                 '本页面只对已登录的用户开放。<a href="/login">登录</a></div>', "wb-page", "wb-signin-widget")


def read_only_reason(who, what: str = "办理案件") -> str | None:
    """Why `who` may not act at all (leader, analyst, admin: 数据分析员只能查看，不能办理案件);
    None for the acting roles, whose case-by-case checks the case engine makes."""
    from workbench.access import ACTING_ROLES

    if who is None:
        return f"未登录，不能{what}"
    if who.system or who.role in ACTING_ROLES:
        return None
    return f"{who.role_label}只能查看，不能{what}"


def lock(controls, why: str | None):
    """Disable `controls` (widgets with .disabled) when `why`; the one line saying why
    (class wb-readonly), or an empty widget."""
    for c in controls:
        c.disabled = bool(why)
    return _html(f'<div class="wb-note wb-readonly">{esc(why)}</div>' if why else "", "wb-page")


def refused_html(exc, prefix: str = "未执行") -> str:
    """A refused action (AccessDenied, CaseError, any WorkbenchError) as one Chinese line."""
    problem = getattr(exc, "problem", None) or str(exc)
    return f'<div class="wb-note wb-refused">{esc(prefix)}：{esc(problem)}</div>'


# ------------------------------------------------------------------ the hub guard

DOWN_FILE = ".hub_unreachable"
UNAVAILABLE = "数据暂不可用"


def hub_unreachable(exc: BaseException) -> bool:
    """True when `exc` says the hub cannot be reached (refused, gone, cannot be opened)."""
    import sqlalchemy as sa

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)):
            return True
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if type(exc).__module__.startswith(("psycopg", "sqlite3")) and type(exc).__name__ in (
                "OperationalError", "InterfaceError"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _down_path():
    from workbench import config

    return config.data_dir() / DOWN_FILE


def hub_down(now=None):
    """Remember that the hub did not answer; the time (naive UTC) of the first failure since it
    last answered (kept in the data folder, so every page and kernel tells the same time)."""
    import pandas as pd

    path = _down_path()
    try:
        return pd.Timestamp(path.read_text().strip())
    except (OSError, ValueError):
        pass
    first = pd.Timestamp(now) if now is not None else utc_now()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(first.isoformat())
    except FileExistsError:  # another page wrote it first: its time is the first failure
        try:
            return pd.Timestamp(path.read_text().strip())
        except (OSError, ValueError):
            return first
    except OSError:  # a read-only data folder: the time of this look
        pass
    return first


def hub_up() -> None:
    """The hub answered: forget the failure."""
    try:
        _down_path().unlink()
    except OSError:
        pass


def hub_down_since():
    """The first failure still remembered (naive UTC), or None."""
    import pandas as pd

    try:
        return pd.Timestamp(_down_path().read_text().strip())
    except (OSError, ValueError):
        return None


def unavailable_text(since) -> str:
    return f"{UNAVAILABLE}（自 {format_time(since)} 起）"


def unavailable_html(since) -> str:
    return (f'<div class="wb-empty wb-unavailable"><b>{esc(unavailable_text(since))}</b>'
            "数据中台暂时无法连接，请稍后刷新本页（时间为北京时间）。</div>")


def unavailable(since):
    """数据暂不可用（自 2024-01-05 14:03 起） as a widget."""
    return _html(unavailable_html(since), "wb-page", "wb-unavailable-widget")


def guarded(read: Callable, *args, **kwargs):
    """(read(*args, **kwargs), None); or (None, the 数据暂不可用 widget) when the hub does not
    answer. Other errors are raised as before."""
    try:
        value = read(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - only the hub's absence is turned into a message
        if not hub_unreachable(exc):
            raise
        return None, unavailable(hub_down())
    hub_up()
    return value, None


@dataclass
class Gate:
    """What a dashboard opens with: the user, the data, and whether the rest may be shown."""
    who: Any = None
    data: Any = None
    top: Any = None                  # the widget for the top of the page
    ok: bool = False
    problem: str | None = None       # "signin" | "unavailable" when shut
    widgets: list = field(default_factory=list)

    def show(self, build: Callable, *args, **kwargs):
        """build(*args, **kwargs) when the gate is open, under the hub guard; None when shut
        (a notebook cell then shows nothing)."""
        if not self.ok:
            return None
        value, down = guarded(build, *args, **kwargs)
        return down if down is not None else value


def _who(eng=None):
    """identity.who, after one look at the hub (outside Voilà the user may not need it)."""
    import sqlalchemy as sa

    from workbench.store import hub
    from workbench.ui import identity

    with (eng or hub.engine()).connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return identity.who(eng)


def open_page(load: Callable | None = None, *args, eng=None, **kwargs) -> Gate:
    """The page's user (identity.who, after the request) and, when signed in, `load(*args,
    who=who, **kwargs)`, both under the hub guard. Call after ui.query_params()."""
    who, down = guarded(_who, eng)
    if down is not None:
        return Gate(top=down, problem="unavailable")
    if who is None:
        return Gate(top=sign_in_required(), problem="signin")
    data = None
    if load is not None:
        data, down = guarded(load, *args, who=who, **kwargs)
        if down is not None:
            return Gate(who=who, top=stack([banner(who), down]), problem="unavailable")
    return Gate(who=who, data=data, top=banner(who), ok=True)


__all__ = ["FOOTER", "html", "header", "section", "note", "explain", "explain_html", "EXPLAIN_LABEL", "empty", "error", "footer", "stack", "grid",
           "banner", "sign_in_required", "read_only_reason", "lock", "refused_html", "hub_unreachable",
           "hub_down", "hub_up", "hub_down_since", "unavailable_text", "unavailable_html", "unavailable",
           "guarded", "Gate", "open_page", "SIGN_IN_TEXT", "UNAVAILABLE"]
