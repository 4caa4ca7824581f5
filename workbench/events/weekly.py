"""The weekly bulletin's numbers (城市事件周报): what was reported, closed, closed on time and left
overdue in the period and in the period before, the event classes that rose most, and what needs
a decision. Pure functions over the hub's city_events rows (naive UTC); the report notebook only
renders what `summarize` returns.

- 上报: events reported in the period (duplicates merged into an earlier case included, counted
  apart as `merged`); safety's inspection tasks are not city events and are left out.
- 办结 / 按期办结: cases closed in the period (closed_at in it; 不予立案 and 重复件 are not cases), on
  time when closed no later than their deadline; the rate is on time ÷ closed.
- 超期未办结: open cases past their deadline at the end of the period (the state then: a case closed
  later counts as open), 严重超期 those overdue by more than their whole allowed time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from workbench.events import flow, sla

RISE_MIN = 10            # a class's rise is worth a line from this many events in the period
RISE_SHARE = 0.5         # … and at least +50 % on the period before
LAGGING_RATE = 0.8       # a department closing under 80 % on time needs a word
LAGGING_MIN = 5          # … with at least this many closings


def city_events(events: pd.DataFrame) -> pd.DataFrame:
    """The city events of the file (safety's inspection tasks, kept in the same table, left out)."""
    if "case_type" not in events or events.empty:
        return events
    return events[events["case_type"].fillna(flow.CASE_TYPE) == flow.CASE_TYPE]


def states_at(events: pd.DataFrame, at, near_share: float = 0.2) -> pd.DataFrame:
    """Each case reported before `at` as it stood at `at` (closed later: still open then), with
    its deadline state then (sla.case_states)."""
    at = pd.Timestamp(at)
    ev = events[pd.to_datetime(events["ts"]) < at].copy()
    if ev.empty:
        return sla.case_states(ev.assign(closed_at=pd.Series(dtype="datetime64[ns]")), at, near_share) \
            if "closed_at" in ev else ev
    ev["closed_at"] = pd.to_datetime(ev["closed_at"])
    later = ev["closed_at"] >= at
    ev.loc[later, "closed_at"] = pd.NaT
    ev.loc[later, "status"] = flow.FEEDBACK
    return sla.case_states(ev, at, near_share)


@dataclass
class PeriodNumbers:
    reported: int
    merged: int            # of them merged into an earlier case (重复件)
    closed: int
    closed_on_time: int
    overdue: int           # open past the deadline at the period's end
    severe: int            # of them overdue by more than the whole allowed time

    @property
    def on_time_rate(self) -> float | None:
        return self.closed_on_time / self.closed if self.closed else None


def period_numbers(events: pd.DataFrame, start, end, near_share: float = 0.2) -> PeriodNumbers:
    """The numbers of the period [start, end) (naive UTC) from the city events `events`."""
    ev = city_events(events)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    ts = pd.to_datetime(ev["ts"])
    week = ev[(ts >= start) & (ts < end)]
    closed_at = pd.to_datetime(ev["closed_at"])
    done = ev[(closed_at >= start) & (closed_at < end) & ~ev["status"].isin(sla.NOT_CASES)]
    on_time = done["deadline"].notna() & (pd.to_datetime(done["closed_at"]) <= pd.to_datetime(done["deadline"]))
    st = states_at(ev, end, near_share)
    od = st[st["overdue"]] if len(st) else st
    return PeriodNumbers(reported=len(week), merged=int((week["status"] == flow.DUPLICATE).sum()),
                         closed=len(done), closed_on_time=int(on_time.sum()), overdue=len(od),
                         severe=int((od["escalation"] == 2).sum()) if len(od) else 0)


@dataclass
class WeeklySummary:
    now: PeriodNumbers
    before: PeriodNumbers
    classes: pd.DataFrame          # event_class, now, before, change (this period's counts, largest first)
    rising: pd.DataFrame           # classes up by RISE_SHARE or more with RISE_MIN+ events
    lagging: pd.DataFrame          # department, closed, closed_on_time, on_time_rate (under LAGGING_RATE)
    severe_by_department: pd.Series  # 严重超期 at the end, per department
    lines: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)


def summarize(events: pd.DataFrame, period, where: str = "全市", near_share: float = 0.2) -> WeeklySummary:
    """The bulletin's summary of `period` (workbench.reports.Period) against the period before,
    from `events` (city_events rows reaching back over both periods and the deadlines' span)."""
    from workbench.reports import change_text

    prev = period.previous()
    ev = city_events(events)
    now = period_numbers(ev, period.start_utc, period.end_utc, near_share)
    before = period_numbers(ev, prev.start_utc, prev.end_utc, near_share)
    ts = pd.to_datetime(ev["ts"])
    cur = ev[(ts >= pd.Timestamp(period.start_utc)) & (ts < pd.Timestamp(period.end_utc))]
    old = ev[(ts >= pd.Timestamp(prev.start_utc)) & (ts < pd.Timestamp(prev.end_utc))]
    classes = pd.DataFrame({"now": cur.groupby("event_class").size(), "before": old.groupby("event_class").size()}
                           ).fillna(0).astype(int)
    classes["change"] = classes["now"] - classes["before"]
    classes = classes.sort_values(["now", "change"], ascending=False).rename_axis("event_class").reset_index()
    rising = classes[(classes["now"] >= RISE_MIN) & (classes["now"] >= (1 + RISE_SHARE) * classes["before"])]
    closed_at = pd.to_datetime(ev["closed_at"])
    done = ev[(closed_at >= pd.Timestamp(period.start_utc)) & (closed_at < pd.Timestamp(period.end_utc))
              & ~ev["status"].isin(sla.NOT_CASES)]
    done = done.assign(_on=done["deadline"].notna() & (pd.to_datetime(done["closed_at"]) <= pd.to_datetime(done["deadline"])))
    by = done.groupby("department").agg(closed=("_on", "size"), closed_on_time=("_on", "sum")).reset_index()
    by["on_time_rate"] = by["closed_on_time"] / by["closed"]
    lagging = by[(by["closed"] >= LAGGING_MIN) & (by["on_time_rate"] < LAGGING_RATE)].sort_values("on_time_rate")
    st = states_at(ev, period.end_utc, near_share)
    severe = st[st["overdue"] & (st["escalation"] == 2)] if len(st) else st
    severe_by = severe.groupby(severe["department"].fillna("未指定部门")).size().sort_values(ascending=False) \
        if len(severe) else pd.Series(dtype=int)

    lines = [f"{where}本期（{period.text}）上报城市事件 {now.reported:,} 件，{change_text(now.reported, before.reported, '件')}"
             + (f"；其中合并重复件 {now.merged:,} 件。" if now.merged else "。")]
    if now.closed:
        rate = f"{now.on_time_rate:.1%}"
        prev_rate = (f"，上期 {before.on_time_rate:.1%}" if before.on_time_rate is not None else "")
        lines.append(f"本期办结 {now.closed:,} 件，其中按期办结 {now.closed_on_time:,} 件，按期办结率 {rate}{prev_rate}。")
    else:
        lines.append("本期没有办结的案件。")
    lines.append(f"截至本期末，超期未办结 {now.overdue:,} 件，{change_text(now.overdue, before.overdue, '件', label='较上期末')}"
                 + (f"；其中严重超期（超过处置时限一倍以上）{now.severe:,} 件。" if now.severe else "。"))
    if len(rising):
        lines.append("上升明显的事件类型：" + "、".join(
            f"{r.event_class} {r.now} 件（上期 {r.before} 件）" for r in rising.head(5).itertuples()) + "。")
    decisions = []
    for dept, n in severe_by.head(5).items():
        decisions.append(f"{dept}有 {int(n)} 件严重超期未办结，请决定是否提级督办。")
    for r in lagging.head(5).itertuples():
        decisions.append(f"{r.department}本期按期办结率 {r.on_time_rate:.1%}（办结 {r.closed} 件），低于 {LAGGING_RATE:.0%}，"
                         "请决定是否约谈或调整派遣。")
    for r in rising.head(3).itertuples():
        decisions.append(f"{r.event_class}较上期明显增多（{r.before} → {r.now} 件），请决定是否组织专项整治。")
    return WeeklySummary(now, before, classes, rising.reset_index(drop=True), lagging.reset_index(drop=True),
                         severe_by, lines, decisions)


__all__ = ["city_events", "states_at", "PeriodNumbers", "period_numbers", "WeeklySummary", "summarize",
           "RISE_MIN", "RISE_SHARE", "LAGGING_RATE", "LAGGING_MIN"]
