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
    snap: bd.Snapshot
    hot: pd.DataFrame            # patterns.hotspots over the window (500 m cells)
    grid_hot: pd.DataFrame       # patterns.grid_hotspots: 网格 against the city's rate per resident
    street_hot: pd.DataFrame = None  # patterns.street_hotspots: streets, address-placed events counted too
    who: access.Principal | None = None  # whose view (a district user's is one district's)

    @property
    def empty(self) -> bool:
        return self.snap.empty

    @property
    def now(self):
        return self.snap.now


def prepare() -> None:
    from workbench.store import hub

    hub.engine()
    dp.load_rules()


def load(days: int = 90, now=None, city: str | None = None, eng=None, end=None, who=None) -> EventsView:
    """The page's data as `who` sees it (a district user: the district's events and grids only,
    read so from the hub; None: everything)."""
    from workbench.store import hub

    district = access.district_filter(who)
    snap = bd.load(dp.load_rules(city), days=days, now=now, eng=eng, end=end, district=district)
    hot = pt.hotspots(snap.events, cell_m=500) if len(snap.events) else pt.hotspots(snap.events)
    grids = hub.read("grids", where={"district": district} if district else None, eng=eng)
    return EventsView(snap, hot, pt.grid_hotspots(snap.events, grids), pt.street_hotspots(snap.events, grids), who=who)


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


def overdue_table(states: pd.DataFrame, limit: int = 50) -> str:
    od = sla.overdue(states) if len(states) else states
    if od is None or od.empty:
        return table_html(None, empty="暂无超期未办结事件", empty_hint="所有在办事件都还在处置时限内。")
    od = od.assign(level=od["escalation"].map({1: badge("超期", "warn"), 2: badge("严重超期", "bad")}),
                   late=od["overdue_hours"].map(_hours))
    return table_html(od, dataset="city_events",
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


def on_time_table(states: pd.DataFrame) -> str:
    ot = sla.on_time(states) if len(states) else pd.DataFrame()
    if ot.empty:
        return table_html(None, empty="暂无有处置时限的案件")
    return table_html(ot, labels=ONTIME_LABELS,
                      formatters={"on_time_rate": lambda v: DASH if v != v else f"{v:.1%}"},
                      numeric=("on_time_rate",), max_rows=40, max_height="420px")


def km_table(states: pd.DataFrame, now, by: str = "department") -> str:
    km = sla.resolution_km(states, now, by=by) if len(states) else pd.DataFrame()
    if km.empty:
        return table_html(None, empty="暂无办结记录")
    f = {c: (lambda v: DASH if v != v else f"{v:.1f}") for c in ("median_h", "median_lo", "median_hi", "p90_h",
                                                                  "naive_median_h")}
    return table_html(km.sort_values("cases", ascending=False), labels=KM_LABELS, formatters=f,
                      numeric=tuple(f), max_rows=40, max_height="420px")


def hotspot_table(hot: pd.DataFrame, limit: int = 15) -> str:
    h = hot[hot["significant"]] if len(hot) else hot
    if h is None or h.empty:
        return table_html(None, empty="暂无显著热点", empty_hint="没有网格单元的事件数显著高于全市平均水平。")
    h = h.head(limit).assign(centre=[f"{a:.4f}, {b:.4f}" for a, b in zip(h["lat"].head(limit), h["lon"].head(limit))])
    return table_html(h, columns=["centre", "district", "top_class", "count", "expected", "ratio", "q_value"],
                      labels={"centre": "中心（纬度, 经度）", "district": "区县", "top_class": "主要类型", "count": "事件数",
                              "expected": "全市平均", "ratio": "倍数", "q_value": "校正后 p 值"},
                      formatters={"expected": lambda v: f"{v:.1f}", "ratio": lambda v: f"{v:.1f}",
                                  "q_value": lambda v: "<0.001" if v < 0.001 else f"{v:.3f}"},
                      numeric=("expected", "ratio", "q_value"))


def grid_hotspot_table(gh: pd.DataFrame, limit: int = 15) -> str:
    h = gh[gh["significant"]] if len(gh) else gh
    if h is None or h.empty:
        return table_html(None, empty="暂无显著的网格热点",
                          empty_hint="接入网格划分（含常住人口）后，按全市每万人事件率检验各网格；没有网格显著偏高。")
    return table_html(h.head(limit), dataset="grids",
                      columns=["grid_id", "district", "street", "population", "count", "expected", "per_10k", "ratio",
                               "q_value", "top_class"],
                      labels={"count": "事件数", "expected": "按人口应有", "per_10k": "每万人", "ratio": "倍数",
                              "q_value": "校正后 p 值", "top_class": "主要类型"},
                      formatters={"expected": lambda v: f"{v:.1f}", "per_10k": lambda v: f"{v:.0f}",
                                  "ratio": lambda v: f"{v:.1f}",
                                  "q_value": lambda v: "<0.001" if v < 0.001 else f"{v:.3f}"},
                      numeric=("expected", "per_10k", "ratio", "q_value"), max_rows=limit)


def placement_note_html(events: pd.DataFrame) -> str:
    """What the map's points stand for and what they leave out (events placed by address only)."""
    return f'<div class="wb-note">{esc(pt.placement_note(events))}</div>'


def street_hotspot_table(sh: pd.DataFrame | None, limit: int = 15) -> str:
    h = sh[sh["significant"]] if sh is not None and len(sh) else sh
    if h is None or h.empty:
        return table_html(None, empty="暂无显著的街道热点",
                          empty_hint="按街道统计有坐标和按地址定位到街道的事件，按全市每万人事件率检验；没有街道显著偏高。")
    return table_html(h.head(limit), dataset="city_events",
                      columns=["district", "street", "population", "count", "point", "by_address", "expected",
                               "per_10k", "ratio", "q_value"],
                      labels={"population": "常住人口", "count": "事件数", "point": "有坐标", "by_address": "按地址定位",
                              "expected": "按人口应有", "per_10k": "每万人", "ratio": "倍数", "q_value": "校正后 p 值"},
                      formatters={"expected": lambda v: f"{v:.1f}", "per_10k": lambda v: f"{v:.0f}",
                                  "ratio": lambda v: f"{v:.1f}",
                                  "q_value": lambda v: "<0.001" if v < 0.001 else f"{v:.3f}"},
                      numeric=("expected", "per_10k", "ratio", "q_value"), max_rows=limit)


def repeats_table(events: pd.DataFrame, limit: int = 20) -> str:
    rep = pt.repeat_locations(events) if len(events) else pd.DataFrame()
    if rep.empty:
        return table_html(None, empty="暂无重复发生的地点")
    return table_html(rep, dataset="city_events",
                      columns=["event_class", "district", "street", "address", "count", "first_ts", "last_ts",
                               "event_ids"],
                      labels={"count": "次数", "first_ts": "首次", "last_ts": "最近", "event_ids": "事件编号"},
                      wrap=("event_ids",), max_rows=limit)


def forecast_table(events: pd.DataFrame, tz: str) -> str:
    if events.empty:
        return table_html(None, empty="暂无数据，无法预测")
    f = pt.forecast(pt.daily_counts(events, tz=tz, total="全部"))
    if f.empty:
        return table_html(None, empty="历史数据不足，无法预测", empty_hint="每类事件需要至少两周、十余件的历史。")
    f = f.sort_values("week", ascending=False)
    rng = lambda a, b: f"{a:.0f} – {b:.0f}"  # noqa: E731
    f = f.assign(t_rng=[rng(a, b) for a, b in zip(f["tomorrow_lo"], f["tomorrow_hi"])],
                 w_rng=[rng(a, b) for a, b in zip(f["week_lo"], f["week_hi"])])
    return table_html(f, columns=["series", "tomorrow", "t_rng", "week", "w_rng"],
                      labels={"series": "事件类型", "tomorrow": "明日预计", "t_rng": "90% 区间", "week": "未来 7 天预计",
                              "w_rng": "90% 区间"},
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

def events_map_figure(states: pd.DataFrame, hot: pd.DataFrame, title: str = "事件与热点分布（事件最密集的区域）"):
    """Open events (overdue in red) and the hotspot cells, by longitude and latitude; no map
    tiles (offline). The densest area (where most events are) is drawn."""
    from matplotlib.patches import Rectangle

    s = states[states["lat"].notna() & states["lon"].notna()] if len(states) else states
    with charts.chart_style():
        fig, ax = charts.new_figure(7.6, 5.6)
        if len(s):
            # where attention is needed: around the hotspot cells (else the middle 80 % of events)
            h0 = hot[hot["significant"]] if len(hot) else hot
            box = h0 if len(h0) >= 2 else s
            q = (0.0, 1.0) if len(h0) >= 2 else (0.1, 0.9)
            lat_lo, lat_hi = box["lat"].quantile(list(q))
            lon_lo, lon_hi = box["lon"].quantile(list(q))
            pad_y, pad_x = max(0.01, (lat_hi - lat_lo) * 0.2), max(0.01, (lon_hi - lon_lo) * 0.2)
            closed = s[~s["open"]]
            op = s[s["open"] & ~s["overdue"]]
            od = s[s["overdue"]]
            ax.scatter(closed["lon"], closed["lat"], s=3, color="#c9d1dc", linewidths=0, label=f"已办结 {len(closed)}")
            ax.scatter(op["lon"], op["lat"], s=9, color=theme.COLORS["primary"], linewidths=0, alpha=0.8,
                       label=f"在办 {len(op)}")
            ax.scatter(od["lon"], od["lat"], s=16, color=theme.COLORS["bad"], linewidths=0, label=f"超期 {len(od)}")
            h = hot[hot["significant"]] if len(hot) else hot
            if len(h):
                dy = 500 / 111_320
                dx = dy / max(0.05, math.cos(math.radians(float(s["lat"].mean()))))
                for r in h.itertuples():
                    ax.add_patch(Rectangle((r.lon - dx / 2, r.lat - dy / 2), dx, dy, fill=False, lw=1.2,
                                           ec=theme.COLORS["warn"]))
                ax.plot([], [], "s", mfc="none", mec=theme.COLORS["warn"], label=f"热点网格 {len(h)}")
                for i, r in enumerate(h.head(3).itertuples(), start=1):
                    ax.annotate(f"{i}. {r.top_class}", (r.lon, r.lat), xytext=(6, 4), textcoords="offset points",
                                fontsize=8.5, color=theme.COLORS["text"])
            ax.set_xlim(lon_lo - pad_x, lon_hi + pad_x)
            ax.set_ylim(lat_lo - pad_y, lat_hi + pad_y)
            ax.set_aspect(1.0 / max(0.2, math.cos(math.radians(float(s["lat"].mean())))))
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5, markerscale=1.5)
        ax.set_xlabel("经度", fontsize=9)
        ax.set_ylabel("纬度", fontsize=9)
        ax.tick_params(labelsize=8.5)
        charts.set_title(fig, title)
    return fig


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


def on_time_figure(states: pd.DataFrame, title: str = "各部门按期办结率"):
    ot = sla.on_time(states)
    ot = ot[ot["closed"] >= 5].sort_values("closed", ascending=False).head(15)  # the departments with most cases
    rate = ot.set_index("department")["on_time_rate"].sort_values() * 100
    return charts.bar_chart(rate.round(1), title=f"{title}（办结最多的 {len(rate)} 个部门，低的在上）",
                            xlabel="按期办结率（%）", color=theme.COLORS["accent"])


def km_figure(states: pd.DataFrame, now, by: str = "department", title: str = "办结时长（Kaplan–Meier，未办结按删失计）"):
    curves = sla.km_curves(states, now, by=by, top=6)
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


# ------------------------------------------------------------------ the page

def _on_time_rate(states: pd.DataFrame) -> float | None:
    """Closed on time over closed, all departments together (None when nothing closed)."""
    ot = sla.on_time(states) if len(states) else pd.DataFrame()
    closed = ot["closed"].sum() if len(ot) else 0
    return ot["closed_on_time"].sum() / closed if closed else None


def kpis_html(view: EventsView) -> str:
    st = view.snap.states
    now = view.now
    if st is None or st.empty:
        return cards.kpi_html("在办事件", 0, unit="件", note="暂无事件", tone="muted")
    open_ = int(st["open"].sum())
    od, nd = int(st["overdue"].sum()), int(st["near_due"].sum())
    waiting = int((st["status"] == flow.INTAKE).sum())
    today = int((st["ts"] >= now - pd.Timedelta(hours=24)).sum())
    rate = _on_time_rate(st)
    return "".join([
        cards.kpi_html("在办事件", open_, unit="件", note=f"待受理 {waiting} 件", tone="warn" if waiting else ""),
        cards.kpi_html("超期未办结", od, unit="件", note="须督办" if od else "均在时限内", tone="bad" if od else "ok"),
        cards.kpi_html("临近超期", nd, unit="件", note="剩余时间不足 20%", tone="warn" if nd else "ok"),
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


class LiveBoard:
    """The dispatch board: filter by department, see open cases by deadline, act on one as the
    signed-in user `who`; polls the hub every `interval` seconds and redraws when something changed.
    A district user sees (and polls) the district's cases only."""

    def __init__(self, view: EventsView, interval: float = 5.0, eng=None, who=None):
        import ipywidgets as w

        self.view, self.interval, self.eng = view, interval, eng
        self.who = who if who is not None else view.who
        self.district = access.district_filter(self.who)
        depts = sorted(set(view.snap.events.get("department", pd.Series(dtype=object)).dropna()))
        self.dept = w.Dropdown(options=[("全部部门", ALL)] + [(d, d) for d in depts], value=ALL, description="部门",
                               layout=w.Layout(width="280px"))
        self.dept.style.description_width = "40px"
        self.dept.add_class("wb-select")
        self.table = w.HTML(layout=w.Layout(width="100%"))
        self.table.add_class("wb-events-board")
        self.cards = w.HTML(layout=w.Layout(width="100%"))
        self.pick = w.Dropdown(options=[], description="事件", layout=w.Layout(width="420px"))
        self.pick.style.description_width = "40px"
        self.pick.add_class("wb-events-pick")
        self.to_dept = w.Dropdown(options=[(d, d) for d in depts + [dp.load_rules().default_department]
                                           if d], description="派往", layout=w.Layout(width="280px"))
        self.to_dept.style.description_width = "40px"
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
        self.dept.observe(lambda _c: self.refresh_shown(), "value")
        self._seen = None
        self._task = None
        self.refresh()

    # reading
    def rows(self) -> pd.DataFrame:
        return bd.board_rows(self.eng, department=self.dept.value or None, limit=200, district=self.district)

    def refresh(self, note: str | None = None):
        now = utc_now() if self.view.now >= utc_now() - pd.Timedelta(days=2) else self.view.now
        rows = self.rows()
        self.table.value = board_table(rows, now)
        current = self.pick.value
        opts = [(f"{r.event_id} · {r.event_class} · {r.status}", r.event_id) for r in rows.head(200).itertuples()]
        shown = dict(zip(rows["event_id"], rows["status"]))
        if current and current not in {v for _, v in opts}:  # the case being worked on stays picked
            from workbench.store import hub

            where = {"event_id": current, **({"district": self.district} if self.district else {})}
            cur = hub.read("city_events", where=where, columns=["event_id", "event_class", "status"], eng=self.eng)
            opts = [(f"{r.event_id} · {r.event_class} · {r.status}", r.event_id) for r in cur.itertuples()] + opts
            shown.update(zip(cur["event_id"], cur["status"]))
        self._shown = shown  # the status each case had on screen: what a button expects
        self.pick.options = opts
        if current in {v for _, v in opts}:
            self.pick.value = current
        counts = bd.board_counts(self.eng, now=now, district=self.district)
        if self.dept.value:
            counts = counts[counts["department"] == self.dept.value]
        tasks = counts[counts["case_type"] == bd.INSPECTION] if len(counts) else counts
        counts = counts[counts["case_type"] != bd.INSPECTION] if len(counts) else counts
        n, od = int(counts["n"].sum()) if len(counts) else 0, int(counts["overdue"].sum()) if len(counts) else 0
        wait = int(counts.loc[counts["status"] == flow.INTAKE, "n"].sum()) if len(counts) else 0
        nt = int(tasks["n"].sum()) if len(tasks) else 0
        self.cards.value = '<div class="wb-cards">' + "".join([
            cards.kpi_html("在办事件", n, unit="件", note=f"待受理 {wait} 件", tone="warn" if wait else ""),
            cards.kpi_html("其中超期", od, unit="件", tone="bad" if od else "ok"),
            *([cards.kpi_html("预警巡查任务", nt, unit="件", note=f"超期 {int(tasks['overdue'].sum())} 件")] if nt else []),
        ]) + "</div>"
        stamp = f"调度台每 {self.interval:g} 秒自动刷新 · 最近刷新 {format_time(utc_now(), '%H:%M:%S')}（北京时间）"
        self.status.value = f'<div class="wb-note">{esc(note + " · " if note else "")}{esc(stamp)}</div>'

    def refresh_shown(self, note: str | None = None):
        """refresh(), a hub that does not answer shown as 数据暂不可用（自 … 起） (a widget's callback
        has nobody to raise to)."""
        try:
            self.refresh(note)
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
        self.refresh_shown()

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
            try:
                if self._changed():
                    self.refresh(note=f"新到事件 {self._new} 件" if self._new > 0 else "有更新")
                else:
                    self.refresh()
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
        boxes = [acts, btns]
        if self.may_reveal:
            boxes.append(w.HBox([self.reason, self.reveal_button]))
        for box in boxes:
            box.add_class("wb-controls")
        items = [self.dept, self.cards, self.status, self.table, acts, self.user, btns, self.readonly, self.message]
        if self.may_reveal:
            items += [boxes[2], self.revealed]
        return layout.stack(items, "wb-events-live")


def body(view: EventsView):
    """Everything below the live board: map, deadlines, patterns."""
    st, ev, now = view.snap.states, view.snap.events, view.now
    tz = view.snap.rules.timezone
    return layout.stack([
        layout.section("事件热点地图", "在办（蓝）、超期（红）事件与热点网格（橙框：500 米网格内事件数显著高于全市平均，"
                                   "泊松检验并经多重检验校正）。"),
        layout.grid([charts.chart(events_map_figure(st, view.hot)), layout.html(hotspot_table(view.hot))]),
        layout.html(placement_note_html(ev)),
        layout.section("街道热点", "按街道统计：有坐标的事件与只有地址、按地址定位到街道的事件（如 12345 热线工单）都计入；"
                               "期望事件数按常住人口占比，泊松检验并经多重检验校正。"),
        layout.html(street_hotspot_table(view.street_hot)),
        layout.section("网格热点", "按网格（网格化管理单元）统计：期望事件数 = 全市事件数 × 该网格常住人口占比，"
                               "泊松检验并经多重检验校正，显著偏高的网格列在这里。"),
        layout.html(grid_hotspot_table(view.grid_hot)),
        layout.section("超期未办结", "超过处置时限仍未办结的事件；超期超过一倍时限为严重超期，已生成升级告警。"),
        layout.html(overdue_table(st)),
        layout.section("临近超期", "剩余时间不足处置时限 20% 的在办事件。"),
        layout.html(near_due_table(st)),
        layout.section("各部门按期办结率", "按期办结 = 结案时间不晚于处置时限；重复件与不予立案不计入。"),
        layout.grid([charts.chart(on_time_figure(st)) if len(st) else layout.empty("暂无数据"),
                     layout.html(on_time_table(st))]),
        layout.section("办结时长", "Kaplan–Meier 估计：未办结的事件按删失计入，不被丢弃；最后一列为只看已办结事件的朴素估计。"),
        layout.grid([charts.chart(km_figure(st, now)), layout.html(km_table(st, now))]),
        layout.section("事件规律", "按类型、区县、时段统计；重复发生的地点；明日和未来 7 天各类事件量预测（90% 区间）。"),
        layout.grid([charts.chart(charts.bar_chart(pt.volumes(ev, "event_class").head(12), title="各类事件数量",
                                                   xlabel="事件数")),
                     charts.chart(hour_weekday_figure(ev, tz))]),
        layout.grid([layout.html(forecast_table(ev, tz)), layout.html(repeats_table(ev))]),
    ])


def page(view: EventsView, interval: float = 5.0, start: bool = True, who=None):
    live = LiveBoard(view, interval=interval, who=who)
    if start:
        live.start()
    return layout.stack([
        layout.html(f'<div class="wb-cards">{kpis_html(view)}</div>'),
        layout.section("调度台", "在办事件按处置时限排序（超期在前）；选择事件后可受理立案、派遣、结案，改动直接写入数据中台并记入流转记录。"),
        live.widget(),
        body(view),
    ], "wb-events")


def screen(view: EventsView, interval: float = 5.0, who=None):
    """The dashboard below the header for `who`: the page; or, on an empty hub, the empty state
    above the live board (events appear there as they arrive)."""
    if view.empty:
        live = LiveBoard(view, interval=interval, who=who).start()
        return layout.stack([layout.empty("城市事件暂无数据", "事件到达后会自动出现在下面的调度台；也可用 workbench events intake "
                                                     "或 workbench events listen 接入。"), live.widget()])
    return page(view, interval=interval, who=who)


# ------------------------------------------------------------------ the weekly report

@dataclass
class Weekly:
    period: object
    view: EventsView
    week: pd.DataFrame     # events reported in the period
    district: str | None

    @property
    def where(self) -> str:
        return self.district or "全市"


def load_weekly(days: int = 7, end=None, district: str | None = None, eng=None) -> Weekly:
    from workbench.reports import period as report_period

    if end in (None, ""):
        last = bd.latest_ts(eng)
        end = to_local(last).date() if last is not None else None  # the Beijing day the data reaches
    p = report_period(days, end)
    view = load(days=120, eng=eng, end=p.end_utc)  # the state at the end of the period
    ev = view.snap.events
    if district:
        st = view.snap.states
        view.snap.states = st[st["district"] == district] if len(st) else st
        view.snap.events = ev[ev["district"] == district] if len(ev) else ev
        ev = view.snap.events
    week = ev[(ev["ts"] >= p.start_utc) & (ev["ts"] < p.end_utc)] if len(ev) else ev
    return Weekly(p, view, week, district)


def weekly_cards(w: Weekly) -> str:
    st = w.view.snap.states
    wk = st[st["event_id"].isin(w.week["event_id"])] if len(st) else st
    rate = _on_time_rate(wk)
    merged = int((wk["status"] == flow.DUPLICATE).sum()) if len(wk) else 0
    return '<div class="wb-cards">' + "".join([
        cards.kpi_html("本期上报", len(w.week), unit="件", note=f"合并重复件 {merged} 件"),
        cards.kpi_html("本期按期办结率", f"{rate:.1%}" if rate is not None else None),
        cards.kpi_html("当前超期未办结", int(st["overdue"].sum()) if len(st) else 0, unit="件",
                       tone="bad" if len(st) and st["overdue"].any() else "ok"),
        cards.kpi_html("显著热点网格", int(w.view.hot["significant"].sum()) if len(w.view.hot) else 0, unit="个"),
    ]) + "</div>"


__all__ = ["EventsView", "prepare", "load", "board_table", "overdue_table", "near_due_table", "on_time_table",
           "km_table", "hotspot_table", "grid_hotspot_table", "street_hotspot_table", "placement_note_html", "repeats_table", "forecast_table", "backtest_table", "events_map_figure", "hour_weekday_figure",
           "on_time_figure", "km_figure", "kpis_html", "LiveBoard", "body", "page", "Weekly", "load_weekly",
           "weekly_cards", "screen", "row_key", "reveal_html", "REVEAL_LABELS"]
