"""The 农贸市场快检 dashboard: city and market figures, control charts, the funnel plot,
alerts, integrity findings, positives awaiting follow-up and the quarantine.

`load()` reads the hub once (workbench.market.analysis) and runs the analysis; the other
functions turn it into HTML tables and matplotlib figures. dashboards/market.ipynb only
calls them; the weekly bulletin (notebooks/market_bulletin.ipynb) uses the same pieces.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench import clock
from workbench.market import analysis as ma
from workbench.market import figures as fg
from workbench.market import followup as fu
from workbench.market import surveillance as sv
from workbench.ui import cards, charts, layout, theme
from workbench.ui.tables import DASH, badge, format_number, table_html, utc_now

RATE_LABELS = {**fg.LABELS, "market_id": "市场编号", "name": "市场名称", "district": "区县", "commodity": "样品名称",
               "category": "样品类别", "test_item": "检测项目", "origin": "产地", "inspector_id": "检测员",
               "rate_ci": "项次阳性率（95% 置信区间）", "sample_ci": "批次阳性率（95% 置信区间）"}
SEVERITY_TONE = {"critical": "bad", "warning": "warn", "info": "info"}
SEVERITY_TEXT = {"critical": "严重", "warning": "警告", "info": "提示"}
STATE_TONE = {"未登记处置": "bad", "复查仍阳性": "bad", "待处置": "bad", "待复检": "warn", "已送检": "warn", "待复查": "warn",
              "已办结": "ok", "复检阴性": "ok"}


@dataclass
class MarketSnapshot:
    now: pd.Timestamp
    an: ma.Analysis
    quarantine: pd.DataFrame  # dataset, reason, rows (rapid_tests and market_followups)
    who: object = None        # the Principal it was read for (a district user: their district only)

    @property
    def empty(self) -> bool:
        return self.an.empty


def prepare() -> None:
    """Open the hub ahead of the request (preheated kernels)."""
    from workbench.store import hub

    hub.engine()


def load(now=None, eng=None, since=None, until=None, who=None) -> MarketSnapshot:
    """One read of the hub for `who` (a workbench.access.Principal): a district user's analysis
    runs on their district's markets, tests and follow-ups only (scope), so every figure, table
    and chart of the page is the district's; the quarantine (rows not placed in any district
    yet) is left out for them."""
    from workbench.store import hub

    now = utc_now() if now is None else pd.Timestamp(now)
    tests, markets, followups = ma.load(eng, since=since, until=until)
    tests, markets, followups = scoped(who, tests, markets, followups)
    an = ma.analyse(tests, markets, followups, cases=ma.load_cases(eng))
    if who is not None and not who.sees_all:
        q = pd.DataFrame(columns=["dataset", "reason", "rows"])
    else:
        q = hub.quarantine_reasons(eng=eng)
        q = q[q["dataset"].isin(["rapid_tests", "market_followups"])] if len(q) else q
    return MarketSnapshot(now, an, q, who)


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

def bulletin_table(b: pd.DataFrame, by: str, labels: dict | None = None, limit: int = 60, sort_rate: bool = True) -> str:
    if b is None or b.empty:
        return table_html(None, empty="暂无快检记录")
    col = fg.GROUPS.get(by, by)
    t = b.copy()
    if sort_rate:
        t = t.sort_values(["item_rate", "items"], ascending=[False, False])
    t["rate_ci"] = [_ci(r, lo, hi) for r, lo, hi in zip(t["item_rate"], t["item_rate_lo"], t["item_rate_hi"])]
    t["sample_ci"] = [_ci(r, lo, hi) for r, lo, hi in zip(t["sample_rate"], t["sample_rate_lo"], t["sample_rate_hi"])]
    cols = [col]
    if labels:
        t["name"] = t[col].map(labels)
        cols.append("name")
    cols += ["samples", "items", "positive_samples", "positive_items", "sample_ci", "rate_ci", "banned_positive"]
    if "period" in t and col != "period":
        cols = ["period", *cols]
    return table_html(t, columns=cols, labels=RATE_LABELS, max_rows=limit, max_height="420px",
                      numeric=("samples", "items", "positive_samples", "positive_items", "banned_positive"))


def periods_table(an: ma.Analysis, start=None, end=None) -> str:
    """The city's figures for the period, month to date and year to date."""
    if an.empty:
        return table_html(None, empty="暂无快检记录")
    end = pd.Timestamp(end) if end is not None else an.prep["day"].max()
    start = pd.Timestamp(start) if start is not None else end - pd.Timedelta(days=6)
    b = fg.bulletin_periods(an.prep, start, end)
    b["period"] = [f"{p.name}（{p.text}）" for p in fg.periods(start, end)]
    return bulletin_table(b.drop(columns="scope"), "period", sort_rate=False)


def alerts_table(alerts: pd.DataFrame, limit: int = 60) -> str:
    if alerts is None or alerts.empty:
        return table_html(None, empty="暂无快检预警", empty_hint="快检阳性（禁用物质为严重）、市场阳性率上升、处置逾期和数据真实性问题会在这里列出。")
    a = alerts.copy()
    a["_active"] = a["status"].isin(["生效中", "待核查"])
    a["_sev"] = a["severity"].map({"critical": 0, "warning": 1, "info": 2})
    a = a.sort_values(["_active", "_sev", "ts"], ascending=[False, True, False])
    a["severity_badge"] = a["severity"].map(lambda s: badge(SEVERITY_TEXT.get(s, s), SEVERITY_TONE.get(s, "")))
    a["status_badge"] = a["status"].map(lambda s: badge(s, "bad" if s in ("生效中", "待核查") else ""))
    a["evidence_text"] = a["evidence"].map(evidence_text)
    return table_html(a, dataset="alerts", columns=["ts", "severity_badge", "category", "title", "status_badge",
                                                     "evidence_text"],
                      labels={"severity_badge": "级别", "status_badge": "状态", "evidence_text": "依据"},
                      html_columns=("severity_badge", "status_badge"), wrap=("evidence_text",), max_rows=limit,
                      max_height="460px")


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
    t["flag"] = t["flagged"].map(lambda f: badge("异常偏低", "bad") if f else badge("正常", "ok"))
    return table_html(t, columns=["subject", "tests", "positives", "expected", "p_adjusted", "flag"],
                      labels={"subject": "检测员", "tests": "可比检测项次", "positives": "阳性", "expected": "按同行应有阳性",
                              "p_adjusted": "校正后 p 值", "flag": "判定"},
                      formatters={"expected": lambda v: f"{v:.1f}", "p_adjusted": lambda v: f"{v:.2g}"},
                      html_columns=("flag",), numeric=("tests", "positives", "expected", "p_adjusted"),
                      max_rows=limit, max_height="380px")


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

def city_p_chart_figure(an: ma.Analysis, title: str = "全市逐日快检阳性率 p 控制图（全部项目）"):
    n, x = an.city_daily
    with charts.chart_style():
        fig, ax = charts.new_figure(9.6, 3.6)
        if len(n):
            p0 = float(x.to_numpy().sum() / max(1, n.to_numpy().sum()))
            pc = sv.p_chart(n, x, p0)
            idx = n.index
            ax.plot(idx, pc["p"].iloc[:, 0] * 100, marker="o", ms=2.5, lw=1.2, color=theme.COLORS["primary"], label="阳性率")
            ax.step(idx, pc["ucl"].iloc[:, 0] * 100, where="mid", color=theme.COLORS["bad"], lw=1, label="控制上限（3σ，随检测量变化）")
            ax.axhline(p0 * 100, color=theme.COLORS["muted"], lw=1, ls="--", label=f"中心线 {p0 * 100:.2f}%")
            al = pc["alarm"].iloc[:, 0].to_numpy()
            if al.any():
                ax.scatter(idx[al], pc["p"].iloc[:, 0][al] * 100, color=theme.COLORS["bad"], zorder=5, s=24, label="超出概率控制限")
            ax.legend(loc="upper left", fontsize=8.5, ncol=2)
        ax.set_ylabel("阳性率（%）")
        ax.set_ylim(bottom=0)
        charts.set_title(fig, title)
    return fig


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
        ax1.step(idx, lim, where="mid", color=theme.COLORS["bad"], lw=1, label="p 图概率控制限")
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
                ax.plot(ub.index, ub.to_numpy(), color=color, lw=1, label=f"EARS {m} 上界")
                al = res[m]["alarm"][unit].to_numpy()
                if al.any():
                    ax.scatter(ub.index[al], y.reindex(ub.index)[al], color=color, marker="^", s=30, zorder=5)
            ax.legend(loc="upper left", fontsize=8, ncol=4)
        ax.set_ylabel("阳性项次")
        charts.set_title(fig, f"{unit}每日阳性项次与 EARS C1/C2/C3（R surveillance::earsC 同一算法）")
    return fig


def funnel_figure(an: ma.Analysis, mk_names: dict | None = None, title: str = "各市场阳性率漏斗图（对全市）"):
    f = an.funnel
    with charts.chart_style():
        fig, ax = charts.new_figure(7.2, 4.4)
        if len(f):
            p = float(f["positive_items"].sum() / f["items"].sum())
            curve = sv.funnel_curve(p, float(f["items"].max()), an.rules.funnel_levels)
            curve = curve[curve["n"] >= 0.5 * float(f["items"].min())]
            for lv, ls in zip(an.rules.funnel_levels, ("--", "-")):
                ax.plot(curve["n"], curve[f"hi_{lv:g}"] * 100, color=theme.COLORS["bad"], ls=ls, lw=1, label=f"{lv:.1%} 控制限")
                ax.plot(curve["n"], curve[f"lo_{lv:g}"] * 100, color=theme.COLORS["bad"], ls=ls, lw=1)
            ax.axhline(p * 100, color=theme.COLORS["muted"], lw=1, label=f"全市 {p * 100:.2f}%")
            colour = np.where(f["side"] == "high", theme.COLORS["bad"], np.where(f["side"] == "low", theme.COLORS["ok"],
                                                                              theme.COLORS["primary"]))
            ax.scatter(f["items"], f["rate"] * 100, c=colour, s=28, zorder=5, edgecolors="white", linewidths=0.5)
            top = max(float(f["rate"].max()), float(curve[f"hi_{an.rules.funnel_levels[-1]:g}"].max()) if len(curve) else 0)
            ax.set_ylim(0, top * 100 * 1.15 + 0.1)
            for r in f[(f["side"] == "high") | (f["outside"] >= max(an.rules.funnel_levels))].itertuples():
                ax.annotate((mk_names or {}).get(r.market_id, r.market_id), (r.items, r.rate * 100), xytext=(4, 3),
                            textcoords="offset points", fontsize=8)
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlabel("检测项次")
        ax.set_ylabel("阳性率（%）")
        charts.set_title(fig, title)
    return fig


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

def kpis(snap: MarketSnapshot):
    an = snap.an
    c = an.city.iloc[0]
    f = fu.summary(an.followups)
    active = an.alerts[an.alerts["category"] == "快检阳性率上升"] if len(an.alerts) else an.alerts
    active_n = int((active["status"] == "生效中").sum()) if len(active) else 0
    q = int(snap.quarantine["rows"].sum()) if len(snap.quarantine) else 0
    return cards.kpi_row([
        cards.KPI("抽检批次", int(c["samples"]), unit="批", note=f"检测 {int(c['items']):,} 项次"),
        cards.KPI("项次阳性率", pct(c["item_rate"]), note=f"95% 置信区间 {pct(c['item_rate_lo'])}–{pct(c['item_rate_hi'])}",
                  tone="warn" if c["item_rate"] > 0.03 else ""),
        cards.KPI("禁用物质阳性", int(c["banned_positive"]), unit="项", note="瘦肉精、孔雀石绿、硝基呋喃",
                  tone="bad" if c["banned_positive"] else "ok"),
        cards.KPI("阳性率上升", active_n, unit="起", note=(_rising_note(active) or "未发现") if len(active) else "未发现",
                  tone="bad" if active_n else "ok"),
        cards.KPI("数据真实性问题", len(an.integrity.findings), unit="项", tone="warn" if len(an.integrity.findings) else "ok",
                  note="、".join(sorted(set(an.integrity.findings["kind"])))[:30] or "未发现"),
        cards.KPI("待处置阳性", f["open"], unit="项", note=f"逾期 {f['overdue']} 项", tone="bad" if f["overdue"] else ""),
        cards.KPI("隔离记录", q, unit="条", note="读数越界、时间颠倒、未知编码等" if q else "无", tone="warn" if q else "muted"),
    ])


def body(snap: MarketSnapshot):
    an = snap.an
    mk = names(an)
    by_cat = fg.bulletin(an.prep, "category")
    by_origin = fg.bulletin(an.prep, "origin")
    items = [kpis(snap),
             layout.section("通报数据", "样品批次 = 同一摊位同一时间抽取的同一样品；禁用物质单列。率后括号内为 Wilson 95% 置信区间。"),
             layout.html(periods_table(an)),
             layout.grid([charts.chart(category_figure(by_cat)), layout.html(bulletin_table(by_origin, "origin"))]),
             layout.html(bulletin_table(an.by_market, "market", mk)),
             layout.section("控制图", "p 控制图的控制限随每天的检测量变化；市场周序列的预期阳性率随全市季节变化，"
                            "下图为各市场、各样品的累计超出，到报警线即报警（说明见“阳性率上升”）。"),
             charts.chart(city_p_chart_figure(an))]
    if len(an.market_sv.n):
        items.append(market_picker(an, mk))
    items += [charts.chart(ears_figure(an)),
              layout.section("漏斗图", "各市场项次阳性率对全市阳性率；虚线 95%、实线 99.8% 控制限（精确二项分布）。"),
              layout.grid([charts.chart(funnel_figure(an, mk)), layout.html(trend_table(an.trend))]),
              layout.section("预警告警", "每个问题一条告警（持续多天也只一条）：快检阳性（每个阳性一条，禁用物质为严重，处置办结后为已处置）、市场阳性率上升、处置逾期、数据真实性。"),
              layout.html(alerts_table(an.alerts)),
              layout.section("阳性率上升", "哪个市场、哪种样品的阳性明显多于预期；全市一种样品普遍上升时只列一条。"),
              layout.html(rise_table(an, mk)),
              layout.html(scheme_html()),
              layout.section("数据真实性核查", "与同一市场、同一样品、同一项目的同行比较（二项检验，Bonferroni 校正），以及检测速度、重复读数、营业时间、试剂有效期、读数末位。")]
    if len(an.integrity.inspectors):
        items.append(layout.grid([charts.chart(inspector_figure(an.integrity.inspectors)),
                                  layout.html(inspector_table(an.integrity.inspectors))]))
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
    import html as _html

    plain, method = ma.scheme_text()
    return (f'<div class="wb-note"><b>说明</b>：{_html.escape(plain)}'
            f'<details><summary>统计方法</summary>{_html.escape(method)}</details></div>')


def market_picker(an: ma.Analysis, mk: dict):
    """A market dropdown (markets with CUSUM alarms first) over that market's weekly chart."""
    import ipywidgets as widgets

    first = top_markets(an, len(an.market_sv.n.columns))
    rising = set(an.scheme.market_episodes["market"]) if an.scheme is not None else set()
    options = [(f"{mk.get(m, m)}（{m}）" + ("  ⚠ 阳性率上升" if m in rising else ""), m) for m in first]
    pick = widgets.Dropdown(options=options, value=first[0], description="市场", layout=widgets.Layout(width="420px"))
    pick.style.description_width = "40px"
    pick.add_class("wb-select")
    holder = widgets.VBox([charts.chart(market_chart_figure(an, first[0], mk))], layout=widgets.Layout(width="100%"))

    def redraw(change):
        try:
            holder.children = [charts.chart(market_chart_figure(an, change["new"], mk))]
        except Exception as exc:  # shown on the page, not lost in a log
            holder.children = [layout.error(str(exc))]

    pick.observe(redraw, "value")
    return layout.stack([pick, holder], "wb-market-picker")


def page(snap: MarketSnapshot):
    """The page for the user the snapshot was read for (load(who=…): its rows are theirs)."""
    return body(snap)


__all__ = ["MarketSnapshot", "prepare", "load", "scoped", "names", "pct", "bulletin_table", "periods_table", "alerts_table",
           "findings_table", "inspector_table", "followup_table", "quarantine_table", "trend_table",
           "city_p_chart_figure", "top_markets", "market_chart_figure", "ears_figure", "funnel_figure",
           "category_figure", "inspector_figure", "kpis", "market_picker", "rise_table", "scheme_html", "body", "page",
           "Bulletin", "load_bulletin", "bulletin_cards", "banned_table"]


# ------------------------------------------------------------------ the weekly bulletin (report)

@dataclass
class Bulletin:
    period: object            # workbench.reports.Period (Beijing days)
    snap: MarketSnapshot      # the analysis of everything up to the period's end
    tests: pd.DataFrame       # prepared records of the period (figures.prepare)

    @property
    def empty(self) -> bool:
        return self.tests.empty


def load_bulletin(days=7, end=None, eng=None) -> Bulletin:
    """The bulletin of the `days` Beijing days ending `end` ('YYYY-MM-DD'; None: the last day
    with data, at most yesterday). Surveillance and follow-up use everything up to its end."""
    from workbench.reports import period as report_period

    snap0 = None
    if end in (None, ""):
        snap0 = load(eng=eng)
        last = snap0.an.prep["day"].max() if not snap0.empty else None
        yesterday = (pd.Timestamp.now(tz="Asia/Shanghai") - pd.Timedelta(days=1)).tz_localize(None).normalize()
        end = min(last, yesterday) if last is not None else yesterday
    p = report_period(days, pd.Timestamp(end).date())
    if snap0 is not None and (snap0.empty or snap0.an.prep["ts"].max() < pd.Timestamp(p.end_utc)):
        snap = snap0
    else:
        snap = load(eng=eng, until=p.end_utc)
    prep = snap.an.prep
    sel = fg.in_days(prep, pd.Timestamp(p.first_day), pd.Timestamp(p.last_day)) if len(prep) else prep
    return Bulletin(p, snap, sel)


def bulletin_cards(bl: Bulletin) -> str:
    t = bl.tests
    b = fg.bulletin(t).iloc[0] if len(t) else None
    st = bl.snap.an.followups
    f = fu.summary(st)
    in_period = st[(st["ts"] >= bl.period.start_utc) & (st["ts"] < bl.period.end_utc)] if len(st) else st
    items = [
        cards.kpi_html("抽检批次", int(b["samples"]) if b is not None else 0, unit="批",
                       note=f"检测 {int(b['items']):,} 项次" if b is not None else "本期无快检记录"),
        cards.kpi_html("阳性批次", int(b["positive_samples"]) if b is not None else 0, unit="批",
                       note=f"批次阳性率 {pct(b['sample_rate'])}" if b is not None else ""),
        cards.kpi_html("项次阳性率", pct(b["item_rate"]) if b is not None else DASH,
                       note=f"95% 置信区间 {pct(b['item_rate_lo'])}–{pct(b['item_rate_hi'])}" if b is not None else ""),
        cards.kpi_html("禁用物质阳性", int(b["banned_positive"]) if b is not None else 0, unit="项",
                       tone="bad" if b is not None and b["banned_positive"] else "ok"),
        cards.kpi_html("本期阳性处置", len(in_period), unit="项",
                       note=f"已办结 {int(in_period['closed'].sum())} 项" if len(in_period) else "本期无阳性"),
        cards.kpi_html("逾期未处置（截至期末）", f["overdue"], unit="项", tone="bad" if f["overdue"] else "ok"),
    ]
    return f'<div class="wb-cards">{"".join(items)}</div>'


def banned_table(prep_period: pd.DataFrame, tests: pd.DataFrame, mk_names: dict) -> str:
    if prep_period.empty:
        return table_html(None, empty="本期无禁用物质阳性")
    ids = prep_period.loc[prep_period["positive"] & prep_period["banned"], "test_id"]
    t = tests[tests["test_id"].isin(ids)]
    if t.empty:
        return table_html(None, empty="本期无禁用物质阳性")
    t = t.assign(name=t["market_id"].map(mk_names).fillna(t["market_id"]))
    return table_html(t, dataset="rapid_tests", columns=["test_id", "ts", "name", "stall_id", "vendor", "commodity",
                                                          "test_item", "inspector_id"], labels={"name": "市场"})
