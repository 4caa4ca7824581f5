"""The hub dashboard (数据中台): what the hub holds, what came in, what was quarantined.

`load()` reads one snapshot through workbench.store.hub; the other functions turn that
snapshot into display tables and widgets. dashboards/hub.ipynb only calls them.

The page acts as the signed-in user (`who`, a workbench.access.Principal): uploading a file
or saving an upload profile needs a role that writes data (department staff, reviewers,
administrators; others see the panel disabled with the reason), a saved profile is audited
under that user, and a district user (whose rows are scoped by district on every page) sees
the hub's counts but not its row-level views (quarantined rows, columns kept aside), which
belong to no district. Quarantined rows and the upload preview show masked cells only (ingest
masks them before they are kept or previewed).
"""
from __future__ import annotations

from functools import lru_cache

import json
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from workbench import clock

from workbench.store import hub
from workbench.store.schema import DATASETS, quarantine
from workbench.ui import cards, charts, layout, theme
from workbench.ui.labels import DEPARTMENTS, INGEST_STATUS, column_label, dataset_label, dataset_options, show_value
from workbench.ui.tables import (DASH, age_text, badge, esc, format_number, format_time,
                                 table_html, utc_now)

FRESH = pd.Timedelta(days=1)   # newest record younger than this: 正常
STALE = pd.Timedelta(days=7)   # older than this: 滞后 (between the two: 较旧)
STATUS_TONE = {"done": "ok", "running": "info", "failed": "bad", "interrupted": "bad", "skipped": ""}


@dataclass
class HubSnapshot:
    now: pd.Timestamp          # naive UTC
    status: pd.DataFrame       # hub.dataset_status()
    files: pd.DataFrame        # hub.ingest_log(): newest first
    reasons: pd.DataFrame      # hub.quarantine_reasons()
    daily: pd.DataFrame        # records_per_day(): index day (Beijing), one column per dataset
    who: object = None         # the Principal the page is for (None: the system)

    @property
    def empty(self) -> bool:
        return int(self.status["rows"].sum()) == 0 and self.files.empty and self.reasons.empty


def prepare() -> None:
    """Open the hub ahead of the request (preheated kernels): engine, schema check, pool."""
    hub.engine()


def load(files: int = 30, days: int = 30, now=None, who=None) -> HubSnapshot:
    """One consistent read of the hub for the page (as `who`)."""
    now = utc_now() if now is None else pd.Timestamp(now)
    status = hub.dataset_status()
    log = hub.ingest_log(limit=files)
    for col in ("received_at", "finished_at"):
        if col in log:
            log[col] = pd.to_datetime(log[col])
    return HubSnapshot(now=now, status=status, files=log, reasons=hub.quarantine_reasons(),
                       daily=records_per_day(status, days=days, now=now), who=who)


WRITING_ROLES = frozenset({"staff", "reviewer", "admin"})


def upload_refusal(who) -> str | None:
    """Why `who` may not upload files into the hub or save upload profiles; None when they may
    (department staff, reviewers, administrators, the system)."""
    if who is None:
        return "未登录，不能接入文件（请先登录）"
    if who.system or who.role in WRITING_ROLES:
        return None
    if who.role == "district":
        return f"{who.role_label}只能查看本区县的数据，不能向数据中台接入文件或保存接入配置"
    return f"{who.role_label}只能查看，不能接入文件或保存接入配置"


def rows_refusal(who) -> str | None:
    """Why `who` may not see the hub's row-level views that belong to no district (quarantined
    rows, columns kept aside, corrections); None when they may."""
    if who is not None and not who.sees_all:
        return f"隔离行、随原行保留的列和更正记录不属于任何区县，{who.role_label}只能查看本区县的数据"
    return None


# ------------------------------------------------------------------ queries (via hub.query)

BEIJING = pd.Timedelta(hours=8)  # Asia/Shanghai is UTC+8 all year (no daylight saving)


def _day_start(ts: pd.Timestamp) -> pd.Timestamp:
    """The naive-UTC instant at which ts's Beijing day begins."""
    return (ts + BEIJING).normalize() - BEIJING


def records_per_day(status: pd.DataFrame | None = None, days: int = 30, now=None) -> pd.DataFrame:
    """Records per Beijing day and dataset over the `days` ending at the newest record (≤ now).

    Index: day (DatetimeIndex, every day present); columns: dataset names with any records.
    """
    now = utc_now() if now is None else pd.Timestamp(now)
    status = hub.dataset_status() if status is None else status
    timed = status[status["last_ts"].notna() & (status["rows"] > 0)]
    timed = timed[timed["dataset"].map(lambda n: n in DATASETS and DATASETS[n].ts_field is not None)]
    if timed.empty:
        return pd.DataFrame()
    end = min(now, pd.to_datetime(timed["last_ts"]).max()) + pd.Timedelta(seconds=1)
    start = _day_start(end) - pd.Timedelta(days=days - 1)
    first = pd.to_datetime(timed["first_ts"]).min()
    if pd.notna(first):  # no empty days before the hub's first record
        start = max(start, _day_start(first))
    dialect = hub.backend()
    selects = []
    for name in timed["dataset"]:
        ds = DATASETS[name]
        ts = ds.table.c[ds.ts_field]
        day = clock.local_day_sql(ts, dialect)
        selects.append(sa.select(sa.literal(name).label("dataset"), day.label("day"),
                                 sa.func.count().label("rows"))
                       .where(ts >= start.to_pydatetime(), ts < end.to_pydatetime()).group_by(day))
    df = hub.query(sa.union_all(*selects))
    if df.empty:
        return pd.DataFrame()
    df["day"] = pd.to_datetime(df["day"].astype(str))
    out = df.pivot_table(index="day", columns="dataset", values="rows", aggfunc="sum", fill_value=0)
    full = pd.date_range((start + BEIJING).normalize(), (end + BEIJING).normalize(), freq="D", name="day")
    return out.reindex(full, fill_value=0).astype(int)


def quarantine_sample(dataset: str | None = None, reason: str | None = None, limit: int = 50) -> pd.DataFrame:
    """The newest quarantined rows of a dataset, optionally of one reason."""
    if not reason:
        return hub.quarantine_rows(dataset or None, limit=limit)
    t = quarantine
    stmt = sa.select(t).where(t.c.reason == reason).order_by(t.c.id.desc()).limit(limit)
    if dataset:
        stmt = stmt.where(t.c.dataset == dataset)
    return hub.query(stmt)


# ------------------------------------------------------------------ display tables

def freshness(row, now) -> tuple[str, str]:
    """(text, tone) of how current a dataset is, from its newest record."""
    ds = DATASETS.get(row["dataset"])
    if not row["rows"]:
        return "暂无数据", ""
    if ds is not None and ds.ts_field is None:
        return "基础数据", "info"
    last = row["last_ts"]
    if pd.isna(last):
        return "时间缺失", "warn"
    age = now - pd.Timestamp(last)
    if age <= FRESH:
        return "正常", "ok"
    if age <= STALE:
        return "较旧", "warn"
    return "滞后", "bad"


def dataset_overview(snap: HubSnapshot) -> str:
    """HTML table: one row per dataset, with its time span and freshness (Beijing time)."""
    st = snap.status
    now = snap.now

    def span(row) -> str:
        if pd.isna(row["first_ts"]) or pd.isna(row["last_ts"]):
            return DASH
        return f"{format_time(row['first_ts'], '%Y-%m-%d')} 至 {format_time(row['last_ts'], '%Y-%m-%d')}"

    def when(value) -> str:
        if pd.isna(value):
            return DASH
        return f'{esc(format_time(value))}<span class="wb-age">{esc(age_text(value, now))}</span>'

    view = pd.DataFrame({
        "dataset": st["label"],
        "department": st["department"],
        "rows": st["rows"],
        "span": st.apply(span, axis=1),
        "last_ts": st["last_ts"].map(when),
        "last_ingest": st["last_ingest"].map(when),
        "files": st["files"],
        "quarantined": st["quarantined"],
        "fresh": st.apply(lambda r: badge(*freshness(r, now)), axis=1),
    })
    # Datasets holding rows first, then by department as the city lists them.
    dept_rank = st["department"].map({d: i for i, d in enumerate(DEPARTMENTS)}).fillna(len(DEPARTMENTS))
    order = pd.DataFrame({"empty": st["rows"].eq(0), "dept": dept_rank, "pos": range(len(st))})
    view = view.loc[order.sort_values(["empty", "dept", "pos"]).index]
    return table_html(view, labels={"span": "时间范围", "fresh": "新鲜度"},
                      html_columns=("last_ts", "last_ingest", "fresh"), max_rows=100)


def files_table(snap: HubSnapshot) -> str:
    """HTML table of the files ingested most recently."""
    log = snap.files
    if log.empty:
        return table_html(None, empty="暂无接入记录", empty_hint="用 workbench ingest 接入各部门的数据文件后，这里会列出每个文件的处理结果。")
    view = log.assign(
        dataset=log["dataset"].map(dataset_label),
        when=log["finished_at"].fillna(log["received_at"]),
        profile=log.get("profile"),
        message=[_file_note(m, n) for m, n in zip(log["message"], log.get("notes", pd.Series([None] * len(log))))],
        status_badge=log["status"].map(lambda s: badge(INGEST_STATUS.get(s, s), STATUS_TONE.get(s, ""))),
    )
    return table_html(
        view,
        columns=["when", "filename", "dataset", "profile", "encoding", "rows_read", "loaded", "quarantined", "duplicates",
                 "status_badge", "message"],
        labels={"when": "接入时间", "status_badge": "状态"},
        formatters={"when": format_time,
                    "profile": lambda v: DASH if v is None or pd.isna(v) else str(v),
                    "encoding": lambda v: DASH if v is None or pd.isna(v) else str(v).upper()},
        html_columns=("status_badge",), wrap=("message",), max_rows=len(view), max_height="480px",
    )


def _file_note(message, notes) -> str | None:
    """The 说明 of an ingested file: its message, then what its notes record (conversions, columns
    kept with their rows, corrections)."""
    parts = [str(message)] if message is not None and not (isinstance(message, float) and pd.isna(message)) else []
    try:
        n = json.loads(notes) if isinstance(notes, str) and notes else {}
    except ValueError:
        n = {}
    if n.get("conversions"):
        parts.append("单位换算：" + "；".join(c.split("（")[0] for c in n["conversions"]))
    if n.get("unknown_columns"):
        parts.append(f"未映射的列 {len(n['unknown_columns'])} 个随原行保留")
    if n.get("updated"):
        parts.append(f"更正 {n['updated']} 行（原值留存）")
    if n.get("warnings"):
        parts.append(f"注意 {len(n['warnings'])} 条")
    return "；".join(parts) or None


def reasons_table(reasons: pd.DataFrame) -> str:
    if reasons.empty:
        return table_html(None, empty="隔离区为空", empty_hint="接入的数据均已通过校验。")
    view = reasons.assign(dataset=reasons["dataset"].map(dataset_label))
    return table_html(view, columns=["dataset", "reason", "rows"], labels={"rows": "行数"}, max_rows=50,
                      max_height="420px")


def reasons_overview(snap: HubSnapshot):
    """Quarantined rows per dataset and reason: the table, and a chart of the reasons."""
    if snap.reasons.empty:
        return layout.empty("隔离区为空", "所有接入的数据行都已通过校验并入库。")
    reason = snap.reasons["reason"].str.replace(r"第\s*\d+\s*行", "第 N 行", regex=True)  # one bar per kind
    per_reason = snap.reasons.groupby(reason)["rows"].sum().sort_values(ascending=False).head(12)
    fig = charts.bar_spec(per_reason, title="各隔离原因行数", unit="行", color=theme.COLORS["warn"])
    return layout.grid([layout.html(reasons_table(snap.reasons)), charts.interactive(fig)])


@lru_cache(maxsize=4096)  # per cell of the quarantine table: the header lookup cost 6 s on a year of rows
def _row_field(key: str, dataset: str | None):
    """The dataset's field a quarantined row's key stands for: the key itself (rows kept before
    issue 12 held field names), else the field the file's header names, else None."""
    ds = DATASETS.get(dataset) if dataset else None
    if ds is None:
        return None
    names = {f.name: f for f in ds.fields}
    if key in names:
        return names[key]
    from workbench.store.upload import auto_field

    return names.get(auto_field(dataset, key)[0])


def _row_items(data: dict, dataset: str | None, reason: str, detail: str) -> list[tuple[bool, str, str]]:
    """(plain, label, shown value) of a quarantined row's columns: the file's own order and
    headers (a key that is a field name gets the field's Chinese label), empty values as （空）,
    the columns the reason or its detail names first (plain=False)."""
    ds = DATASETS.get(dataset) if dataset else None
    fields = {f.name for f in ds.fields} if ds else set()
    why = f"{reason or ''} {detail or ''}"
    items = []
    for key, value in data.items():
        key = str(key)
        f = _row_field(key, dataset)
        label = column_label(key, dataset) if key in fields or not ds else key
        blank = value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == ""
        named = bool(why.strip()) and (f"“{key}”" in why or key in (reason or "") or label in why
                                       or (f is not None and f.label in why))
        shown = "（空）" if blank else show_value(dataset, f.name if f is not None else key, value)
        items.append((not named, label, shown))
    items.sort(key=lambda item: item[0])  # stable: the named columns first, the rest in file order
    return items


def row_preview(row_json, dataset: str | None = None, reason: str = "", limit: int = 400, detail: str = "",
                html: bool = True) -> str:
    """A quarantined row as 列=值；… (`_row_items`), the columns the reason names in bold (`html`;
    plain text otherwise), cut at `limit` characters."""
    try:
        data = json.loads(row_json) if isinstance(row_json, str) else dict(row_json or {})
    except (TypeError, ValueError):
        text = str(row_json)[:limit]
        return esc(text) if html else text
    if not isinstance(data, dict):
        text = str(data)[:limit]
        return esc(text) if html else text
    parts, used = [], 0
    for plain, label, value in _row_items(data, dataset, reason, detail):
        text = f"{label}={value}"
        if used + len(text) > limit and parts:
            parts.append("…")
            break
        parts.append(text if not html else esc(text) if plain else f"<b>{esc(text)}</b>")
        used += len(text) + 1
    return "；".join(parts)


def row_previews(rows: pd.DataFrame, *, limit: int = 400, html: bool = True) -> list[str]:
    """`row_preview` of each quarantined row of `rows` (row_json, dataset, reason[, detail])."""
    details = rows["detail"] if "detail" in rows else [""] * len(rows)
    return [row_preview(r, d, why, limit=limit, detail=det or "", html=html)
            for r, d, why, det in zip(rows["row_json"], rows["dataset"], rows["reason"], details)]


def quarantine_table(rows: pd.DataFrame, show_dataset: bool = True) -> str:
    if rows.empty:
        return table_html(None, empty="没有符合条件的隔离记录")
    preview = row_previews(rows)
    view = rows.assign(dataset=rows["dataset"].map(dataset_label), preview=preview,
                       quarantined_at=pd.to_datetime(rows["quarantined_at"]))
    if "detail" not in view:
        view["detail"] = None
    cols = ["quarantined_at", "dataset", "filename", "line", "reason", "detail", "preview"]
    if not show_dataset:
        cols.remove("dataset")
    return table_html(view, columns=cols, labels={"preview": "原始内容"},
                      wrap=("preview", "detail"),
                      html_columns=("preview",), numeric=("line",), formatters={"line": str},
                      max_rows=len(view), max_height="520px")


# ------------------------------------------------------------------ widgets

def kpis(snap: HubSnapshot):
    st, files, now = snap.status, snap.files, snap.now
    held = st[st["rows"] > 0]
    last_record = pd.to_datetime(st["last_ts"]).dropna()
    last_record = last_record[last_record <= now + pd.Timedelta(minutes=5)]  # forecasts lie ahead
    last_ingest = pd.to_datetime(st["last_ingest"]).dropna()
    quarantined = int(st["quarantined"].sum())
    failed = int(files["status"].isin(["failed", "interrupted"]).sum()) if not files.empty else 0
    departments = held["department"].nunique()
    return cards.kpi_row([
        cards.KPI("已汇聚数据集", f"{len(held)} / {len(st)}", note=f"来自 {departments} 个部门" if departments else "暂无数据",
                  tone="" if len(held) else "muted"),
        cards.KPI("记录总数", int(st["rows"].sum()), unit="条",
                  note=f"最新记录 {age_text(last_record.max(), now)}" if len(last_record) else "暂无记录"),
        cards.KPI("已接入文件", int(st["files"].sum()), unit="个",
                  note=f"最近接入 {age_text(last_ingest.max(), now)}" if len(last_ingest) else "暂无接入"),
        cards.KPI("隔离行数", quarantined, unit="行",
                  note=f"涉及 {snap.reasons['dataset'].nunique()} 个数据集" if quarantined else "无隔离数据",
                  tone="warn" if quarantined else ("ok" if len(files) else "muted")),
        cards.KPI("接入失败文件", failed, unit="个", note=f"最近 {len(files)} 个文件中" if len(files) else "暂无接入",
                  tone="bad" if failed else ("ok" if len(files) else "muted")),
    ])


def charts_row(snap: HubSnapshot):
    """Rows per dataset, and records per day over the last month."""
    held = snap.status[snap.status["rows"] > 0].sort_values("rows", ascending=False)
    if held.empty:
        return layout.empty("暂无数据", "数据中台还没有任何记录，图表将在接入数据后显示。")
    # interactive (values on hover, zoom), drawn by the browser: matplotlib's PNGs took most of the
    # page's time on a year of data
    height = int(max(360, min(28 * len(held) + 120, 520)))  # both charts alike, side by side
    sizes = charts.bar_spec(held.set_index("label")["rows"], title="各数据集记录数", unit="条", height=height)
    items = [charts.interactive(sizes)]
    if not snap.daily.empty:
        daily = snap.daily.rename(columns=dataset_label)
        days = len(daily)
        trend = charts.line_spec(daily, title=f"近 {days} 天每日记录数（按北京时间）", unit="条",
                                 height=height, max_series=6)
        items.append(charts.interactive(trend))
    else:
        items.append(layout.empty("暂无带时间的记录", "只有基础数据（网格、市场、食堂等），没有按时间记录的数据。"))
    return layout.grid(items)


def quarantine_explorer(snap: HubSnapshot, dataset: str | None = None, limit: int = 50):
    """Pick a dataset (and a reason) and see its quarantined rows: file, line, reason, content."""
    import ipywidgets as widgets

    reasons = snap.reasons
    why = rows_refusal(snap.who)
    if why:
        return layout.stack([layout.html(f'<div class="wb-note wb-readonly">{esc(why)}</div>')], "wb-quarantine")
    if reasons.empty:
        return layout.stack([])
    per_ds = reasons.groupby("dataset")["rows"].sum()
    names = [n for _, n in dataset_options(list(per_ds.index))]
    options = [("全部数据集", "")] + [(f"{dataset_label(n)}（{format_number(int(per_ds[n]))} 行）", n) for n in names]
    pick = widgets.Dropdown(options=options, value=dataset if dataset in per_ds.index else "",
                            description="数据集", layout=widgets.Layout(width="340px"))
    why = widgets.Dropdown(description="隔离原因", layout=widgets.Layout(width="420px"))
    rows = widgets.HTML(layout=widgets.Layout(width="100%"))
    for w in (pick, why):
        w.style.description_width = "64px"
        w.add_class("wb-select")

    def reason_options(name):
        sub = reasons if not name else reasons[reasons["dataset"] == name]
        sub = sub.groupby("reason")["rows"].sum().sort_values(ascending=False)
        return [("全部原因", "")] + [(f"{r}（{format_number(int(n))} 行）", r) for r, n in sub.items()]

    def show(*_):
        try:
            sample = quarantine_sample(pick.value or None, why.value or None, limit=limit)
            note = f'<div class="wb-note">显示最新的 {len(sample)} 行（时间为北京时间）</div>' if len(sample) else ""
            rows.value = quarantine_table(sample, show_dataset=not pick.value) + note
        except Exception as exc:  # shown on the page, not lost in a log
            rows.value = f'<div class="wb-empty wb-error"><b>加载失败</b>{esc(exc)}</div>'

    def on_dataset(change):
        why.unobserve(show, "value")
        why.options = reason_options(change["new"])
        why.value = ""
        why.observe(show, "value")
        show()

    why.options = reason_options(pick.value)
    why.value = ""
    pick.observe(on_dataset, "value")
    why.observe(show, "value")
    show()
    controls = widgets.HBox([pick, why])
    controls.add_class("wb-controls")
    return layout.stack([layout.note("逐行查看：选择数据集和隔离原因，查看被隔离的原始数据行（最新在前）。"), controls, rows],
                        "wb-quarantine")


__all__ = ["HubSnapshot", "prepare", "load", "records_per_day", "quarantine_sample", "freshness", "dataset_overview",
           "files_table", "reasons_table", "reasons_overview", "row_preview", "row_previews", "quarantine_table", "kpis", "charts_row",
           "quarantine_explorer"]


# ------------------------------------------------------------------ upload: preview, adjust, save, load

def _message(text: str, tone: str = "info", title: str = "") -> str:
    """A line for the person (not an error box: .wb-error is what the browser tests fail on)."""
    head = badge(title, tone) + " " if title else ""
    return f'<div class="wb-note wb-upload-msg wb-upload-{tone}">{head}{esc(text)}</div>'


def _bullets(title: str, items, tone: str = "") -> str:
    if not items:
        return ""
    lis = "".join(f"<li>{esc(i)}</li>" for i in items)
    return f'<div class="wb-upload-list"><b>{esc(title)}</b>{badge(str(len(items)), tone) if tone else ""}<ul>{lis}</ul></div>'


def summary_html(s) -> str:
    """An ingest summary (a preview or a load) as the page shows it: counts, conversions, columns
    kept with their rows, warnings, reasons, converted sample rows, the rows that would be quarantined."""
    from workbench.store import upload as hu

    f = hu.summary_frames(s)
    preview = s.preview is not None
    head = ("预览结果（尚未写入任何数据）" if preview else "接入结果") + f"：{s.filename}" + \
        (f"，配置 {s.profile}" if s.profile else "")
    counts = " · ".join(f"{r.item} <b>{esc(format_number(r.rows))}</b> 行" for r in f["counts"].itertuples())
    parts = [f'<div class="wb-upload-head"><b>{esc(head)}</b></div>', f'<div class="wb-upload-counts">{counts}</div>']
    if s.skipped:
        parts.append(_message("该文件此前已接入（内容相同），本次未重复入库。", "info"))
    parts.append(_bullets("单位换算", f["conversions"], "info"))
    if f["unknown"]:
        parts.append(f'<div class="wb-upload-list"><b>未映射的列（随原行保留，可查询）</b>{badge(str(len(f["unknown"])), "warn")}'
                     f'<div>{esc("、".join(f["unknown"]))}</div></div>')
    parts.append(_bullets("注意", f["warnings"], "warn"))
    if not f["reasons"].empty:
        parts.append('<div class="wb-upload-sub">隔离原因</div>')
        parts.append(table_html(f["reasons"], labels={"reason": "隔离原因", "rows": "行数"}, max_rows=20))
    if preview and not f["sample"].empty:
        parts.append('<div class="wb-upload-sub">换算后的样例行（时间为北京时间）</div>')
        parts.append(table_html(f["sample"], labels={c: str(c) for c in f["sample"].columns}, max_rows=5))
    if preview and not f["quarantine"].empty:
        parts.append('<div class="wb-upload-sub">将被隔离的样例行（原样保留文件中的每一列）</div>')
        raw = f["quarantine"]   # the file's own headers, as written (not the hub's labels)
        parts.append(table_html(raw, labels={c: str(c) for c in raw.columns}, wrap=("原因", "说明"), max_rows=5))
    return '<div class="wb-upload-summary">' + "".join(p for p in parts if p) + "</div>"


UPLOAD_CSS = """<style>
.wb-upload .wb-upload-msg { font-size: 13px; color: var(--wb-text); margin: 6px 2px; }
.wb-upload .wb-upload-bad { color: #b02a20; }
.wb-upload-adjust { background: #fff; border: 1px solid var(--wb-border); border-radius: var(--wb-radius);
  padding: 10px 14px; margin: 6px 0; }
.wb-map-row { align-items: center; border-bottom: 1px dashed var(--wb-border); }
.wb-map-col { font-family: ui-monospace, "Noto Sans Mono CJK SC", monospace; font-size: 13px; }
.wb-upload-summary { font-size: 13px; font-family: var(--wb-font); margin: 8px 0; }
.wb-upload-summary .wb-upload-head { font-size: 14px; color: var(--wb-primary-dark); margin-bottom: 4px; }
.wb-upload-summary .wb-upload-counts { margin: 4px 0 8px 0; }
.wb-upload-summary .wb-upload-sub { font-weight: 600; color: var(--wb-primary-dark); margin: 10px 0 4px 0; }
.wb-upload-list { margin: 4px 0; } .wb-upload-list ul { margin: 2px 0 2px 18px; padding: 0; }
.wb-upload-name { font-size: 13px; }
</style>"""


def upload_panel(dataset: str | None = None, who=None):
    """Upload a file, pick the dataset and a profile, preview what the hub would do, adjust the
    column mapping and the units, preview again, save the adjustment as a profile, load the file.
    Everything it computes comes from workbench.store.upload and workbench.store.ingest.

    As `who` (the signed-in user; None outside a page: the identity of workbench.access.current):
    a role that may not write data sees the controls disabled and the reason; a saved profile is
    audited under `who`."""
    import ipywidgets as widgets

    from workbench.store import ingest, profiles
    from workbench.store import upload as hu

    if who is None:
        from workbench.access import current

        who = current()
    refusal = upload_refusal(who)
    names = [n for _, n in dataset_options()]
    start = dataset if dataset in DATASETS else ("weather" if "weather" in names else names[0])
    state = {"path": None, "editor": None, "base": None, "saved": None}

    upload = widgets.FileUpload(accept=".csv,.txt,.tsv,.xlsx,.json", multiple=False, description="选择文件",
                                layout=widgets.Layout(width="160px"))
    upload.add_class("wb-upload-file")
    ds_pick = widgets.Dropdown(options=dataset_options(), value=start, description="数据集",
                               layout=widgets.Layout(width="300px"))
    prof_pick = widgets.Dropdown(description="接入配置", layout=widgets.Layout(width="330px"))
    tz = widgets.Text(description="时区", placeholder="Asia/Shanghai（城市默认）", layout=widgets.Layout(width="250px"))
    preview_btn = widgets.Button(description="预览", button_style="primary", icon="search",
                                 layout=widgets.Layout(width="100px"))
    delete_btn = widgets.Button(description="删除配置", icon="trash", layout=widgets.Layout(width="110px"),
                                tooltip="删除所选的已保存配置（随系统提供的配置不能删除）")
    for w in (ds_pick, prof_pick, tz):
        w.style.description_width = "64px"
        w.add_class("wb-select")
    picked = widgets.HTML()
    message = widgets.HTML()
    editor_box = widgets.VBox(layout=widgets.Layout(width="100%"))
    units_box = widgets.HBox(layout=widgets.Layout(width="100%", flex_flow="row wrap"))
    repreview_btn = widgets.Button(description="按调整重新预览", icon="refresh")
    result = widgets.HTML(layout=widgets.Layout(width="100%"))
    name = widgets.Text(description="配置名称", placeholder="如 nyc_airports（字母、数字、汉字）",
                        layout=widgets.Layout(width="360px"))
    label = widgets.Text(description="说明", placeholder="如 纽约三机场逐小时气象", layout=widgets.Layout(width="360px"))
    for w in (name, label):
        w.style.description_width = "64px"
    save_btn = widgets.Button(description="保存为配置", icon="save")
    load_btn = widgets.Button(description="正式接入", button_style="success", icon="upload")
    done = widgets.HTML(layout=widgets.Layout(width="100%"))
    adjust = widgets.VBox(layout=widgets.Layout(width="100%", display="none"))
    adjust.add_class("wb-upload-adjust")
    unit_picks: dict[str, widgets.Dropdown] = {}
    column_picks: dict[str, widgets.Dropdown] = {}

    def set_profiles(select: str = ""):
        opts = [("不使用配置（按表头识别）", "")] + hu.profile_options(ds_pick.value)
        prof_pick.unobserve(on_profile_pick, "value")
        prof_pick.options = opts
        prof_pick.value = select if select in [v for _, v in opts] else ""
        prof_pick.observe(on_profile_pick, "value")
        on_profile()

    def on_profile(*_):
        state["base"] = profiles.load(prof_pick.value) if prof_pick.value else None
        tz.value = (state["base"].timezone or "") if state["base"] else ""

    def on_profile_pick(*_):   # another profile picked: the adjustments made under the last one go
        on_profile()
        reset()

    def on_dataset(*_):
        set_profiles()
        reset()

    def reset(*_):
        state["editor"] = state["saved"] = None
        editor_box.children, units_box.children = (), ()
        adjust.layout.display = "none"
        result.value = done.value = message.value = ""

    def on_upload(change):
        if refused():
            return
        reset()
        files = upload.value
        if not files:
            return
        item = files[0]
        hu.discard_upload(state["path"])
        try:
            state["path"] = hu.keep_upload(item["name"], item["content"])
        except ValueError as exc:
            state["path"] = None
            message.value = _message(str(exc), "bad", "无法接收")
            return
        picked.value = f'<span class="wb-upload-name">已选择：<b>{esc(item["name"])}</b>（{format_number(item["size"])} 字节）</span>'

    def column_dropdowns(ed):
        options = hu.field_options(ds_pick.value)
        rows = []
        column_picks.clear()
        for r in ed.rows:
            dd = widgets.Dropdown(options=options, value=r.field, layout=widgets.Layout(width="300px"))
            dd.add_class("wb-select")
            dd.add_class("wb-map-pick")
            dd.observe(lambda *_: unit_dropdowns(), "value")
            column_picks[r.column] = dd
            name_html = widgets.HTML(f'<span class="wb-map-col" title="文件中的列名">{esc(r.column)}</span>',
                                     layout=widgets.Layout(width="200px"))
            conv = widgets.HTML(f'<span class="wb-map-unit">{badge("换算 " + r.conversion, "info") if r.conversion else ""}</span>')
            row = widgets.HBox([name_html, widgets.HTML("→", layout=widgets.Layout(width="24px")), dd, conv])
            row.add_class("wb-map-row")
            rows.append(row)
        editor_box.children = rows

    def unit_dropdowns():
        ed = state["editor"]
        chosen = {k: w.value for k, w in unit_picks.items()}
        mapped = {w.value for w in column_picks.values()}
        items = []
        unit_picks.clear()
        for f in hu.unit_fields(ds_pick.value):
            if f.name not in mapped:
                continue
            value = chosen.get(f.name) or (ed.units.get(f.name) if ed else None) or f.unit
            dd = widgets.Dropdown(options=hu.unit_options(f), value=value, description=f.label,
                                  layout=widgets.Layout(width="320px"))
            dd.style.description_width = "110px"
            dd.add_class("wb-select")
            dd.add_class("wb-unit-pick")
            unit_picks[f.name] = dd
            items.append(dd)
        units_box.children = items

    def show_editor(ed):
        state["editor"] = ed
        unit_picks.clear()
        column_dropdowns(ed)
        unit_dropdowns()
        adjust.layout.display = "flex"

    def draft(profile_name: str = ""):
        columns = {c: w.value for c, w in column_picks.items()}
        file_units = {f: w.value for f, w in unit_picks.items()}
        return hu.build_profile(ds_pick.value, columns, file_units, name=profile_name, label=label.value,
                                timezone=tz.value, base=state["base"])

    def run_preview(profile):
        done.value = ""
        message.value = _message("正在预览……", "info")
        try:
            s = ingest.ingest_file(ds_pick.value, state["path"], profile=profile, preview=True)
        except ingest.IngestError as exc:
            result.value = ""
            try:
                show_editor(hu.fallback_rows(ds_pick.value, state["path"], profile, exc.problem,
                                             getattr(exc, "mapping", None)))
                message.value = _message(exc.problem, "warn", "预览未完成") + \
                    _message("请在下方调整列映射或单位后点击“按调整重新预览”。", "info")
            except ingest.IngestError as inner:  # the header itself cannot be read: the first message says why
                adjust.layout.display = "none"
                message.value = (_message(exc.problem, "warn", "预览未完成")
                                 + _message(f"无法读取表头：{inner.problem}", "bad"))
            return
        show_editor(hu.editor_rows(ds_pick.value, s.mapping, profile))
        result.value = summary_html(s)
        message.value = _message(s.line(), "ok", "预览完成")   # last: the page is complete when it shows

    def on_preview(*_):
        if refused():
            return
        if not state["path"]:
            message.value = _message("请先点击“选择文件”上传一个 CSV、XLSX 或 JSON 文件。", "warn", "未选择文件")
            return
        base = state["base"]
        try:
            profile = base
            if tz.value.strip() != ((base.timezone or "") if base else ""):
                cols = dict(base.columns) if base else {}
                profile = hu.build_profile(ds_pick.value, cols, dict(base.units) if base else {},
                                           name=base.name if base else "", timezone=tz.value, base=base)
        except profiles.ProfileError as exc:
            message.value = _message(exc.problem, "bad", "配置有误")
            return
        run_preview(profile)

    def on_repreview(*_):
        try:
            profile = draft(base_name())
        except profiles.ProfileError as exc:
            message.value = _message(exc.problem, "bad", "映射有误")
            return
        run_preview(profile)

    def base_name() -> str:
        return state["saved"] or ""

    def refused() -> bool:
        if refusal:
            message.value = _message(refusal, "bad", "无权操作")
        return bool(refusal)

    def on_save(*_):
        if refused():
            return
        try:
            p = draft(name.value.strip())
            path = hu.save_profile(p, name.value, label.value, who=who)
        except profiles.ProfileError as exc:
            message.value = _message(exc.problem, "bad", "配置未保存")
            return
        state["saved"] = p.name
        set_profiles(select=p.name)
        message.value = _message(f"已保存配置“{p.name}”：{path}。以后接入同一来源的文件时可在“接入配置”中选择。",
                                 "ok", "已保存")

    def on_delete(*_):
        if refused():
            return
        if not prof_pick.value:
            message.value = _message("请先在“接入配置”中选择要删除的配置。", "warn", "未选择配置")
            return
        gone = prof_pick.value
        try:
            hu.delete_profile(gone, who=who)
        except profiles.ProfileError as exc:
            message.value = _message(exc.problem, "bad", "配置未删除")
            return
        set_profiles()
        reset()
        message.value = _message(f"已删除配置“{gone}”（记入审计日志）。", "ok", "已删除")

    def on_load(*_):
        if refused():
            return
        if not state["path"]:
            message.value = _message("请先上传文件并预览。", "warn", "未选择文件")
            return
        try:
            profile = draft(state["saved"] or "") if state["editor"] is not None else state["base"]
        except profiles.ProfileError as exc:
            message.value = _message(exc.problem, "bad", "映射有误")
            return
        load_btn.disabled = True
        message.value = _message("正在接入……", "info")
        try:
            s = ingest.ingest_file(ds_pick.value, state["path"], profile=profile, who=who)
        except ingest.IngestError as exc:
            message.value = _message(exc.problem, "bad", "接入失败")
            return
        finally:
            load_btn.disabled = False
        result.value = ""   # the preview's counts no longer hold: the load's own summary below
        done.value = summary_html(s) + _message("刷新本页即可在上方各表中看到新数据；被隔离的行在下方“隔离区”中逐行可查。", "info")
        message.value = _message(s.line(), "ok", "已接入")

    def guard(handler):
        """A click's unexpected failure shown on the page (a callback's traceback would be lost)."""
        def run(*args):
            try:
                handler(*args)
            except Exception as exc:  # noqa: BLE001 - shown, not swallowed
                message.value = _message(f"{type(exc).__name__}: {exc}", "bad", "操作失败")
        return run

    on_upload, on_preview, on_repreview, on_save, on_load, on_delete = (
        guard(on_upload), guard(on_preview), guard(on_repreview), guard(on_save), guard(on_load), guard(on_delete))
    upload.observe(on_upload, "value")
    ds_pick.observe(on_dataset, "value")
    prof_pick.observe(on_profile_pick, "value")
    preview_btn.on_click(on_preview)
    repreview_btn.on_click(on_repreview)
    save_btn.on_click(on_save)
    load_btn.on_click(on_load)
    delete_btn.on_click(on_delete)
    set_profiles()

    first = widgets.HBox([upload, ds_pick, prof_pick, delete_btn, tz, preview_btn])
    first.add_class("wb-controls")
    save_row = widgets.HBox([name, label, save_btn, load_btn])
    save_row.add_class("wb-controls")
    adjust.children = [
        layout.note("列映射：每一列对应数据集的哪个字段。未映射的列不会丢失，随原行保留、可查询。"),
        editor_box,
        layout.note("文件中的单位：数值按所选单位换算为入库单位。"),
        units_box,
        widgets.HBox([repreview_btn]),
        result,
        layout.note("确认无误后，可把本次调整保存为接入配置（同一来源的文件以后直接选用），再正式接入。"),
        save_row,
    ]
    locked = layout.lock([upload, ds_pick, prof_pick, delete_btn, tz, preview_btn, repreview_btn, name, label, save_btn,
                          load_btn],
                         refusal)
    panel = layout.stack([
        widgets.HTML(UPLOAD_CSS), locked,
        layout.note(f"上传部门报送的文件（CSV、XLSX、JSON，{hu.MAX_UPLOAD_BYTES >> 20} MB 以内；更大的文件请用 workbench ingest），"
                    "先预览：列映射、单位换算、将入库与隔离的行数，预览不写入任何数据。"),
        first, picked, message, adjust, done,
    ], "wb-upload")
    return panel


# ------------------------------------------------------------------ kept beside the rows: extra columns, corrections

def extras_table(dataset: str, limit: int = 50) -> str:
    """The newest records of a dataset that brought columns the hub has no field for."""
    from workbench.store import upload as hu

    rows, columns = hu.kept_extras(dataset, limit=limit)
    if rows.empty:
        return table_html(None, empty="没有随原行保留的列", empty_hint="该数据集接入的文件中，每一列都已对应到字段。")
    key = list(DATASETS[dataset].key) if dataset in DATASETS else []
    cols = [c for c in key if c in rows] + columns + ["filename", "line", "kept_at"]
    return table_html(rows, dataset=dataset, columns=cols, labels={c: c for c in columns},
                      numeric=("line",), formatters={"line": lambda v: DASH if pd.isna(v) else str(int(v))},
                      max_rows=limit, max_height="360px")


def corrections_table(dataset: str, limit: int = 50) -> str:
    """The newest corrections of a dataset: which record, when, from which file, old → new."""
    from workbench.store import upload as hu

    rows = hu.recent_corrections(dataset, limit=limit)
    if rows.empty:
        return table_html(None, empty="暂无更正记录", empty_hint="同一主键的记录再次报送且内容不同时，会更新该记录并在此留存原值。")
    return table_html(rows, columns=["corrected_at", "key", "filename", "changes"],
                      labels={"key": "记录主键", "changes": "更正内容（原值 → 新值）"},
                      wrap=("changes",), max_rows=limit, max_height="360px")


def kept_panel(dataset: str | None = None, limit: int = 50, who=None):
    """Pick a dataset and see what ingest kept beside its rows: the columns the hub has no field for
    (kept with their record, queryable) and the corrections with the values they replaced."""
    import ipywidgets as widgets

    from workbench.store import upload as hu

    why = rows_refusal(who)
    if why:
        return layout.stack([layout.html(f'<div class="wb-note wb-readonly">{esc(why)}</div>')], "wb-kept")

    counts = hu.kept_counts()
    if counts.empty:
        return layout.empty("暂无随原行保留的列或更正记录",
                            "文件中没有对应字段的列会随原行保留在这里；同一记录再次报送且内容不同时，原值也留存在这里。")
    options = [(f"{dataset_label(r.dataset)}（有保留列的记录 {format_number(r.extras)} 条，更正 {format_number(r.corrections)} 次）",
                r.dataset) for r in counts.itertuples()]
    names = [n for _, n in options]
    pick = widgets.Dropdown(options=options, value=dataset if dataset in names else names[0], description="数据集",
                            layout=widgets.Layout(width="520px"))
    pick.style.description_width = "64px"
    pick.add_class("wb-select")
    extras = widgets.HTML(layout=widgets.Layout(width="100%"))
    fixes = widgets.HTML(layout=widgets.Layout(width="100%"))

    def show(*_):
        try:
            extras.value = extras_table(pick.value, limit)
            fixes.value = corrections_table(pick.value, limit)
        except Exception as exc:  # noqa: BLE001 - shown on the page, not lost in a log
            extras.value = f'<div class="wb-empty wb-error"><b>加载失败</b>{esc(exc)}</div>'

    pick.observe(show, "value")
    show()
    controls = widgets.HBox([pick])
    controls.add_class("wb-controls")
    return layout.stack([controls,
                         layout.note(f"随原行保留的列（最新 {limit} 条记录；全部可用 workbench.store.ingest.extras 查询）："),
                         extras,
                         layout.note(f"更正记录（最新 {limit} 次，时间为北京时间）："),
                         fixes], "wb-kept")


__all__ += ["corrections_table", "extras_table", "kept_panel", "summary_html", "upload_panel", "upload_refusal",
            "rows_refusal", "WRITING_ROLES"]
