"""Report notebooks as bulletins (通报): the pieces a report notebook renders with.

A report reads like a printed bulletin, not a notebook: one title with its period, a boxed
summary in plain Chinese (the numbers, the change against the previous period, what needs a
decision), then the detail in sections and tables, statistical terms explained in a notes
section at the end. The executed notebook carries every table as data, so `workbench.reports`
writes the Excel workbook from it, and the title/period, so the report index shows them.

API (each call displays its output in the notebook and returns None, so a cell's last line
prints nothing twice; the *_html functions return the HTML):

    from workbench.ui import bulletin as bt

    bt.heading("数据中台周报", period.text)          # the one title (h1) + 统计区间; also the print CSS
    bt.summary(["本周接入 12,345 条记录，较上周增加 1,024 条（+9.1%）。", ...],
               decisions=["……需要决定是否……"])    # boxed 摘要 and 需要决策的事项
    bt.section("各数据集")                            # a section heading (h2)
    bt.table(df, "各数据集记录数", columns={"label": "数据集", "rows": "记录数"},
             percent=["rate"], digits={"kg": 1}, page_rows=30, sheet="记录数")
    n = bt.note("阳性率：阳性项次 ÷ 检测项次。", term="阳性率")   # returns the note's number
    bt.image(png_bytes, "每日记录数")                # a chart (PNG), kept within the page width
    bt.notes()                                       # the 注释 section: every note(), numbered

- `table`: text columns left-aligned, numbers right-aligned (numeric dtypes; `numbers=[...]` forces);
  a long table is split in blocks of `page_rows` rows, each with the header repeated (续表) and
  kept on one printed page: never a scroll box, never "显示前 N 行". `columns` renames (and
  orders: only the named columns are shown when given); `percent` columns hold shares 0–1;
  `digits` sets decimals per column (floats default 1). The display output also holds the
  whole table as `application/vnd.workbench.table+json` ({"title", "sheet", "columns",
  "rows", "percent", "digits"}) for the Excel export (`workbench.reports.tables_of(notebook)`); `empty` is the text
  shown (and no sheet written) when df has no rows.
- `heading` emits `application/vnd.workbench.report+json` ({"title", "period"}) for the index.
- `summary_html`, `table_html`, `notes_html`, `heading_html` are the pure renderers (strings).
- CSS: `CSS` (screen + print: A4, margins, page breaks before sections only where needed,
  tables never split inside a block, no scroll boxes, no input prompts).

Numbers and sentences come from the department's package / workbench core; this module only
renders (it computes nothing but formatting).
"""
from __future__ import annotations

import html as _html
import math
import numbers
from typing import Iterable, Mapping, Sequence

import pandas as pd

TABLE_MIME = "application/vnd.workbench.table+json"
REPORT_MIME = "application/vnd.workbench.report+json"
DASH = "—"

CSS = """
.wb-bulletin{font-family:"Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei",sans-serif;color:#1f2933;
  line-height:1.6;font-size:14px;max-width:960px}
.wb-bulletin h1{font-size:24px;margin:0 0 4px 0;border:none;padding:0}
.wb-bulletin h2.wb-b-section{font-size:18px;margin:22px 0 8px 0;padding-bottom:4px;border-bottom:2px solid #1d4e89}
.wb-bulletin .wb-b-period{color:#52606d;margin:0 0 12px 0}
.wb-b-summary{border:2px solid #1d4e89;border-radius:6px;padding:10px 16px;margin:8px 0 16px 0;background:#f4f8fc}
.wb-b-summary h2{font-size:17px;margin:0 0 6px 0;border:none;color:#1d4e89}
.wb-b-summary ul{margin:4px 0 4px 1.2em;padding:0}
.wb-b-summary li{margin:2px 0}
.wb-b-summary .wb-b-decide{margin-top:8px;border-top:1px dashed #9fb3c8;padding-top:6px}
.wb-b-summary .wb-b-decide h3{font-size:15px;margin:0 0 4px 0;color:#b42318}
.wb-b-block{break-inside:avoid;page-break-inside:avoid;margin:0 0 10px 0}
.wb-b-block table.wb-b-table{border-collapse:collapse;width:100%;font-size:13px;table-layout:auto}
.wb-bulletin table.wb-b-table th,.wb-bulletin table.wb-b-table td{padding:3px 8px;border-bottom:1px solid #d9e2ec;
  vertical-align:top;white-space:normal;word-break:normal;overflow-wrap:break-word}
.wb-bulletin table.wb-b-table thead th{background:#e4ecf5;border-bottom:1px solid #829ab1;font-weight:600}
.wb-bulletin table.wb-b-table .wb-b-text{text-align:left}
.wb-bulletin table.wb-b-table .wb-b-num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.wb-bulletin .wb-b-caption{font-weight:600;margin:10px 0 4px 0}
.wb-bulletin .wb-b-caption .wb-b-cont{font-weight:400;color:#52606d}
.wb-bulletin .wb-b-empty{color:#52606d;margin:4px 0 10px 0}
.wb-bulletin .wb-b-image img{max-width:100%;height:auto}
.wb-bulletin .wb-b-image{break-inside:avoid;page-break-inside:avoid;margin:6px 0 12px 0}
.wb-bulletin .wb-b-notes{font-size:12.5px;color:#3e4c59;margin-top:20px;border-top:1px solid #9fb3c8}
.wb-bulletin .wb-b-notes ol{padding-left:1.6em}
.wb-bulletin sup.wb-b-ref{font-size:10px;color:#1d4e89}
.jp-OutputArea-output,.output_subarea,.jp-RenderedHTMLCommon{overflow:visible!important;max-height:none!important}
.jp-OutputPrompt,.jp-InputPrompt{display:none!important}
@page{size:A4;margin:16mm 14mm 16mm 14mm}
@media print{
  body{background:#fff}
  .wb-bulletin{max-width:none;font-size:11.5pt}
  .wb-b-summary{background:#fff}
  .wb-bulletin h2.wb-b-section{break-after:avoid;page-break-after:avoid}
  .wb-bulletin .wb-b-caption{break-after:avoid;page-break-after:avoid}
  .jp-Cell,.jp-OutputArea,.jp-OutputArea-child{overflow:visible!important}
  *{overflow:visible!important}
}
"""

_notes: list[tuple[str | None, str]] = []


# ------------------------------------------------------------------ display helpers

def _show(bundle: dict) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:    # pragma: no cover - IPython ships with the notebooks' kernel
        return
    if get_ipython() is None:   # plain Python (tests of the renderers): nothing to display into
        return
    display(bundle, raw=True)


def _wrap(inner: str) -> str:
    return f'<div class="wb-bulletin">{inner}</div>'


def esc(value) -> str:
    return _html.escape("" if value is None else str(value))


# ------------------------------------------------------------------ title

def heading_html(title: str, period: str | None = None, subtitle: str | None = None) -> str:
    parts = [f"<style>{CSS}</style>", f"<h1>{esc(title)}</h1>"]
    line = "；".join(x for x in (f"统计区间（北京时间）：{period}" if period else "", subtitle or "") if x)
    if line:
        parts.append(f'<p class="wb-b-period">{esc(line)}</p>')
    return _wrap("".join(parts))


def heading(title: str, period: str | None = None, subtitle: str | None = None) -> None:
    """The report's one title (h1) with its period line; brings the bulletin CSS (print too).
    Call once, first; the notebook has no markdown title of its own. Starts a new notes list."""
    _notes.clear()
    body = heading_html(title, period, subtitle)
    _show({"text/html": body, REPORT_MIME: {"title": title, "period": period or ""}})


def section(title: str) -> None:
    """A section heading (h2) of the detail part."""
    body = _wrap(f'<h2 class="wb-b-section">{esc(title)}</h2>')
    _show({"text/html": body})


# ------------------------------------------------------------------ summary

def summary_html(lines: Sequence[str], decisions: Sequence[str] | None = None, title: str = "摘要") -> str:
    items = "".join(f"<li>{esc(x)}</li>" for x in lines if x)
    out = f'<div class="wb-b-summary"><h2>{esc(title)}</h2><ul>{items}</ul>'
    if decisions is not None:
        dec = "".join(f"<li>{esc(x)}</li>" for x in decisions if x)
        out += ('<div class="wb-b-decide"><h3>需要决策的事项</h3>'
                + (f"<ol>{dec}</ol>" if dec else "<p>本期没有需要决策的事项。</p>") + "</div>")
    return _wrap(out + "</div>")


def summary(lines: Sequence[str], decisions: Sequence[str] | None = None, title: str = "摘要") -> None:
    """The boxed summary at the top: `lines` (plain-Chinese sentences with the numbers and the
    change against the previous period) and, when given, the numbered items that need a
    decision (an empty list says 本期没有需要决策的事项)."""
    body = summary_html(lines, decisions, title)
    _show({"text/html": body, "text/plain": "\n".join([title, *lines, *(decisions or [])])})


# ------------------------------------------------------------------ tables

def _is_number(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _cell(value, *, percent: bool = False, digits: int | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return DASH
    try:
        if pd.isna(value):
            return DASH
    except (TypeError, ValueError):
        pass
    if isinstance(value, bool):
        return "是" if value else "否"
    if percent and isinstance(value, numbers.Real):
        return f"{100 * float(value):.{1 if digits is None else digits}f}%"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if digits is None and value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.{1 if digits is None else digits}f}"
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d %H:%M}" if (value.hour or value.minute) else f"{value:%Y-%m-%d}"
    return str(value)


def _json_value(value):
    """A cell as JSON for the Excel export: numbers stay numbers, times become text."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, bool):
        return bool(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d %H:%M}" if (value.hour or value.minute) else f"{value:%Y-%m-%d}"
    return str(value)


def _prepare(df: pd.DataFrame, columns: Mapping[str, str] | Sequence[str] | None) -> pd.DataFrame:
    if df is None:
        return pd.DataFrame()
    if isinstance(df.index, pd.MultiIndex) or df.index.name is not None:
        df = df.reset_index()
    if columns is None:
        return df
    if isinstance(columns, Mapping):
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise KeyError(f"表格缺少列：{'、'.join(map(str, missing))}")
        return df[list(columns)].rename(columns=dict(columns))
    return df[list(columns)]


def table_html(df: pd.DataFrame, title: str, *, columns=None, percent: Iterable[str] = (),
               digits: Mapping[str, int] | None = None, numbers: Iterable[str] = (), page_rows: int = 30,
               empty: str = "本期没有记录。") -> str:
    """The table as bulletin HTML (see `table`); `percent`, `digits`, `numbers` name columns by
    their shown (renamed) names or their original names."""
    names = dict(columns) if isinstance(columns, Mapping) else {}
    shown = _prepare(df, columns)
    rename = lambda c: names.get(c, c)  # noqa: E731
    pct = {rename(c) for c in percent}
    dig = {rename(k): v for k, v in (digits or {}).items()}
    forced = {rename(c) for c in numbers}
    cap = f'<div class="wb-b-caption">{esc(title)}</div>' if title else ""
    if shown.empty:
        return _wrap(f'<div class="wb-b-block">{cap}<p class="wb-b-empty">{esc(empty)}</p></div>')
    kinds = {c: ("wb-b-num" if (c in forced or c in pct or _is_number(shown[c])) else "wb-b-text")
             for c in shown.columns}
    head = "<thead><tr>" + "".join(f'<th class="{kinds[c]}">{esc(c)}</th>' for c in shown.columns) + "</tr></thead>"
    rows = [
        "<tr>" + "".join(f'<td class="{kinds[c]}">{esc(_cell(v, percent=c in pct, digits=dig.get(c)))}</td>'
                         for c, v in zip(shown.columns, r)) + "</tr>"
        for r in shown.itertuples(index=False, name=None)
    ]
    page_rows = max(1, int(page_rows))
    blocks = []
    n_blocks = math.ceil(len(rows) / page_rows)
    for i in range(n_blocks):
        chunk = rows[i * page_rows:(i + 1) * page_rows]
        if i == 0:
            caption = cap
        else:
            caption = (f'<div class="wb-b-caption">{esc(title)} <span class="wb-b-cont">（续表 {i + 1}/{n_blocks}，'
                       f'第 {i * page_rows + 1}–{i * page_rows + len(chunk)} 行，共 {len(rows)} 行）</span></div>'
                       if title else "")
        blocks.append(f'<div class="wb-b-block">{caption}<table class="wb-b-table">{head}<tbody>'
                      + "".join(chunk) + "</tbody></table></div>")
    return _wrap("".join(blocks))


def table_record(df: pd.DataFrame, title: str, *, columns=None, sheet: str | None = None) -> dict:
    """The table as data (all rows) for the Excel export: {"title", "sheet", "columns", "rows"}."""
    shown = _prepare(df, columns)
    return {"title": title, "sheet": sheet or title, "columns": [str(c) for c in shown.columns],
            "rows": [[_json_value(v) for v in r] for r in shown.itertuples(index=False, name=None)]}


def table(df: pd.DataFrame, title: str, *, columns=None, percent: Iterable[str] = (),
          digits: Mapping[str, int] | None = None, numbers: Iterable[str] = (), page_rows: int = 30,
          sheet: str | None = None, empty: str = "本期没有记录。", export: bool = True) -> None:
    """Display df as a bulletin table (every row, in print-sized blocks with the header
    repeated) and record it for the Excel workbook (sheet name: `sheet` or the title;
    `export=False` keeps it out)."""
    percent, numbers = list(percent), list(numbers)
    body = table_html(df, title, columns=columns, percent=percent, digits=digits, numbers=numbers,
                      page_rows=page_rows, empty=empty)
    bundle = {"text/html": body}
    if export and df is not None and len(df):
        bundle[TABLE_MIME] = table_record(df, title, columns=columns, sheet=sheet)
        shown = (lambda c: dict(columns).get(c, c)) if isinstance(columns, Mapping) else (lambda c: c)
        bundle[TABLE_MIME]["percent"] = [shown(c) for c in percent]
        bundle[TABLE_MIME]["digits"] = {shown(c): int(d) for c, d in (digits or {}).items()}
    _show(bundle)


# ------------------------------------------------------------------ images, notes

def image(png: bytes, alt: str = "") -> None:
    """A chart (PNG bytes), scaled to the page width and never split across printed pages."""
    import base64

    data = base64.b64encode(png).decode("ascii")
    body = _wrap(f'<div class="wb-b-image"><img alt="{esc(alt)}" src="data:image/png;base64,{data}"></div>')
    _show({"text/html": body})


def note(text: str, term: str | None = None) -> int:
    """Keep a note (a statistical term explained in plain words) for the 注释 section; returns
    its number, to cite as （注 n） beside the figure. Displays nothing by itself."""
    for i, (t, x) in enumerate(_notes, 1):
        if (t, x) == (term, text):
            return i
    _notes.append((term, text))
    return len(_notes)


def ref(n: int) -> str:
    """The marker of note n, to put in a caption or sentence: （注 n）."""
    return f"（注 {n}）"


def notes_html(items: Sequence[tuple[str | None, str]] | None = None, title: str = "注释") -> str:
    items = list(_notes if items is None else items)
    if not items:
        return ""
    lis = "".join(f"<li>{'<b>' + esc(t) + '</b>：' if t else ''}{esc(_untitled(t, x))}</li>" for t, x in items)
    return _wrap(f'<div class="wb-b-notes"><h2 class="wb-b-section">{esc(title)}</h2><ol>{lis}</ol></div>')


def _untitled(term: str | None, text: str) -> str:
    """A note's text without its own heading where it opens with the term ("超期：…" under 超期)."""
    if term and text.startswith(term) and text[len(term):len(term) + 1] in ("：", ":"):
        return text[len(term) + 1:].lstrip()
    return text


def notes(title: str = "注释") -> None:
    """The notes section (last cell): every note() of this report, numbered."""
    body = notes_html(title=title)
    if body:
        _show({"text/html": body})


__all__ = ["CSS", "REPORT_MIME", "TABLE_MIME", "heading", "heading_html", "section", "summary", "summary_html",
           "table", "table_html", "table_record", "image", "note", "ref", "notes", "notes_html"]
