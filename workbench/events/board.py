"""The dispatch board's reads (调度台): open cases by deadline, counts, and a snapshot for
the deadline and pattern views. Reads go through workbench.store.hub; status changes go
through workbench.events.flow, which is the case engine (workbench.cases): every move passes
the status the board showed (`expected`), so a stale board is refused, not applied.
The city_events table also holds safety's inspection tasks (case type inspection_task,
opened by the cold-weather warnings); the counts keep them apart from city events.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from workbench import clock
from workbench.events import dispatch as dp
from workbench.events import flow, sla
from workbench.store import hub
from workbench.store.schema import DATASETS

EVENTS = DATASETS["city_events"].table
OPEN = flow.OPEN_EVENTS   # the open cases only, same columns (kept by triggers, migration 0017)
BOARD_COLUMNS = ("event_id", "ts", "source", "event_class", "description", "district", "street", "address",
                 "status", "department", "urgency", "deadline", "lat", "lon")


INSPECTION = "inspection_task"   # safety's case type kept in city_events (counted apart)


def _now() -> pd.Timestamp:
    return clock.now()


def _kind(t):
    """The case type of a city_events row (rows before migration 0010 without one are city events)."""
    return sa.func.coalesce(t.c.case_type, flow.CASE_TYPE)


# what the deadline tables and the map read of an open case (no texts: they are not shown there)
OPEN_COLUMNS = tuple(c for c in BOARD_COLUMNS if c not in ("description", "address")) + (
    "grid_id", "case_type", "updated_at", "closed_at")
BOARD_ORDER = ("待受理（信息收集）的新上报事件在前；其余在办事件在后。每组内按处置时限排序：超期最久的在最上，"
               "其次是剩余时间最少的，没有处置时限的排在最后。")


def board_rows(eng=None, *, department: str | None = None, statuses=flow.OPEN_STATUSES, limit: int = 200,
               since=None, district: str | None = None, offset: int = 0, rules: dp.CityRules | None = None
               ) -> pd.DataFrame:
    """Open cases in the board's order (`BOARD_ORDER`): those waiting to be accepted (信息收集)
    first, then the rest; each group by deadline, the most overdue on top, no deadline last
    (then report time, id). One page: `limit` rows from `offset` (`board_total` counts them all).
    Optionally for one department; `since`: only events reported after it; `district`: one
    district's only (a district user's row-level scope, access.district_filter).
    `routed`: where the dispatch rules send the case (its own department for another case
    type, e.g. safety's inspection tasks): what the board's 派往 starts at.

    Read from the open cases' table (city_events_open), per status, each `ORDER BY deadline
    NULLS LAST … LIMIT offset + limit` (its (status, deadline) index walks it in order, so a page
    reads a page's rows, not every open case), merged here."""
    t = OPEN
    offset, limit = max(0, int(offset)), max(0, int(limit))
    cols = [t.c[c] for c in BOARD_COLUMNS] + [_kind(t).label("case_type")]

    def part(status: str) -> pd.DataFrame:
        stmt = sa.select(*cols).where(t.c.status == status)
        if department:
            stmt = stmt.where(t.c.department == department)
        if district:
            stmt = stmt.where(t.c.district == district)
        if since is not None:
            stmt = stmt.where(t.c.ts > pd.Timestamp(since).to_pydatetime())
        stmt = stmt.order_by(t.c.deadline.asc().nulls_last(), t.c.ts, t.c.event_id).limit(offset + limit)
        return hub.query(stmt, eng=eng)

    parts = [p.assign(_group=0 if s == flow.INTAKE else 1) for s in statuses for p in [part(s)] if len(p)]
    if not parts:
        return pd.DataFrame(columns=list(BOARD_COLUMNS) + ["case_type", "routed"])
    df = pd.concat(parts, ignore_index=True)
    for c in ("ts", "deadline"):
        df[c] = pd.to_datetime(df[c])
    df = df.assign(_none=df["deadline"].isna()).sort_values(["_group", "_none", "deadline", "ts", "event_id"],
                                                            kind="stable")
    df = df.iloc[offset:offset + limit].drop(columns=["_group", "_none"]).reset_index(drop=True)
    if df.empty:
        return pd.DataFrame(columns=list(BOARD_COLUMNS) + ["case_type", "routed"])
    df["routed"] = routed_department(df, rules)
    return df


def routed_department(rows: pd.DataFrame, rules: dp.CityRules | None = None) -> pd.Series:
    """The department each case should go to: the city's routing rules (dispatch.route: class,
    group, district, street, keywords) for a city event; its own department for another case
    type kept in city_events (safety's inspection tasks are routed by the warning engine)."""
    if rows.empty:
        return pd.Series([], index=rows.index, dtype=object)
    routed = dp.route(rows, rules or dp.load_rules())["department"]
    kind = rows["case_type"].fillna(flow.CASE_TYPE) if "case_type" in rows else pd.Series(flow.CASE_TYPE,
                                                                                         index=rows.index)
    own = rows["department"] if "department" in rows else pd.Series(None, index=rows.index, dtype=object)
    return routed.where((kind == flow.CASE_TYPE) | own.isna(), own).astype(object)


def board_total(counts: pd.DataFrame, department: str | None = None) -> dict:
    """From `board_counts` (the one count of open cases): how many the board lists (all open
    cases, of one department with `department`), how many of them are city events and overdue,
    waiting for acceptance, and safety's inspection tasks apart."""
    c = counts[counts["department"] == department] if department and len(counts) else counts
    ev = c[c["case_type"] != INSPECTION] if len(c) else c
    tasks = c[c["case_type"] == INSPECTION] if len(c) else c
    s = (lambda f, col: int(f[col].sum()) if len(f) else 0)
    return {"listed": s(c, "n"), "open": s(ev, "n"), "overdue": s(ev, "overdue"),
            "waiting": int(ev.loc[ev["status"] == flow.INTAKE, "n"].sum()) if len(ev) else 0,
            "tasks": s(tasks, "n"), "tasks_overdue": s(tasks, "overdue")}


OVERDUE_READ = 2000   # the most overdue open cases read for the tables and the map (all counted in SQL)


def open_states(eng=None, now=None, *, district: str | None = None, near_share: float | None = None,
                overdue_limit: int | None = OVERDUE_READ) -> pd.DataFrame:
    """The open cases (status in the open statuses, any age: the cases `board_counts` counts)
    with their deadline state (sla.case_states at `now`), for the deadline tables and the map:
    every one not past its deadline (the near-due count is exact), and of those past it the
    `overdue_limit` most overdue (None: all; how many there are is board_counts' `overdue`),
    so a city with a backlog of 100,000 overdue cases does not read them all on every visit.
    `district`: one district's only."""
    t = OPEN
    share = dp.load_rules().near_due_share if near_share is None else near_share
    now = _now() if now is None else pd.Timestamp(now)
    cols = [t.c[c] for c in OPEN_COLUMNS if c != "case_type"] + [_kind(t).label("case_type")]

    def select(cond):
        stmt = sa.select(*cols).where(t.c.status.in_(list(flow.OPEN_STATUSES)), cond)
        return stmt.where(t.c.district == district) if district else stmt

    late = t.c.deadline < now.to_pydatetime()
    parts = [hub.query(select(sa.or_(t.c.deadline.is_(None), ~late)), eng=eng)]
    od = select(late).order_by(t.c.deadline, t.c.event_id)
    parts.append(hub.query(od.limit(overdue_limit) if overdue_limit else od, eng=eng))
    parts = [p for p in parts if len(p)]
    df = pd.concat(parts, ignore_index=True) if parts else None
    if df is None or df.empty:
        df = pd.DataFrame(columns=list(OPEN_COLUMNS))
    for c in ("ts", "deadline", "updated_at", "closed_at"):
        df[c] = pd.to_datetime(df[c])
    return sla.case_states(df, now, share) if len(df) else df.assign(
        open=pd.Series(dtype=bool), overdue=pd.Series(dtype=bool), near_due=pd.Series(dtype=bool),
        hours_left=pd.Series(dtype=float), overdue_hours=pd.Series(dtype=float), escalation=pd.Series(dtype=int))


def board_counts(eng=None, now=None, district: str | None = None) -> pd.DataFrame:
    """Open cases per case type, department and status, with how many are overdue
    (`case_type`: city_event, or safety's inspection_task, counted apart); `district`: one
    district's only."""
    t = OPEN
    now = (_now() if now is None else pd.Timestamp(now)).to_pydatetime()
    od = sa.func.sum(sa.case((t.c.deadline < now, 1), else_=0))
    kind = _kind(t).label("case_type")
    stmt = (sa.select(kind, t.c.department, t.c.status, sa.func.count().label("n"), od.label("overdue"))
            .where(t.c.status.in_(list(flow.OPEN_STATUSES))).group_by(kind, t.c.department, t.c.status))
    if district:
        stmt = stmt.where(t.c.district == district)
    df = hub.query(stmt, eng=eng)
    if df.empty:
        return pd.DataFrame(columns=["case_type", "department", "status", "n", "overdue"])
    df["n"] = df["n"].astype(int)
    df["overdue"] = df["overdue"].fillna(0).astype(int)
    return df


def latest_ts(eng=None, district: str | None = None):
    """The newest report time in the hub (the live board polls this; an index lookup), of one
    district's events with `district`."""
    t = EVENTS
    stmt = sa.select(sa.func.max(t.c.ts).label("m"))
    if district:
        stmt = stmt.where(t.c.district == district)
    m = hub.query(stmt, eng=eng)["m"].iloc[0]
    return None if m is None or pd.isna(m) else pd.Timestamp(m)


def count_since(ts, eng=None, district: str | None = None) -> int:
    """Events reported after `ts` (how many new ones the board shows); of one district's with `district`."""
    t = EVENTS
    stmt = sa.select(sa.func.count().label("n")).select_from(t)
    if district:
        stmt = stmt.where(t.c.district == district)
    if ts is not None:
        stmt = stmt.where(t.c.ts > pd.Timestamp(ts).to_pydatetime())
    return int(hub.query(stmt, eng=eng)["n"].iloc[0])


# what the page's patterns, deadlines and reports read of the window (not the texts: descriptions
# are long and masked, and reading them was most of the time a window took at city scale)
WINDOW_COLUMNS = ("event_id", "ts", "updated_at", "source", "event_group", "event_class", "address", "district",
                  "street", "grid_id", "lat", "lon", "loc_precision", "status", "department", "urgency", "deadline",
                  "closed_at", "case_type")


def load_events(days: int | None = 120, eng=None, end=None, district: str | None = None,
                columns=None) -> pd.DataFrame:
    """Events reported in the last `days` days before `end` (default: the newest event);
    `district`: one district's only (read so from the hub); `columns`: only these (e.g.
    WINDOW_COLUMNS), default all."""
    where = {"district": district} if district else None
    cols = list(columns) if columns else None
    since = None
    if days:
        last = pd.Timestamp(end) if end is not None else latest_ts(eng, district)
        if last is None or pd.isna(last):
            return hub.read("city_events", where=where, columns=cols, eng=eng)
        since = pd.Timestamp(last) - pd.Timedelta(days=days)
    df = hub.read("city_events", since=since, until=end, where=where, columns=cols, eng=eng)
    for c in ("ts", "updated_at", "deadline", "closed_at"):
        if c in df:
            df[c] = pd.to_datetime(df[c])
    return df


@dataclass
class Snapshot:
    now: pd.Timestamp          # naive UTC: the moment deadlines are judged at
    rules: dp.CityRules
    events: pd.DataFrame       # the window's events
    states: pd.DataFrame       # sla.case_states(events, now)

    @property
    def empty(self) -> bool:
        return self.events.empty


def load(rules: dp.CityRules | None = None, days: int = 120, now=None, eng=None, end=None,
         district: str | None = None) -> Snapshot:
    """Events of the `days` days before `end` (naive UTC; default: the newest event);
    deadlines judged `now` (default: `end` if given, else the clock, or the time of the
    newest record when the data ends earlier — a sample city of past days). With `end`,
    cases closed after it count as open (the state at `end`). `district`: one district's
    events only (a district user's scope)."""
    rules = rules or dp.load_rules()
    ev = load_events(days, eng=eng, end=end, district=district, columns=WINDOW_COLUMNS)
    if end is not None and len(ev):
        late = ev["closed_at"] >= pd.Timestamp(end)
        ev.loc[late, "closed_at"] = pd.NaT
        ev.loc[late, "status"] = flow.FEEDBACK  # still being worked on at `end`
    if now is None and end is not None:
        now = pd.Timestamp(end)
    if now is None:
        now = _now()
        last = ev["ts"].max() if len(ev) else None
        if last is not None and last < now - pd.Timedelta(days=2):  # a past city: as of its last record
            upd = ev["updated_at"][ev["updated_at"] <= last + pd.Timedelta(days=1)].max()  # not a later board click
            now = max(last, upd) if pd.notna(upd) else last
    now = pd.Timestamp(now)
    return Snapshot(now=now, rules=rules, events=ev,
                    states=sla.case_states(ev, now, rules.near_due_share) if len(ev) else ev.assign(
                        open=False, overdue=False, near_due=False, hours_left=None, overdue_hours=0.0,
                        escalation=0))


AUTO_DISPATCH = "自动派遣（市城市运行管理服务中心）"


def dispatch_waiting(rules: dp.CityRules | None = None, actor=None, eng=None) -> tuple[int, int]:
    """Accept and dispatch the city events waiting at 信息收集 that a routing rule matches
    (two engine transitions each, each guarded on the status just read); returns
    (dispatched, still waiting). `actor`: who runs it (a Principal, checked by the engine);
    default the workbench itself, access.system(AUTO_DISPATCH)."""
    from workbench import access

    actor = actor if actor is not None else access.system(AUTO_DISPATCH)
    rules = rules or dp.load_rules()
    eng = eng or hub.engine()
    waiting = hub.read("city_events", where={"status": flow.INTAKE}, eng=eng)
    waiting = waiting[waiting["case_type"].fillna(flow.CASE_TYPE) == flow.CASE_TYPE].reset_index(drop=True)
    if waiting.empty:
        return 0, 0
    r = dp.route(waiting, rules)
    go = waiting[r["rule"] >= 0]
    n = 0
    for eid, dept in zip(go["event_id"], r.loc[go.index, "department"]):
        try:
            with eng.begin() as conn:
                flow.transition(conn, eid, flow.CASE, actor=actor, note="按规则立案", expected=flow.INTAKE)
                flow.transition(conn, eid, flow.DISPATCH, actor=actor, department=dept,
                                note=f"按派遣规则派遣至{dept}", expected=flow.CASE)
            n += 1
        except flow.FlowError:
            continue  # changed meanwhile by someone on the board
    return n, len(waiting) - n


__all__ = ["INSPECTION", "BOARD_COLUMNS", "BOARD_ORDER", "board_rows", "routed_department", "board_total", "open_states",
           "board_counts", "WINDOW_COLUMNS", "latest_ts", "count_since", "load_events", "Snapshot", "load",
           "dispatch_waiting", "AUTO_DISPATCH"]
