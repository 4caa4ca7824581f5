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

from workbench import access, privacy
from workbench.safety import ledger as lg
from workbench.safety import risk as rk
from workbench.geo import NAMES as DISTRICTS
from workbench.ui import cards, charts, layout, theme
from workbench.ui.tables import DASH, Html, badge, format_number, format_time, table_html, utc_now

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
    as_of: pd.Timestamp          # naive UTC, the moment the data describes (ledger.data_as_of)
    ledger: lg.Ledger
    states: pd.DataFrame         # ledger.hazard_states(..., sites) as of as_of
    risk: pd.DataFrame           # risk.grid_risk(...) as of as_of
    grids: pd.DataFrame
    warnings: pd.DataFrame       # weather warnings (alerts of WEATHER_CATEGORIES), newest first
    tasks: pd.DataFrame          # city events spawned by warnings (source 预警联动)
    who: access.Principal | None = None  # whose view
    scope: str | None = None     # the one district a district user reads (access.district_filter)

    @property
    def empty(self) -> bool:
        return self.ledger.empty and self.grids.empty and self.warnings.empty and self.tasks.empty

    @property
    def districts(self) -> list[str]:
        seen = set(self.grids.get("district", pd.Series(dtype=object)).dropna()) | \
            set(self.states.get("district", pd.Series(dtype=object)).dropna())
        return [d for d in DISTRICTS if d in seen] + sorted(seen - set(DISTRICTS))


def prepare() -> None:
    """Open the hub ahead of the request (preheated kernels)."""
    from workbench.store import hub

    hub.engine()


def load(now=None, as_of=None, eng=None, who=None) -> SafetySnapshot:
    """One consistent read of the hub for the page (or the report, with `as_of`), as `who`
    sees it (None: everything)."""
    from workbench.store import hub

    now = utc_now() if now is None else pd.Timestamp(now)
    district = access.district_filter(who)
    ledger = lg.load_ledger(eng, district)
    ledger = lg.Ledger(sites=masked_sites(ledger.sites), hazards=ledger.hazards, inspections=ledger.inspections)
    inputs = rk.load_risk_inputs(as_of, eng=eng, ledger=ledger, district=district)
    states = lg.hazard_states(ledger.hazards, inputs.as_of, ledger.sites)
    warnings = weather_warnings(hub.read("alerts", eng=eng))
    if district:  # the district's own warnings and the city-wide ones
        warnings = warnings_for(warnings, district).reset_index(drop=True)
    where = {"source": rk.TASK_SOURCE, **({"district": district} if district else {})}
    return SafetySnapshot(
        now=now, as_of=inputs.as_of, ledger=ledger, states=states, risk=rk.grid_risk_from(inputs),
        grids=inputs.grids, warnings=warnings, tasks=hub.read("city_events", where=where, eng=eng),
        who=who, scope=district,
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
    """Per warning (external_id = alert_id): tasks spawned and how many are closed."""
    if tasks is None or tasks.empty:
        return pd.DataFrame(columns=["alert_id", "tasks", "done"])
    closed = tasks.get("closed_at", pd.Series(index=tasks.index, dtype=object)).notna() | \
        (tasks.get("status", pd.Series(index=tasks.index, dtype=object)) == "核查结案")
    g = tasks.assign(_done=closed).groupby("external_id")
    return pd.DataFrame({"tasks": g.size(), "done": g["_done"].sum()}).astype(int).rename_axis("alert_id").reset_index()


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


def weights_html() -> str:
    w = rk.weights_table()
    return table_html(w, labels={"factor": "因素", "rule": "计分规则"}, wrap=("rule",))


def warnings_table(warnings: pd.DataFrame, tasks: pd.DataFrame, limit: int = 20) -> str:
    if warnings is None or warnings.empty:
        return table_html(None, empty="暂无寒潮、道路结冰、暴雪预警",
                          empty_hint="气象预警引擎发布寒潮、道路结冰或暴雪预警后，这里显示生效中的预警、依据和派出的巡查任务。")
    w = warnings.merge(task_counts(tasks), on="alert_id", how="left")
    w["tasks"] = w["tasks"].fillna(0).astype(int)
    w["done"] = w["done"].fillna(0).astype(int)

    def level(v):
        return badge(v, LEVEL_TONE.get(v, "")) if isinstance(v, str) and v else Html(DASH)

    def status(v):
        return badge(v, "bad" if v == ALERT_ACTIVE else "") if isinstance(v, str) and v else Html(DASH)

    level_col = w["level"] if "level" in w else pd.Series(None, index=w.index, dtype=object)
    w = w.assign(level_badge=level_col.map(level), status_badge=w["status"].map(status),
                 evidence_text=w["evidence"].map(evidence_text) if "evidence" in w else DASH,
                 task_text=[f"{t} 项（已办结 {d}）" if t else "未派发" for t, d in zip(w["tasks"], w["done"])])
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
    t = tasks.assign(title=tasks["external_id"].map(lambda a: titles.get(a, a)))
    t = t.sort_values(["deadline", "ts"], kind="stable") if "deadline" in t else t
    return table_html(t, dataset="city_events",
                      columns=["title", "event_class", "description", "district", "street", "grid_id", "department",
                               "deadline", "status"],
                      labels={"title": "所属预警", "event_class": "任务类型", "description": "任务内容"},
                      wrap=("description",), max_rows=limit, max_height="420px")


# ------------------------------------------------------------------ charts (matplotlib figures)

def status_figure(states: pd.DataFrame, by: str = "site_type", title: str = "各类场所隐患整改状态"):
    """Stacked horizontal bars: hazards per `by` and state."""
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
        ax.set_xlabel("隐患数（项）")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=9)
        charts.set_title(fig, title)
    return fig


URBAN = ("荷塘区", "芦淞区", "石峰区", "天元区")  # the city proper, drawn enlarged on the whole-city map


def risk_map_figure(risk: pd.DataFrame, district: str | None = None, title: str = "网格风险分布", label_top: int = 5):
    """Grids as points by longitude and latitude, coloured and sized by 风险分, districts
    labelled at the centre of their grids (no tiles: works offline). For the whole city a
    second panel enlarges the four urban districts, where the grids are dense."""
    from matplotlib import colors
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    r = in_district(risk, district)
    r = r[r["lat"].notna() & r["lon"].notna()]
    hot = r[r["score"] > 0]
    vmax = max(10.0, float(hot["score"].max()) if len(hot) else 10.0)
    norm = colors.Normalize(vmin=0, vmax=vmax)
    urban = r[r["district"].isin(URBAN)]
    two = not district and len(urban) and len(urban) < len(r)
    top = set(hot.sort_values("score", ascending=False).head(label_top)["grid_id"])
    with charts.chart_style():
        if two:
            fig = Figure(figsize=(9.6, 5.8), layout="constrained")
            ax_all, ax_city = fig.subplots(1, 2, width_ratios=[1, 1.55])
            sc = _draw_grids(ax_all, r, norm, label=set(), small=True)
            _draw_grids(ax_city, urban, norm, label=top)
            ax_all.set_title("全市", fontsize=10.5, loc="left")
            ax_city.set_title("市区（荷塘、芦淞、石峰、天元）", fontsize=10.5, loc="left")
            (x0, x1), (y0, y1) = ax_city.get_xlim(), ax_city.get_ylim()
            ax_all.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.0, ls="--",
                                       ec=theme.COLORS["primary"]))
            ax_all.text(x1, y1, " 市区", ha="left", va="top", fontsize=9.5, fontweight="bold",
                        color=theme.COLORS["primary"])
            axes = [ax_all, ax_city]
        else:
            fig = Figure(figsize=(7.2, 5.8), layout="constrained")
            ax = fig.add_subplot()
            sc = _draw_grids(ax, r, norm, label=top)
            axes = [ax]
        cb = fig.colorbar(sc, ax=axes, shrink=0.7, pad=0.02)
        cb.set_label("风险分")
        cb.outline.set_visible(False)
        charts.set_title(fig, title)
    return fig


def _draw_grids(ax, r: pd.DataFrame, norm, label: set, small: bool = False):
    import math

    import matplotlib
    import matplotlib.patheffects as pe

    zero = r[r["score"] <= 0]
    hot = r[r["score"] > 0].sort_values("score")
    k = 0.6 if small else 1.0
    ax.scatter(zero["lon"], zero["lat"], s=9 * k, color="#c9d1dc", linewidths=0)
    sc = ax.scatter(hot["lon"], hot["lat"], s=(16 + 22 * hot["score"].clip(upper=norm.vmax)) * k, c=hot["score"],
                    cmap=matplotlib.colormaps["YlOrRd"], norm=norm, edgecolors="#8a3a20", linewidths=0.5, alpha=0.9)
    halo = [pe.withStroke(linewidth=3, foreground="white")]
    for name, g in r.groupby("district"):
        if small and name in URBAN:  # enlarged on the other panel
            continue
        ax.text(g["lon"].mean(), g["lat"].mean(), name, ha="center", va="center", fontsize=9.5 if small else 11,
                fontweight="bold", color=theme.COLORS["primary_dark"], alpha=0.8, path_effects=halo, zorder=5)
    ranked = hot.sort_values("score", ascending=False)
    for i, row in enumerate(ranked.itertuples(), start=1):
        if row.grid_id in label:
            ax.annotate(f"{i}. {row.grid_id}", (row.lon, row.lat), xytext=(7, 5), textcoords="offset points",
                        fontsize=8.5, color=theme.COLORS["text"], path_effects=halo, zorder=6)
    if len(r):
        ax.set_aspect(1.0 / max(0.2, math.cos(math.radians(float(r["lat"].mean())))))  # shorter lon degrees
        ax.margins(0.06)
    ax.tick_params(labelsize=8.5)
    ax.set_xlabel("经度", fontsize=9)
    ax.set_ylabel("纬度", fontsize=9)
    return sc


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
    open_tasks = int(tasks["closed_at"].isna().sum()) if len(tasks) and "closed_at" in tasks else len(tasks)
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
        cards.KPI("联动巡查任务", len(tasks), unit="项",
                  note=f"未办结 {open_tasks} 项" if len(tasks) else "暂无预警联动任务",
                  tone="warn" if open_tasks else ("ok" if len(tasks) else "muted")),
    ])


def ledger_section(snap: SafetySnapshot, district: str | None = None):
    st = view_states(snap, district)
    if st.empty:
        return layout.empty("暂无隐患记录", "请先接入隐患排查点位清单和隐患排查整治台账（workbench ingest hazard_sites / hazards）。")
    by = "street" if district else "district"
    fig = status_figure(st, "site_type")
    return layout.grid([charts.chart(fig), layout.html(counts_table(st, by))])


def risk_section(snap: SafetySnapshot, district: str | None = None):
    r = view_risk(snap, district)
    if r.empty:
        return layout.stack([layout.empty("暂无网格数据", "接入网格划分（workbench ingest grids）后，按网格计算风险分并在此绘制分布图。"),
                             layout.html(weights_html())])
    items = []
    if (r["score"] > 0).any():
        if district:
            items.append(charts.chart(charts.bar_chart(
                rk.top_grids(r, 12).set_index("grid_id")["score"], title=f"{district}风险分最高的网格", xlabel="风险分",
                color=theme.COLORS["bad"])))
        else:
            items.append(charts.chart(district_risk_figure(r)))
    else:
        items.append(layout.empty("各网格风险分均为 0", "没有未整改隐患，也没有近期突发事件。"))
    items.append(layout.html(weights_html()))
    return layout.stack([charts.chart(risk_map_figure(snap.risk, district)), layout.grid(items),
                         layout.html(risk_table(r))])


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
                       "按隐患自身的整改期限、整改完成和验收时间判定状态；统计时点为数据截至时间（北京时间）。"),
        ledger_section(snap, district),
        layout.section("逾期未整改隐患", "超过整改期限仍未整改完成的隐患，按逾期天数排序。"),
        layout.html(overdue_table(st)),
        layout.section("未整改隐患清单", "待整改和逾期未整改的全部隐患，逾期的在前。"),
        layout.html(open_table(st)),
        layout.section("重复隐患", "同一点位同类隐患整改后再次发现（整改后复发），或 90 天内发现 3 项及以上隐患的点位（多发点位）。"),
        layout.html(repeats_table(snap.ledger.hazards, snap.ledger.sites, district)),
        layout.section("网格风险", "风险分 = 各因素得分之和：未整改隐患（按等级与时长）、逾期、养老院和自建房等场所加权、近 90 天突发事件。"),
        risk_section(snap, district),
        layout.section("气象预警与联动巡查", "寒潮、道路结冰、暴雪预警（生效中的在前）及其发布依据，和按预警派发的巡查任务。"),
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
    controls = widgets.HBox([pick, layout.note(f"数据截至 {format_time(snap.as_of)}（北京时间）")])
    controls.add_class("wb-controls")
    return layout.stack([controls, holder], "wb-safety")


__all__ = ["WEATHER_CATEGORIES", "SafetySnapshot", "prepare", "load", "weather_warnings", "evidence_text",
           "in_district", "warnings_in", "tasks_in", "task_counts", "view_states", "view_risk", "counts_table",
           "overdue_table", "open_table", "repeats_table", "risk_table", "weights_html", "warnings_table",
           "tasks_table", "masked_sites", "warnings_for", "status_figure", "risk_map_figure", "district_risk_figure", "kpis", "ledger_section",
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

    @property
    def where(self) -> str:
        return self.district or "全市"


def load_review(start=None, end=None, district: str | None = None, eng=None, days: int = 30) -> Review:
    """The review of [start, end] (Beijing days, 'YYYY-MM-DD'). `end` None: the day the data
    reaches; `start` None: the `days` days that end with `end`. The ledger and risk are as of the end of `end`
    (or of the data, if it stops earlier)."""
    from workbench.reports import period as report_period

    if district is not None and district not in DISTRICTS:
        raise ValueError(f"参数 district 应为区县名称（{'、'.join(DISTRICTS)}）或 None，收到 {district!r}")
    snap = load(eng=eng)  # as of the data's own end
    if end in (None, ""):
        end = (snap.as_of + pd.Timedelta(hours=8)).date()
    end_day = pd.Timestamp(end).date()
    if start in (None, "") and int(days) < 1:
        raise ValueError(f"参数 days 应为正整数，收到 {days!r}")
    start_day = end_day - pd.Timedelta(days=int(days) - 1) if start in (None, "") else pd.Timestamp(start).date()
    days = (end_day - start_day).days + 1
    if days < 1:
        raise ValueError(f"参数 start 应不晚于 end，收到 start={start!r}, end={end!r}")
    p = report_period(days, end_day)
    if snap.as_of >= pd.Timestamp(p.end_utc):  # the period ends before the data does
        snap = load(as_of=pd.Timestamp(p.end_utc) - pd.Timedelta(seconds=1), eng=eng)
    st = in_district(snap.states, district)
    found = st[(st["ts"] >= p.start_utc) & (st["ts"] < p.end_utc)] if len(st) else st
    w = warnings_in(snap, district)
    if len(w):
        vt = w["valid_to"] if "valid_to" in w else pd.Series(pd.NaT, index=w.index)
        w = w[(w["ts"] < p.end_utc) & (vt.isna() | (vt >= p.start_utc))]
    t = tasks_in(snap, district)
    if len(t) and len(w):
        t = t[t["external_id"].isin(w["alert_id"])]
    elif len(t):
        t = t.iloc[:0]
    return Review(period=p, district=district, snap=snap, found=found, warnings=w, tasks=t)


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
