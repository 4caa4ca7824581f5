"""城市运行日报: the leaders' morning report, as data (notebooks/city_daily.ipynb renders it).

For one local day (default: yesterday):
- what happened: cases opened per department and alerts raised per department and category,
  each against the same weekday a week before;
- what is overdue at the day's end: open cases past their deadline, per department;
- the five items that need a decision, ranked by severity then by how long they are overdue:
  active red/orange weather warnings, overdue open major hazards, critical alerts that became no
  case, and the longest-overdue open cases;
- the department indicators (workbench.cockpit.indicators) of the 7 days ending that day;
- the sentences of the summary, in plain Chinese with numbers.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from workbench import clock
from workbench.cockpit import indicators as ind

RANK = {"红色预警": 0, "逾期重大隐患": 1, "严重告警未立案": 2, "橙色预警": 3, "超期案件": 4}


@dataclass
class DailyReport:
    day: dt.date
    data_until: pd.Timestamp | None
    cases: pd.DataFrame                 # department, today, last_week, change
    alerts: pd.DataFrame                # department, category, today, last_week, change
    overdue: pd.DataFrame               # department, overdue, longest_days
    decisions: pd.DataFrame             # rank, kind, title, department, district, days, why
    indicators: pd.DataFrame            # the week to `day`
    lines: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"城市运行日报（{self.day:%Y年%m月%d日}）"


def parse_day(day, today: dt.date | None = None) -> dt.date:
    """The report's day: a date or 'YYYY-MM-DD'; empty means yesterday. ValueError in Chinese."""
    if day in (None, "", "yesterday", "昨天"):
        return (today or clock.today()) - dt.timedelta(days=1)
    try:
        return pd.Timestamp(day).date()
    except (TypeError, ValueError):
        raise ValueError(f"参数 day 应为日期 YYYY-MM-DD（留空为昨天），收到 {day!r}") from None


def _compare(now: pd.Series, before: pd.Series, names: list[str]) -> pd.DataFrame:
    """Counts of the day against the same weekday a week before: names…, today, last_week, change."""
    parts = {k: v for k, v in (("today", now), ("last_week", before)) if len(v)}
    if not parts:
        return pd.DataFrame(columns=[*names, "today", "last_week", "change"])
    df = pd.concat(parts, axis=1).reindex(columns=["today", "last_week"]).fillna(0).astype(int)
    df.index.names = names
    df["change"] = df["today"] - df["last_week"]
    return df.sort_values(["today", "last_week"], ascending=False).reset_index()


def _alerts_between(eng, since, until) -> pd.DataFrame:
    from workbench.store import hub
    from workbench.store.schema import metadata

    a = metadata.tables["alerts"]
    return hub.query(sa.select(a.c.alert_id, a.c.ts, a.c.department, a.c.category, a.c.severity, a.c.level,
                               a.c.status, a.c.title, a.c.district)
                     .where(a.c.ts >= since.to_pydatetime(), a.c.ts < until.to_pydatetime()), eng=eng)


def decisions(frame: pd.DataFrame, hazards: pd.DataFrame, active: pd.DataFrame, uncased: pd.DataFrame,
              at: pd.Timestamp, n: int = 5) -> pd.DataFrame:
    """The `n` items that most need a decision at `at` (naive UTC), ranked by kind (RANK) then
    by days overdue. Pure: frame (cases.frame), hazards (hazard_id, district, hazard_type,
    deadline), active warnings (alert_id, level, category, title, district), uncased critical
    alerts (alert_id, ts, department, category, title, district)."""
    items = []
    for r in active.itertuples(index=False):
        if r.level in ("红色", "橙色"):
            items.append({"kind": f"{r.level}预警", "title": r.title, "department": getattr(r, "department", None),
                          "district": r.district or "全市", "days": 0.0,
                          "why": f"{r.level}{r.category}预警生效中，需统筹部署防御和巡查"})
    for r in hazards.itertuples(index=False):
        if pd.notna(r.deadline) and r.deadline < at:
            days = (at - r.deadline).total_seconds() / 86400
            items.append({"kind": "逾期重大隐患", "title": f"重大隐患 {r.hazard_id}（{r.hazard_type}）",
                          "department": "应急管理局", "district": r.district, "days": days,
                          "why": f"超过整改期限 {days:.0f} 天未销号，需督办责任单位"})
    for r in uncased.itertuples(index=False):
        items.append({"kind": "严重告警未立案", "title": r.title, "department": r.department, "district": r.district,
                      "days": (at - pd.Timestamp(r.ts)).total_seconds() / 86400,
                      "why": f"{r.category}严重告警尚未转为案件，需明确承办部门"})
    if len(frame):
        open_ = frame[(~frame["closed"].astype(bool) | (frame["closed_at"] >= at))
                      & frame["deadline"].notna() & (frame["deadline"] < at) & (frame["opened"] < at)]
        open_ = open_.assign(days=(at - open_["deadline"]).dt.total_seconds() / 86400).nlargest(n, "days")
        for r in open_.itertuples(index=False):
            items.append({"kind": "超期案件", "title": f"{r.type_label or r.case_type} {r.case_id}",
                          "department": r.department, "district": r.district, "days": r.days,
                          "why": f"超过处置时限 {r.days:.1f} 天仍未办结，需协调或督办"})
    cols = ["rank", "kind", "title", "department", "district", "days", "why"]
    if not items:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(items)
    df["order"] = df["kind"].map(RANK).fillna(9)
    df = df.sort_values(["order", "days"], ascending=[True, False]).head(n).reset_index(drop=True)
    df["rank"] = range(1, len(df) + 1)
    return df[cols]


def summary(r: "DailyReport") -> list[str]:
    """The report's sentences, plain Chinese with numbers."""
    def change(x: int) -> str:
        return "持平" if x == 0 else (f"增加 {x}" if x > 0 else f"减少 {-x}")

    lines = []
    n_new, n_before = int(r.cases["today"].sum()), int(r.cases["last_week"].sum())
    top = "、".join(f"{d} {t} 件" for d, t in zip(r.cases["department"].head(3), r.cases["today"].head(3)) if t)
    lines.append(f"{r.day:%m月%d日}全市新立案 {n_new} 件，较上周同日{change(n_new - n_before)} 件"
                 + (f"；立案较多的是{top}。" if top else "。"))
    a_new, a_before = int(r.alerts["today"].sum()), int(r.alerts["last_week"].sum())
    cats = "、".join(f"{c} {t} 条" for c, t in zip(r.alerts["category"].head(3), r.alerts["today"].head(3)) if t)
    lines.append(f"各部门发布预警告警 {a_new} 条，较上周同日{change(a_new - a_before)} 条" + (f"，主要是{cats}。" if cats else "。"))
    od = int(r.overdue["overdue"].sum()) if len(r.overdue) else 0
    if od:
        worst = r.overdue.iloc[0]
        lines.append(f"截至当日 24 时，超期未办结案件 {od} 件，其中{worst['department']} {int(worst['overdue'])} 件最多，"
                     f"最长已超期 {worst['longest_days']:.0f} 天。")
    else:
        lines.append("截至当日 24 时，没有超期未办结的案件。")
    city = r.indicators[r.indicators["department"] == ind.CITY]
    if len(city) and city.iloc[0]["due"]:
        c = city.iloc[0]
        pct = lambda v: "—" if pd.isna(v) else f"{100 * v:.1f}%"  # noqa: E731
        lines.append(f"近 7 天全市应结案 {int(c['due'])} 件，结案率 {pct(c['closed_rate'])}，按期结案率 "
                     f"{pct(c['on_time_rate'])}，综合指标值 {'—' if pd.isna(c['score']) else format(c['score'], '.1f')} 分。")
    lines.append(f"需要决策的事项 {len(r.decisions)} 项，见下表。" if len(r.decisions) else "今日没有需要决策的事项。")
    return lines


def report(day=None, *, eng=None, now=None) -> DailyReport:
    """The report for local `day` (default yesterday)."""
    from workbench import alerts, cases
    from workbench.cockpit import overview as ov
    from workbench.store import hub

    eng = eng or hub.engine()
    now = clock.now() if now is None else pd.Timestamp(now)
    d = parse_day(day, clock.local_day(now).date())
    since, until = clock.day_bounds(d)
    before_since, before_until = clock.day_bounds(d - dt.timedelta(days=7))
    frame = cases.frame(eng)
    frame["department"] = frame["department"].fillna(ind.UNASSIGNED)

    def opened(s, u):
        return frame[(frame["opened"] >= s) & (frame["opened"] < u)].groupby("department").size()

    case_cmp = _compare(opened(since, until), opened(before_since, before_until), ["department"])
    a_now, a_before = _alerts_between(eng, since, until), _alerts_between(eng, before_since, before_until)
    keys = ["department", "category"]
    alert_cmp = _compare(a_now.groupby(keys).size() if len(a_now) else pd.Series(dtype=int),
                         a_before.groupby(keys).size() if len(a_before) else pd.Series(dtype=int), keys)
    at = until
    late = frame[(~frame["closed"].astype(bool) | (frame["closed_at"] >= at)) & frame["deadline"].notna()
                 & (frame["deadline"] < at) & (frame["opened"] < at)]
    if len(late):
        late = late.assign(days=(at - late["deadline"]).dt.total_seconds() / 86400)
        overdue = late.groupby("department").agg(overdue=("case_id", "size"), longest_days=("days", "max"))
        overdue = overdue.sort_values("overdue", ascending=False).reset_index()
    else:
        overdue = pd.DataFrame(columns=["department", "overdue", "longest_days"])
    hazards = ov._hazards(eng, at)
    from workbench.store.schema import metadata

    a = metadata.tables["alerts"]
    active = hub.query(sa.select(a.c.alert_id, a.c.level, a.c.category, a.c.title, a.c.district, a.c.department)
                       .where(a.c.status == alerts.ACTIVE, a.c.level.isnot(None), a.c.ts < at.to_pydatetime()), eng=eng)
    crit = hub.query(sa.select(a.c.alert_id, a.c.ts, a.c.department, a.c.category, a.c.title, a.c.district, a.c.subject)
                     .where(a.c.status == alerts.ACTIVE, a.c.severity == "critical", a.c.level.is_(None),
                            a.c.ts < at.to_pydatetime()), eng=eng)
    uncased = crit[~crit["alert_id"].isin(set(ov.alert_cases(eng, crit)["alert_id"]))] if len(crit) else crit
    week_since = clock.day_bounds(d - dt.timedelta(days=6))[0]
    # the cases the week's evaluation looks at (opened or due in it): their history markers only
    wk = frame[frame["opened"].between(week_since, until, inclusive="left")
               | frame["deadline"].between(week_since, until, inclusive="left")]
    week = ind.indicators(wk, week_since, until, marks=ind.history_marks(eng, cases_of=wk))
    r = DailyReport(day=d, data_until=ov.data_until(eng, now), cases=case_cmp, alerts=alert_cmp, overdue=overdue,
                    decisions=decisions(frame, hazards, active, uncased, at), indicators=week)
    r.lines = summary(r)
    return r


__all__ = ["DailyReport", "RANK", "decisions", "parse_day", "report", "summary"]
