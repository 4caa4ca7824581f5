"""DataFrames as Chinese HTML tables, and the time formatting every screen shares.

The hub stores naive UTC; every time a person reads is Asia/Shanghai (北京时间).
"""
from __future__ import annotations

import html
import math
import numbers
from typing import Callable, Iterable, Mapping

import pandas as pd

from workbench.config import TZ
from workbench.store.schema import DATASETS
from workbench.ui.labels import VALUE_LABELS, code_kind, column_label

DASH = "—"
EMPTY_TEXT = "暂无数据"
TIME_FORMAT = "%Y-%m-%d %H:%M"

# Hub bookkeeping columns that hold (naive UTC) times.
HUB_TIME_COLUMNS = frozenset({"first_ts", "last_ts", "last_ingest", "received_at", "finished_at",
                              "quarantined_at"})

class Html(str):
    """Text that is already HTML: a formatter returning it is not escaped."""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------- time

def utc_now() -> pd.Timestamp:
    """Now, as naive UTC (the hub's convention)."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def to_local(values):
    """Naive-UTC timestamps (scalar or Series) → tz-aware Asia/Shanghai; NaT stays NaT."""
    if isinstance(values, pd.Series):
        s = pd.to_datetime(values, errors="coerce")
        if s.dt.tz is None:
            s = s.dt.tz_localize("UTC")
        return s.dt.tz_convert(TZ)
    ts = pd.to_datetime(values, errors="coerce")
    if ts is None or pd.isna(ts):
        return pd.NaT
    ts = pd.Timestamp(ts)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts).tz_convert(TZ)


def format_time(value, fmt: str = TIME_FORMAT, missing: str = DASH) -> str:
    """A naive-UTC time as Beijing time text: 2024-01-05 14:03."""
    ts = to_local(value)
    return missing if ts is pd.NaT or pd.isna(ts) else ts.strftime(fmt)


def format_date(value, missing: str = DASH) -> str:
    ts = pd.to_datetime(value, errors="coerce")
    return missing if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d")


def age_text(then, now=None, missing: str = DASH) -> str:
    """How long ago `then` was (both naive UTC), in Chinese: 刚刚, 5 分钟前, 3 小时前, 2 天前."""
    then = pd.to_datetime(then, errors="coerce")
    if then is None or pd.isna(then):
        return missing
    now = utc_now() if now is None else pd.Timestamp(now)
    seconds = (now - pd.Timestamp(then)).total_seconds()
    suffix = "前" if seconds >= 0 else "后"
    seconds = abs(seconds)
    if seconds < 60:
        return "刚刚"
    for unit, size in (("天", 86400), ("小时", 3600), ("分钟", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}{suffix}"
    return "刚刚"


# ---------------------------------------------------------------- numbers

def format_number(value, digits: int = 2, missing: str = DASH) -> str:
    """12345 → 12,345; 0.5 → 0.5; NaN/None → —."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return missing
    if isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer()
                                               and abs(value) < 1e15):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{value:,.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


def format_bytes(value, missing: str = DASH) -> str:
    if value is None or pd.isna(value):
        return missing
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return missing


def percent(part, whole, digits: int = 1, missing: str = DASH) -> str:
    if not whole:
        return missing
    return f"{100.0 * part / whole:.{digits}f}%"


# ---------------------------------------------------------------- badges and empty states

def badge(text: str, tone: str = "") -> Html:
    """A small coloured label; tone is ok | warn | bad | info | '' (grey)."""
    cls = f"wb-badge wb-{tone}" if tone else "wb-badge"
    return Html(f'<span class="{cls}">{esc(text)}</span>')


def empty_html(message: str = EMPTY_TEXT, hint: str | None = None) -> str:
    hint_html = f"<div>{esc(hint)}</div>" if hint else ""
    return f'<div class="wb-empty"><b>{esc(message)}</b>{hint_html}</div>'


# ---------------------------------------------------------------- tables

def _time_columns(df: pd.DataFrame, dataset: str | None) -> set[str]:
    cols = {c for c in df.columns if pd.api.types.is_datetime64_any_dtype(df[c])}
    cols |= HUB_TIME_COLUMNS & set(df.columns)
    ds = DATASETS.get(dataset) if dataset else None
    if ds is not None:
        cols |= {f.name for f in ds.fields if f.kind == "ts" and f.name in df.columns}
    return cols


def _date_columns(df: pd.DataFrame, dataset: str | None) -> set[str]:
    ds = DATASETS.get(dataset) if dataset else None
    if ds is None:
        return set()
    return {f.name for f in ds.fields if f.kind == "date" and f.name in df.columns}


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def table_html(
    df: pd.DataFrame | None,
    *,
    dataset: str | None = None,
    columns: Iterable[str] | None = None,
    labels: Mapping[str, str] | None = None,
    formatters: Mapping[str, Callable] | None = None,
    codes: Mapping[str, str] | None = None,
    numeric: Iterable[str] = (),
    wrap: Iterable[str] = (),
    html_columns: Iterable[str] = (),
    max_rows: int = 200,
    max_height: str | None = None,
    empty: str = EMPTY_TEXT,
    empty_hint: str | None = None,
    index: bool = False,
) -> str:
    """A DataFrame as an HTML table with Chinese column labels.

    - labels: column → header; else the dataset's field label, else the hub's own label.
    - times (datetime columns, the dataset's `ts` fields, the hub's bookkeeping times) are
      naive UTC and shown in Beijing time; dates as YYYY-MM-DD; numbers with separators.
    - formatters: column → function(value) → text (escaped) or `Html` (kept as is).
    - codes: column → VALUE_LABELS kind, to show coded values in Chinese (default: the
      dataset's coded columns, labels.CODED_COLUMNS).
    - wrap: long text columns, wrapped and greyed.
    - html_columns: columns that already hold HTML (badges), inserted as they are.
    - max_height: a CSS height ("480px") above which the table scrolls under a fixed header.
    An empty or missing frame gives the `empty` message instead.
    """
    if df is None or len(df) == 0:
        return empty_html(empty, empty_hint)
    if index:
        df = df.reset_index()
    cols = [c for c in (columns or df.columns) if c in df.columns]
    labels = dict(labels or {})
    formatters = dict(formatters or {})
    codes = {**{c: code_kind(dataset, c) for c in cols if code_kind(dataset, c)}, **dict(codes or {})}
    times = _time_columns(df, dataset)
    dates = _date_columns(df, dataset)
    numeric = set(numeric) | {c for c in cols if c not in times and _is_numeric(df[c])}
    wrap = set(wrap)
    raw = set(html_columns)
    shown = df.head(max_rows)

    def cell(col, value) -> str:
        if col in raw:
            return DASH if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        if col in formatters:
            out = formatters[col](value)
            return out if isinstance(out, Html) else esc(out)
        if col in times:
            return esc(format_time(value))
        if col in dates:
            return esc(format_date(value))
        if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
            return DASH
        if col in codes:
            return esc(VALUE_LABELS.get(codes[col], {}).get(str(value), str(value)))
        if col in numeric:
            return esc(format_number(value))
        return esc(value)

    def css(col) -> str:
        if col in numeric:
            return ' class="wb-num"'
        if col in times:
            return ' class="wb-time"'
        if col in wrap:
            return ' class="wb-wrap"'
        return ""

    head = "".join(f"<th{css(c) if c in numeric else ''}>{esc(labels.get(c) or column_label(c, dataset))}</th>"
                   for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td{css(c)}>{cell(c, v)}</td>" for c, v in zip(cols, row)) + "</tr>"
        for row in shown[cols].itertuples(index=False, name=None)
    )
    foot = ""
    if len(df) > len(shown):
        foot = f'<div class="wb-table-foot">共 {len(df):,} 行，显示前 {len(shown):,} 行</div>'
    style = f' style="max-height: {esc(max_height)}"' if max_height else ""
    return (f'<div class="wb-table-wrap"{style}><table class="wb-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>{foot}")


def table(df: pd.DataFrame | None, **kwargs):
    """`table_html` in an ipywidgets HTML widget."""
    import ipywidgets as widgets

    w = widgets.HTML(table_html(df, **kwargs), layout=widgets.Layout(width="100%"))
    w.add_class("wb-table-widget")
    return w


__all__ = ["Html", "DASH", "EMPTY_TEXT", "esc", "utc_now", "to_local", "format_time", "format_date",
           "age_text", "format_number", "format_bytes", "percent", "badge", "empty_html", "table_html",
           "table"]
