"""The hub report's figures (数据中台日报/周报), as data: notebooks/hub_report.ipynb renders them.

For a period of whole Beijing days (workbench.reports.period) and the period of as many days
before it:
- records per dataset (by each dataset's own time field) in both periods, and per day;
- files taken in (done / failed) and rows quarantined in both periods, quarantine reasons;
- what needs a decision: a dataset that stopped (records last period, none now), one whose
  records fell by half or more, files that failed, a dataset with 5 %+ of its rows quarantined;
- the summary's sentences in plain Chinese with those numbers.

Reads the hub through workbench.store.hub only; no widgets, no printing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from workbench import clock
from workbench.reports import Period, change_text
from workbench.store import hub
from workbench.store.schema import DATASETS, ingest_files, quarantine

DROP = 0.5            # records at or below half of the previous period: a fall worth a decision
QUARANTINE_SHARE = 0.05


@dataclass
class HubDigest:
    period: Period
    previous: Period
    datasets: pd.DataFrame      # dataset, label, department, records, records_before, change, quarantined,
    #                             quarantined_before, files, files_failed
    daily: pd.DataFrame         # index day (every day of the period), one column per dataset label
    files: pd.DataFrame         # the period's files: received_at, dataset, filename, status, loaded, quarantined, message
    reasons: pd.DataFrame       # dataset, label, reason, rows (the period's quarantine)
    totals: dict                # records, records_before, files, files_before, files_failed, quarantined,
    #                             quarantined_before, loaded
    examples: pd.DataFrame = None  # the period's latest quarantined rows (EXAMPLES): quarantined_at (Beijing),
    #                                dataset, label, filename, line, reason, detail, row_json (masked)
    decisions: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _label(name: str) -> str:
    return DATASETS[name].label if name in DATASETS else name


def records_by_day(start, end, eng=None) -> pd.DataFrame:
    """Records per dataset and Beijing day with time field in [start, end) (naive UTC):
    columns dataset, day (date), rows."""
    eng = eng or hub.engine()
    dialect = hub.backend(eng)
    selects = []
    for ds in DATASETS.values():
        if not ds.ts_field:
            continue
        ts = ds.table.c[ds.ts_field]
        day = clock.local_day_sql(ts, dialect)
        selects.append(sa.select(sa.literal(ds.name).label("dataset"), day.label("day"), sa.func.count().label("rows"))
                       .where(ts >= pd.Timestamp(start).to_pydatetime(), ts < pd.Timestamp(end).to_pydatetime())
                       .group_by(day))
    df = hub.query(sa.union_all(*selects), eng=eng) if selects else pd.DataFrame()
    if df.empty:
        return pd.DataFrame({"dataset": pd.Series(dtype=str), "day": pd.Series(dtype="datetime64[ns]"),
                             "rows": pd.Series(dtype=int)})
    df["day"] = pd.to_datetime(df["day"].astype(str))
    df["rows"] = df["rows"].astype(int)
    return df


def _files(since, until, eng) -> pd.DataFrame:
    t = ingest_files
    return hub.query(sa.select(t.c.received_at, t.c.dataset, t.c.filename, t.c.status, t.c.loaded, t.c.quarantined,
                               t.c.message)
                     .where(t.c.received_at >= since, t.c.received_at < until).order_by(t.c.received_at), eng=eng)


def _quarantined(since, until, eng) -> pd.DataFrame:
    t = quarantine
    return hub.query(sa.select(t.c.dataset, t.c.reason, sa.func.count().label("rows"))
                     .where(t.c.quarantined_at >= since, t.c.quarantined_at < until)
                     .group_by(t.c.dataset, t.c.reason), eng=eng)


EXAMPLES = 30   # quarantined rows a report lists (the latest of the period), for the senders to correct


def _examples(since, until, eng, limit: int = EXAMPLES) -> pd.DataFrame:
    """The period's latest quarantined rows as kept (personal data masked at ingest)."""
    t = quarantine
    df = hub.query(sa.select(t.c.quarantined_at, t.c.dataset, t.c.filename, t.c.line, t.c.reason, t.c.detail,
                             t.c.row_json)
                   .where(t.c.quarantined_at >= since, t.c.quarantined_at < until)
                   .order_by(t.c.quarantined_at.desc(), t.c.id.desc()).limit(limit), eng=eng)
    if len(df):
        df = df.assign(label=df["dataset"].map(_label),
                       quarantined_at=clock.to_local(pd.to_datetime(df["quarantined_at"])))
    return df


def digest(period: Period, eng=None) -> HubDigest:
    """The hub report of `period` against the period before it."""
    eng = eng or hub.engine()
    prev = period.previous()
    by_day = records_by_day(prev.start_utc, period.end_utc, eng=eng)
    first = pd.Timestamp(period.first_day)
    now_part = by_day[by_day["day"] >= first]
    before_part = by_day[by_day["day"] < first]
    files_now, files_before = _files(period.start_utc, period.end_utc, eng), _files(prev.start_utc, prev.end_utc, eng)
    q_now, q_before = _quarantined(period.start_utc, period.end_utc, eng), _quarantined(prev.start_utc, prev.end_utc, eng)

    names = list(DATASETS)
    ds = pd.DataFrame({"dataset": names, "label": [_label(n) for n in names],
                       "department": [DATASETS[n].department for n in names]}).set_index("dataset")
    ds["records"] = now_part.groupby("dataset")["rows"].sum()
    ds["records_before"] = before_part.groupby("dataset")["rows"].sum()
    ds["quarantined"] = q_now.groupby("dataset")["rows"].sum() if len(q_now) else 0
    ds["quarantined_before"] = q_before.groupby("dataset")["rows"].sum() if len(q_before) else 0
    ds["files"] = files_now[files_now["status"] == "done"].groupby("dataset").size() if len(files_now) else 0
    ds["files_failed"] = files_now[files_now["status"] == "failed"].groupby("dataset").size() if len(files_now) else 0
    ds["loaded"] = files_now.groupby("dataset")["loaded"].sum() if len(files_now) else 0
    ds["file_quarantined"] = files_now.groupby("dataset")["quarantined"].sum() if len(files_now) else 0
    ds = ds.fillna(0)
    for c in ("records", "records_before", "quarantined", "quarantined_before", "files", "files_failed", "loaded",
              "file_quarantined"):
        ds[c] = ds[c].astype(int)
    ds["change"] = ds["records"] - ds["records_before"]
    ds = ds.reset_index()
    active = ds[(ds["records"] + ds["records_before"] + ds["quarantined"] + ds["files"] + ds["files_failed"]) > 0]
    active = active.sort_values(["records", "records_before"], ascending=False).reset_index(drop=True)

    days = pd.date_range(first, pd.Timestamp(period.last_day), freq="D", name="day")
    daily = (now_part.pivot_table(index="day", columns="dataset", values="rows", aggfunc="sum", fill_value=0)
             .reindex(days, fill_value=0) if len(now_part) else pd.DataFrame(index=days))
    daily = daily.rename(columns=_label).astype(int)

    reasons = q_now.assign(label=q_now["dataset"].map(_label)).sort_values("rows", ascending=False) \
        .reset_index(drop=True) if len(q_now) else pd.DataFrame(columns=["dataset", "reason", "rows", "label"])
    totals = {
        "records": int(ds["records"].sum()), "records_before": int(ds["records_before"].sum()),
        "files": int((files_now["status"] == "done").sum()) if len(files_now) else 0,
        "files_failed": int((files_now["status"] == "failed").sum()) if len(files_now) else 0,
        "files_before": int((files_before["status"] == "done").sum()) if len(files_before) else 0,
        "quarantined": int(q_now["rows"].sum()) if len(q_now) else 0,
        "quarantined_before": int(q_before["rows"].sum()) if len(q_before) else 0,
        "loaded": int(files_now["loaded"].sum()) if len(files_now) else 0,
    }
    if len(files_now):
        files_now = files_now.assign(label=files_now["dataset"].map(_label),
                                     received_at=clock.to_local(pd.to_datetime(files_now["received_at"])))
    d = HubDigest(period, prev, active, daily, files_now, reasons, totals,
                  examples=_examples(period.start_utc, period.end_utc, eng))
    d.decisions = decisions(d)
    d.lines = summary(d)
    return d


def decisions(d: HubDigest) -> list[str]:
    """What needs a decision this period, most serious first."""
    out = []
    ds = d.datasets
    stopped = ds[(ds["records"] == 0) & (ds["records_before"] > 0)]
    for r in stopped.itertuples():
        out.append(f"{r.label}本期没有新记录（上期 {r.records_before:,} 条）：请{r.department or '数据提供部门'}确认数据源是否中断。")
    fell = ds[(ds["records"] > 0) & (ds["records_before"] > 0) & (ds["records"] <= DROP * ds["records_before"])]
    for r in fell.itertuples():
        out.append(f"{r.label}本期记录 {r.records:,} 条，仅为上期的 {r.records / r.records_before:.0%}："
                   f"请{r.department or '数据提供部门'}说明原因。")
    failed = ds[ds["files_failed"] > 0]
    for r in failed.itertuples():
        out.append(f"{r.label}有 {r.files_failed} 个文件接入失败：需数据提供部门修正后重新提供。")
    offered = ds["loaded"] + ds["file_quarantined"]
    share = (ds["file_quarantined"] / offered.where(offered > 0)).fillna(0)
    for r, s in zip(ds.itertuples(), share):
        if s >= QUARANTINE_SHARE and r.file_quarantined >= 10:
            out.append(f"{r.label}本期接入的数据行有 {s:.1%}（{r.file_quarantined:,} 行）被隔离：需与数据提供部门核对格式和口径。")
    return out


def summary(d: HubDigest) -> list[str]:
    """The summary's sentences: the numbers and their change against the previous period."""
    t = d.totals
    lines = [f"本期数据中台新增记录 {t['records']:,} 条（按记录发生时间计），"
             f"{change_text(t['records'], t['records_before'], '条')}（上期 {t['records_before']:,} 条）。"]
    top = d.datasets[d.datasets["records"] > 0].head(3)
    if len(top):
        lines.append("记录最多的数据集：" + "、".join(f"{r.label} {r.records:,} 条" for r in top.itertuples()) + "。")
    lines.append(f"接入文件 {t['files']} 个" + (f"，另有 {t['files_failed']} 个接入失败" if t["files_failed"] else "")
                 + f"，{change_text(t['files'], t['files_before'], '个')}。")
    q = f"隔离数据行 {t['quarantined']:,} 行，{change_text(t['quarantined'], t['quarantined_before'], '行')}"
    if len(d.reasons):
        r0 = d.reasons.iloc[0]
        q += f"；最多的原因是“{r0['reason']}”（{r0['label']} {int(r0['rows']):,} 行）"
    lines.append(q + "。")
    return lines


__all__ = ["HubDigest", "digest", "decisions", "records_by_day", "summary"]
