"""The 城市事件调度 dashboard: a live dispatch board, the map of events and hotspots, the
deadline tables and the patterns; the weekly report reuses its tables and charts.

Reads go through workbench.events.board (and so workbench.store.hub); every status change
from a button goes through workbench.events.flow (the case engine), with the status the
board showed for that case (`expected`): a board gone stale is refused in Chinese. The board polls the hub on a timer in
the kernel (an asyncio task), so new events appear without reloading the page.

The page acts as its signed-in user (`who`, workbench.access.Principal): a district user reads
only the district's events (the filter is in the hub's queries); every step is taken as `who`
(the case engine checks it and writes `who.actor`; a refusal says why); read-only roles see the
controls disabled with the reason. Descriptions are masked at the door; the caller's originals
are shown only through workbench.privacy.reveal (allowed roles, with a reason, audited).
"""
from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass

import pandas as pd

from workbench import access
from workbench.events import analysis as ea
from workbench.events import board as bd
from workbench.events import dispatch as dp
from workbench.events import flow, patterns as pt, sla
from workbench.ui import cards, charts, layout, theme
from workbench.ui.tables import DASH, Html, badge, esc, format_time, table_html, to_local, utc_now

ALL = ""
STATUS_TONE = {flow.INTAKE: "warn", flow.CASE: "info", flow.DISPATCH: "info", flow.HANDLING: "info",
               flow.FEEDBACK: "ok", flow.REOPENED: "bad"}
BOARD_LABELS = {"event_id": "事件编号", "ts": "上报时间", "source": "来源", "event_class": "事件类型",
                "description": "问题描述", "where": "位置", "status_badge": "环节", "department": "责任部门",
                "urgency_badge": "紧急程度", "deadline": "处置时限", "left": "剩余时间"}
ONTIME_LABELS = {"department": "责任部门", "cases": "案件数", "closed": "已办结", "closed_on_time": "按期办结",
                 "on_time_rate": "按期办结率", "open": "在办", "open_overdue": "超期在办", "near_due": "临近超期"}
KM_LABELS = {"department": "责任部门", "event_class": "事件类型", "group": "范围", "cases": "案件数",
             "closed": "已办结", "censored": "未办结（删失）", "median_h": "办结时长中位数（小时）",
             "median_lo": "95% 下限", "median_hi": "95% 上限", "p90_h": "90% 办结（小时）",
             "naive_median_h": "仅按已办结计算的中位数（偏低）"}


@dataclass
class EventsView:
    pat: ea.Patterns             # the window's patterns (workbench.events.analysis): kept, or analysed at the visit
    rules: dp.CityRules
    who: access.Principal | None = None  # whose view (a district user's is one district's)
    open: pd.DataFrame = None    # board.open_states: every open case, any age, with its deadline state
    counts: pd.DataFrame = None  # board.board_counts: the one count of open / overdue cases
    snap: bd.Snapshot | None = None  # the window's rows, where they were read (analysed at the visit, a report)
    analysed: pd.Timestamp | None = None  # kept patterns: when they were analysed (None: at this visit)
    stale: bool = False          # kept patterns that predate the hub's newest report (analysed again after the visit)
    recent: int | None = None    # events reported in the 24 hours before the board's now (the page; a report: None)
    district: str | None = None  # one district's view (a district user's, a district's report); None: the city

    @property
    def scope(self) -> str:
        """What the patterns compare against: the district analysed alone, or the city."""
        return self.district or "全市"

    @property
    def empty(self) -> bool:
        return self.pat.empty

    @property
    def now(self) -> pd.Timestamp:       # naive UTC: the moment the patterns' deadlines were judged at
        return self.pat.now

    @property
    def hot(self) -> pd.DataFrame:       # patterns.hotspots over the window (500 m cells), named (`place`)
        return self.pat.hot

    @property
    def grid_hot(self) -> pd.DataFrame:  # patterns.grid_hotspots: 网格 against the city's rate per resident
        return self.pat.grid_hot

    @property
    def street_hot(self) -> pd.DataFrame:  # patterns.street_hotspots: streets, address-placed events too
        return self.pat.street_hot


def prepare() -> None:
    from workbench.store import hub
    from workbench.ui import maps

    hub.engine()
    dp.load_rules()
    maps.warm_up()


def board_now(now) -> pd.Timestamp:
    """The moment deadlines are judged on the live board: the clock for a city whose data is
    current, else the time its data ends (a sample city of past days)."""
    return utc_now() if pd.Timestamp(now) >= utc_now() - pd.Timedelta(days=2) else pd.Timestamp(now)


def load(days: int = ea.DAYS, now=None, city: str | None = None, eng=None, end=None, who=None,
         district: str | None = None) -> EventsView:
    """The page's data as `who` sees it (a district user: the district's events and grids only,
    read so from the hub; None: everything). The open cases and their counts are every open
    case of the hub (any age), read now; the patterns those of the last `days` days: for a
    city-wide visitor the kept ones (workbench.events.analysis: analysed again after the visit
    when events arrived since), else analysed from the window's rows. With `end` (a report):
    the window before `end` and the state of its cases at `end`. `district`: one district's
    (a district's report), as a district user's view is; a district user sees only their own."""
    from workbench.store import hub

    district = access.district_filter(who) or district
    rules = dp.load_rules(city)
    pat = analysed = snap = None
    stale = False
    shared = end is None and now is None and district is None and city is None   # what is kept serves this view
    if shared:
        pat, analysed = ea.load_kept(eng)
        if pat is not None and pat.days != days:
            pat = analysed = None
        if pat is not None:
            stale = not ea.current(pat, bd.latest_ts(eng), analysed)
    if pat is None:
        snap = bd.load(rules, days=days, now=now, eng=eng, end=end, district=district)
        grids = hub.read("grids", where={"district": district} if district else None, eng=eng)
        pat = ea.analyse(snap, grids, days)
        if shared:
            ea.keep(pat, eng)
    if end is None:   # the page: every open case of the hub now
        at = board_now(pat.now)
        opened = bd.open_states(eng, at, district=district, near_share=rules.near_due_share)
        counts = bd.board_counts(eng, now=at, district=district)
        recent = bd.count_since(at - pd.Timedelta(hours=24), eng, district)
    else:             # a report: the state at `end` of the window's cases
        opened, counts = (snap.states[snap.states["open"]] if len(snap.states) else snap.states), None
        recent = None
    return EventsView(pat, rules, who=who, open=opened, counts=counts, snap=snap, analysed=analysed,
                      stale=stale, recent=recent, district=district)


def refresh_kept(view: EventsView, days: int = ea.DAYS, delay: float = 10.0, eng=None):
    """Kept patterns older than the hub's newest report: analysed again in a thread `delay`
    seconds after the page is drawn (the visitor waits for none of it), for the next visitor —
    by one kernel at a time (workbench.store.kept.claim), and not when another did it meanwhile.
    Returns the thread (None: nothing to do)."""
    import threading

    if not view.stale:
        return None

    def work():
        import time

        from workbench.store import kept

        time.sleep(delay)
        claim = kept.claim(ea.KEPT, eng)   # one kernel redoes it; the others' visitors find it done
        if claim is None:
            return
        try:
            pat, analysed = ea.load_kept(eng)
            if pat is None or not ea.current(pat, bd.latest_ts(eng), analysed):   # not redone meanwhile
                ea.run(days, eng=eng)
        except Exception as exc:  # noqa: BLE001 - the next visit analyses at the visit instead
            import logging

            logging.getLogger(__name__).warning("events patterns not analysed again: %s", exc)
        finally:
            kept.release(claim)

    t = threading.Thread(target=work, name="events-patterns", daemon=True)
    t.start()
    return t


# ------------------------------------------------------------------ tables

def _left_text(deadline, now) -> Html:
    if deadline is None or pd.isna(deadline):
        return Html(DASH)
    h = (pd.Timestamp(deadline) - pd.Timestamp(now)).total_seconds() / 3600
    if h < 0:
        return badge(f"超期 {_hours(-h)}", "bad")
    return badge(f"剩 {_hours(h)}", "warn" if h < 2 else "")


def _hours(h: float) -> str:
    return f"{h:.1f} 小时" if h < 48 else f"{h / 24:.1f} 天"


def board_table(rows: pd.DataFrame, now, limit: int = 60) -> str:
    if rows is None or rows.empty:
        return table_html(None, empty="暂无在办事件", empty_hint="新上报的事件到达后会自动出现在这里。")
    r = rows.assign(
        where=[" ".join(x for x in (d, s) if isinstance(x, str)) or DASH for d, s in zip(rows["district"], rows["street"])],
        status_badge=rows["status"].map(lambda s: badge(s, STATUS_TONE.get(s, ""))),
        urgency_badge=rows["urgency"].map(lambda u: badge(u, "bad") if u == dp.URGENT else Html(esc(u or DASH))),
        left=[_left_text(d, now) for d in rows["deadline"]])
    return table_html(r, dataset="city_events",
                      columns=["event_id", "ts", "source", "event_class", "description", "where", "department",
                               "status_badge", "urgency_badge", "deadline", "left"],
                      labels=BOARD_LABELS, html_columns=("status_badge", "urgency_badge", "left"),
                      wrap=("description",), max_rows=limit, max_height="460px")


def overdue_table(states: pd.DataFrame, limit: int = 50, total: int | None = None) -> str:
    """The most overdue open cases first; `total`: how many are overdue in all (board_counts),
    said above the table when the rows read are fewer (board.open_states reads the most overdue)."""
    od = sla.overdue(states) if len(states) else states
    if od is None or od.empty:
        return table_html(None, empty="暂无超期未办结事件", empty_hint="所有在办事件都还在处置时限内。")
    head = (f'<div class="wb-note">超期未办结共 {total:,} 件，按超期时长列出最久的 {min(limit, len(od)):,} 件。</div>'
            if total is not None and total > len(od) else "")
    od = od.assign(level=od["escalation"].map({1: badge("超期", "warn"), 2: badge("严重超期", "bad")}),
                   late=od["overdue_hours"].map(_hours))
    return head + table_html(od, dataset="city_events",
                             columns=["event_id", "event_class", "district", "street", "department", "status", "ts",
                                      "deadline", "late", "level"],
                             labels={"late": "已超期", "level": "升级"}, html_columns=("level",), max_rows=limit,
                             max_height="420px")


def near_due_table(states: pd.DataFrame, limit: int = 30) -> str:
    nd = sla.near_due(states) if len(states) else states
    if nd is None or nd.empty:
        return table_html(None, empty="暂无临近超期事件")
    nd = nd.assign(left=nd["hours_left"].map(_hours))
    return table_html(nd, dataset="city_events",
                      columns=["event_id", "event_class", "district", "street", "department", "status", "deadline",
                               "left"], labels={"left": "剩余时间"}, max_rows=limit, max_height="360px")


def on_time_table(ot: pd.DataFrame) -> str:
    """sla.on_time's table (Patterns.on_time)."""
    if ot is None or ot.empty:
        return table_html(None, empty="暂无有处置时限的案件")
    return table_html(ot, labels=ONTIME_LABELS,
                      formatters={"on_time_rate": lambda v: DASH if v != v else f"{v:.1%}"},
                      numeric=("on_time_rate",), max_rows=40, max_height="420px")


def km_table(km: pd.DataFrame) -> str:
    """sla.resolution_km by department, every column (Patterns.km_by): behind 说明."""
    if km is None or km.empty:
        return table_html(None, empty="暂无办结记录")
    f = {c: (lambda v: DASH if v != v else f"{v:.1f}") for c in ("median_h", "median_lo", "median_hi", "p90_h",
                                                                  "naive_median_h")}
    return table_html(km.sort_values("cases", ascending=False), labels=KM_LABELS, formatters=f,
                      numeric=tuple(f), max_rows=40, max_height="420px")


def hotspot_table(hot: pd.DataFrame, limit: int = 15, scope: str = "全市") -> str:
    """The 500 m hotspot cells, named by district, street and grid (never coordinates);
    `scope`: what they were compared against (EventsView.scope)."""
    h = hot[hot["significant"]] if len(hot) else hot
    if h is None or h.empty:
        return table_html(None, empty="暂无显著热点", empty_hint=f"没有哪片 500 米见方的区域事件数明显高于{scope}平均水平。")
    if "place" not in h:
        h = h.assign(place=h["district"])
    return table_html(h.head(limit), columns=["place", "top_class", "count", "expected", "ratio"],
                      labels={"place": "位置（区县 街道 网格）", "top_class": "主要类型", "count": "事件数",
                              "expected": f"{scope}平均", "ratio": "是平均的几倍"},
                      formatters={"expected": lambda v: f"{v:.1f}", "ratio": lambda v: f"{v:.1f}"},
                      numeric=("expected", "ratio"))


def grid_hotspot_table(gh: pd.DataFrame, limit: int = 15, scope: str = "全市") -> str:
    h = gh[gh["significant"]] if len(gh) else gh
    if h is None or h.empty:
        return table_html(None, empty="暂无显著的网格热点",
                          empty_hint=f"按{scope}每万人事件率检验各网格（需要含常住人口的网格划分），没有网格显著偏高。")
    return table_html(h.head(limit), dataset="grids",
                      columns=["grid_id", "district", "street", "population", "count", "expected", "per_10k", "ratio",
                               "top_class"],
                      labels={"count": "事件数", "expected": "按人口应有", "per_10k": "每万人", "ratio": "是应有的几倍",
                              "top_class": "主要类型"},
                      formatters={"expected": lambda v: f"{v:.1f}", "per_10k": lambda v: f"{v:.0f}",
                                  "ratio": lambda v: f"{v:.1f}"},
                      numeric=("expected", "per_10k", "ratio"), max_rows=limit)


def placement_note_html(note: str) -> str:
    """What the map's points stand for and what they leave out (Patterns.placement)."""
    return f'<div class="wb-note">{esc(note)}</div>'


def street_hotspot_table(sh: pd.DataFrame | None, limit: int = 15, scope: str = "全市") -> str:
    h = sh[sh["significant"]] if sh is not None and len(sh) else sh
    if h is None or h.empty:
        return table_html(None, empty="暂无显著的街道热点",
                          empty_hint=f"按街道统计有坐标和按地址定位到街道的事件，按{scope}每万人事件率检验；没有街道显著偏高。")
    return table_html(h.head(limit), dataset="city_events",
                      columns=["district", "street", "population", "count", "point", "by_address", "expected",
                               "per_10k", "ratio"],
                      labels={"population": "常住人口", "count": "事件数", "point": "有坐标", "by_address": "按地址定位",
                              "expected": "按人口应有", "per_10k": "每万人", "ratio": "是应有的几倍"},
                      formatters={"expected": lambda v: f"{v:.1f}", "per_10k": lambda v: f"{v:.0f}",
                                  "ratio": lambda v: f"{v:.1f}"},
                      numeric=("expected", "per_10k", "ratio"), max_rows=limit)


def repeats_table(rep: pd.DataFrame, limit: int = 20) -> str:
    """patterns.repeat_locations (Patterns.repeats)."""
    if rep is None or rep.empty:
        return table_html(None, empty="暂无重复发生的地点")
    return table_html(rep, dataset="city_events",
                      columns=["event_class", "district", "street", "address", "count", "first_ts", "last_ts",
                               "event_ids"],
                      labels={"count": "次数", "first_ts": "首次", "last_ts": "最近", "event_ids": "事件编号"},
                      wrap=("event_ids",), max_rows=limit)


def forecast_table(f: pd.DataFrame, events: int = 1) -> str:
    """patterns.forecast (Patterns.forecast) of a window of `events` events."""
    if not events:
        return table_html(None, empty="暂无数据，无法预测")
    if f is None or f.empty:
        return table_html(None, empty="历史数据不足，无法预测", empty_hint="每类事件需要至少两周、十余件的历史。")
    f = f.sort_values("week", ascending=False)
    rng = lambda a, b: f"{a:.0f} – {b:.0f}"  # noqa: E731
    f = f.assign(t_rng=[rng(a, b) for a, b in zip(f["tomorrow_lo"], f["tomorrow_hi"])],
                 w_rng=[rng(a, b) for a, b in zip(f["week_lo"], f["week_hi"])])
    return table_html(f, columns=["series", "tomorrow", "t_rng", "week", "w_rng"],
                      labels={"series": "事件类型", "tomorrow": "明日预计", "t_rng": "大致范围", "week": "未来 7 天预计",
                              "w_rng": "大致范围"},
                      formatters={"tomorrow": lambda v: f"{v:.1f}", "week": lambda v: f"{v:.0f}"},
                      numeric=("tomorrow", "week"), max_rows=30)


def backtest_table(events: pd.DataFrame, tz: str) -> str:
    """The forecast's rolling backtest against seasonal naive (the weekly report's table)."""
    bt = pd.DataFrame()
    if len(events):
        d = pt.daily_counts(events, tz=tz, total="全部")
        bt = pt.backtest(d, origins=min(28, max(0, len(d) - 15)), min_mean=5)
    pct = ("mape_model", "mape_seasonal_naive", "coverage")
    return table_html(bt, labels={"series": "事件类型", "days": "回测天数", "mean_per_day": "日均事件数",
                                  "mape_model": "MAPE（模型）", "mape_seasonal_naive": "MAPE（季节朴素）",
                                  "coverage": "90% 区间覆盖率"},
                      formatters={c: (lambda v: f"{v:.1%}") for c in pct}, numeric=pct, empty="历史数据不足，无法回测")


# ------------------------------------------------------------------ charts

def hour_weekday_figure(events: pd.DataFrame, tz: str, title: str = "事件时段分布（北京时间）"):
    m = pt.hour_weekday(events, tz)
    with charts.chart_style():
        fig, ax = charts.new_figure(7.2, 3.2)
        im = ax.imshow(m.to_numpy(), aspect="auto", cmap="Blues")
        ax.set_yticks(range(7), list(m.index))
        ax.set_xticks(range(0, 24, 2), [f"{h}时" for h in range(0, 24, 2)])
        ax.grid(False)
        fig.colorbar(im, ax=ax, shrink=0.8, label="事件数")
        charts.set_title(fig, title)
    return fig


def on_time_figure(ot: pd.DataFrame, title: str = "各部门按期办结率"):
    """sla.on_time's table (Patterns.on_time) as a bar chart for reports."""
    ot = ot[ot["closed"] >= 5].sort_values("closed", ascending=False).head(15)  # the departments with most cases
    rate = ot.set_index("department")["on_time_rate"].sort_values() * 100
    return charts.bar_chart(rate.round(1), title=f"{title}（办结最多的 {len(rate)} 个部门，低的在上）",
                            xlabel="按期办结率（%）", color=theme.COLORS["accent"])


def km_figure(curves: dict, title: str = "办结时长（Kaplan–Meier，未办结按删失计）"):
    """sla.km_curves (Patterns.km_curves) as a step chart for reports."""
    with charts.chart_style():
        fig, ax = charts.new_figure(6.4, 3.6)
        for name, c in curves.items():
            ax.step(c["hours"], c["open_share"] * 100, where="post", label=name, linewidth=1.6)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("上报后小时数")
        ax.set_ylabel("尚未办结（%）")
        if curves:
            ax.legend(fontsize=8.5, loc="upper right")
        charts.set_title(fig, title)
    return fig


# ------------------------------------------------------------------ interactive (the page)

def _place_label(places: pd.Series, view: EventsView) -> pd.Series:
    """A hotspot's name on the map: without its district where the map is of that one district."""
    if not view.district:
        return places
    return places.str.removeprefix(view.district).str.strip().replace("", view.district)


def map_points(view: EventsView) -> pd.DataFrame:
    """The map's places: the hotspot areas (named by district, street and grid, sized by their
    events) and the overdue open cases with coordinates (named by class and street)."""
    cols = ["lat", "lon", "label", "size", "tone", "group", "hover"]
    parts = []
    h = view.hot[view.hot["significant"]] if len(view.hot) else view.hot
    if len(h):
        parts.append(pd.DataFrame({
            "lat": h["lat"], "lon": h["lon"], "label": _place_label(h["place"].fillna(h["district"]).astype(str), view),
            "size": h["count"].astype(float), "tone": "warn", "group": "热点区域（500 米见方）",
            "hover": [f"近期事件 {c} 件，是{view.scope}平均的 {r:.1f} 倍\n主要类型：{t}"
                      for c, r, t in zip(h["count"], h["ratio"], h["top_class"])]}))
    od = view.open[view.open["overdue"] & view.open["lat"].notna() & view.open["lon"].notna()] \
        if view.open is not None and len(view.open) else None
    if od is not None and len(od):
        where = [" ".join(x for x in (None if view.district else d, st) if isinstance(x, str)) or (d if isinstance(d, str) else "位置未知")
                 for d, st in zip(od["district"], od["street"])]   # a district's own map: the street
        parts.append(pd.DataFrame({
            "lat": od["lat"], "lon": od["lon"], "label": [f"{c} · {w}" for c, w in zip(od["event_class"], where)],
            "size": 0.0, "tone": "bad", "group": "超期未办结事件",
            "hover": [f"{e}，已超期 {_hours(x)}\n责任部门：{d if isinstance(d, str) else DASH}"
                      for e, x, d in zip(od["event_id"], od["overdue_hours"], od["department"])]}))
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def open_by_district(view: EventsView) -> tuple[pd.Series, dict]:
    """Open city events per district (the map's shading) and each district's hover lines."""
    st = view.open if view.open is not None else pd.DataFrame()
    if st.empty:
        return pd.Series(dtype=float), {}
    ev = st[st["case_type"].fillna(flow.CASE_TYPE) != bd.INSPECTION] if "case_type" in st else st
    ev = ev[ev["district"].notna()]
    n = ev.groupby("district").size()
    od = ev[ev["overdue"]].groupby("district").size()
    hover = {d: [f"其中超期 {int(od.get(d, 0))} 件"] for d in n.index}
    return n.astype(float), hover


def events_map(view: EventsView):
    """The city's districts shaded by open events, the hotspot areas and overdue cases named. A
    district user's map names only the district's own (its neighbours stay unnamed outlines)."""
    from workbench.ui import maps

    values, hover = open_by_district(view)
    mine = access.district_filter(view.who)
    fig = maps.district_spec(values, title="各区县在办事件、热点区域与超期事件", unit="件", value_label="在办事件",
                             points=map_points(view), hover=hover, districts=[mine] if mine else None, height=560)
    if mine:
        from workbench import geo

        for tr in fig["data"]:
            if tr.get("name") == "区县" and tr.get("mode") == "text":   # the names on the map, in geo.DISTRICTS order
                tr["text"] = [t if d.name == mine else "" for t, d in zip(tr["text"], geo.DISTRICTS)]
                tr["hovertext"] = [t if d.name == mine else "" for t, d in zip(tr["hovertext"], geo.DISTRICTS)]
            elif tr.get("name") in geo.NAMES and tr.get("name") != mine:
                tr["text"], tr["hoverinfo"] = "", "skip"
    w = charts.interactive(fig, config={"scrollZoom": True})
    w.add_class("wb-map")
    return w


def on_time_chart(ot: pd.DataFrame):
    ot = ot[ot["closed"] >= 5].sort_values("closed", ascending=False).head(15)
    rate = (ot.set_index("department")["on_time_rate"] * 100).round(1).sort_values()
    return charts.interactive_bars(rate, title=f"按期办结率（办结最多的 {len(rate)} 个部门，低的在上）", unit="%",
                                   color=theme.COLORS["accent"])


def km_chart(curves: dict):
    """How many cases are still open so many hours after their report, per department (the
    Kaplan–Meier curves of sla.km_curves, open cases counted as still open: named in the 说明)."""
    # six departments' long names: the legend below the plot, not beside the title above it
    fig = charts.spec(title="上报后多少小时办结（曲线越快下降办得越快）", height=430, hovermode="x unified",
                      xaxis={"title": {"text": "上报后小时数"}, "type": "log"},
                      yaxis={"title": {"text": "尚未办结（%）"}, "range": [0, 102]},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.27, "xanchor": "left", "x": 0},
                      margin={"b": 120})
    for name, c in curves.items():
        fig["data"].append({"type": "scatter", "x": c["hours"].clip(lower=0.1).round(3).tolist(),
                            "y": (c["open_share"] * 100).round(1).tolist(), "name": name, "mode": "lines",
                            "line": {"shape": "hv", "width": 2},
                            "hovertemplate": "%{y}%<extra>" + esc(name) + "</extra>"})
    return charts.interactive(fig)


def hour_weekday_chart(m: pd.DataFrame):
    """patterns.hour_weekday's counts (Patterns.hour_weekday) as a heat map."""
    fig = charts.spec(title="一周中各时段的事件数（北京时间）", height=320)
    fig["data"].append({"type": "heatmap", "z": m.to_numpy().tolist(), "x": [f"{h}时" for h in m.columns],
                        "y": list(m.index), "colorscale": [[0, "#eef3fa"], [1, "#123f73"]],
                        "hovertemplate": "%{y} %{x}：%{z} 件<extra></extra>", "colorbar": {"title": {"text": "件"}}})
    fig["layout"]["yaxis"] = {**fig["layout"].get("yaxis", {}), "autorange": "reversed"}
    return charts.interactive(fig)


def km_face(km: pd.DataFrame) -> str:
    """The resolution time in plain words (sla.resolution_km over all cases: Patterns.km)."""
    if km is None or km.empty or km["median_h"].isna().all():
        return "办结记录不足，暂不能估计办结时长。"
    r = km.iloc[0]
    p90 = f"，九成在 {_hours(r['p90_h'])}内" if r["p90_h"] == r["p90_h"] else ""
    return (f"近期全部案件中，一半在上报后 {_hours(r['median_h'])}内办结{p90}；"
            f"还有 {int(r['censored'])} 件尚未办结，已按“至今未办结”计入，不会让结果偏快。")


KM_FACE_LABELS = {"department": "责任部门", "cases": "案件数", "closed": "已办结", "median_h": "一半办结用时（小时）",
                  "p90_h": "九成办结用时（小时）"}


def km_face_table(km: pd.DataFrame) -> str:
    """sla.resolution_km by department (Patterns.km_by), the columns of the face."""
    if km is None or km.empty:
        return table_html(None, empty="暂无办结记录")
    f = {c: (lambda v: DASH if v != v else f"{v:.1f}") for c in ("median_h", "p90_h")}
    return table_html(km.sort_values("cases", ascending=False), columns=list(KM_FACE_LABELS), labels=KM_FACE_LABELS,
                      formatters=f, numeric=tuple(f), max_rows=40, max_height="420px")


# ------------------------------------------------------------------ the page

def _on_time_rate(ot: pd.DataFrame) -> float | None:
    """Closed on time over closed, all departments together (sla.on_time's table; None when nothing closed)."""
    closed = ot["closed"].sum() if ot is not None and len(ot) else 0
    return ot["closed_on_time"].sum() / closed if closed else None


def kpis_html(view: EventsView, counts: pd.DataFrame | None = None, opened: pd.DataFrame | None = None) -> str:
    """The page's top cards. 在办/超期 come from `board_counts` (the one count the board's cards
    use too: city events; safety's inspection tasks counted apart), 临近超期 from the open cases'
    deadline states, 近 24 小时 from the hub (at the visit), 按期办结率 from the window's patterns."""
    counts = view.counts if counts is None else counts
    opened = view.open if opened is None else opened
    st = view.snap.states if view.snap is not None else None
    if counts is None and st is not None:   # a view without the hub's counts (a report's): the window's states
        counts = pd.DataFrame({"case_type": flow.CASE_TYPE, "department": None, "status": st["status"],
                               "n": 1, "overdue": st["overdue"].astype(int)})[st["open"]] if len(st) else \
            pd.DataFrame(columns=["case_type", "department", "status", "n", "overdue"])
    tot = bd.board_total(counts)
    if not tot["listed"] and view.pat.empty:
        return cards.kpi_html("在办事件", 0, unit="件", note="暂无事件", tone="muted")
    ev = opened[opened["case_type"].fillna(flow.CASE_TYPE) != bd.INSPECTION] \
        if opened is not None and len(opened) and "case_type" in opened else opened
    nd = int(ev["near_due"].sum()) if ev is not None and len(ev) else 0
    if view.recent is not None:
        today = view.recent
    else:
        today = int((st["ts"] >= view.now - pd.Timedelta(hours=24)).sum()) if st is not None and len(st) else 0
    rate = _on_time_rate(view.pat.on_time)
    od, waiting = tot["overdue"], tot["waiting"]
    return "".join([
        cards.kpi_html("在办事件", tot["open"], unit="件", note=f"待受理 {waiting} 件", tone="warn" if waiting else ""),
        cards.kpi_html("超期未办结", od, unit="件", note="须督办" if od else "均在时限内", tone="bad" if od else "ok"),
        cards.kpi_html("临近超期", nd, unit="件", note="剩余时间不足 20%", tone="warn" if nd else "ok"),
        *([cards.kpi_html("预警巡查任务", tot["tasks"], unit="件", note=f"另计，其中超期 {tot['tasks_overdue']} 件",
                          tone="bad" if tot["tasks_overdue"] else "")] if tot["tasks"] else []),
        cards.kpi_html("近 24 小时新增", today, unit="件"),
        cards.kpi_html("按期办结率", f"{rate:.1%}" if rate is not None else None, note="已办结案件中按期的比例"),
    ])


REVEAL_LABELS = {"reporter_name": "诉求人", "reporter_phone": "联系电话", "reporter_id_no": "证件号码",
                 "description": "问题描述（原文）", "address": "地址（原文）"}


def row_key(event_id: str) -> str:
    """An event's key in the protected table, as workbench.store.ingest.row_keys writes it."""
    return json.dumps([str(event_id)], ensure_ascii=False)


def reveal_html(got: dict) -> str:
    """The originals privacy.reveal returned, labelled."""
    if not got:
        return '<div class="wb-note wb-reveal">该事件没有保存诉求人信息。</div>'
    order = [f for f in REVEAL_LABELS if f in got] + sorted(set(got) - set(REVEAL_LABELS))
    rows = "".join(f"<tr><th>{esc(REVEAL_LABELS.get(f, f))}</th><td>{esc(got[f])}</td></tr>" for f in order)
    return (f'<div class="wb-note wb-reveal">诉求人信息原文（本次查看已记入审计日志）：'
            f'<table class="wb-table wb-reveal-table">{rows}</table></div>')


PAGE_ROWS = 50   # cases per page of the board


def departments(view: EventsView) -> set:
    """The departments the board offers: those holding open cases and those of the window's cases."""
    out = set()
    for frame in (view.counts, view.pat.on_time):
        if frame is not None and len(frame) and "department" in frame:
            out |= set(frame["department"].dropna())
    return {d for d in out if isinstance(d, str) and d}


class LiveBoard:
    """The dispatch board: filter by department, page through every open case in the board's
    order (board.BOARD_ORDER), act on one as the signed-in user `who` (派往 starts at the
    department the routing rules give the picked case); polls the hub every `interval` seconds
    and redraws. The page's top cards and deadline tables are the board's too: redrawn after
    every step from the same counts, so nothing on the page stays stale after a save.
    A district user sees (and polls) the district's cases only."""

    def __init__(self, view: EventsView, interval: float = 5.0, eng=None, who=None, page_rows: int = PAGE_ROWS):
        import ipywidgets as w

        self.view, self.interval, self.eng, self.page_rows = view, interval, eng, page_rows
        self.who = who if who is not None else view.who
        self.district = access.district_filter(self.who)
        self.rules = view.rules
        depts = sorted(departments(view))
        self.dept = w.Dropdown(options=[("全部部门", ALL)] + [(d, d) for d in depts], value=ALL, description="部门",
                               layout=w.Layout(width="280px"))
        self.dept.style.description_width = "40px"
        self.dept.add_class("wb-select")
        self.top = w.HTML(layout=w.Layout(width="100%"))
        self.top.add_class("wb-events-top")
        self.table = w.HTML(layout=w.Layout(width="100%"))
        self.table.add_class("wb-events-board")
        self.cards = w.HTML(layout=w.Layout(width="100%"))
        self.cards.add_class("wb-events-cards")
        self.page_no = 0
        self.prev_page = w.Button(description="上一页", layout=w.Layout(width="auto"))
        self.prev_page.add_class("wb-events-prev")
        self.next_page = w.Button(description="下一页", layout=w.Layout(width="auto"))
        self.next_page.add_class("wb-events-next")
        self.prev_page.on_click(lambda _b: self.turn(-1))
        self.next_page.on_click(lambda _b: self.turn(1))
        self.pager = w.HTML()
        self.pager.add_class("wb-events-pager")
        self.overdue = w.HTML(layout=w.Layout(width="100%"))
        self.overdue.add_class("wb-events-overdue")
        self.near = w.HTML(layout=w.Layout(width="100%"))
        self.near.add_class("wb-events-near")
        self.pick = w.Dropdown(options=[], description="事件", layout=w.Layout(width="420px"))
        self.pick.style.description_width = "40px"
        self.pick.add_class("wb-events-pick")
        self._depts = [d for d in depts + [self.rules.default_department] if d]
        self.to_dept = w.Dropdown(options=[(d, d) for d in dict.fromkeys(self._depts)], value=None, description="派往",
                                  layout=w.Layout(width="280px"))
        self.to_dept.style.description_width = "40px"
        self.to_dept.add_class("wb-events-to")
        self.note = w.Text(value="", placeholder="办理意见（可选）", layout=w.Layout(width="300px"))
        self.buttons = {}
        for action, style in (("accept", "primary"), ("dispatch", "info"), ("handle", ""), ("feedback", ""),
                              ("close", "success"), ("reject", "warning"), ("defer", "")):
            b = w.Button(description=flow.ACTION_LABELS[action], button_style=style, layout=w.Layout(width="auto"))
            b.add_class(f"wb-act-{action}")
            b.on_click(lambda _b, a=action: self.act(a))
            self.buttons[action] = b
        self.message = w.HTML()
        self.message.add_class("wb-events-message")
        self.status = w.HTML()
        self.user = w.HTML(f'<div class="wb-note wb-events-actor">办理人：{esc(self.who.actor)}（当前登录用户）</div>'
                           if self.who is not None else "")
        self.readonly = layout.lock([self.to_dept, self.note, *self.buttons.values()],
                                    layout.read_only_reason(self.who))
        self.readonly.add_class("wb-events-readonly")
        # the caller's originals: allowed roles only, with a reason (privacy.reveal audits the read)
        self.may_reveal = self.who is not None and self.who.role in access.UNMASKING_ROLES
        self.reason = w.Text(value="", placeholder="查看事由（必填，记入审计日志）", layout=w.Layout(width="300px"))
        self.reason.add_class("wb-reveal-reason")
        self.reveal_button = w.Button(description="查看诉求人信息", layout=w.Layout(width="auto"))
        self.reveal_button.add_class("wb-reveal-button")
        self.reveal_button.on_click(lambda _b: self.reveal())
        self.revealed = w.HTML()
        self.revealed.add_class("wb-reveal-out")
        self._routed: dict = {}
        self._prefilled = None      # the case 派往 was last set for (a person's own choice is kept on redraws)
        self._redrawing = False
        self.dept.observe(lambda _c: self.turn(None), "value")
        self.pick.observe(lambda _c: self.prefill(), "value")
        self._seen = None
        self._task = None
        self._polls = 0
        self.refresh(tables=True, counts=view.counts, opened=view.open)   # the first draw: what the page read

    # reading
    def now(self) -> pd.Timestamp:
        return board_now(self.view.now)

    def rows(self, counts: pd.DataFrame | None = None) -> pd.DataFrame:
        """The board's current page (board.BOARD_ORDER); with `counts` (board_counts), only the
        statuses that hold open cases are read (one statement each)."""
        statuses = flow.OPEN_STATUSES
        if counts is not None:
            c = counts[counts["department"] == self.dept.value] if self.dept.value and len(counts) else counts
            statuses = tuple(s for s in flow.OPEN_STATUSES if s in set(c.loc[c["n"] > 0, "status"]))
            if not statuses:
                return bd.board_rows(self.eng, statuses=(), rules=self.rules)
        return bd.board_rows(self.eng, department=self.dept.value or None, limit=self.page_rows, statuses=statuses,
                             offset=self.page_no * self.page_rows, district=self.district, rules=self.rules)

    def turn(self, step: int | None):
        """Another page (`step` ±1), or back to the first (None: the department filter changed)."""
        self.page_no = 0 if step is None else max(0, self.page_no + step)
        self.refresh_shown()

    def prefill(self):
        """派往 starts at the department the routing rules give the picked case (once per pick);
        with no case picked it is empty (nothing to send anywhere)."""
        eid = self.pick.value
        if self._redrawing:
            return
        if not eid:
            self.to_dept.value, self._prefilled = None, None
            return
        if eid == self._prefilled:
            return
        dept = self._routed.get(eid)
        if dept:
            if dept not in {v for _, v in self.to_dept.options}:
                self.to_dept.options = list(self.to_dept.options) + [(dept, dept)]
            self.to_dept.value = dept
        self._prefilled = eid

    def refresh(self, note: str | None = None, tables: bool = True, counts: pd.DataFrame | None = None,
                opened: pd.DataFrame | None = None):
        """Redraw the board (page, cards, pick list) and, with `tables`, the page's top cards and
        deadline tables, all from one `board_counts` and one `open_states` read (`counts`,
        `opened`: read already, at the board's now)."""
        now = self.now()
        if counts is None:
            counts = bd.board_counts(self.eng, now=now, district=self.district)
        tot = bd.board_total(counts, self.dept.value or None)
        pages = max(1, math.ceil(tot["listed"] / self.page_rows))
        self.page_no = min(self.page_no, pages - 1)
        rows = self.rows(counts)
        self.table.value = board_table(rows, now, limit=self.page_rows)
        first = self.page_no * self.page_rows
        self.pager.value = (f'<div class="wb-note wb-events-count">共 {tot["listed"]:,} 件在办'
                            + (f"（含预警巡查任务 {tot['tasks']:,} 件）" if tot["tasks"] else "")
                            + (f" · 第 {self.page_no + 1} / {pages} 页，显示第 {first + 1:,}–{first + len(rows):,} 件"
                               if len(rows) else "") + "</div>")
        self.prev_page.disabled = self.page_no == 0
        self.next_page.disabled = self.page_no >= pages - 1
        self._routed.update(zip(rows["event_id"], rows["routed"]))
        current = self.pick.value
        opts = [(f"{r.event_id} · {r.event_class} · {r.status}", r.event_id) for r in rows.itertuples()]
        shown = dict(zip(rows["event_id"], rows["status"]))
        if current and current not in {v for _, v in opts}:  # the case being worked on stays picked
            from workbench.store import hub

            where = {"event_id": current, **({"district": self.district} if self.district else {})}
            cur = hub.read("city_events", where=where, columns=["event_id", "event_class", "status"], eng=self.eng)
            opts = [(f"{r.event_id} · {r.event_class} · {r.status}", r.event_id) for r in cur.itertuples()] + opts
            shown.update(zip(cur["event_id"], cur["status"]))
        self._shown = shown  # the status each case had on screen: what a button expects
        self._redrawing = True
        try:
            self.pick.options = opts
            if current in {v for _, v in opts}:
                self.pick.value = current
        finally:
            self._redrawing = False
        self.prefill()
        # the page's top cards count every department: the board repeats none of them, it counts
        # only for a department picked in its filter
        dept = self.dept.value or None
        self.cards.value = "" if not dept else '<div class="wb-cards">' + "".join([
            cards.kpi_html(f"{dept}在办", tot["open"], unit="件", note=f"待受理 {tot['waiting']} 件",
                           tone="warn" if tot["waiting"] else ""),
            cards.kpi_html("其中超期", tot["overdue"], unit="件", tone="bad" if tot["overdue"] else "ok"),
            *([cards.kpi_html("预警巡查任务", tot["tasks"], unit="件", note=f"另计，其中超期 {tot['tasks_overdue']} 件")]
              if tot["tasks"] else []),
        ]) + "</div>"
        if tables:
            if opened is None:
                opened = bd.open_states(self.eng, now, district=self.district, near_share=self.rules.near_due_share)
            self.top.value = f'<div class="wb-cards">{kpis_html(self.view, counts, opened)}</div>'
            every = int(counts["overdue"].sum()) if len(counts) else 0   # events and tasks, as the table lists
            self.overdue.value = overdue_table(opened, total=every)
            self.near.value = near_due_table(opened)
        stamp = f"调度台每 {self.interval:g} 秒自动刷新 · 最近刷新 {format_time(utc_now(), '%H:%M:%S')}（北京时间）"
        self.status.value = f'<div class="wb-note">{esc(note + " · " if note else "")}{esc(stamp)}</div>'

    def refresh_shown(self, note: str | None = None, tables: bool = True):
        """refresh(), a hub that does not answer shown as 数据暂不可用（自 … 起） (a widget's callback
        has nobody to raise to)."""
        try:
            self.refresh(note, tables=tables)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            if not layout.hub_unreachable(exc):
                raise
            self.status.value = layout.unavailable_html(layout.hub_down())

    # writing (through the case flow)
    def act(self, action: str):
        from workbench.store import hub

        eid = self.pick.value
        if not eid:
            self.message.value = '<div class="wb-note">请先选择一件事件。</div>'
            return
        why = layout.read_only_reason(self.who)
        if why:
            self.message.value = f'<div class="wb-note wb-events-refused">未执行：{esc(why)}</div>'
            return
        if action == "dispatch" and not self.to_dept.value:
            self.message.value = '<div class="wb-note wb-events-refused">未执行：请先在“派往”中选择部门。</div>'
            return
        try:
            ch = flow.act(self.eng or hub.engine(), eid, action, actor=self.who,
                          note=self.note.value.strip(), department=self.to_dept.value if action == "dispatch" else None,
                          expected=getattr(self, "_shown", {}).get(eid))
        except (flow.FlowError, access.AccessDenied) as exc:
            self.message.value = f'<div class="wb-note wb-events-refused">未执行：{esc(exc.problem)}</div>'
            self.refresh_shown()  # show what the case is now
            return
        except Exception as exc:  # noqa: BLE001 - the hub gone: said so, nothing written
            if not layout.hub_unreachable(exc):
                raise
            self.message.value = (f'<div class="wb-note wb-events-refused">未执行：'
                                  f'{esc(layout.unavailable_text(layout.hub_down()))}</div>')
            return
        self.note.value = ""
        self.message.value = (f'<div class="wb-note wb-events-done">已{esc(flow.ACTION_LABELS[action])}：'
                              f'{esc(ch.case_id)}（{esc(ch.before)} → {esc(ch.after)}，办理人 {esc(ch.actor)}）</div>')
        self.refresh_shown()  # the board, the top cards and the deadline tables: the step shows at once

    def reveal(self):
        """The picked event's caller (name, phone, ID, the texts' originals) for an allowed role,
        with the reason typed; refused with why otherwise. privacy.reveal writes the audit row."""
        from workbench import privacy
        from workbench.store import hub

        eid = self.pick.value
        if not eid:
            self.revealed.value = '<div class="wb-note">请先选择一件事件。</div>'
            return
        try:
            got = privacy.reveal(self.who, "city_events", row_key(eid), self.reason.value, eng=self.eng or hub.engine())
        except access.AccessDenied as exc:
            self.revealed.value = f'<div class="wb-note wb-refused">不能查看：{esc(exc.problem)}</div>'
            return
        except Exception as exc:  # noqa: BLE001 - the hub gone: said so
            if not layout.hub_unreachable(exc):
                raise
            self.revealed.value = f'<div class="wb-note wb-refused">{esc(layout.unavailable_text(layout.hub_down()))}</div>'
            return
        self.reason.value = ""
        self.revealed.value = reveal_html(got)

    # polling
    def _changed(self) -> bool:
        """True when events newer than the last look arrived (self._new says how many)."""
        latest = bd.latest_ts(self.eng, self.district)
        changed = self._seen is not None and latest is not None and (self._seen[0] is None or latest > self._seen[0])
        self._new = bd.count_since(self._seen[0], self.eng, self.district) if changed else 0
        self._seen = (latest,)
        return changed

    async def _poll(self):
        self._changed()
        while True:
            await asyncio.sleep(self.interval)
            self._polls += 1
            try:
                if self._changed():
                    self.refresh(note=f"新到事件 {self._new} 件" if self._new > 0 else "有更新")
                else:
                    self.refresh(tables=self._polls % 6 == 0)   # the deadline tables every sixth look
            except Exception as exc:  # shown, and the timer keeps going
                if layout.hub_unreachable(exc):
                    self.status.value = layout.unavailable_html(layout.hub_down())
                else:
                    self.message.value = f'<div class="wb-note">刷新失败：{esc(exc)}</div>'

    def start(self):
        if self._task is None:
            self._task = asyncio.ensure_future(self._poll())
        return self

    def widget(self):
        import ipywidgets as w

        acts = w.HBox([self.pick, self.to_dept, self.note])
        btns = w.HBox(list(self.buttons.values()))
        pages = w.HBox([self.prev_page, self.next_page, self.pager])
        boxes = [acts, btns, pages]
        if self.may_reveal:
            boxes.append(w.HBox([self.reason, self.reveal_button]))
        for box in boxes:
            box.add_class("wb-controls")
        items = [self.dept, self.cards, self.status, pages, self.table, acts, self.user, btns, self.readonly,
                 self.message]
        if self.may_reveal:
            items += [boxes[3], self.revealed]
        return layout.stack(items, "wb-events-live")


def hotspot_method(scope: str = "全市") -> str:
    """How the 500 m hotspots are found, over `scope` (EventsView.scope: the city, or the one
    district a view or report analyses alone)."""
    return (f"热点区域：把{scope}划成 500 米见方的格子，只统计有坐标的事件；每个格子的事件数与{scope}平均（有事件的格子平均数）比较，"
            "单侧精确泊松检验，再用 Benjamini–Hochberg 方法控制多重检验的错误发现率（5%），且至少 5 件才算热点。")


def area_method(scope: str = "全市") -> str:
    """How the street and grid hotspots are found, over `scope` (see hotspot_method)."""
    return (f"街道、网格热点：应有事件数 = 参与统计的事件总数 × 该街道（网格）常住人口占{scope}的比例；实际数与应有数做单侧精确泊松检验，"
            "Benjamini–Hochberg 校正（错误发现率 5%），至少 5 件。街道统计包括只有地址、按地址定位到街道的工单。")


KM_METHOD = ("办结时长用 Kaplan–Meier 生存分析估计（statsmodels SurvfuncRight）：尚未办结的案件按“删失”计入，即只知道它至少已用了"
             "这么久，不被丢弃——只看已办结案件会把办结时长估得偏短。下表给出中位数的 95% 置信区间和只看已办结案件的朴素中位数作对照。")
FORECAST_METHOD = ("预测：每类事件的日数用泊松广义线性模型（星期几、线性趋势）拟合最近 56 天，休息日不参与拟合；"
                   "某类事件只在少数几天集中出现（如寒潮时的道路结冰），或按趋势外推超过近期最多一天的 3 倍时，"
                   "改为只按星期几、再不行按近期平均水平预计；按过度离散系数放宽为负二项分布的 90% 预测区间。")


def analysed_note(view: EventsView) -> str:
    """Up to when the patterns hold, where they were kept from an earlier analysis."""
    if view.analysed is None or view.pat.latest is None:
        return ""
    again = "；有新事件到达，正在后台重新分析，刷新页面即可看到" if view.stale else ""
    return (f'<div class="wb-note wb-events-analysed">以下热点、办结和规律按 {format_time(view.analysed)} 的分析'
            f'（含截至 {format_time(view.pat.latest)} 上报的事件）{esc(again)}。</div>')


def body(view: EventsView, live: "LiveBoard | None" = None):
    """Everything below the live board: map, deadlines, patterns (view.pat). With `live`, the
    deadline tables are the board's widgets (redrawn after every step)."""
    pat = view.pat
    opened = view.open if view.open is not None else pd.DataFrame()
    overdue = live.overdue if live is not None else layout.html(overdue_table(opened))
    near = live.near if live is not None else layout.html(near_due_table(opened))
    n_hot = int(pat.hot["significant"].sum()) if len(pat.hot) else 0
    return layout.stack([
        layout.section("事件热点地图", "各区县颜色越深，在办事件越多；橙色圆点是近期事件明显偏多的区域（按区县、街道、网格命名，"
                                 "圆点越大事件越多），红点是超期未办结的事件。鼠标移到区县或圆点上可看详情，滚轮缩放。"),
        *([layout.html(note)] if (note := analysed_note(view)) else []),
        layout.grid([events_map(view), layout.html(hotspot_table(pat.hot, scope=view.scope))]),
        layout.explain(esc(f"近 {pat.span_days} 天里，有 {n_hot} 片区域的事件数明显高于{view.scope}平均水平。")
                       + " " + placement_note_html(pat.placement), esc(hotspot_method(view.scope))),
        layout.section("街道热点", "按街道统计事件数，与按常住人口应有的事件数比较；只有地址的热线工单也按地址计入所在街道。"),
        layout.html(street_hotspot_table(pat.street_hot, scope=view.scope)),
        layout.section("网格热点", "按网格（网格化管理单元）统计，与按常住人口应有的事件数比较，明显偏高的网格列在这里。"),
        layout.html(grid_hotspot_table(pat.grid_hot, scope=view.scope)),
        layout.explain("街道和网格的“应有”事件数按常住人口分摊，“是应有的几倍”越大越需要关注。", esc(area_method(view.scope))),
        layout.section("超期未办结", "超过处置时限仍未办结的事件（不论何时上报）；超期超过一倍时限为严重超期，已生成升级告警。"),
        overdue,
        layout.section("临近超期", "剩余时间不足处置时限 20% 的在办事件。"),
        near,
        layout.section("各部门按期办结率", "按期办结 = 结案时间不晚于处置时限；重复件与不予立案不计入。"),
        layout.grid([on_time_chart(pat.on_time) if len(pat.on_time) else layout.empty("暂无数据"),
                     layout.html(on_time_table(pat.on_time))]),
        layout.section("办结时长", "各部门的案件在上报后多久办结。"),
        layout.explain(esc(km_face(pat.km)), esc(KM_METHOD) + km_table(pat.km_by)),
        layout.grid([km_chart(pat.km_curves) if pat.km_curves else layout.empty("暂无数据"),
                     layout.html(km_face_table(pat.km_by))]),
        layout.section("事件规律", "按类型、时段统计；重复发生的地点；明日和未来 7 天各类事件量预计（给出大致范围）。"),
        layout.grid([charts.interactive_bars(pat.volumes.head(12), title="各类事件数量", unit="件")
                     if len(pat.volumes) else layout.empty("暂无数据"),
                     hour_weekday_chart(pat.hour_weekday) if pat.events else layout.empty("暂无数据")]),
        layout.grid([layout.html(forecast_table(pat.forecast, pat.events)), layout.html(repeats_table(pat.repeats))]),
        layout.explain("预计范围内的数字最可能出现；超出范围的日子值得留意。",
                       esc(FORECAST_METHOD + "模型与季节朴素法的回测比较见城市事件周报。")),
    ])


def page(view: EventsView, interval: float = 5.0, start: bool = True, who=None):
    live = LiveBoard(view, interval=interval, who=who)
    if start:
        live.start()
    return layout.stack([
        live.top,
        layout.section("调度台", bd.BOARD_ORDER + "选择事件后可受理立案、派遣、结案，“派往”预先填好按派遣规则应去的部门；"
                                 "改动直接写入数据中台并记入流转记录。"),
        live.widget(),
        body(view, live),
    ], "wb-events")


def screen(view: EventsView, interval: float = 5.0, who=None):
    """The dashboard below the header for `who`: the page; or, on an empty hub, the empty state
    above the live board (events appear there as they arrive)."""
    if view.empty:
        live = LiveBoard(view, interval=interval, who=who).start()
        return layout.stack([layout.empty("城市事件暂无数据", "事件到达后会自动出现在下面的调度台；也可用 workbench events intake "
                                                     "或 workbench events listen 接入。"), live.widget()])
    out = page(view, interval=interval, who=who)
    refresh_kept(view)   # kept patterns older than the newest report: analysed again after this visit
    return out


# ------------------------------------------------------------------ the weekly report

@dataclass
class Weekly:
    period: object
    view: EventsView
    week: pd.DataFrame     # events reported in the period (of view.district where it is one's)
    summary: object = None  # workbench.events.weekly.WeeklySummary

    @property
    def where(self) -> str:
        return self.view.scope


def load_weekly(days: int = 7, end=None, district: str | None = None, eng=None) -> Weekly:
    """The weekly bulletin's data: the period of `days` whole Beijing days ending with `end`
    (default: yesterday, or the last day the data reaches when that is earlier), the page's
    view as it stood at the period's end, and the summary (workbench.events.weekly)."""
    from workbench.events import weekly as wk
    from workbench.reports import period as report_period, yesterday

    if end in (None, ""):
        last = bd.latest_ts(eng)
        end = min(to_local(last).date(), yesterday()) if last is not None else None
    p = report_period(days, end)
    # the state at the end of the period, the patterns (hotspots, forecast, Kaplan–Meier,
    # repeats) analysed once, of the district's events where the report is one district's
    view = load(days=120, eng=eng, end=p.end_utc, district=district or None)
    ev = view.snap.events
    week = ev[(ev["ts"] >= p.start_utc) & (ev["ts"] < p.end_utc)] if len(ev) else ev
    summary = wk.summarize(ev, p, where=view.scope, near_share=view.snap.rules.near_due_share) \
        if len(ev) else None
    return Weekly(p, view, week, summary)


def weekly_cards(w: Weekly) -> str:
    st = w.view.snap.states
    wk = st[st["event_id"].isin(w.week["event_id"])] if len(st) else st
    rate = _on_time_rate(sla.on_time(wk) if len(wk) else None)
    merged = int((wk["status"] == flow.DUPLICATE).sum()) if len(wk) else 0
    return '<div class="wb-cards">' + "".join([
        cards.kpi_html("本期上报", len(w.week), unit="件", note=f"合并重复件 {merged} 件"),
        cards.kpi_html("本期按期办结率", f"{rate:.1%}" if rate is not None else None),
        cards.kpi_html("当前超期未办结", int(st["overdue"].sum()) if len(st) else 0, unit="件",
                       tone="bad" if len(st) and st["overdue"].any() else "ok"),
        cards.kpi_html("显著热点网格", int(w.view.hot["significant"].sum()) if len(w.view.hot) else 0, unit="个"),
    ]) + "</div>"


__all__ = ["EventsView", "prepare", "load", "board_table", "overdue_table", "near_due_table", "on_time_table",
           "km_table", "hotspot_table", "grid_hotspot_table", "street_hotspot_table", "placement_note_html", "hotspot_method", "area_method", "repeats_table", "forecast_table", "backtest_table", "hour_weekday_figure", "events_map", "map_points", "open_by_district",
           "on_time_chart", "km_chart", "hour_weekday_chart", "km_face", "km_face_table", "board_now", "PAGE_ROWS",
           "on_time_figure", "km_figure", "kpis_html", "LiveBoard", "departments", "refresh_kept", "analysed_note", "body", "page", "Weekly", "load_weekly",
           "weekly_cards", "screen", "row_key", "reveal_html", "REVEAL_LABELS"]
