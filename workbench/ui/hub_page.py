"""The hub dashboard (数据中台): what the hub holds, what came in, what was quarantined.

`load()` reads one snapshot through workbench.store.hub; the other functions turn that
snapshot into display tables and widgets. dashboards/hub.ipynb only calls them.
"""
from __future__ import annotations

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
STATUS_TONE = {"done": "ok", "running": "info", "failed": "bad", "skipped": ""}


@dataclass
class HubSnapshot:
    now: pd.Timestamp          # naive UTC
    status: pd.DataFrame       # hub.dataset_status()
    files: pd.DataFrame        # hub.ingest_log(): newest first
    reasons: pd.DataFrame      # hub.quarantine_reasons()
    daily: pd.DataFrame        # records_per_day(): index day (Beijing), one column per dataset

    @property
    def empty(self) -> bool:
        return int(self.status["rows"].sum()) == 0 and self.files.empty and self.reasons.empty


def prepare() -> None:
    """Open the hub ahead of the request (preheated kernels): engine, schema check, pool."""
    hub.engine()


def load(files: int = 30, days: int = 30, now=None) -> HubSnapshot:
    """One consistent read of the hub for the page."""
    now = utc_now() if now is None else pd.Timestamp(now)
    status = hub.dataset_status()
    log = hub.ingest_log(limit=files)
    for col in ("received_at", "finished_at"):
        if col in log:
            log[col] = pd.to_datetime(log[col])
    return HubSnapshot(now=now, status=status, files=log, reasons=hub.quarantine_reasons(),
                       daily=records_per_day(status, days=days, now=now))


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
        status_badge=log["status"].map(lambda s: badge(INGEST_STATUS.get(s, s), STATUS_TONE.get(s, ""))),
    )
    return table_html(
        view,
        columns=["when", "filename", "dataset", "encoding", "rows_read", "loaded", "quarantined", "duplicates",
                 "status_badge", "message"],
        labels={"when": "接入时间", "status_badge": "状态"},
        formatters={"when": format_time,
                    "encoding": lambda v: DASH if v is None or pd.isna(v) else str(v).upper()},
        html_columns=("status_badge",), wrap=("message",), max_rows=len(view), max_height="480px",
    )


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
    fig = charts.bar_chart(per_reason, title="各隔离原因行数", xlabel="行数", color=theme.COLORS["warn"])
    return layout.grid([layout.html(reasons_table(snap.reasons)), charts.chart(fig)])


def row_preview(row_json, dataset: str | None = None, reason: str = "", limit: int = 140) -> str:
    """A quarantined row as HTML: 列=值；… with the dataset's Chinese column labels, the
    columns the reason names first and in bold, empty values as （空）, cut at `limit` chars."""
    try:
        data = json.loads(row_json) if isinstance(row_json, str) else dict(row_json or {})
    except (TypeError, ValueError):
        return esc(str(row_json)[:limit])
    if not isinstance(data, dict):
        return esc(str(data)[:limit])
    items = []
    for key, value in data.items():
        label = column_label(str(key), dataset)
        blank = value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == ""
        named = bool(reason) and any(n and n in reason for n in (label, str(key)))
        items.append((not named, label, "（空）" if blank else show_value(dataset, str(key), value)))
    items.sort(key=lambda item: item[0])  # stable: the named columns first, the rest in file order
    parts, used = [], 0
    for plain, label, value in items:
        text = f"{label}={value}"
        if used + len(text) > limit and parts:
            parts.append("…")
            break
        parts.append(esc(text) if plain else f"<b>{esc(text)}</b>")
        used += len(text) + 1
    return "；".join(parts)


def quarantine_table(rows: pd.DataFrame, show_dataset: bool = True) -> str:
    if rows.empty:
        return table_html(None, empty="没有符合条件的隔离记录")
    preview = [row_preview(r, d, why) for r, d, why in zip(rows["row_json"], rows["dataset"], rows["reason"])]
    view = rows.assign(dataset=rows["dataset"].map(dataset_label), preview=preview,
                       quarantined_at=pd.to_datetime(rows["quarantined_at"]))
    if "detail" not in view:
        view["detail"] = None
    cols = ["quarantined_at", "dataset", "filename", "line", "reason", "detail", "preview"]
    if not show_dataset:
        cols.remove("dataset")
    return table_html(view, columns=cols, labels={"preview": "原始内容", "detail": "问题值"},
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
    failed = int((files["status"] == "failed").sum()) if not files.empty else 0
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
    height = max(3.6, min(0.28 * len(held) + 1.4, 5.2))  # both charts alike, side by side
    sizes = charts.bar_chart(held.set_index("label")["rows"], title="各数据集记录数", xlabel="记录数（条）",
                             height=height)
    items = [charts.chart(sizes)]
    if not snap.daily.empty:
        daily = snap.daily.rename(columns=dataset_label)
        days = len(daily)
        trend = charts.line_chart(daily, title=f"近 {days} 天每日记录数（按北京时间）", ylabel="记录数（条）",
                                  height=height, max_series=6)
        items.append(charts.chart(trend))
    else:
        items.append(layout.empty("暂无带时间的记录", "只有基础数据（网格、市场、食堂等），没有按时间记录的数据。"))
    return layout.grid(items)


def quarantine_explorer(snap: HubSnapshot, dataset: str | None = None, limit: int = 50):
    """Pick a dataset (and a reason) and see its quarantined rows: file, line, reason, content."""
    import ipywidgets as widgets

    reasons = snap.reasons
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
           "files_table", "reasons_table", "reasons_overview", "row_preview", "quarantine_table", "kpis", "charts_row",
           "quarantine_explorer"]
