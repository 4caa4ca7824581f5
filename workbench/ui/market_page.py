"""The 农贸市场快检 dashboard: city and market figures, the daily rate and each market's weekly
chart, markets against the city, alerts, integrity findings, positives awaiting follow-up and
the quarantine.

`load()` reads what workbench.market.view gives: the bulletin figures summed in the hub
(market_daily, live) and the last analysis (`workbench market analyse` keeps a snapshot); a
visit analyses nothing unless no analysis was ever kept. The other functions turn it into HTML
and charts: plain words on the face, method names and statistics behind 说明 (layout.explain).
dashboards/market.ipynb only calls them.
"""
from __future__ import annotations

import html as _html
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench import clock
from workbench.market import analysis as ma
from workbench.market import figures as fg
from workbench.market import followup as fu
from workbench.market import surveillance as sv
from workbench.market import view as mv
from workbench.ui import cards, charts, layout, theme
from workbench.ui.tables import DASH, badge, esc, format_number, table_html, utc_now

RATE_LABELS = {**fg.LABELS, "market_id": "市场编号", "name": "市场名称", "district": "区县", "commodity": "样品名称",
               "category": "样品类别", "test_item": "检测项目", "origin": "产地", "inspector_id": "检测员",
               "rate_ci": "项次阳性率（可能范围）", "sample_ci": "批次阳性率（可能范围）"}
SEVERITY_TONE = {"critical": "bad", "warning": "warn", "info": "info"}
SEVERITY_TEXT = {"critical": "严重", "warning": "警告", "info": "提示"}
STATE_TONE = {"未登记处置": "bad", "复查仍阳性": "bad", "待处置": "bad", "待复检": "warn", "已送检": "warn", "待复查": "warn",
              "已办结": "ok", "复检阴性": "ok"}
CI_NOTE = ("括号内是按检测量估计的可能范围：检测越少，范围越宽。统计方法：Wilson 95% 置信区间；"
           "样品批次 = 同一摊位同一时间抽取的同一样品，一批有任一项目阳性即为阳性批次；禁用物质单列。")


@dataclass
class MarketSnapshot:
    now: pd.Timestamp
    an: ma.Analysis               # the last analysis (rows left out when read from the snapshot)
    quarantine: pd.DataFrame      # dataset, reason, rows (rapid_tests and market_followups)
    who: object = None            # the Principal it was read for (a district user: their district only)
    figs: mv.Figures | None = None  # the bulletin figures summed in the hub (None: from the analysis' rows)
    analysed_at: pd.Timestamp | None = None  # when the analysis was kept (None: just now)

    def __post_init__(self):
        if self.figs is None:
            self.figs = mv.figures_from_prep(self.an.prep, self.an.rules)

    @property
    def empty(self) -> bool:
        return self.figs.empty


def prepare() -> None:
    """Open the hub and import what a visit draws with, ahead of the request (preheated kernels)."""
    from workbench.store import hub

    hub.engine()
    charts.warm_up(interactive=True)


def load(now=None, eng=None, since=None, until=None, who=None) -> MarketSnapshot:
    """The page's data for `who` (a workbench.access.Principal). A city-wide user: the figures
    summed in the hub and the kept analysis (analysed once and kept when there is none). A
    district user: the district's figures, and the analysis run on the district's markets,
    tests and follow-ups only (scope) at the visit; the quarantine (rows
    not placed in any district yet) is left out for them. `since`/`until`: analyse that range
    now (nothing kept)."""
    from workbench.store import hub

    now = utc_now() if now is None else pd.Timestamp(now)
    eng = eng or hub.engine()
    district = None if who is None or who.sees_all else who.district
    an, saved = (None, None)
    if since is None and until is None and district is None:
        an, saved = mv.load_snapshot(eng)
    if an is None:
        tests, markets, followups = ma.load(eng, since=since, until=until)
        tests, markets, followups = scoped(who, tests, markets, followups)
        an = ma.analyse(tests, markets, followups, cases=ma.load_cases(eng))
        if since is None and until is None and district is None and not an.empty:
            mv.save_snapshot(an, eng)
        figs = mv.figures_from_prep(an.prep, an.rules) if (since is not None or until is not None) else None
    else:
        figs = None
    if figs is None:
        figs = mv.page_figures(eng, district, an.rules)
    if district is not None or (who is not None and not who.sees_all):
        q = pd.DataFrame(columns=["dataset", "reason", "rows"])
    else:
        q = hub.quarantine_reasons(eng=eng)
        q = q[q["dataset"].isin(["rapid_tests", "market_followups"])] if len(q) else q
    return MarketSnapshot(now, an, q, who, figs, saved)


def scoped(who, tests: pd.DataFrame, markets: pd.DataFrame, followups: pd.DataFrame):
    """The rows `who` may read (workbench.access.scope): a district user's markets, the tests of
    their district (a test without a district: its market's), and those tests' follow-ups."""
    from workbench.access import scope

    if who is None or who.sees_all:
        return tests, markets, followups
    markets = scope(markets, who)
    mine = set(markets["market_id"]) if "market_id" in markets else set()
    if len(tests):
        d = tests["district"] if "district" in tests else pd.Series(None, index=tests.index)
        tests = tests[(d == who.district) | (d.isna() & tests["market_id"].isin(mine))]
    if len(followups) and "test_id" in followups:
        followups = followups[followups["test_id"].isin(set(tests["test_id"]))]
    return tests, markets, followups


# ------------------------------------------------------------------ helpers

def names(an: ma.Analysis) -> dict:
    m = an.markets
    return dict(zip(m["market_id"], m["name"])) if len(m) and "name" in m else {}


def pct(v, digits: int = 2) -> str:
    return DASH if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v * 100:.{digits}f}%"


def _ci(rate, lo, hi) -> str:
    if rate is None or (isinstance(rate, float) and np.isnan(rate)):
        return DASH
    return f"{rate * 100:.2f}%（{lo * 100:.2f}–{hi * 100:.2f}）"


def evidence_text(value, limit: int = 180) -> str:
    if not isinstance(value, str) or not value:
        return DASH
    try:
        data = json.loads(value)
    except ValueError:
        return value[:limit]
    parts = []
    for k, v in data.items():
        if k == "方法":  # the statistics stay behind the 说明 (the alert's evidence keeps them)
            continue
        if isinstance(v, list):
            v = "、".join(map(str, v[:5])) + ("…" if len(v) > 5 else "")
        elif isinstance(v, float):
            v = format_number(v, 4)
        parts.append(f"{k}：{v}")
    text = "；".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ tables

def bulletin_table(b: pd.DataFrame, by: str, labels: dict | None = None, limit: int = 60, sort_rate: bool = True,
                   compact: bool = False) -> str:
    """Figures per group: batches, items, positives and the rates with their likely range
    (the method in CI_NOTE, behind 说明). `compact`: the item rate only (a narrow column)."""
    if b is None or b.empty:
        return table_html(None, empty="暂无快检记录")
    col = fg.GROUPS.get(by, by)
    t = b.copy()
    if sort_rate:
        t = t.sort_values(["item_rate", "items"], ascending=[False, False])
    t["rate_ci"] = [_ci(r, lo, hi) for r, lo, hi in zip(t["item_rate"], t["item_rate_lo"], t["item_rate_hi"])]
    t["sample_ci"] = [_ci(r, lo, hi) for r, lo, hi in zip(t["sample_rate"], t["sample_rate_lo"], t["sample_rate_hi"])]
    if col in t and col != "period":
        t[col] = t[col].fillna("未填写")
    cols = [col]
    if labels:
        t["name"] = t[col].map(labels)
        cols.append("name")
    if compact:
        cols += ["samples", "items", "positive_items", "rate_ci", "banned_positive"]
    else:
        cols += ["samples", "items", "positive_samples", "positive_items", "sample_ci", "rate_ci", "banned_positive"]
    if "period" in t and col != "period":
        cols = ["period", *cols]
    return table_html(t, columns=cols, labels=RATE_LABELS, max_rows=limit, max_height="420px",
                      numeric=("samples", "items", "positive_samples", "positive_items", "banned_positive"))


def periods_table(snap_or_an, start=None, end=None) -> str:
    """The city's figures for the last 7 days, month to date and year to date."""
    figs = snap_or_an.figs if isinstance(snap_or_an, MarketSnapshot) else mv.figures_from_prep(snap_or_an.prep)
    if figs.empty:
        return table_html(None, empty="暂无快检记录")
    return bulletin_table(figs.periods, "period", sort_rate=False)


def alerts_table(alerts: pd.DataFrame, limit: int = 60) -> str:
    if alerts is None or alerts.empty:
        return table_html(None, empty="暂无快检预警", empty_hint="快检阳性（禁用物质为严重）、市场阳性率上升、处置逾期和数据真实性问题会在这里列出。")
    a = alerts.copy()
    a["_active"] = a["status"].isin(["生效中", "待核查"])
    a["_sev"] = a["severity"].map({"critical": 0, "warning": 1, "info": 2})
    n_all = len(a)
    a = a.sort_values(["_active", "_sev", "ts"], ascending=[False, True, False]).head(limit)  # only what is shown
    a["severity_badge"] = a["severity"].map(lambda s: badge(SEVERITY_TEXT.get(s, s), SEVERITY_TONE.get(s, "")))
    a["status_badge"] = a["status"].map(lambda s: badge(s, "bad" if s in ("生效中", "待核查") else ""))
    a["evidence_text"] = a["evidence"].map(evidence_text)
    return table_html(a, dataset="alerts", columns=["ts", "severity_badge", "category", "title", "status_badge",
                                                     "evidence_text"],
                      labels={"severity_badge": "级别", "status_badge": "状态", "evidence_text": "依据"},
                      html_columns=("severity_badge", "status_badge"), wrap=("evidence_text",), max_rows=limit,
                      max_height="460px") + (f'<div class="wb-note">共 {n_all:,} 条告警，按生效中、级别和时间排序显示前 {limit} 条；'
                                             '全部告警见数据中台的告警表。</div>' if n_all > limit else "")


def findings_table(findings: pd.DataFrame, limit: int = 40) -> str:
    if findings is None or findings.empty:
        return table_html(None, empty="暂无数据真实性问题",
                          empty_hint="阳性率异常偏低、检测过快、读数重复、非营业时间检测、试剂过期、读数尾数偏好会在这里列出。")
    f = findings.copy()
    f["ids"] = f["evidence"].map(lambda e: "、".join(json.loads(e).get("检测编号", [])[:6]) + "…")
    return table_html(f, dataset="data_quality", columns=["kind", "subject", "rows", "ts_from", "ts_to", "reason", "ids"],
                      labels={"ids": "证据记录（检测编号）"}, wrap=("reason", "ids"), max_rows=limit, max_height="460px")


def inspector_table(table: pd.DataFrame, limit: int = 30) -> str:
    if table is None or table.empty:
        return table_html(None, empty="暂无可比较的检测员")
    t = table.copy()
    t["flag"] = t["flagged"].map(lambda f: badge("阳性明显偏少", "bad") if f else badge("正常", "ok"))
    return table_html(t, columns=["subject", "tests", "positives", "expected", "flag"],
                      labels={"subject": "检测员", "tests": "可比检测项次", "positives": "实际阳性",
                              "expected": "按同行应有阳性", "flag": "判定"},
                      formatters={"expected": lambda v: f"{v:.1f}"},
                      html_columns=("flag",), numeric=("tests", "positives", "expected"),
                      max_rows=limit, max_height="380px")


def inspector_method_html(table: pd.DataFrame) -> str:
    """The comparison's statistics (for 说明): each inspector's p-value, corrected."""
    if table is None or table.empty:
        return ""
    return table_html(table, columns=["subject", "tests", "positives", "expected", "p_value", "p_adjusted"],
                      labels={"subject": "检测员", "tests": "可比检测项次", "positives": "阳性", "expected": "期望阳性",
                              "p_value": "p 值（条件检验）", "p_adjusted": "Bonferroni 校正后"},
                      formatters={"expected": lambda v: f"{v:.1f}", "p_value": lambda v: f"{v:.2g}",
                                  "p_adjusted": lambda v: f"{v:.2g}"},
                      numeric=("tests", "positives", "expected", "p_value", "p_adjusted"), max_rows=30, max_height="320px")


def _overdue_badge(overdue: bool, days: int, deadline, now) -> str:
    if overdue:
        return badge(f"逾期 {days} 天" if days else "已逾期", "bad")
    if pd.isna(deadline):
        return badge("无时限", "")
    left = (pd.Timestamp(deadline) - pd.Timestamp(now)) / pd.Timedelta(hours=1)
    return badge(f"剩 {left:.0f} 小时", "warn") if 0 <= left <= 24 else badge("未到期", "")


def followup_table(st: pd.DataFrame, mk_names: dict, limit: int = 60, open_only: bool = True, now=None) -> str:
    """Positives awaiting follow-up (the market_followup cases; DOMAIN: handled within 72 h),
    overdue first: the case, its step, its deadline and how far past it."""
    t = st[~st["closed"]] if open_only and len(st) else st
    now = utc_now() if now is None else pd.Timestamp(now)
    if t is None or t.empty:
        return table_html(None, empty="暂无待处置的阳性", empty_hint="阳性样品的复检、销毁和摊位复查全部办结。")
    t = t.assign(name=t["market_id"].map(mk_names).fillna(t["market_id"]),
                 state_badge=t["state"].map(lambda s: badge(s, STATE_TONE.get(s, ""))),
                 overdue_badge=[_overdue_badge(o, d, dl, now) for o, d, dl in
                                zip(t["overdue"], t["days_overdue"], t["deadline"])],
                 case=t["case_id"].fillna(DASH) if "case_id" in t else DASH)
    return table_html(t, dataset="rapid_tests",
                      columns=["test_id", "case", "ts", "name", "stall_id", "commodity", "test_item", "state_badge",
                               "deadline", "overdue_badge"],
                      labels={"name": "市场", "case": "处置案件", "state_badge": "处置状态",
                              "deadline": "处置时限（72 小时）", "overdue_badge": "是否逾期"},
                      html_columns=("state_badge", "overdue_badge"), max_rows=limit, max_height="420px")


def quarantine_table(q: pd.DataFrame) -> str:
    if q is None or q.empty:
        return table_html(None, empty="隔离区没有快检记录", empty_hint="读数超出物理范围、检测早于采样、未知市场或样品、结果与读数矛盾的记录会被隔离，不会被修改或丢弃。")
    from workbench.ui.labels import dataset_label

    q = q.assign(dataset=q["dataset"].map(dataset_label))
    return table_html(q, columns=["dataset", "reason", "rows"], labels={"dataset": "数据集", "reason": "隔离原因", "rows": "记录数"},
                      numeric=("rows",))


def trend_table(tab: pd.DataFrame) -> str:
    if tab is None or tab.empty:
        return table_html(None, empty="数据不足，未拟合趋势模型")
    names_ = {"years": "时间趋势（每年）", "season_sin": "季节（正弦项）", "season_cos": "季节（余弦项）"}
    t = tab[tab["term"].isin(names_)].assign(term=lambda d: d["term"].map(names_))
    if t.empty:
        return table_html(None, empty="数据跨度不足，模型只含样品和市场")
    return table_html(t, columns=["term", "odds_ratio", "lo", "hi", "p_value"],
                      labels={"term": "模型项", "odds_ratio": "优势比", "lo": "95% 下限", "hi": "95% 上限", "p_value": "p 值"},
                      formatters={c: (lambda v: f"{v:.3f}") for c in ("odds_ratio", "lo", "hi")} | {"p_value": lambda v: f"{v:.2g}"},
                      numeric=("odds_ratio", "lo", "hi", "p_value"))


# ------------------------------------------------------------------ figures

def city_rate_spec(figs: mv.Figures, title: str = "全市每日快检阳性率") -> dict:
    """The city's daily positive rate against the line of ordinary day-to-day variation (a p
    chart whose limit follows each day's number of tests), interactive: values on hover, zoom."""
    fig = charts.spec(title=title, height=380, hovermode="x unified", yaxis={"title": {"text": "阳性率（%）"}})
    n, x = figs.city_n, figs.city_x
    if not len(n) or not n.sum():
        return fig
    p0 = float(x.sum() / n.sum())
    pc = sv.p_chart(n.to_frame("全市"), x.to_frame("全市"), p0)
    p = pc["p"]["全市"] * 100
    lim = pc["limit"]["全市"] / n.where(n > 0) * 100
    al = pc["alarm"]["全市"].to_numpy()
    days = charts._list(n.index)
    fig["data"] += [
        {"type": "scatter", "x": days, "y": charts._list(p.round(2)), "name": "阳性率", "mode": "lines+markers",
         "marker": {"size": 4}, "line": {"width": 1.6, "color": theme.COLORS["primary"]},
         "customdata": [[int(a), int(b)] for a, b in zip(n, x)],
         "hovertemplate": "%{y:.2f}%（检测 %{customdata[0]} 项，阳性 %{customdata[1]} 项）<extra>阳性率</extra>"},
        {"type": "scatter", "x": days, "y": charts._list(lim.round(2)), "name": "正常波动上限", "mode": "lines",
         "line": {"width": 1, "color": theme.COLORS["bad"], "shape": "hvh"}, "hovertemplate": "%{y:.2f}%<extra>正常波动上限</extra>"},
        {"type": "scatter", "x": [days[0], days[-1]], "y": [round(p0 * 100, 2)] * 2, "name": f"平均 {p0 * 100:.2f}%",
         "mode": "lines", "line": {"width": 1, "dash": "dash", "color": theme.COLORS["muted"]}, "hoverinfo": "skip"},
    ]
    if al.any():
        fig["data"].append({"type": "scatter", "x": [d for d, a in zip(days, al) if a], "y": charts._list(p[al].round(2)),
                            "name": "超出正常波动", "mode": "markers",
                            "marker": {"size": 9, "color": theme.COLORS["bad"]}, "hovertemplate": "%{y:.2f}%<extra>超出正常波动</extra>"})
    fig["layout"]["xaxis"] = {**fig["layout"]["xaxis"], "type": "date", "tickformat": "%m-%d", "hoverformat": "%Y-%m-%d"}
    return fig


def city_rate_words(figs: mv.Figures) -> str:
    """The daily chart in plain words: the last week against the weeks before."""
    n, x = figs.city_n, figs.city_x
    if len(n) < 14 or not n.sum():
        return "数据不足两周，暂不比较。"
    last, before = n.index[-7:], n.index[-35:-7]
    r1 = x[last].sum() / max(n[last].sum(), 1)
    r0 = x[before].sum() / max(n[before].sum(), 1)
    p0 = float(x.sum() / n.sum())
    pc = sv.p_chart(n.to_frame("全市"), x.to_frame("全市"), p0)
    out = int(pc["alarm"]["全市"][last].sum())
    trend = ("明显高于" if r1 > r0 * 1.25 else "明显低于" if r1 < r0 * 0.8 else "与")
    text = (f"最近 7 天全市项次阳性率 {r1 * 100:.2f}%，{trend}此前四周（{r0 * 100:.2f}%）"
            + ("相当" if trend == "与" else "") + "；")
    text += (f"其中 {out} 天阳性明显多于平常（图中红点），请关注。" if out else "每天的阳性率都在正常波动范围内。")
    return text


def top_markets(an: ma.Analysis, k: int = 4) -> list:
    """The markets to draw: those with rise alarms (latest first), then the nearest to one."""
    msv = an.market_sv
    if not len(msv.n):
        return []
    res = an.scheme
    if res is None:
        return list(msv.n.columns)[:k]
    ep = res.market_episodes.sort_values("last", ascending=False)["market"].drop_duplicates().tolist()
    rest = res.item["cusum"]["z"].max().sort_values(ascending=False).index.tolist()
    return list(dict.fromkeys(ep + rest + list(msv.n.columns)))[:k]


def market_chart_figure(an: ma.Analysis, market: str, mk_names: dict | None = None):
    """One market's weekly series: positive rate against its reference and the p-chart
    limit, the CUSUM statistic with h, and the EWMA of the excess."""
    from matplotlib.figure import Figure

    msv = an.market_sv
    name = (mk_names or {}).get(market, market)
    item = an.rules.item or "全部项目"
    with charts.chart_style():
        fig = Figure(figsize=(9.6, 4.6), layout="constrained")
        ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[1.3, 1])
        idx = msv.n.index
        p = msv.p_chart["p"][market] * 100
        ax1.plot(idx, p, marker="o", ms=3, lw=1.3, color=theme.COLORS["primary"], label="周阳性率")
        ax1.plot(idx, msv.p0[market] * 100, color=theme.COLORS["muted"], ls="--", lw=1, label="预期（随全市季节变化）")
        lim = msv.p_chart["limit"][market] / msv.n[market].where(msv.n[market] > 0) * 100
        ax1.step(idx, lim, where="mid", color=theme.COLORS["bad"], lw=1, label="正常波动上限")
        ax1.set_ylabel("阳性率（%）")
        ax1.set_ylim(bottom=0)
        ax1.legend(loc="upper left", fontsize=8, ncol=3)
        res = an.scheme
        if res is not None and market in res.item["cusum"]["z"]:
            # the accumulated excess against each series' own alarm line (S/h: 1 = alarm), the
            # market's whole item and its commodities that alarmed (or came nearest)
            z = res.item["cusum"]["z"][market]
            ax2.plot(z.index, z.to_numpy(), color=theme.COLORS["accent"], lw=1.4, label="全部样品")
            zc = res.commodity["cusum"]["z"]
            mine = [c for c in zc.columns if c[0] == market]
            named = [c for e in res.market_episodes[res.market_episodes["market"] == market]["commodities"] for c in e]
            near = sorted(mine, key=lambda c: -float(zc[c].max()))
            for j, c in enumerate(list(dict.fromkeys([(market, n) for n in named] + near))[:3]):
                ax2.plot(zc.index, zc[c].to_numpy(), lw=1.1, color=theme.PALETTE[(j + 2) % len(theme.PALETTE)], label=c[1])
            al = res.item["cusum"]["alarm"][market].to_numpy()
            for c in mine:
                al = al | res.commodity["cusum"]["alarm"][c].to_numpy()
            if al.any():
                ax2.scatter(idx[al], np.ones(int(al.sum())), color=theme.COLORS["bad"], zorder=5, s=26, label="报警")
            ax2.axhline(1, color=theme.COLORS["bad"], ls="--", lw=1, label="报警线")
            ax2.set_ylabel("累计超出 / 报警线")
            ax2.set_ylim(bottom=0)
        ax2.legend(loc="upper left", fontsize=8, ncol=4)
        charts.set_title(fig, f"{name}：{item}周阳性率与累计超出（到 1 即报警）")
    return fig


def market_chart_spec(an: ma.Analysis, market: str, mk_names: dict | None = None) -> dict:
    """One market's weekly chart, interactive: above, its positive rate against what is expected
    and the line of ordinary variation; below, the accumulated excess of the market and of its
    commodities against the alarm line (1 = alarm)."""
    msv = an.market_sv
    name = (mk_names or {}).get(market, market)
    item = an.rules.item or "全部项目"
    fig = charts.spec(title=f"{name}：{item}每周阳性率与累计超出（到 1 即报警）", height=520, hovermode="x unified")
    lay = fig["layout"]
    lay["yaxis"] = {**lay["yaxis"], "domain": [0.45, 1.0], "title": {"text": "阳性率（%）"}}
    lay["yaxis2"] = {**lay["yaxis"], "domain": [0.0, 0.36], "title": {"text": "累计超出 / 报警线"}, "anchor": "x"}
    lay["xaxis"] = {**lay["xaxis"], "type": "date", "tickformat": "%m-%d", "hoverformat": "%Y-%m-%d 那周", "anchor": "y2"}
    idx = charts._list(msv.n.index)
    n = msv.n[market]
    fig["data"] += [
        {"type": "scatter", "x": idx, "y": charts._list((msv.p_chart["p"][market] * 100).round(2)), "name": "周阳性率",
         "mode": "lines+markers", "marker": {"size": 5}, "line": {"color": theme.COLORS["primary"]},
         "customdata": charts._list(n), "hovertemplate": "%{y:.2f}%（检测 %{customdata} 项）<extra>周阳性率</extra>"},
        {"type": "scatter", "x": idx, "y": charts._list((msv.p0[market] * 100).round(2)), "name": "预期",
         "mode": "lines", "line": {"dash": "dash", "width": 1, "color": theme.COLORS["muted"]},
         "hovertemplate": "%{y:.2f}%<extra>预期</extra>"},
        {"type": "scatter", "x": idx, "y": charts._list((msv.p_chart["limit"][market] / n.where(n > 0) * 100).round(2)),
         "name": "正常波动上限", "mode": "lines", "line": {"width": 1, "shape": "hvh", "color": theme.COLORS["bad"]},
         "hovertemplate": "%{y:.2f}%<extra>正常波动上限</extra>"},
    ]
    res = an.scheme
    if res is not None and market in res.item["cusum"]["z"]:
        z = res.item["cusum"]["z"][market]
        fig["data"].append({"type": "scatter", "x": charts._list(z.index), "y": charts._list(z.round(3)), "yaxis": "y2",
                            "name": "全部样品", "mode": "lines", "line": {"color": theme.COLORS["accent"]},
                            "hovertemplate": "%{y:.2f}<extra>全部样品</extra>"})
        zc = res.commodity["cusum"]["z"]
        mine = [c for c in zc.columns if c[0] == market]
        named = [c for e in res.market_episodes[res.market_episodes["market"] == market]["commodities"] for c in e]
        near = sorted(mine, key=lambda c: -float(zc[c].max()))
        for j, c in enumerate(list(dict.fromkeys([(market, m) for m in named] + near))[:3]):
            fig["data"].append({"type": "scatter", "x": charts._list(zc.index), "y": charts._list(zc[c].round(3)),
                                "yaxis": "y2", "name": c[1], "mode": "lines",
                                "line": {"width": 1.2, "color": theme.PALETTE[(j + 2) % len(theme.PALETTE)]},
                                "hovertemplate": f"%{{y:.2f}}<extra>{c[1]}</extra>"})
        fig["data"].append({"type": "scatter", "x": [idx[0], idx[-1]], "y": [1, 1], "yaxis": "y2", "name": "报警线",
                            "mode": "lines", "line": {"dash": "dash", "width": 1, "color": theme.COLORS["bad"]},
                            "hoverinfo": "skip"})
    return fig


def category_spec(b: pd.DataFrame, title: str = "各类样品项次阳性率（近 30 天）") -> dict:
    t = b.sort_values("item_rate")
    fig = charts.spec(title=title, height=max(260, 34 * len(t) + 110), hovermode="closest",
                      xaxis={"title": {"text": "项次阳性率（%）"}})
    if not len(t):
        return fig
    cat = [str(c) if c is not None and c == c else "未填写" for c in t[t.columns[0]]]
    fig["data"].append({"type": "bar", "orientation": "h", "y": cat, "x": charts._list((t["item_rate"] * 100).round(2)),
                        "marker": {"color": theme.COLORS["primary"]}, "name": "项次阳性率",
                        "error_x": {"type": "data", "symmetric": False,
                                    "array": charts._list(((t["item_rate_hi"] - t["item_rate"]) * 100).clip(lower=0).round(3)),
                                    "arrayminus": charts._list(((t["item_rate"] - t["item_rate_lo"]) * 100).clip(lower=0).round(3)),
                                    "color": theme.COLORS["text"], "thickness": 1},
                        "customdata": [[int(a), int(b_)] for a, b_ in zip(t["items"], t["positive_items"])],
                        "hovertemplate": "%{y}：%{x:.2f}%（检测 %{customdata[0]} 项，阳性 %{customdata[1]} 项）<extra></extra>"})
    fig["layout"]["margin"] = {**fig["layout"]["margin"], "l": 90}
    return fig


def inspector_spec(table: pd.DataFrame, title: str = "检测员阳性数：实际与按同行应有") -> dict:
    t = table.sort_values("expected").tail(20)
    fig = charts.spec(title=title, height=max(280, 26 * len(t) + 120), hovermode="y unified", barmode="group",
                      xaxis={"title": {"text": "阳性项次"}})
    if not len(t):
        return fig
    y = [str(v) for v in t["subject"]]
    fig["data"] += [
        {"type": "bar", "orientation": "h", "y": y, "x": charts._list(t["expected"].round(1)), "name": "按同行应有",
         "marker": {"color": "#c9d7ea"}, "hovertemplate": "%{x:.1f}<extra>按同行应有</extra>"},
        {"type": "bar", "orientation": "h", "y": y, "x": charts._list(t["positives"]), "name": "实际阳性",
         "marker": {"color": [theme.COLORS["bad"] if f else theme.COLORS["primary"] for f in t["flagged"]]},
         "hovertemplate": "%{x}<extra>实际阳性</extra>"},
    ]
    fig["layout"]["margin"] = {**fig["layout"]["margin"], "l": 70}
    return fig


def ears_figure(an: ma.Analysis, unit: str = "全市"):
    res = an.ears
    with charts.chart_style():
        fig, ax = charts.new_figure(9.6, 3.4)
        c1 = res["C1"]["upperbound"]
        if unit in c1:
            _, x = an.city_daily
            y = x[unit] if unit in x else None
            if y is None:
                y = pd.Series(dtype=float)
            ax.bar(y.index, y.to_numpy(), color="#c9d7ea", width=0.9, label="每日阳性项次")
            for m, color in (("C1", theme.PALETTE[0]), ("C2", theme.PALETTE[2]), ("C3", theme.PALETTE[3])):
                ub = res[m]["upperbound"][unit]
                ax.plot(ub.index, ub.to_numpy(), color=color, lw=1, label=f"预警上界 {m}")
                al = res[m]["alarm"][unit].to_numpy()
                if al.any():
                    ax.scatter(ub.index[al], y.reindex(ub.index)[al], color=color, marker="^", s=30, zorder=5)
            ax.legend(loc="upper left", fontsize=8, ncol=4)
        ax.set_ylabel("阳性项次")
        charts.set_title(fig, f"{unit}每日阳性项次与预警上界")
    return fig


def funnel_spec(figs: mv.Figures, mk_names: dict | None = None, title: str = "各市场阳性率与全市比较（近 30 天）") -> dict:
    """Each market's positive rate against the city's, with the range a market of its number of
    tests would show by chance (the funnel); hover names the market."""
    f = figs.funnel
    fig = charts.spec(title=title, height=420, xaxis={"title": {"text": "检测项次"}},
                      yaxis={"title": {"text": "项次阳性率（%）"}}, hovermode="closest")
    if f is None or not len(f):
        return fig
    lv = figs.rules.funnel_levels
    p = float(f["positive_items"].sum() / f["items"].sum())
    curve = sv.funnel_curve(p, float(f["items"].max()), lv)
    curve = curve[curve["n"] >= 0.5 * float(f["items"].min())]
    for level, dash in zip(lv, ("dash", "solid")):
        for side in ("hi", "lo"):
            fig["data"].append({"type": "scatter", "x": charts._list(curve["n"]), "y": charts._list((curve[f"{side}_{level:g}"] * 100).round(3)),
                                "mode": "lines", "line": {"width": 1, "dash": dash, "color": theme.COLORS["bad"]},
                                "name": f"偶然波动范围（{level:.1%}）", "showlegend": side == "hi", "hoverinfo": "skip"})
    fig["data"].append({"type": "scatter", "x": [float(curve["n"].min()), float(curve["n"].max())], "y": [round(p * 100, 3)] * 2,
                        "mode": "lines", "line": {"width": 1, "color": theme.COLORS["muted"]}, "name": f"全市 {p * 100:.2f}%",
                        "hoverinfo": "skip"})
    colour = np.where(f["side"] == "high", theme.COLORS["bad"], np.where(f["side"] == "low", theme.COLORS["ok"],
                                                                      theme.COLORS["primary"]))
    names_ = [(mk_names or {}).get(m, m) for m in f["market_id"]]
    fig["data"].append({"type": "scatter", "x": charts._list(f["items"]), "y": charts._list((f["rate"] * 100).round(2)),
                        "mode": "markers", "name": "市场", "marker": {"size": 10, "color": list(colour),
                                                                    "line": {"width": 1, "color": "white"}},
                        "text": names_, "customdata": charts._list(f["positive_items"]),
                        "hovertemplate": "%{text}<br>检测 %{x:,} 项，阳性 %{customdata} 项，阳性率 %{y:.2f}%<extra></extra>"})
    return fig


def funnel_words(figs: mv.Figures, mk_names: dict | None = None) -> str:
    f = figs.funnel
    if f is None or not len(f):
        return "近 30 天没有快检记录。"
    hi = [(mk_names or {}).get(m, m) for m in f.loc[f["side"] == "high", "market_id"]]
    lo = [(mk_names or {}).get(m, m) for m in f.loc[f["side"] == "low", "market_id"]]
    text = (f"近 30 天{'、'.join(hi[:6])}{'等' if len(hi) > 6 else ''} {len(hi)} 个市场的阳性率明显高于全市，不能用偶然解释，"
            "建议加强抽检、追查进货来源。" if hi else "近 30 天没有市场的阳性率明显高于全市。")
    if lo:
        text += f"{'、'.join(lo[:4])}{'等' if len(lo) > 4 else ''}明显低于全市（也可能是检测不到位，见数据真实性核查）。"
    return text


def category_figure(b: pd.DataFrame, title: str = "各类样品项次阳性率（95% 置信区间）"):
    t = b.sort_values("item_rate")
    with charts.chart_style():
        fig, ax = charts.new_figure(6.4, max(2.6, 0.38 * len(t) + 1.2))
        y = np.arange(len(t))
        ax.barh(y, t["item_rate"] * 100, color=theme.COLORS["primary"], height=0.6)
        ax.errorbar(t["item_rate"] * 100, y, xerr=[((t["item_rate"] - t["item_rate_lo"]) * 100).clip(lower=0),
                                                  ((t["item_rate_hi"] - t["item_rate"]) * 100).clip(lower=0)],
                    fmt="none", ecolor=theme.COLORS["text"], capsize=3, lw=1)
        ax.set_yticks(y, t[t.columns[0]].astype(str))
        ax.set_xlabel("项次阳性率（%）")
        ax.grid(axis="y", visible=False)
        charts.set_title(fig, title)
    return fig


def inspector_figure(table: pd.DataFrame, title: str = "检测员阳性数：实际与按同行应有"):
    t = table.sort_values("expected").tail(20)
    with charts.chart_style():
        fig, ax = charts.new_figure(6.4, max(2.6, 0.34 * len(t) + 1.2))
        y = np.arange(len(t))
        ax.barh(y - 0.2, t["expected"], height=0.4, color="#c9d7ea", label="按同行应有")
        ax.barh(y + 0.2, t["positives"], height=0.4,
                color=np.where(t["flagged"], theme.COLORS["bad"], theme.COLORS["primary"]), label="实际阳性")
        ax.set_yticks(y, t["subject"].astype(str))
        ax.legend(loc="lower right", fontsize=8.5)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("阳性项次")
        charts.set_title(fig, title)
    return fig


# ------------------------------------------------------------------ widgets

def kpis_html(snap: MarketSnapshot) -> str:
    """The cards as one HTML row (flex, wrapping: none overlaps or is cut at any width)."""
    an, figs = snap.an, snap.figs
    recent = figs.by_market
    samples, items = int(recent["samples"].sum()), int(recent["items"].sum())
    pos = int(recent["positive_items"].sum())
    rate = pos / items if items else None
    banned = int(recent["banned_positive"].sum())
    f = fu.summary(an.followups)
    active = an.alerts[an.alerts["category"] == "快检阳性率上升"] if len(an.alerts) else an.alerts
    active_n = int((active["status"] == "生效中").sum()) if len(active) else 0
    findings = an.integrity.findings
    q = int(snap.quarantine["rows"].sum()) if len(snap.quarantine) else 0
    items_html = [
        cards.kpi_html("近 30 天抽检", samples, unit="批", note=f"检测 {items:,} 项次"),
        cards.kpi_html("近 30 天阳性率", pct(rate), note=f"阳性 {pos:,} 项次", tone="warn" if rate and rate > 0.03 else ""),
        cards.kpi_html("禁用物质阳性", banned, unit="项", note="近 30 天（瘦肉精、孔雀石绿等）", tone="bad" if banned else "ok"),
        cards.kpi_html("阳性率上升", active_n, unit="起", note=(_rising_note(active) or "未发现") if len(active) else "未发现",
                       tone="bad" if active_n else "ok"),
        cards.kpi_html("数据真实性问题", len(findings), unit="项", tone="warn" if len(findings) else "ok",
                       note="、".join(sorted(set(findings["kind"]))) or "未发现"),
        cards.kpi_html("待处置阳性", f["open"], unit="项", note=f"逾期 {f['overdue']} 项", tone="bad" if f["overdue"] else ""),
        cards.kpi_html("隔离记录", q, unit="条", note="读数越界、时间颠倒、未知编码等" if q else "无", tone="warn" if q else "muted"),
    ]
    style = ("<style>.wb-market-cards > .wb-card { flex: 1 1 150px; min-width: 150px; max-width: 100%; height: auto; }"
             ".wb-market-cards .wb-card-note { max-width: 100%; }</style>")
    return f'{style}<div class="wb-cards wb-market-cards">{"".join(items_html)}</div>'


def kpis(snap: MarketSnapshot):
    return layout.html(kpis_html(snap))


def _status_line(snap: MarketSnapshot) -> str:
    figs = snap.figs
    when = snap.analysed_at
    text = f"通报数据截至 {figs.last_day:%Y-%m-%d}（北京时间）。" if not figs.empty else ""
    if when is not None:
        text += (f"预警、数据真实性核查和阳性处置为 {clock.to_local(when):%Y-%m-%d %H:%M} 分析的结果"
                 "（之后接入的检测已计入通报数据，其预警在下次分析后更新）。")
    return text


def _explain(face: str, detail: str = ""):
    return layout.explain(face, detail)


def body(snap: MarketSnapshot):
    an, figs = snap.an, snap.figs
    mk = names(an)
    items = [kpis(snap),
             layout.note(_status_line(snap)),
             layout.section("通报数据", f"全市本期（最近 7 天）、本月和本年累计；各市场、各类样品和产地为近 30 天（{figs.recent_text}）。"),
             _explain("样品批次 = 同一摊位同一时间抽取的同一样品；括号内是按检测量估计的可能范围，检测越少范围越宽。",
                      esc(CI_NOTE)),
             layout.html(periods_table(snap)),
             charts.interactive(category_spec(figs.by_category)),
             layout.html(bulletin_table(figs.by_origin, "origin", sort_rate=False, compact=True)),
             layout.html(bulletin_table(figs.by_market, "market", mk)),
             layout.section("每日阳性率", "全市每天的快检阳性率；红线以下是检测量带来的正常波动，超出即阳性明显多于平常。"),
             _explain(esc(city_rate_words(figs)),
                      esc("统计方法：p 控制图，控制限为精确二项分布的概率限（按当天检测量，单侧 α 与 3σ 相当），"
                          "中心线为图中各天的平均阳性率。")),
             charts.interactive(city_rate_spec(figs))]
    if len(an.market_sv.n):
        items.append(market_picker(an, mk))
    items += [layout.section("各市场与全市比较", "每个点是一个市场；两条红线之间是检测量相同的市场偶然会有的范围。"),
              _explain(esc(funnel_words(figs, mk)),
                       esc("统计方法：漏斗图，控制限为精确二项分布（虚线 95%、实线 99.8%）。下表为全市阳性率的时间趋势与季节"
                           "（逻辑回归，控制样品和市场）：") + trend_table(an.trend)),
              charts.interactive(funnel_spec(figs, mk)),
              layout.section("预警告警", "每个问题一条告警（持续多天也只一条）：快检阳性（禁用物质为严重，处置办结后为已处置）、"
                             "市场阳性率上升、处置逾期、数据真实性。"),
              layout.html(alerts_table(an.alerts)),
              layout.section("阳性率上升", "哪个市场、哪种样品的阳性明显多于预期；全市一种样品普遍上升时只列一条。"),
              layout.html(rise_table(an, mk)),
              layout.html(scheme_html()),
              layout.section("数据真实性核查", "与同一市场、同一样品、同一项目的同行比较阳性数，并检查检测速度、重复读数、"
                             "营业时间、试剂有效期和读数末位。")]
    if len(an.integrity.inspectors):
        flagged = an.integrity.inspectors[an.integrity.inspectors["flagged"]]
        face = (f"检测员 {'、'.join(map(str, flagged['subject']))} 查出的阳性明显少于同行按同样检测量应查出的，"
                "偶然出现的可能不到千分之一，应核查其检测是否真实。" if len(flagged) else "没有检测员的阳性数明显少于同行。")
        items += [_explain(esc(face), esc("统计方法：在每个市场×样品×项目单元内，给定该单元的阳性总数，检测员所占阳性数服从"
                                           "超几何分布（与同行阳性率相同时）；各单元精确卷积得 P(X≤实际)，再按比较人数做 "
                                           "Bonferroni 校正，校正后 < 0.001 判为偏少。") + inspector_method_html(an.integrity.inspectors)),
                  charts.interactive(inspector_spec(an.integrity.inspectors)),
                  layout.html(inspector_table(an.integrity.inspectors))]
    items += [layout.html(findings_table(an.integrity.findings)),
              layout.section("阳性处置跟踪", "每个阳性是一件处置案件：产品下架、暂停销售，送检复检、销毁并复查摊位，"
                             "72 小时内办结；未办结的列在下面，逾期的在前。"),
              layout.html(followup_table(an.followups, mk, now=an.as_of)),
              layout.section("隔离区（快检数据）", "不合格的记录被隔离并注明原因，不会被修改或丢弃。"),
              (layout.html(quarantine_table(snap.quarantine)) if snap.who is None or snap.who.sees_all else
               layout.note("隔离区的记录尚未确定所属区县，只向市级用户显示。"))]
    if snap.who is not None and not snap.who.sees_all:
        items.insert(0, layout.note(f"以下数据仅含{snap.who.district or '您所在区县'}的市场与快检记录"
                                    "（图表中的“全市”指本区县合计）。"))
    return layout.stack(items, "wb-market")


def _rising_note(active: pd.DataFrame) -> str:
    """The commodities (and the city-wide ones) of the active rise alerts, for the KPI."""
    live = active[active["status"] == "生效中"]
    coms = []
    for a in live["attrs"]:
        try:
            coms += json.loads(a).get("commodities", []) if isinstance(a, str) else []
        except ValueError:
            pass
    return ("样品：" + "、".join(dict.fromkeys(coms))[:24]) if coms else ""


def rise_table(an: ma.Analysis, mk: dict | None = None, limit: int = 30) -> str:
    """The rise alerts: where, which commodity, since when, and the 说明 in plain words."""
    a = an.alerts[an.alerts["category"] == "快检阳性率上升"] if len(an.alerts) else an.alerts
    if an.scheme is not None and not an.scheme.judging:
        return table_html(None, empty="数据不足 16 周，暂不判断阳性率上升",
                          empty_hint="先用前一半数据（至少 8 周）了解各市场、各样品平常的阳性率，再判断是否上升。")
    if a is None or a.empty:
        return table_html(None, empty="暂无阳性率上升", empty_hint="某市场某样品或全市某样品阳性明显多于预期时在这里列出。")
    rows = []
    for r in a.sort_values("valid_from", ascending=False).itertuples():
        ev = json.loads(r.evidence) if isinstance(r.evidence, str) else {}
        at = json.loads(r.attrs) if isinstance(r.attrs, str) else {}
        rows.append({"area": r.area, "commodity": "、".join(at.get("commodities", [])) or "多种样品",
                     "since": f"{clock.to_local(r.valid_from):%Y-%m-%d} 那周", "status": badge(r.status, "bad" if r.status == "生效中" else ""),
                     "plain": ev.get("说明", DASH)})
    t = pd.DataFrame(rows)
    return table_html(t, columns=["area", "commodity", "since", "status", "plain"],
                      labels={"area": "市场", "commodity": "样品", "since": "起始周", "status": "状态", "plain": "说明"},
                      html_columns=("status",), wrap=("plain",), max_rows=limit, max_height="420px")


def scheme_html() -> str:
    """How rises are judged, how sensitive the scheme is and how often it alarms for nothing
    (说明, plain words), with the statistical method folded behind it."""
    plain, method = ma.scheme_text()
    return layout.explain_html(_html.escape(plain), _html.escape(method))


def market_picker(an: ma.Analysis, mk: dict):
    """A market dropdown (markets with CUSUM alarms first) over that market's weekly chart."""
    import ipywidgets as widgets

    first = top_markets(an, len(an.market_sv.n.columns))
    rising = set(an.scheme.market_episodes["market"]) if an.scheme is not None else set()
    options = [(f"{mk.get(m, m)}（{m}）" + ("  ⚠ 阳性率上升" if m in rising else ""), m) for m in first]
    pick = widgets.Dropdown(options=options, value=first[0], description="市场", layout=widgets.Layout(width="420px"))
    pick.style.description_width = "40px"
    pick.add_class("wb-select")
    chart = charts.interactive(market_chart_spec(an, first[0], mk))
    holder = widgets.VBox([chart], layout=widgets.Layout(width="100%"))

    def redraw(change):
        try:
            charts.set_figure(chart, market_chart_spec(an, change["new"], mk))
            holder.children = [chart]
        except Exception as exc:  # shown on the page, not lost in a log
            holder.children = [layout.error(str(exc))]

    pick.observe(redraw, "value")
    return layout.stack([pick, holder], "wb-market-picker")


def page(snap: MarketSnapshot):
    """The page for the user the snapshot was read for (load(who=…): its rows are theirs)."""
    return body(snap)


__all__ = ["MarketSnapshot", "prepare", "load", "scoped", "names", "pct", "bulletin_table", "periods_table", "alerts_table",
           "findings_table", "inspector_table", "followup_table", "quarantine_table", "trend_table",
           "city_rate_spec", "city_rate_words", "top_markets", "market_chart_figure", "ears_figure", "funnel_spec",
           "funnel_words", "category_figure", "inspector_figure", "market_chart_spec", "category_spec", "inspector_spec", "kpis", "kpis_html", "market_picker", "rise_table",
           "scheme_html", "body", "page", "inspector_method_html"]
