"""城市运行总览: everything the city overview shows, as data (no widgets).

`load(params)` reads the hub once for a period and, optionally, one district:

- per department, the GB/T 30428.4-style indicators (workbench.cockpit.indicators) over every
  case store (workbench.cases.frame);
- canteen compliance: critical and other kitchen violations per canteen in the period and the
  share of the period's canteen rectification cases already closed (cases of type
  `canteen_rectification`; where none are held yet, the violations' own 已整改/已复核 status);
- the market positive rate: positive rapid tests / rapid tests in the period;
- active weather warnings by level (alerts with a colour level, status 生效中);
- open major hazards (隐患等级 重大, not yet verified), and how many of them are overdue;
- per district: open cases, overdue open cases, open major hazards, active alerts (the map);
- the newest alerts of every department with the case(s) each became (the `alert_id` of
  every case store that has one: cases, city_events);
- 数据截至: the newest record time in the hub that is not in the future (forecasts are).

The indicators read the cases opened from LOOKBACK_DAYS (45) before the period to its end (a
case opened earlier that falls due in the period is left out) that count for the period (opened
or due in it; `cases.frame(period=…)` filters in the database), and the history marks of those
cases only (by case id); open and overdue cases are counted in SQL over every case (a store's
open rows' table where it keeps one), so a year of cases costs a few aggregate queries, not a read.
The evaluation of a period that has ended is kept for an hour (`evaluation`, workbench.store.kept):
at city scale reading the period's cases is most of the overview, and a whole past period's cases
change little; the page says when it was computed.

The period is whole local days [start, end]. By default: the 7 full days up to yesterday, or
up to the hub's last day of data when that is earlier (a hub loaded from files of the past
would otherwise show an empty week). Bad parameters are not errors: they fall back to the
default and say so (`Filters.problems`, in Chinese).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import sqlalchemy as sa

from workbench import clock, geo
from workbench.cockpit import indicators as ind

DEFAULT_DAYS = 7
LOOKBACK_DAYS = 45              # cases opened this long before the period may still fall due in it
MAX_DAYS = 366
FEED = 12                       # alerts in the feed
CANTEEN_CASE_TYPE = "canteen_rectification"
CANTEEN_FIXED = ("rectified", "verified")


class HubUnreachable(Exception):
    """The hub cannot be read (database down, file missing or locked); `problem` in Chinese."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.problem = "暂时无法连接数据中台，页面显示的数据可能不是最新的。请稍后刷新，或联系城市数智中心值班人员。"
        self.detail = detail


# ------------------------------------------------------------------ filters

@dataclass(frozen=True)
class Filters:
    start: dt.date               # first local day, inclusive
    end: dt.date                 # last local day, inclusive
    district: str | None = None
    problems: tuple[str, ...] = ()
    default: bool = True         # the period is the default one

    @property
    def since(self) -> pd.Timestamp:
        return clock.day_bounds(self.start, self.end)[0]

    @property
    def until(self) -> pd.Timestamp:
        return clock.day_bounds(self.start, self.end)[1]

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def text(self) -> str:
        where = self.district or "全市"
        return f"{where} · {self.start:%Y-%m-%d} 至 {self.end:%Y-%m-%d}（{self.days} 天）"

    def query(self, **changes) -> str:
        """The query string of these filters (for links), with `changes` applied (None drops a key)."""
        q = {"start": f"{self.start:%Y-%m-%d}", "end": f"{self.end:%Y-%m-%d}", "district": self.district}
        q.update(changes)
        return urlencode({k: v for k, v in q.items() if v})


def default_period(data_until=None, today: dt.date | None = None, days: int = DEFAULT_DAYS) -> tuple[dt.date, dt.date]:
    """The `days` full local days ending yesterday, or the hub's last day of data if earlier."""
    today = today or clock.today()
    end = today - dt.timedelta(days=1)
    if data_until is not None and not pd.isna(data_until):
        end = min(end, clock.local_day(pd.Timestamp(data_until)).date())
    return end - dt.timedelta(days=days - 1), end


def parse_filters(params: Mapping[str, str] | None, data_until=None, today: dt.date | None = None) -> Filters:
    """Filters from a page's query string (start, end as YYYY-MM-DD; district as name, short name
    or adcode). What cannot be understood falls back to the default, with a note."""
    params = dict(params or {})
    problems = []
    d_start, d_end = default_period(data_until, today)
    district = None
    raw = (params.get("district") or "").strip()
    if raw and raw not in ("全市", "all"):
        found = geo.find(raw)
        if found is None:
            problems.append(f"区县“{raw}”不在株洲市，已显示全市")
        else:
            district = found.name

    def day(key):
        v = (params.get(key) or "").strip()
        if not v:
            return None
        try:
            return pd.Timestamp(v).date()
        except (ValueError, TypeError):
            problems.append(f"日期“{v}”无法识别（应为 YYYY-MM-DD），已使用默认统计期")
            return False

    s, e = day("start"), day("end")
    if s is False or e is False or (s is None and e is None):
        return Filters(d_start, d_end, district, tuple(problems), True)
    if s is None:
        s = e - dt.timedelta(days=DEFAULT_DAYS - 1)
    if e is None:
        e = min(s + dt.timedelta(days=DEFAULT_DAYS - 1), (today or clock.today()))
    if e < s:
        problems.append("结束日期早于开始日期，已对调")
        s, e = e, s
    if (e - s).days + 1 > MAX_DAYS:
        problems.append(f"统计期最长 {MAX_DAYS} 天，已截取最后 {MAX_DAYS} 天")
        s = e - dt.timedelta(days=MAX_DAYS - 1)
    return Filters(s, e, district, tuple(problems), False)


# ------------------------------------------------------------------ links to the departments

@lru_cache(maxsize=1)
def _type_dashboards() -> dict[str, str]:
    """case type → the dashboard of the department that declares it (registry; no imports)."""
    import yaml

    from workbench import registry

    out = {}
    for d in registry.departments():
        if d.case_types and d.dashboard and d.case_types.is_file():
            for name in (yaml.safe_load(d.case_types.read_text(encoding="utf-8")) or {}):
                out[str(name)] = d.dashboard
    return out


def dashboard_of(name_or_agency: str | None) -> str | None:
    """The dashboard notebook of a department, by name (market), label or agency (应急管理局)."""
    from workbench import registry

    if not name_or_agency:
        return None
    for d in registry.departments():
        if name_or_agency in (d.name, d.label, d.agency) and d.dashboard:
            return d.dashboard
    return None


def alert_dashboard(category: str | None, department: str | None) -> str | None:
    from workbench import registry

    owner = registry.registry.alert_categories().get(category or "")
    return dashboard_of(owner) or dashboard_of(department)


def link(dashboard: str | None, filters: Filters, **extra) -> str | None:
    """/voila/render/<dashboard>?district=…&start=…&end=… (the same filter on the department's page)."""
    if not dashboard:
        return None
    return f"/voila/render/{dashboard}?{filters.query(**extra)}"


# ------------------------------------------------------------------ the snapshot

@dataclass
class Overview:
    now: pd.Timestamp                    # naive UTC, when read
    data_until: pd.Timestamp | None      # 数据截至 (naive UTC)
    filters: Filters
    indicators: pd.DataFrame             # indicators.COLUMNS + dashboard, 全市 last
    kpis: dict = field(default_factory=dict)
    districts: pd.DataFrame = field(default_factory=pd.DataFrame)  # district, adcode, open, overdue, hazards, alerts
    feed: pd.DataFrame = field(default_factory=pd.DataFrame)       # newest alerts with their cases
    warnings: pd.DataFrame = field(default_factory=pd.DataFrame)   # level, n (active weather warnings)
    seconds: float = 0.0                 # time the read took
    evaluated: pd.Timestamp | None = None  # when the department evaluation was computed (naive UTC; kept up to an hour)

    @property
    def empty(self) -> bool:
        return self.data_until is None

    def city(self) -> dict:
        """The 全市 row of the indicators as a dict (counts 0 and rates NaN when no case)."""
        t = self.indicators[self.indicators["department"] == ind.CITY]
        if len(t):
            return t.iloc[0].to_dict()
        return {c: (np.nan if c.endswith("rate") or c == "score" else 0) for c in ind.COLUMNS}


def data_until(eng, now=None) -> pd.Timestamp | None:
    """The newest record time of the hub that is not in the future (None: no timed record)."""
    from workbench.store import hub
    from workbench.store.schema import DATASETS

    now = clock.now() if now is None else pd.Timestamp(now)
    sel = []
    for ds in DATASETS.values():
        # the steps staff take now (a click on the board, a lift) are not data about the city
        if ds.ts_field and not ds.name.endswith("_history"):
            c = ds.table.c[ds.ts_field]
            sel.append(sa.select(sa.func.max(c).label("ts")).where(c <= now.to_pydatetime()))
    df = hub.query(sa.union_all(*sel), eng=eng)
    ts = pd.to_datetime(df["ts"]).max() if len(df) else pd.NaT
    return None if pd.isna(ts) else pd.Timestamp(ts)


def _count(eng, stmt) -> int:
    from workbench.store import hub

    df = hub.query(stmt, eng=eng)
    return int(df.iloc[0, 0] or 0) if len(df) else 0


def _dt(x: pd.Timestamp):
    return pd.Timestamp(x).to_pydatetime()


def _canteen(eng, f: Filters, rectification: tuple[int, int]) -> dict:
    """Kitchen violations of the period per canteen, and of the period's rectification cases
    (`rectification`: opened, of them closed; Evaluation) how many are closed."""
    from workbench.store.schema import metadata

    v, c = metadata.tables["canteen_violations"], metadata.tables["canteens"]
    where = [v.c.ts >= _dt(f.since), v.c.ts < _dt(f.until)]
    cwhere = []
    if f.district:
        where.append(v.c.district == f.district)
        cwhere.append(c.c.district == f.district)
    violations = _count(eng, sa.select(sa.func.count()).select_from(v).where(*where))
    critical = _count(eng, sa.select(sa.func.count()).select_from(v).where(*where, v.c.severity == "critical"))
    canteens = _count(eng, sa.select(sa.func.count()).select_from(c).where(*cwhere))
    if rectification[0]:
        cases_n, fixed = rectification
        basis = "整改案件"
    elif "status" in v.c:   # a hub from before canteen rectification moved into the case engine
        cases_n = violations
        fixed = _count(eng, sa.select(sa.func.count()).select_from(v).where(*where, v.c.status.in_(CANTEEN_FIXED)))
        basis = "违规记录状态"
    else:
        cases_n, fixed, basis = 0, 0, "整改案件"
    return {"violations": violations, "critical": critical, "canteens": canteens,
            "per_canteen": violations / canteens if canteens else None,
            "rectified": fixed, "to_rectify": cases_n,
            "rectified_rate": fixed / cases_n if cases_n else None, "basis": basis}


def _market(eng, f: Filters) -> dict:
    from workbench.store.schema import metadata

    t = metadata.tables["rapid_tests"]
    where = [t.c.ts >= _dt(f.since), t.c.ts < _dt(f.until)]
    if f.district:
        where.append(t.c.district == f.district)
    from workbench.store import hub

    df = hub.query(
        sa.select(sa.func.count().label("tests"),
                  sa.func.sum(sa.case((t.c.result == "阳性", 1), else_=0)).label("positives")).where(*where), eng=eng)
    tests = int(df["tests"].iloc[0] or 0)
    pos = int(df["positives"].iloc[0] or 0)
    return {"tests": tests, "positives": pos, "positive_rate": pos / tests if tests else None}


def _warnings(eng, f: Filters) -> pd.DataFrame:
    from workbench import alerts
    from workbench.store import hub
    from workbench.store.schema import metadata

    a = metadata.tables["alerts"]
    where = [a.c.status == alerts.ACTIVE, a.c.level.isnot(None)]
    if f.district:
        where.append(sa.or_(a.c.district == f.district, a.c.district.is_(None)))
    df = hub.query(sa.select(a.c.level, a.c.category, sa.func.count().label("n")).where(*where)
                   .group_by(a.c.level, a.c.category), eng=eng)
    if df.empty:
        return pd.DataFrame(columns=["level", "category", "n"])
    df["order"] = df["level"].map({lv: -i for i, lv in enumerate(alerts.LEVELS)})
    return df.sort_values(["order", "category"]).drop(columns="order").reset_index(drop=True)


def _hazards(eng, now: pd.Timestamp) -> pd.DataFrame:
    """Open major hazards of the city (level 重大, not verified): hazard_id, district, deadline, overdue."""
    from workbench.store import hub
    from workbench.store.schema import metadata

    h = metadata.tables["hazards"]
    df = hub.query(sa.select(h.c.hazard_id, h.c.district, h.c.hazard_type, h.c.deadline)
                   .where(h.c.level == "重大", h.c.verified_at.is_(None)), eng=eng)
    df["deadline"] = pd.to_datetime(df["deadline"])
    df["overdue"] = df["deadline"].notna() & (df["deadline"] < now)
    return df


def _alert_counts(eng) -> pd.Series:
    from workbench import alerts
    from workbench.store import hub
    from workbench.store.schema import metadata

    a = metadata.tables["alerts"]
    df = hub.query(sa.select(a.c.district, sa.func.count().label("n")).where(a.c.status == alerts.ACTIVE)
                   .group_by(a.c.district), eng=eng)
    return df.dropna().set_index("district")["n"] if len(df) else pd.Series(dtype=int)


def open_cases(eng, now: pd.Timestamp) -> pd.DataFrame:
    """Open cases of every store counted in SQL (from a store's open rows' table where it keeps
    one: cheap at 10 M events): district, open, overdue (deadline passed at `now`). A case is
    open when its status is one of its type's open statuses (the engine writes no other)."""
    from workbench import cases
    from workbench.store import hub
    from workbench.store.schema import metadata

    cases._ensure_registered()
    parts = []
    for st in list(cases.STORES.values()):
        types = [t for t in cases.TYPES.values() if t.store == st.name]
        if not types or st.table not in metadata.tables:
            continue
        t = st.open_table()   # its open rows' table where it keeps one (city_events_open)
        if "district" not in t.c:
            continue
        c = t.c
        # `status IN (open statuses)` first: an index on the status serves it (NOT IN the closing
        # statuses scans every row, every partition at city scale: docs/scale.md)
        any_open = c[st.status].in_(sorted({s for ty in types for s in ty.open_statuses}))
        if st.type_column:
            default = types[0].name
            ctype = sa.func.coalesce(c[st.type_column], default)
            is_open = sa.and_(any_open, sa.or_(*[sa.and_(ctype == ty.name, c[st.status].in_(ty.open_statuses))
                                                  for ty in types]))
        else:
            is_open = any_open
        late = (sa.case((c[st.deadline] < _dt(now), 1), else_=0) if st.deadline else sa.literal(0))
        parts.append(sa.select(c.district.label("district"), sa.func.count().label("open"),
                               sa.func.sum(late).label("overdue")).where(is_open).group_by(c.district))
    if not parts:
        return pd.DataFrame(columns=["district", "open", "overdue"])
    df = hub.query(sa.union_all(*parts), eng=eng)
    if df.empty:
        return pd.DataFrame(columns=["district", "open", "overdue"])
    df["district"] = df["district"].fillna("")
    return df.groupby("district", as_index=False)[["open", "overdue"]].sum().astype({"open": int, "overdue": int})


def districts_table(open_: pd.DataFrame, hazards: pd.DataFrame, alert_counts: pd.Series) -> pd.DataFrame:
    """One row per district (all nine): open cases, overdue open cases, open major hazards, active alerts.
    `open_`: open_cases()."""
    rows = pd.DataFrame({"district": list(geo.NAMES), "adcode": [d.adcode for d in geo.DISTRICTS]})
    oc = open_.set_index("district")["open"] if len(open_) else pd.Series(dtype=int)
    ov = open_.set_index("district")["overdue"] if len(open_) else pd.Series(dtype=int)
    hz = hazards.groupby("district").size() if len(hazards) else pd.Series(dtype=int)
    rows["open"] = rows["district"].map(oc).fillna(0).astype(int)
    rows["overdue"] = rows["district"].map(ov).fillna(0).astype(int)
    rows["hazards"] = rows["district"].map(hz).fillna(0).astype(int)
    rows["alerts"] = rows["district"].map(alert_counts).fillna(0).astype(int)
    return rows


def alert_feed(eng, f: Filters, limit: int = FEED) -> pd.DataFrame:
    """The newest alerts (of every department; of the district when filtered) with the cases
    each became: alert columns + `cases`, a list of dicts (case_id, case_type, type_label,
    status, department) from every case store whose table records the alert it came from."""
    from workbench import cases
    from workbench.store import hub
    from workbench.store.schema import metadata

    a = metadata.tables["alerts"]
    stmt = sa.select(a.c.alert_id, a.c.ts, a.c.department, a.c.category, a.c.severity, a.c.title, a.c.district,
                     a.c.status, a.c.level, a.c.subject).where(a.c.ts <= _dt(clock.now()))
    if f.district:
        stmt = stmt.where(sa.or_(a.c.district == f.district, a.c.district.is_(None)))
    feed = hub.query(stmt.order_by(a.c.ts.desc(), a.c.alert_id).limit(limit), eng=eng)
    feed["cases"] = [[] for _ in range(len(feed))]
    if feed.empty:
        return feed
    found = alert_cases(eng, feed)
    if len(found):
        labels = {n: t.label for n, t in cases.TYPES.items()}
        now = clock.now()
        by: dict = {}
        if f.district:  # a district's view lists the cases of that district only
            found = found[found["district"] == f.district]
        for r in found.sort_values("case_id").itertuples(index=False):
            by.setdefault(r.alert_id, []).append({
                "case_id": r.case_id, "case_type": r.case_type, "type_label": labels.get(r.case_type, r.case_type),
                # an open case past its deadline shows as overdue (逾期未整改), not as its step
                "status": cases.TYPES[r.case_type].shown(r.status, r.deadline, now) if r.case_type in cases.TYPES
                else r.status,
                "department": r.department})
        feed["cases"] = [by.get(i, []) for i in feed["alert_id"]]
    return feed


def alert_cases(eng, alerts_df: pd.DataFrame) -> pd.DataFrame:
    """The cases the alerts of `alerts_df` (alert_id, subject) became: alert_id, case_id,
    case_type, status, department, district. A case belongs to an alert when it records the alert
    (`alert_id` of its table: a linkage case), when it is about the same subject (a canteen
    rectification case and the violation's alert), or when it is the alert's subject itself
    (an escalation about an event, "city_events:<id>")."""
    from workbench import cases
    from workbench.store import hub
    from workbench.store.schema import metadata

    cols = ["alert_id", "case_id", "case_type", "status", "department", "district", "deadline"]
    if alerts_df is None or alerts_df.empty:
        return pd.DataFrame(columns=cols)
    ids = alerts_df["alert_id"].tolist()
    subj = alerts_df.dropna(subset=["subject"]) if "subject" in alerts_df else alerts_df.iloc[0:0]
    by_subject = dict(zip(subj["subject"], subj["alert_id"]))
    cases._ensure_registered()
    parts = []
    for st in list(cases.STORES.values()):
        t = metadata.tables.get(st.table)
        if t is None:
            continue
        ctype = t.c[st.type_column] if st.type_column else sa.literal(None)
        dep = t.c[st.department] if st.department else sa.literal(None)
        dist = t.c[st.district] if st.district and st.district in t.c else sa.literal(None)
        due = t.c[st.deadline] if st.deadline and st.deadline in t.c else sa.literal(None)
        base = [t.c[st.id].label("case_id"), ctype.label("case_type"), t.c[st.status].label("status"),
                dep.label("department"), dist.label("district"), due.label("deadline")]
        conds = []
        if "alert_id" in t.c:
            conds.append(t.c.alert_id.in_(ids))
        if "subject" in t.c and by_subject:
            conds.append(t.c.subject.in_(list(by_subject)))
        own = {k.split(":", 1)[1]: v for k, v in by_subject.items() if k.startswith(f"{st.table}:")}
        if own:
            conds.append(t.c[st.id].in_(list(own)))
        if not conds:
            continue
        extra = [(t.c.alert_id if "alert_id" in t.c else sa.literal(None)).label("via_alert"),
                 (t.c.subject if "subject" in t.c else sa.literal(None)).label("via_subject")]
        df = hub.query(sa.select(*base, *extra).where(sa.or_(*conds)), eng=eng)
        if df.empty:
            continue
        if not st.type_column:
            df["case_type"] = next((n for n, ty in cases.TYPES.items() if ty.store == st.name), None)
        rows = []
        for r in df.itertuples(index=False):
            hits = {r.via_alert} & set(ids) | ({by_subject[r.via_subject]} if r.via_subject in by_subject else set())
            if r.case_id in own:
                hits.add(own[r.case_id])
            rows += [{"alert_id": a, "case_id": r.case_id, "case_type": r.case_type, "status": r.status,
                      "department": r.department, "district": r.district, "deadline": r.deadline} for a in hits]
        parts.append(pd.DataFrame(rows, columns=cols))
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True).drop_duplicates(["alert_id", "case_id"])


STREET_OFFICES = "各街道（乡镇）办事处"


def department_group(name) -> str:
    """The department a case is counted under: the street and township offices (街道办事处,
    镇办事处) that cases are dispatched to are one department of the city (DOMAIN.md)."""
    if not isinstance(name, str) or not name:
        return ind.UNASSIGNED
    return STREET_OFFICES if name.endswith("办事处") else name


def department_indicators(case_frame: pd.DataFrame, marks: pd.DataFrame, f: Filters) -> pd.DataFrame:
    """The indicators of every department (street offices as one) with a `dashboard` column (the
    notebook of the department whose case types most of its cases are) for the links."""
    frame = case_frame.assign(department=case_frame["department"].map(department_group)) if len(case_frame) \
        else case_frame
    table = ind.indicators(frame, f.since, f.until, marks=marks)
    if table.empty:
        table["dashboard"] = []
        return table
    dash = {}
    if len(frame):
        boards = pd.DataFrame({"department": frame["department"], "board": frame["case_type"].map(_type_dashboards())})
        counts = boards.dropna().groupby(["department", "board"]).size()
        if len(counts):
            dash = dict(counts.sort_values(ascending=False).reset_index().drop_duplicates("department")
                        [["department", "board"]].itertuples(index=False, name=None))
    table["dashboard"] = [dash.get(d) or dashboard_of(d) for d in table["department"]]
    return table


KEPT = "overview_evaluation"   # workbench.store.kept: the evaluations of ended periods
KEPT_VERSION = 1
EVALUATION_MAX_AGE = pd.Timedelta(hours=1)


@dataclass
class Evaluation:
    """What the overview reads of a period's cases (every case store, `cases.frame`)."""
    indicators: pd.DataFrame            # department_indicators
    opened: int                         # cases opened in the period
    rectification: tuple[int, int]      # canteen rectification cases opened in it, of them closed
    computed: pd.Timestamp              # naive UTC
    kept: bool = False                  # read from the kept evaluations, not computed for this read


def evaluate(eng, f: Filters, now: pd.Timestamp) -> Evaluation:
    """The period's department evaluation from its cases (opened or due in it) and their marks."""
    from workbench import cases

    frame = cases.frame(eng, since=f.since - pd.Timedelta(days=LOOKBACK_DAYS), until=f.until,
                        district=f.district, period=(f.since, f.until))
    marks = ind.history_marks(eng, since=f.since - pd.Timedelta(days=LOOKBACK_DAYS), cases_of=frame)
    table = department_indicators(frame, marks, f)
    if len(frame):
        in_period = (frame["opened"] >= f.since) & (frame["opened"] < f.until)
        rc = frame[in_period & (frame["case_type"] == CANTEEN_CASE_TYPE)]
        opened, rect = int(in_period.sum()), (len(rc), int(rc["closed"].sum()))
    else:
        opened, rect = 0, (0, 0)
    return Evaluation(table, opened, rect, pd.Timestamp(now))


def evaluation(eng, f: Filters, now: pd.Timestamp) -> Evaluation:
    """The period's evaluation, kept between reads once the period has ended: a whole past
    period's cases change little (a late report, a back-dated closing), and reading them is most
    of an overview at city scale (113,922 cases in a week at 10 M events: 0.6 s). An evaluation
    computed after the period's end and less than EVALUATION_MAX_AGE ago is reused (per period
    and district, `workbench.store.kept`; a restore from a backup forgets it); a period that has
    not ended is computed every time."""
    from workbench.store import kept

    now = pd.Timestamp(now)
    if f.until > now:
        return evaluate(eng, f, now)
    key = (f.start.isoformat(), f.end.isoformat(), f.district or "")
    held, _ = kept.load(KEPT, KEPT_VERSION, eng)
    held = held if isinstance(held, dict) else {}
    e = held.get(key)
    if e is not None and f.until <= e.computed <= now and now - e.computed < EVALUATION_MAX_AGE:
        return Evaluation(e.indicators.copy(), e.opened, e.rectification, e.computed, kept=True)
    e = evaluate(eng, f, now)
    fresh = {k: v for k, v in held.items() if now - v.computed < EVALUATION_MAX_AGE}
    try:
        kept.save(KEPT, {**fresh, key: e}, KEPT_VERSION, eng)
    except OSError:   # a read-only data folder: computed every time, nothing else lost
        pass
    return e


def load(params: Mapping[str, str] | None = None, *, eng=None, now=None, feed: int = FEED) -> Overview:
    """One read of the hub for the overview. Raises HubUnreachable when the hub cannot be read."""
    import time

    from workbench.store import hub

    t0 = time.perf_counter()
    now = clock.now() if now is None else pd.Timestamp(now)
    try:
        eng = eng or hub.engine()
        until_ts = data_until(eng, now)
        f = parse_filters(params, until_ts, clock.local_day(now).date())
        ev = evaluation(eng, f, now)
        open_all = open_cases(eng, now)
        open_here = open_all[open_all["district"] == f.district] if f.district else open_all
        all_hazards = _hazards(eng, now)
        hazards = all_hazards[all_hazards["district"] == f.district] if f.district else all_hazards
        warnings = _warnings(eng, f)
        kpis = {
            "opened": ev.opened,
            "open": int(open_here["open"].sum()) if len(open_here) else 0,
            "overdue": int(open_here["overdue"].sum()) if len(open_here) else 0,
            "canteen": _canteen(eng, f, ev.rectification),
            "market": _market(eng, f),
            "warnings": int(warnings["n"].sum()) if len(warnings) else 0,
            "major_hazards": int(len(hazards)),
            "major_hazards_overdue": int(hazards["overdue"].sum()) if len(hazards) else 0,
        }
        dist = districts_table(open_all, all_hazards, _alert_counts(eng))
        fd = alert_feed(eng, f, feed)
    except sa.exc.SQLAlchemyError as exc:
        raise HubUnreachable(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from exc
    except OSError as exc:
        raise HubUnreachable(f"{type(exc).__name__}: {exc}") from exc
    return Overview(now=now, data_until=until_ts, filters=f, indicators=ev.indicators, kpis=kpis, districts=dist,
                    feed=fd, warnings=warnings, seconds=time.perf_counter() - t0, evaluated=ev.computed)


__all__ = ["DEFAULT_DAYS", "EVALUATION_MAX_AGE", "Evaluation", "FEED", "LOOKBACK_DAYS", "open_cases", "Filters", "HubUnreachable", "Overview", "alert_cases", "alert_dashboard", "alert_feed",
           "STREET_OFFICES", "dashboard_of", "data_until", "department_group", "default_period", "department_indicators", "districts_table", "link",
           "evaluate", "evaluation", "load", "parse_filters"]
