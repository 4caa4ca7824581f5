"""The 城市安全 dashboard: the hazard ledger, risk by grid, cold-weather warnings and the
inspection tasks they spawned.

`load()` reads one snapshot through workbench.store.hub (and the loaders of
workbench.safety); the other functions turn it into tables, charts and widgets, optionally
for one district. `load(who=…)` reads as the signed-in user: a district user's snapshot holds
the district's ledger, grids, risk and tasks only (filtered in the hub's queries), and the
weather warnings of the district and the city-wide ones; the page then offers no other
district. Site owners' names and phones are masked (workbench.privacy) in the snapshot. dashboards/safety.ipynb only calls them; the risk-review report
(notebooks/risk_review.ipynb) uses the same tables and charts as static HTML and PNG.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from workbench import access, cases, clock, privacy
from workbench.safety import ledger as lg
from workbench.safety import risk as rk
from workbench.safety import tasks as tk
from workbench.geo import NAMES as DISTRICTS
from workbench.ui import cards, charts, layout, theme
from workbench.ui.tables import DASH, Html, badge, esc, format_number, format_time, table_html

WEATHER_CATEGORIES = ("寒潮", "道路结冰", "暴雪")  # the warning engine's categories (寒潮预警 counts too)
ALERT_ACTIVE = "生效中"
LEVEL_TONE = {"蓝色": "info", "黄色": "warn", "橙色": "warn", "红色": "bad"}
STATE_TONE = {"待整改": "warn", "逾期未整改": "bad", "已整改待验收": "info", "已验收": "ok"}
STATE_COLOR = {"待整改": "#f0a030", "逾期未整改": theme.COLORS["bad"], "已整改待验收": "#5a8fd6",
               "已验收": theme.COLORS["ok"]}
BAND_TONE = {"高风险": "bad", "较高风险": "warn", "一般风险": "info", "低风险": "", "无风险": ""}
ALL = ""  # the district filter's "all districts"

LEDGER_LABELS = {
    "state": "整改状态", "days_overdue": "逾期天数", "site_name": "场所名称", "site_type": "场所类型",
    "grid_id": "网格", "owner": "责任人", "total": "隐患总数", "open": "未整改", "major": "重大隐患",
    "major_open": "未整改重大", "overdue": "逾期未整改", "kind": "类型", "count": "隐患数",
    "first_ts": "首次发现", "last_ts": "最近发现", "hazard_ids": "隐患编号",
}
RISK_LABELS = {
    "rank": "排名", "grid_id": "网格", "score": "风险分", "band": "风险等级", "top_factor": "主要因素",
    **rk.FACTOR_LABELS, "reasons": "得分构成", "grids": "网格数", "grids_at_risk": "有风险网格",
    "grids_high": "较高及以上",
}


@dataclass
class SafetySnapshot:
    now: pd.Timestamp            # naive UTC, when the page was made
    as_of: pd.Timestamp          # naive UTC, the moment the states describe: now (a report: its period's end)
    ledger: lg.Ledger
    states: pd.DataFrame         # ledger.hazard_states(..., sites) as of as_of: a deadline passed is 逾期未整改
    risk: pd.DataFrame           # risk.grid_risk(...) as of as_of
    grids: pd.DataFrame
    warnings: pd.DataFrame       # weather warnings (alerts of WEATHER_CATEGORIES), newest first
    tasks: pd.DataFrame          # inspection tasks spawned by warnings, with tasks.task_states as of as_of
    who: access.Principal | None = None  # whose view
    scope: str | None = None     # the one district a district user reads (access.district_filter)
    data_to: pd.Timestamp | None = None  # naive UTC, the newest record of the ledger (ledger.data_as_of)

    @property
    def empty(self) -> bool:
        return self.ledger.empty and self.grids.empty and self.warnings.empty and self.tasks.empty

    @property
    def districts(self) -> list[str]:
        seen = set(self.grids.get("district", pd.Series(dtype=object)).dropna()) | \
            set(self.states.get("district", pd.Series(dtype=object)).dropna())
        return [d for d in DISTRICTS if d in seen] + sorted(seen - set(DISTRICTS))


def prepare() -> None:
    """Open the hub and build one map ahead of the request (preheated kernels)."""
    from workbench.store import hub
    from workbench.ui import maps

    hub.engine()
    cases.case_type(tk.CASE_TYPE)   # the case types' registry, read ahead of the request
    maps.warm_up()


def load(now=None, as_of=None, eng=None, who=None) -> SafetySnapshot:
    """One consistent read of the hub for the page (or the report, with `as_of`), as `who`
    sees it (None: everything). Hazards and tasks are judged as of `as_of` (default: now), not
    as of the newest record: a deadline that passed since is overdue (逾期未整改 / 逾期未办结)."""
    from workbench.store import hub

    now = clock.now() if now is None else pd.Timestamp(now)
    district = access.district_filter(who)
    ledger = lg.load_ledger(eng, district)
    ledger = lg.Ledger(sites=masked_sites(ledger.sites), hazards=ledger.hazards, inspections=ledger.inspections)
    inputs = rk.load_risk_inputs(now if as_of is None else as_of, eng=eng, ledger=ledger, district=district)
    states = lg.hazard_states(ledger.hazards, inputs.as_of, ledger.sites)
    cats = [*WEATHER_CATEGORIES, *(c + "预警" for c in WEATHER_CATEGORIES)]   # not the year's other alerts
    warnings = weather_warnings(hub.read("alerts", where={"category": cats}, eng=eng))
    if district:  # the district's own warnings and the city-wide ones
        warnings = warnings_for(warnings, district).reset_index(drop=True)
    where = {"source": rk.TASK_SOURCE, **({"district": district} if district else {})}
    return SafetySnapshot(
        now=now, as_of=inputs.as_of, ledger=ledger, states=states, risk=rk.grid_risk_from(inputs),
        grids=inputs.grids, warnings=warnings,
        tasks=tk.task_states(hub.read("city_events", where=where, eng=eng), inputs.as_of),
        who=who, scope=district, data_to=lg.data_as_of(ledger, now=inputs.as_of),
    )


def masked_sites(sites: pd.DataFrame) -> pd.DataFrame:
    """Site owners' names (王*) and phones (138****1234) masked for display."""
    if sites is None or sites.empty:
        return sites
    out = sites.copy()
    if "owner" in out:
        out["owner"] = out["owner"].map(privacy.mask_name)
    if "phone" in out:
        out["phone"] = out["phone"].map(privacy.mask_phone)
    return out


# ------------------------------------------------------------------ pure helpers

def weather_warnings(alerts: pd.DataFrame) -> pd.DataFrame:
    """Alerts of the cold-weather categories (寒潮, 道路结冰, 暴雪; '…预警' too), active first,
    then newest first."""
    if alerts is None or alerts.empty or "category" not in alerts:
        return pd.DataFrame(columns=list(alerts.columns) if alerts is not None else ["alert_id"])
    cat = alerts["category"].astype("string").fillna("").str.removesuffix("预警")
    out = alerts[cat.isin(WEATHER_CATEGORIES)].copy()
    for col in ("ts", "valid_from", "valid_to"):
        if col in out:
            out[col] = pd.to_datetime(out[col], errors="coerce")
    out["_active"] = out.get("status", pd.Series(index=out.index, dtype=object)) == ALERT_ACTIVE
    out = out.sort_values(["_active", "ts"], ascending=[False, False], kind="stable")
    return out.drop(columns="_active").reset_index(drop=True)


def evidence_text(value, limit: int = 160) -> str:
    """A JSON evidence object as 键：值；… (as it is when not JSON)."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return DASH
    try:
        data = json.loads(value) if isinstance(value, str) else value
    except (TypeError, ValueError):
        return str(value)[:limit]
    if isinstance(data, dict):
        parts = []
        for k, v in data.items():
            if isinstance(v, (list, tuple)):
                v = "、".join(map(str, v[:6])) + ("…" if len(v) > 6 else "")
            elif isinstance(v, dict):
                v = "，".join(f"{a}={b}" for a, b in list(v.items())[:6])
            elif isinstance(v, float):
                v = format_number(v)
            parts.append(f"{k}：{v}")
        text = "；".join(parts)
    else:
        text = str(data)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def in_district(df: pd.DataFrame, district: str | None, col: str = "district") -> pd.DataFrame:
    if not district or df is None or df.empty or col not in df:
        return df
    return df[df[col] == district]


def warnings_in(snap: SafetySnapshot, district: str | None) -> pd.DataFrame:
    """Weather warnings that concern `district`: its own, and city-wide ones (no district)."""
    return warnings_for(snap.warnings, district)


def warnings_for(w: pd.DataFrame, district: str | None) -> pd.DataFrame:
    if not district or w.empty or "district" not in w:
        return w
    area = w.get("area", pd.Series("", index=w.index)).astype("string").fillna("")
    return w[(w["district"] == district) | w["district"].isna() | area.str.contains(district, regex=False)]


def tasks_in(snap: SafetySnapshot, district: str | None) -> pd.DataFrame:
    return in_district(snap.tasks, district)


def task_counts(tasks: pd.DataFrame) -> pd.DataFrame:
    """Per warning (external_id = alert_id): tasks spawned, how many are closed and how many
    overdue (tasks.task_states, as the snapshot holds them)."""
    if tasks is None or tasks.empty:
        return pd.DataFrame(columns=["alert_id", "tasks", "done", "overdue"])
    if "closed" not in tasks:
        tasks = tk.task_states(tasks, clock.now())
    g = tasks.groupby("external_id")
    return (pd.DataFrame({"tasks": g.size(), "done": g["closed"].sum(), "overdue": g["overdue"].sum()})
            .astype(int).rename_axis("alert_id").reset_index())


def view_states(snap: SafetySnapshot, district: str | None) -> pd.DataFrame:
    return in_district(snap.states, district)


def view_risk(snap: SafetySnapshot, district: str | None) -> pd.DataFrame:
    return in_district(snap.risk, district)


# ------------------------------------------------------------------ tables (HTML)

def _state_badge(state) -> Html:
    return badge(str(state), STATE_TONE.get(str(state), "")) if isinstance(state, str) else Html(DASH)


def _level_badge(level) -> Html:
    if not isinstance(level, str) or not level:
        return Html(DASH)
    return badge(level, "bad" if level == "重大" else "")


def counts_table(states: pd.DataFrame, by: str = "district") -> str:
    """Hazards per district (or street, site type): per state, open, 重大, overdue."""
    c = lg.counts(states, by)
    if c.empty:
        return table_html(None, empty="暂无隐患记录", empty_hint="接入隐患排查整治台账后，这里按区县统计各整改状态的隐患数。")
    labels = {by: {"district": "区县", "street": "街道", "site_type": "场所类型", "level": "隐患等级"}.get(by, by),
              **LEDGER_LABELS}
    return table_html(c, columns=[by, "total", *lg.STATES, "major", "overdue"], labels=labels,
                      max_rows=60, max_height="360px")


def overdue_table(states: pd.DataFrame, limit: int = 50) -> str:
    od = lg.overdue_hazards(states)
    if od.empty:
        return table_html(None, empty="暂无逾期未整改的隐患", empty_hint="所有未整改隐患都还在整改期限内。")
    od = od.assign(level_badge=od["level"].map(_level_badge),
                   days=od["days_overdue"].map(lambda d: badge(f"{d} 天", "bad" if d > 7 else "warn")))
    return table_html(od, dataset="hazards",
                      columns=["hazard_id", "site_name", "site_type", "district", "grid_id", "hazard_type",
                               "level_badge", "ts", "deadline", "days", "department", "owner"],
                      labels={**LEDGER_LABELS, "level_badge": "隐患等级", "days": "逾期天数"},
                      html_columns=("level_badge", "days"), max_rows=limit, max_height="420px")


def open_table(states: pd.DataFrame, limit: int = 50) -> str:
    """Open hazards (待整改 and 逾期未整改), overdue first then the oldest."""
    op = states[states["open"]] if len(states) else states
    if op.empty:
        return table_html(None, empty="暂无未整改隐患")
    op = op.assign(_o=op["overdue"]).sort_values(["_o", "days_overdue", "ts"], ascending=[False, False, True])
    op = op.assign(state_badge=op["state"].map(_state_badge), level_badge=op["level"].map(_level_badge))
    return table_html(op, dataset="hazards",
                      columns=["hazard_id", "site_name", "site_type", "district", "grid_id", "hazard_type",
                               "level_badge", "ts", "deadline", "state_badge", "department"],
                      labels={**LEDGER_LABELS, "level_badge": "隐患等级", "state_badge": "整改状态"},
                      html_columns=("level_badge", "state_badge"), max_rows=limit, max_height="420px")


def repeats_table(hazards: pd.DataFrame, sites: pd.DataFrame, district: str | None = None, limit: int = 30) -> str:
    rep = in_district(lg.repeat_hazards(hazards, sites, min_count=3), district)
    if rep is None or rep.empty:
        return table_html(None, empty="暂无重复隐患",
                          empty_hint="同一点位同类隐患整改后再次发现，或 90 天内发现 3 项及以上隐患的点位，会列在这里。")
    rep = rep.assign(kind_badge=rep["kind"].map(lambda k: badge(k, "bad" if k == lg.REPEAT_SAME_TYPE else "warn")),
                     hazard_type=rep["hazard_type"].replace("", DASH))
    return table_html(rep, dataset="hazards",
                      columns=["kind_badge", "site_name", "site_type", "district", "grid_id", "hazard_type", "count",
                               "first_ts", "last_ts", "hazard_ids"],
                      labels={**LEDGER_LABELS, "kind_badge": "类型"}, html_columns=("kind_badge",),
                      wrap=("hazard_ids",), max_rows=limit, max_height="360px")


def risk_table(risk: pd.DataFrame, limit: int = 15) -> str:
    """The ranked grids with each factor's points (summing to 风险分) and why."""
    top = rk.top_grids(risk, limit)
    if top.empty:
        return table_html(None, empty="暂无有风险的网格",
                          empty_hint="网格内有未整改隐患或近期突发事件时，会按风险分排在这里。")
    top = top.assign(band_badge=top["band"].map(lambda b: badge(b, BAND_TONE.get(b, ""))))
    pts = {c: (lambda v: DASH if not v else f"{v:.1f}") for c in rk.FACTOR_COLUMNS}
    return table_html(top, columns=["rank", "grid_id", "district", "street", "score", "band_badge",
                                    *rk.FACTOR_COLUMNS, "reasons"],
                      labels={**RISK_LABELS, "band_badge": "风险等级"}, html_columns=("band_badge",),
                      formatters={"score": lambda v: f"{v:.1f}", **pts},
                      numeric=("rank", "score", *rk.FACTOR_COLUMNS), wrap=("reasons",), max_rows=limit)


def district_risk_table(risk: pd.DataFrame) -> str:
    """Per district: grids, grids at risk, high-risk grids and the summed 风险分, highest first."""
    d = rk.district_risk(risk)
    if d.empty:
        return table_html(None, empty="暂无网格数据")
    return table_html(d, columns=["district", "grids", "grids_at_risk", "grids_high", "score"],
                      labels={"district": "区县", **RISK_LABELS, "score": "风险分合计"},
                      formatters={"score": lambda v: f"{v:.1f}"}, numeric=("grids", "grids_at_risk", "grids_high", "score"))


def weights_html() -> str:
    w = rk.weights_table()
    return table_html(w, labels={"factor": "因素", "rule": "计分规则"}, wrap=("rule",))


def warnings_table(warnings: pd.DataFrame, tasks: pd.DataFrame, limit: int = 20) -> str:
    if warnings is None or warnings.empty:
        return table_html(None, empty="暂无寒潮、道路结冰、暴雪预警",
                          empty_hint="气象预警引擎发布寒潮、道路结冰或暴雪预警后，这里显示生效中的预警、依据和派出的巡查任务。")
    w = warnings.merge(task_counts(tasks), on="alert_id", how="left")
    for col in ("tasks", "done", "overdue"):
        w[col] = w[col].fillna(0).astype(int)

    def level(v):
        return badge(v, LEVEL_TONE.get(v, "")) if isinstance(v, str) and v else Html(DASH)

    def status(v):
        return badge(v, "bad" if v == ALERT_ACTIVE else "") if isinstance(v, str) and v else Html(DASH)

    level_col = w["level"] if "level" in w else pd.Series(None, index=w.index, dtype=object)
    w = w.assign(level_badge=level_col.map(level), status_badge=w["status"].map(status),
                 evidence_text=w["evidence"].map(evidence_text) if "evidence" in w else DASH,
                 task_text=[(f"{t} 项（已办结 {d}" + (f"，逾期未办结 {o}" if o else "") + "）") if t else "未派发"
                            for t, d, o in zip(w["tasks"], w["done"], w["overdue"])])
    return table_html(w, dataset="alerts",
                      columns=["title", "category", "level_badge", "status_badge", "area", "valid_from", "valid_to",
                               "evidence_text", "task_text"],
                      labels={"title": "预警", "level_badge": "预警等级", "status_badge": "状态",
                              "evidence_text": "发布依据", "task_text": "联动巡查任务"},
                      html_columns=("level_badge", "status_badge"), wrap=("evidence_text",), max_rows=limit,
                      max_height="420px")


def tasks_table(tasks: pd.DataFrame, warnings: pd.DataFrame, limit: int = 50) -> str:
    if tasks is None or tasks.empty:
        return table_html(None, empty="暂无预警联动巡查任务",
                          empty_hint="预警生效后，系统按预警派发的巡查任务（来源“预警联动”）会列在这里。")
    titles = dict(zip(warnings.get("alert_id", []), warnings.get("title", []))) if len(warnings) else {}
    if "state" not in tasks:
        tasks = tk.task_states(tasks, clock.now())
    t = tasks.assign(title=tasks["external_id"].map(lambda a: titles.get(a, a)),
                     state_badge=[_task_badge(st, h) for st, h in zip(tasks["state"], tasks["hours_overdue"])])
    # overdue first (longest first), then open by deadline, then the closed ones
    t = t.assign(_o=t["state"].map({tk.TASK_OVERDUE: 0, tk.TASK_OPEN: 1, tk.TASK_DONE: 2}), _h=-t["hours_overdue"])
    t = t.sort_values(["_o", "_h", "deadline", "ts"], kind="stable")
    return table_html(t, dataset="city_events",
                      columns=["title", "event_class", "description", "district", "street", "grid_id", "department",
                               "deadline", "state_badge", "status"],
                      labels={"title": "所属预警", "event_class": "任务类型", "description": "任务内容",
                              "state_badge": "办理情况", "status": "当前环节"},
                      html_columns=("state_badge",), wrap=("description",), max_rows=limit, max_height="420px")


def _task_badge(state, hours) -> Html:
    if state == tk.TASK_OVERDUE:
        return badge(f"逾期 {overdue_text(hours)}", "bad")
    return badge(str(state), "ok" if state == tk.TASK_DONE else "warn")


def overdue_text(hours) -> str:
    """How long past the deadline, in plain words: 5 小时, 2 天 3 小时."""
    h = int(max(0, float(hours or 0)) // 1)
    if h < 1:
        return "不足 1 小时"
    d, h = divmod(h, 24)
    return f"{d} 天 {h} 小时" if d and h else (f"{d} 天" if d else f"{h} 小时")


# ------------------------------------------------------------------ charts (matplotlib figures)

def status_figure(states: pd.DataFrame, by: str = "site_type", title: str = "各类场所隐患整改状态"):
    """Stacked horizontal bars: hazards per `by` and state."""
    from matplotlib.ticker import MaxNLocator

    c = lg.counts(states, by).set_index(by)[list(lg.STATES)]
    c = c.iloc[::-1]
    with charts.chart_style():
        fig, ax = charts.new_figure(6.4, max(2.6, 0.42 * len(c) + 1.5))
        left = pd.Series(0, index=c.index)
        for state in lg.STATES:
            vals = c[state]
            bars = ax.barh(c.index.astype(str), vals, left=left, color=STATE_COLOR[state], height=0.62, label=state)
            ax.bar_label(bars, labels=[str(int(v)) if v else "" for v in vals], label_type="center", fontsize=8.5,
                         color="white")
            left = left + vals
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("隐患数（项）")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=9)
        charts.set_title(fig, title)
    return fig


URBAN = ("荷塘区", "芦淞区", "石峰区", "天元区")  # the city proper, drawn enlarged on the whole-city map
BAND_POINT_TONE = {"高风险": "bad", "较高风险": "warn", "一般风险": "info", "低风险": "muted"}


def stacked_bars(frame: pd.DataFrame, colors: dict, *, title: str = "", unit: str = "", total_format="{:,.0f}"):
    """Horizontal stacked bars for the page, interactive (values on hover, zoom) and offline: one
    row per index value (the first on top), one segment per column in `colors` (column → colour),
    the row's total written after it. Built as a plain plotly spec (charts.spec)."""

    f = frame[[c for c in colors if c in frame]]
    names = [str(i) for i in f.index]
    fig = charts.spec(title=title, height=max(280, 34 * len(f) + 150), barmode="stack",
                      legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0,
                              "traceorder": "normal"})
    for col, color in colors.items():
        if col not in f or not f[col].fillna(0).any():
            continue
        v = f[col].fillna(0).astype(float)
        fig["data"].append({"type": "bar", "orientation": "h", "name": str(col), "x": v.round(2).tolist(), "y": names,
                            "marker": {"color": color},
                            "hovertemplate": f"%{{y}} · {esc(str(col))}：%{{x:,}}{(' ' + unit) if unit else ''}<extra></extra>"})
    totals = f.fillna(0).sum(axis=1)
    fig["data"].append({"type": "scatter", "mode": "text", "x": totals.round(2).tolist(), "y": names,
                        "text": [" " + total_format.format(t) for t in totals], "textposition": "middle right",
                        "hoverinfo": "skip", "showlegend": False, "cliponaxis": False})
    lay = fig["layout"]
    lay["yaxis"] = {**lay.get("yaxis", {}), "autorange": "reversed", "automargin": True, "gridcolor": "rgba(0,0,0,0)"}
    lay["yaxis"].pop("rangemode", None)
    lay["margin"] = {**lay.get("margin", {}), "b": 80}   # the legend below the axis, clear of the title
    lay["xaxis"] = {**lay.get("xaxis", {}), "title": {"text": unit}, "rangemode": "tozero",
                    "range": [0, float(totals.max()) * 1.15 if len(totals) and totals.max() > 0 else 1]}
    return charts.interactive(fig)


def grid_label(street, grid_id) -> str:
    """A grid as people name it: 月塘街道 HT-YT-001 网格 (never a coordinate pair)."""
    st = street if isinstance(street, str) and street else ""
    return f"{st} {grid_id} 网格".strip()


def risk_points(risk: pd.DataFrame, district: str | None = None, limit: int = 15) -> pd.DataFrame:
    """The highest-scoring grids as map points: lat, lon, label (street and grid), size (风险分),
    tone (by 风险等级), hover (the score and why), group (风险等级)."""
    top = rk.top_grids(in_district(risk, district), limit)
    top = top[top["lat"].notna() & top["lon"].notna()] if len(top) else top
    if top.empty:
        return pd.DataFrame(columns=["lat", "lon", "label", "size", "tone", "hover", "group", "district"])
    return pd.DataFrame({
        "lat": top["lat"].astype(float), "lon": top["lon"].astype(float),
        "label": [f"{k}. {grid_label(s, g)}" for k, s, g in zip(top["rank"], top.get("street", [None] * len(top)),
                                                               top["grid_id"])],
        "size": top["score"].astype(float), "tone": top["band"].map(BAND_POINT_TONE).fillna("info"),
        "hover": [f"{d} · 风险分 {v:.1f}（{b}）\n{why}" for d, v, b, why in
                  zip(top["district"], top["score"], top["band"], top.get("reasons", [""] * len(top)))],
        "group": top["band"], "district": top["district"],
    }).reset_index(drop=True)


def risk_map(snap: SafetySnapshot, district: str | None = None):
    """The risk map: the districts' real boundaries shaded by their grids' summed 风险分, names on
    the map, each district's numbers on hover, the highest-scoring grids as points named by street
    and grid (workbench.ui.maps, interactive and offline)."""
    from workbench.ui import maps

    r = view_risk(snap, district)
    d = rk.district_risk(r).set_index("district")
    hover = {name: [f"有风险网格 {int(row.grids_at_risk)} 个（较高及以上 {int(row.grids_high)} 个），共 {int(row.grids)} 个网格"]
             for name, row in d.iterrows()}
    return maps.district_map(d["score"], title=f"网格风险分布（{district or '全市'}）", unit="分",
                             value_label="网格风险分合计", points=risk_points(snap.risk, district),
                             districts=[district] if district else None, hover=hover, legend_title="风险最高的网格",
                             label_top=6, height=560)


def risk_map_figure(risk: pd.DataFrame, district: str | None = None, title: str = "网格风险分布", label_top: int = 8):
    """The risk map for print (the bulletin): the real district boundaries (workbench.geo) shaded by
    the districts' summed 风险分 and named, the highest-scoring grids as dots labelled with their
    street and grid (no tiles, no coordinates on the axes). For the whole city a second panel
    enlarges the four urban districts, where the grids are dense."""
    from matplotlib import colors
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    import matplotlib

    from workbench import geo
    from workbench.ui import maps

    r = in_district(risk, district)
    d = rk.district_risk(r).set_index("district")["score"] if len(r) else pd.Series(dtype=float)
    norm = colors.Normalize(vmin=0, vmax=max(1.0, float(d.max()) if len(d) else 1.0))
    cmap = matplotlib.colormaps["YlOrRd"]
    pts = risk_points(risk, district, limit=label_top)
    if len(pts):
        pts["x"], pts["y"] = maps.project(pts["lon"].to_numpy(float), pts["lat"].to_numpy(float))
        pts["urban"] = pts["district"].isin(URBAN)
    with charts.chart_style():
        if district:
            fig = Figure(figsize=(7.4, 6.2), layout="constrained")
            axes = [fig.add_subplot()]
            labels = [(axes[0], _draw_map(axes[0], [x for x in geo.DISTRICTS if x.name == district], d, norm, cmap, pts,
                                          neutral=True))]
        else:
            fig = Figure(figsize=(10.4, 6.4), layout="constrained")
            ax_all, ax_city = fig.subplots(1, 2, width_ratios=[1, 1.45])
            others = pts[~pts["urban"]] if len(pts) else pts
            labels = [(ax_all, _draw_map(ax_all, list(geo.DISTRICTS), d, norm, cmap, others, small=True))]
            urban = [x for x in geo.DISTRICTS if x.name in URBAN]
            labels.append((ax_city, _draw_map(ax_city, urban, d, norm, cmap, pts[pts["urban"]] if len(pts) else pts)))
            ax_all.set_title("全市", fontsize=10.5, loc="left")
            ax_city.set_title("市区（荷塘、芦淞、石峰、天元）", fontsize=10.5, loc="left")
            (x0, x1), (y0, y1) = ax_city.get_xlim(), ax_city.get_ylim()
            ax_all.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.0, ls="--",
                                       ec=theme.COLORS["primary"]))
            axes = [ax_all, ax_city]
        if not district:
            cb = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, orientation="horizontal",
                              shrink=0.45, pad=0.02, aspect=40)
            cb.set_label("区县网格风险分合计（分）")
            cb.outline.set_visible(False)
        charts.set_title(fig, title)
        _place_all(fig, labels)
    return fig


def _place_all(fig, labels) -> None:
    """The points' labels, placed once the layout is final (their overlaps measured as printed)."""
    import matplotlib.patheffects as pe

    if not any(items for _, items in labels):
        return
    if not hasattr(fig.canvas, "get_renderer"):   # a bare Figure: lay it out and measure text with Agg
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    fig.set_layout_engine("none")   # the axes stay where they are; the labels take no room of their own
    halo = [pe.withStroke(linewidth=3, foreground="white")]
    for ax, items in labels:
        _place_labels(ax, items, halo)


LABEL_OFFSETS = ((7, 4), (7, -12), (-7, 4), (-7, -12), (7, 16), (-7, 16), (7, -24), (-7, -24), (7, 28), (-7, -36))


def _place_labels(ax, points: list, halo) -> None:
    """Label each point (x, y, text) where it overlaps no label placed before it: the first of
    LABEL_OFFSETS (right, below, left, further out) that is free, in the order given (rank)."""
    fig = ax.get_figure()
    renderer = fig.canvas.get_renderer()
    taken = [t.get_window_extent(renderer) for t in ax.texts]   # the district names stay readable
    for x, y, text in points:
        best = None
        for dx, dy in LABEL_OFFSETS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha="left" if dx > 0 else "right",
                              fontsize=8.5, color=theme.COLORS["text"], path_effects=halo, zorder=7, annotation_clip=False)
            box = ann.get_window_extent(renderer)
            if not any(box.overlaps(t) for t in taken):
                best = (ann, box)
                break
            ann.remove()
        if best is None:   # nowhere free: the first place, as before
            dx, dy = LABEL_OFFSETS[0]
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha="left", fontsize=8.5,
                              color=theme.COLORS["text"], path_effects=halo, zorder=7)
            best = (ann, ann.get_window_extent(renderer))
        taken.append(best[1])


def _draw_map(ax, districts, values: pd.Series, norm, cmap, pts: pd.DataFrame, small: bool = False,
              neutral: bool = False) -> None:
    import matplotlib.patheffects as pe

    from workbench import geo
    from workbench.ui import maps

    halo = [pe.withStroke(linewidth=3, foreground="white")]
    for x in districts:
        v = values.get(x.name)
        face = cmap(norm(v)) if v is not None and pd.notna(v) and v > 0 and not neutral else "#f1f3f6"
        for xs, ys in maps.rings(x.adcode):
            ax.fill(xs, ys, facecolor=face, edgecolor="white", linewidth=1.0)
        lx, ly = maps.project(*geo.label_point(x.adcode))
        name = x.short if small and x.urban else x.name
        text = name + (f"\n{v:.0f} 分" if v is not None and pd.notna(v) and not (small and x.urban) else "")
        ax.text(float(lx), float(ly), text, ha="center", va="center", fontsize=8.5 if small and x.urban else 10,
                fontweight="bold", color=theme.COLORS["primary_dark"], path_effects=halo, zorder=5)
    if len(pts):
        ax.scatter(pts["x"], pts["y"], s=30 + 5 * pts["size"].clip(upper=40), c=theme.COLORS["primary_dark"],
                   edgecolors="white", linewidths=1.0, zorder=6)
    ax.set_aspect("equal")
    ax.margins(0.04)
    ax.set_axis_off()
    return list(zip(pts["x"], pts["y"], pts["label"])) if len(pts) else []


def district_risk_figure(risk: pd.DataFrame, title: str = "各区县风险分构成"):
    """Stacked bars: each district's summed score split by factor."""
    d = rk.district_risk(risk).set_index("district")
    d = d[d["score"] > 0].iloc[::-1]
    with charts.chart_style():
        fig, ax = charts.new_figure(6.4, max(2.6, 0.42 * len(d) + 1.6))
        left = pd.Series(0.0, index=d.index)
        for i, col in enumerate(rk.FACTOR_COLUMNS):
            vals = d[col]
            if vals.sum() <= 0:
                continue
            ax.barh(d.index.astype(str), vals, left=left, color=theme.PALETTE[i % len(theme.PALETTE)], height=0.62,
                    label=rk.FACTOR_LABELS[col])
            left = left + vals
        for y, total in zip(d.index.astype(str), d["score"]):
            ax.text(total, y, f" {total:.1f}", va="center", fontsize=8.5, color=theme.COLORS["text"])
        ax.margins(x=0.1)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("网格风险分合计")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=9)
        charts.set_title(fig, title)
    return fig


# ------------------------------------------------------------------ widgets

def kpis(snap: SafetySnapshot, district: str | None = None):
    st = view_states(snap, district)
    s = lg.summary(st, snap.as_of)
    w = warnings_in(snap, district)
    active = w[w["status"] == ALERT_ACTIVE] if len(w) and "status" in w else w
    tasks = tasks_in(snap, district)
    ts = tk.task_summary(tasks if "open" in tasks else tk.task_states(tasks, snap.as_of), snap.as_of)
    levels = active["level"].dropna().tolist() if len(active) and "level" in active else []
    worst = next((lv for lv in ("红色", "橙色", "黄色", "蓝色") if lv in levels), None)
    return cards.kpi_row([
        cards.KPI("未整改隐患", s.open, unit="项", note=f"涉及 {s.sites_with_open} 个点位" if s.open else (
            f"台账共 {s.total} 项" if s.total else "暂无隐患记录"), tone="warn" if s.open else ("ok" if s.total else "muted")),
        cards.KPI("重大隐患（未整改）", s.major_open, unit="项", note="须挂牌督办" if s.major_open else "无未整改重大隐患",
                  tone="bad" if s.major_open else ("ok" if s.total else "muted")),
        cards.KPI("逾期未整改", s.overdue, unit="项",
                  note=f"最长逾期 {int(st['days_overdue'].max())} 天" if s.overdue else "均在整改期限内",
                  tone="bad" if s.overdue else ("ok" if s.total else "muted")),
        cards.KPI("已整改待验收", s.awaiting_check, unit="项",
                  note=f"按期整改率 {s.on_time_rate:.0%}" if s.on_time_rate is not None else "暂无整改记录",
                  tone="" if s.total else "muted"),
        cards.KPI("生效中气象预警", len(active), unit="条",
                  note=f"最高 {worst}预警" if worst else ("暂无生效预警" if not len(w) else f"近期共 {len(w)} 条，均已解除"),
                  tone="bad" if worst in ("红色", "橙色") else ("warn" if len(active) else "muted")),
        cards.KPI("巡查任务逾期未办结", ts.overdue, unit="项",
                  note=(f"未办结 {ts.open} 项，共派发 {ts.total} 项" if ts.total else "暂无预警联动任务"),
                  tone="bad" if ts.overdue else ("warn" if ts.open else ("ok" if ts.total else "muted"))),
    ])


def ledger_section(snap: SafetySnapshot, district: str | None = None):
    st = view_states(snap, district)
    if st.empty:
        return layout.empty("暂无隐患记录", "请先接入隐患排查点位清单和隐患排查整治台账（workbench ingest hazard_sites / hazards）。")
    by = "street" if district else "district"
    c = lg.counts(st, "site_type").set_index("site_type")
    bars = stacked_bars(c[list(lg.STATES)], STATE_COLOR, title="各类场所隐患整改状态", unit="项")
    return layout.grid([bars, layout.html(counts_table(st, by))])


def risk_section(snap: SafetySnapshot, district: str | None = None):
    r = view_risk(snap, district)
    if r.empty:
        return layout.stack([layout.empty("暂无网格数据", "接入网格划分（workbench ingest grids）后，按网格计算风险分并在此绘制分布图。"),
                             layout.html(weights_html())])
    items = []
    if (r["score"] > 0).any():
        if district:
            top = rk.top_grids(r, 12)
            items.append(charts.interactive(charts.bar_spec(
                pd.Series(top["score"].round(1).to_numpy(), index=[grid_label(s_, g) for s_, g in zip(top["street"], top["grid_id"])]),
                title=f"{district}风险分最高的网格", unit="分", color=theme.COLORS["bad"])))
        else:
            d = rk.district_risk(r).set_index("district")
            d = d[d["score"] > 0][list(rk.FACTOR_COLUMNS)].rename(columns=rk.FACTOR_LABELS)
            colors = {rk.FACTOR_LABELS[c]: theme.PALETTE[i % len(theme.PALETTE)] for i, c in enumerate(rk.FACTOR_COLUMNS)}
            items += [stacked_bars(d, colors, title="各区县风险分构成", unit="分", total_format="{:,.1f}"),
                      layout.html(district_risk_table(r))]
    else:
        items.append(layout.empty("各网格风险分均为 0", "没有未整改隐患，也没有近期突发事件。"))
    return layout.stack([layout.explain(esc(rk.headline(snap.risk, district)), risk_method_html()),
                         risk_map(snap, district), layout.grid(items), layout.html(risk_table(r))])


def risk_method_html() -> str:
    """How 风险分 is computed (behind the 说明 toggle): the sum of the factors, each factor's rule,
    the bands."""
    bands = "；".join(f"{name} ≥ {floor:g} 分" for floor, name in rk.BANDS if floor > 0)
    return (f"<p>风险分 = 各因素得分之和（未整改一般/重大隐患、隐患时长、逾期未整改、场所类型加权、近 "
            f"{rk.WEIGHTS.incident_days} 天突发事件），每个网格的得分构成见下表“得分构成”。风险等级：{esc(bands)}；"
            f"其余有得分的为低风险。</p>{weights_html()}")


def warnings_section(snap: SafetySnapshot, district: str | None = None):
    w, t = warnings_in(snap, district), tasks_in(snap, district)
    return layout.stack([layout.html(warnings_table(w, t)), layout.html(tasks_table(t, snap.warnings))])


def body(snap: SafetySnapshot, district: str | None = None):
    """The whole page below the header, for one district (or all)."""
    where = district or "全市"
    st = view_states(snap, district)
    return layout.stack([
        kpis(snap, district),
        layout.section(f"隐患整改状态（{where}）",
                       "按每项隐患自己的整改期限判断：过了期限还没整改完成的，就是逾期未整改。"),
        ledger_section(snap, district),
        layout.section("逾期未整改隐患", "超过整改期限仍未整改完成的隐患，按逾期天数排序。"),
        layout.html(overdue_table(st)),
        layout.section("未整改隐患清单", "待整改和逾期未整改的全部隐患，逾期的在前。"),
        layout.html(open_table(st)),
        layout.section("重复隐患", "同一点位同类隐患整改后再次发现（整改后复发），或 90 天内发现 3 项及以上隐患的点位（多发点位）。"),
        layout.html(repeats_table(snap.ledger.hazards, snap.ledger.sites, district)),
        layout.section("网格风险", "哪些网格最需要优先排查：未整改隐患越多、越久、越严重，养老院和自建房越多，近期突发事件越多，风险越高。"),
        risk_section(snap, district),
        layout.section("气象预警与联动巡查", "寒潮、道路结冰、暴雪预警（生效中的在前）及其发布依据，和按预警派发的巡查任务：过了处置时限仍未结案的，算逾期未办结。"),
        warnings_section(snap, district),
    ])


def district_options(snap: SafetySnapshot) -> list[tuple[str, str]]:
    if snap.scope:  # a district user: their district only
        return [(snap.scope, snap.scope)]
    return [("全部区县", ALL)] + [(d, d) for d in snap.districts]


def page(snap: SafetySnapshot, district: str | None = None):
    """The district filter and the page body; picking a district redraws the body. A district
    user's snapshot offers only that district."""
    import ipywidgets as widgets

    options = district_options(snap)
    value = district if district in {v for _, v in options} else options[0][1]
    pick = widgets.Dropdown(options=options, value=value, description="区县", layout=widgets.Layout(width="260px"),
                            disabled=bool(snap.scope))
    pick.style.description_width = "40px"
    pick.add_class("wb-select")
    holder = widgets.VBox([body(snap, value or None)], layout=widgets.Layout(width="100%"))
    holder.add_class("wb-page")

    def redraw(change):
        try:
            holder.children = [body(snap, change["new"] or None)]
        except Exception as exc:  # shown on the page, not lost in a log
            holder.children = [layout.error(str(exc))]

    pick.observe(redraw, "value")
    latest = f"；台账最新记录 {format_time(snap.data_to)}" if snap.data_to is not None else ""
    controls = widgets.HBox([pick, layout.note(f"统计时点 {format_time(snap.as_of)}（北京时间）{latest}")])
    controls.add_class("wb-controls")
    return layout.stack([controls, holder], "wb-safety")


__all__ = ["WEATHER_CATEGORIES", "SafetySnapshot", "prepare", "load", "weather_warnings", "evidence_text",
           "in_district", "warnings_in", "tasks_in", "task_counts", "view_states", "view_risk", "counts_table",
           "overdue_table", "open_table", "repeats_table", "risk_table", "weights_html", "warnings_table",
           "tasks_table", "masked_sites", "warnings_for", "status_figure", "risk_map_figure", "risk_map", "risk_points", "grid_label", "overdue_text", "review_frames", "district_risk_table", "stacked_bars", "risk_method_html", "district_risk_figure", "kpis", "ledger_section",
           "risk_section", "warnings_section", "body", "district_options", "page", "Review", "load_review",
           "review_cards"]


# ------------------------------------------------------------------ the risk-review report

@dataclass
class Review:
    """A risk review over whole Beijing days: the snapshot as of the period's end, and the
    hazards found and warnings issued within the period (optionally one district)."""

    period: object               # workbench.reports.Period
    district: str | None
    snap: SafetySnapshot
    found: pd.DataFrame          # hazards found in the period, with their state at its end
    warnings: pd.DataFrame       # weather warnings issued in (or still active during) the period
    tasks: pd.DataFrame          # tasks spawned by those warnings
    summary: object = None       # workbench.safety.review.ReviewSummary: the bulletin's numbers and decisions

    @property
    def where(self) -> str:
        return self.district or "全市"


def load_review(start=None, end=None, district: str | None = None, eng=None, days: int = 7) -> Review:
    """The review of [start, end] (Beijing days, 'YYYY-MM-DD'). `end` None: yesterday (a period
    never reaches into today); `start` None: the `days` days that end with `end`. The ledger,
    risk and tasks are as of the end of `end`; the summary (workbench.safety.review) compares
    with the period before."""
    from workbench.reports import period as report_period
    from workbench.reports import yesterday
    from workbench.safety import review

    if district is not None and district not in DISTRICTS:
        raise ValueError(f"参数 district 应为区县名称（{'、'.join(DISTRICTS)}）或 None，收到 {district!r}")
    try:
        end_day = pd.Timestamp(end).date() if end not in (None, "") else yesterday()
        start_day = pd.Timestamp(start).date() if start not in (None, "") else None
    except (TypeError, ValueError):
        raise ValueError(f"参数 start / end 应为日期 YYYY-MM-DD，收到 start={start!r}, end={end!r}") from None
    if start_day is None:
        if int(days) < 1:
            raise ValueError(f"参数 days 应为正整数，收到 {days!r}")
        start_day = end_day - pd.Timedelta(days=int(days) - 1)
    n = (end_day - start_day).days + 1
    if n < 1:
        raise ValueError(f"参数 start 应不晚于 end，收到 start={start!r}, end={end!r}")
    p = report_period(n, end_day)
    snap = load(as_of=min(clock.now(), pd.Timestamp(p.end_utc) - pd.Timedelta(seconds=1)), eng=eng)
    found, w, t = review.in_period(snap.states, snap.warnings, snap.tasks, p.start_utc, p.end_utc, district)
    summary = review.summarize(snap.ledger.hazards, snap.ledger.sites, snap.tasks, snap.warnings, p,
                               now=snap.as_of, district=district)
    return Review(period=p, district=district, snap=snap, found=found, warnings=w, tasks=t, summary=summary)


def review_cards(rv: Review) -> str:
    """The headline numbers as static HTML cards."""
    st = in_district(rv.snap.states, rv.district)
    s = lg.summary(st, rv.snap.as_of)
    found = rv.found
    active = rv.warnings[rv.warnings["status"] == ALERT_ACTIVE] if len(rv.warnings) else rv.warnings
    items = [
        cards.kpi_html("报告期新发现隐患", len(found), unit="项",
                       note=f"其中重大 {int((found['level'] == '重大').sum())} 项" if len(found) else "报告期内无新发现隐患"),
        cards.kpi_html("未整改隐患", s.open, unit="项", note=f"涉及 {s.sites_with_open} 个点位" if s.open else "无",
                       tone="warn" if s.open else "ok"),
        cards.kpi_html("逾期未整改", s.overdue, unit="项", tone="bad" if s.overdue else "ok",
                       note=f"最长逾期 {int(st['days_overdue'].max())} 天" if s.overdue else "均在整改期限内"),
        cards.kpi_html("重大隐患（未整改）", s.major_open, unit="项", tone="bad" if s.major_open else "ok"),
        cards.kpi_html("气象预警", len(rv.warnings), unit="条", note=f"截至期末生效 {len(active)} 条" if len(rv.warnings) else "报告期内无"),
        cards.kpi_html("联动巡查任务", len(rv.tasks), unit="项", note="按预警派发" if len(rv.tasks) else "报告期内无"),
    ]
    return f'<div class="wb-cards">{"".join(items)}</div>'


def _local_times(df: pd.DataFrame, cols) -> pd.DataFrame:
    """Naive-UTC columns as Beijing wall-clock times (what a printed table shows)."""
    out = df.copy()
    for c in cols:
        if c in out:
            out[c] = clock.to_local(pd.to_datetime(out[c]))
    return out


def review_frames(rv: Review) -> dict[str, pd.DataFrame]:
    """The review's tables for the bulletin (Beijing times, the columns the notebook names)."""
    st = in_district(rv.snap.states, rv.district)
    od = lg.overdue_hazards(st) if len(st) else st
    found_by = "street" if rv.district else "district"
    tasks = rv.tasks
    counts = task_counts(tasks)
    w = rv.warnings.merge(counts, on="alert_id", how="left") if len(rv.warnings) else rv.warnings
    for col in ("tasks", "done", "overdue"):
        if len(w):
            w[col] = w[col].fillna(0).astype(int)
    titles = dict(zip(rv.warnings.get("alert_id", []), rv.warnings.get("title", []))) if len(rv.warnings) else {}
    t = tasks.assign(warning=tasks["external_id"].map(lambda a: titles.get(a, a)),
                     late=[overdue_text(h) if o else "" for h, o in zip(tasks["hours_overdue"], tasks["overdue"])]) \
        if len(tasks) else tasks
    if len(t):
        t = t.assign(_o=t["state"].map({tk.TASK_OVERDUE: 0, tk.TASK_OPEN: 1, tk.TASK_DONE: 2}),
                     _h=-t["hours_overdue"]).sort_values(["_o", "_h", "deadline"], kind="stable")
    top = rk.top_grids(in_district(rv.snap.risk, rv.district), 20)
    if len(top):
        top = top.assign(grid=[grid_label(s_, g) for s_, g in zip(top["street"], top["grid_id"])])
    return {
        "overdue_by_district": rv.summary.overdue_by_district,
        "overdue": _local_times(od, ["ts", "deadline"]),
        "found_counts": lg.counts(rv.found, found_by) if len(rv.found) else pd.DataFrame(),
        "repeats": _local_times(in_district(lg.repeat_hazards(rv.snap.ledger.hazards, rv.snap.ledger.sites, min_count=3),
                                            rv.district), ["first_ts", "last_ts"]),
        "risk_top": top,
        "warnings": _local_times(w, ["ts", "valid_from", "valid_to"]),
        "tasks_by_department": rv.summary.tasks_overdue_by_department,
        "tasks": _local_times(t, ["ts", "deadline"]),
    }
