"""Page furniture shared by the dashboards: header, section titles, notes, empty states."""
from __future__ import annotations

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


__all__ = ["FOOTER", "html", "header", "section", "note", "empty", "error", "footer", "stack", "grid"]
