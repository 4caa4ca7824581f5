"""The weekly 农贸市场快检 bulletin as data: the period's figures against the previous period's,
what rose, what was banned, what is overdue, and what needs a decision, in plain sentences
(notebooks/market_bulletin.ipynb renders it with workbench.ui.bulletin; it computes nothing).

Figures of a period are summed in the hub (market_daily, workbench.market.daily); the banned
positives and the per-item table read the period's rows (a week: a few thousand); surveillance,
integrity and follow-up are the analysis of everything up to the period's end (the kept
snapshot when it ends there, else analysed now).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from workbench import clock
from workbench.market import analysis as ma
from workbench.market import daily as D
from workbench.market import figures as fg
from workbench.market import followup as fu
from workbench.market import view as mv


@dataclass
class WeeklyBulletin:
    period: object                 # workbench.reports.Period (this one)
    previous: object               # the period before it (as many days)
    city: dict                     # counts and rates of the period (one row of figures, as a dict)
    city_before: dict
    by_market: pd.DataFrame        # the period's figures per market (with names)
    by_category: pd.DataFrame
    by_origin: pd.DataFrame
    by_item: pd.DataFrame
    banned: pd.DataFrame           # the period's banned-substance positives (rows)
    rising: pd.DataFrame           # rise alerts in force at the period's end
    high_markets: list             # market names clearly above the city in the period
    followups: dict                # fu.summary of the positives up to the period's end
    period_positives: int          # positives of the period and …
    period_closed: int             # … how many of them are closed
    findings: pd.DataFrame         # integrity findings (the analysis up to the period's end)
    an: ma.Analysis                # that analysis (charts)
    names: dict
    lines: list[str] = field(default_factory=list)      # the summary, plain sentences
    decisions: list[str] = field(default_factory=list)  # what needs a decision or action

    @property
    def empty(self) -> bool:
        return not self.city.get("items")


def _row(df: pd.DataFrame) -> dict:
    return df.iloc[0].to_dict() if len(df) else {c: 0 for c in fg.COLUMNS}


def _pp(v) -> str:
    return "—" if v is None or v != v else f"{v * 100:.2f}%"


def _analysis_to(eng, end_utc) -> ma.Analysis:
    an, _ = mv.load_snapshot(eng)
    if an is not None and pd.Timestamp(an.as_of) < pd.Timestamp(end_utc):
        return an
    tests, markets, followups = ma.load(eng, until=end_utc)
    return ma.analyse(tests, markets, followups, cases=ma.load_cases(eng), trend=False)


def weekly(days: int = 7, end=None, eng=None) -> WeeklyBulletin:
    """The bulletin of the `days` Beijing days ending `end` ('YYYY-MM-DD'; None: yesterday, or
    the last day with tests when that is earlier)."""
    from workbench import reports
    from workbench.store import hub

    eng = eng or hub.engine()
    if end in (None, ""):
        last = D.last_day(eng)
        y = pd.Timestamp(reports.yesterday())
        end = min(last, y) if last is not None else y
    p = reports.period(days, pd.Timestamp(end).date())
    prev = p.previous()
    q = dict(eng=eng, first_day=p.first_day, last_day=p.last_day)
    city = _row(D.figures(**q))
    before = _row(D.figures(eng=eng, first_day=prev.first_day, last_day=prev.last_day))
    an = _analysis_to(eng, p.end_utc)
    names = dict(zip(an.markets["market_id"], an.markets["name"])) if len(an.markets) else {}
    by_market = D.figures(by="market", **q)
    by_market.insert(1, "name", by_market["market_id"].map(names).fillna(by_market["market_id"]))
    items = float(by_market["items"].sum())
    from workbench.market import surveillance as sv

    fun = sv.funnel(by_market, float(by_market["positive_items"].sum() / items), an.rules.funnel_levels) if items else by_market
    high = fun.loc[fun["side"] == "high", "name"].tolist() if items else []
    rows = hub.read("rapid_tests", columns=ma.TEST_COLUMNS, since=p.start_utc, until=p.end_utc, eng=eng)
    rows["ts"] = pd.to_datetime(rows["ts"])
    prep = fg.prepare(rows) if len(rows) else None
    by_item = fg.bulletin(prep, "test_item") if prep is not None else pd.DataFrame(columns=["test_item", *fg.COLUMNS])
    banned = rows[(rows["result"] == "阳性") & rows["test_item"].isin(fg.BANNED)].copy() if len(rows) else rows
    banned["market"] = banned["market_id"].map(names).fillna(banned["market_id"])
    banned["time"] = [f"{clock.to_local(t):%m-%d %H:%M}" for t in banned["ts"]]
    al = an.alerts
    rising = al[(al["category"] == "快检阳性率上升") & (al["status"] == "生效中")] if len(al) else al
    st = an.followups
    in_p = st[(st["ts"] >= p.start_utc) & (st["ts"] < p.end_utc)] if len(st) else st
    b = WeeklyBulletin(p, prev, city, before, by_market, D.figures(by="category", **q), D.figures(by="origin", **q),
                       by_item, banned, rising, high, fu.summary(st), int(len(in_p)),
                       int(in_p["closed"].sum()) if len(in_p) else 0, an.integrity.findings, an, names)
    b.lines, b.decisions = sentences(b)
    return b


def sentences(b: WeeklyBulletin) -> tuple[list[str], list[str]]:
    """The summary: numbers, change against the previous period, and what needs deciding."""
    from workbench.reports import change_text

    c, c0 = b.city, b.city_before
    if not c.get("items"):
        return [f"{b.period.text} 没有快检记录。"], []
    word = "上周" if b.period.days == 7 else "上期"
    lines = [f"{b.period.text}全市抽检 {int(c['samples']):,} 批、检测 {int(c['items']):,} 项次，"
             f"阳性 {int(c['positive_items']):,} 项次，项次阳性率 {_pp(c['item_rate'])}"
             f"（{word} {_pp(c0.get('item_rate')) if c0.get('items') else '无数据'}）；检测量"
             + change_text(c["items"], c0.get("items", 0), "项次", label=f"较{word}") + "。"]
    if c0.get("items"):
        d = (c["item_rate"] - c0["item_rate"]) * 100
        lines[-1] = lines[-1][:-1] + (f"，阳性率{'上升' if d > 0 else '下降'} {abs(d):.2f} 个百分点。" if abs(d) >= 0.005
                                      else "，阳性率与上周持平。")
    decisions = []
    nb = int(c["banned_positive"])
    if nb:
        where = "、".join(dict.fromkeys(f"{m}{com}" for m, com in zip(b.banned["market"], b.banned["commodity"])))
        lines.append(f"检出禁用物质 {nb} 项（{where}），{change_text(nb, int(c0.get('banned_positive', 0)), '项', label='较' + word)}。")
        decisions.append(f"禁用物质阳性 {nb} 项（{where}）：是否立案查处、追溯供货来源。")
    else:
        lines.append("未检出禁用物质。")
    if len(b.rising):
        titles = "；".join(b.rising["title"].tolist()[:5])
        lines.append(f"阳性率明显上升 {len(b.rising)} 起：{titles}。")
        for t in b.rising["title"].tolist()[:5]:
            decisions.append(f"{t}：是否对该市场（样品）加强抽检、约谈经营户。")
    else:
        lines.append("没有市场或样品的阳性率明显上升。")
    if b.high_markets:
        lines.append(f"{'、'.join(b.high_markets[:6])}本期阳性率明显高于全市。")
    f = b.followups
    lines.append(f"本期阳性 {b.period_positives} 项已办结 {b.period_closed} 项；截至期末未办结 {f['open']} 项，"
                 f"其中逾期 {f['overdue']} 项。")
    if f["overdue"]:
        decisions.append(f"逾期未处置的阳性 {f['overdue']} 项：督办相关市场和检测员，限期办结。")
    if len(b.findings):
        kinds = b.findings.groupby("kind").size()
        lines.append("数据真实性问题 " + "、".join(f"{k} {v} 项" for k, v in kinds.items()) + "（见下文）。")
        for r in b.findings.itertuples():
            decisions.append(f"{r.kind}（{r.subject.replace('INS-', '检测员 ').replace('PROC-', '')}）：安排核查。")
    return lines, decisions


def findings_frame(b: WeeklyBulletin) -> pd.DataFrame:
    """The integrity findings for a table: what, who, how many records, why (plain words)."""
    f = b.findings
    if not len(f):
        return pd.DataFrame(columns=["kind", "subject", "rows", "reason"])
    return f[["kind", "subject", "rows", "reason"]].reset_index(drop=True)


def rising_frame(b: WeeklyBulletin) -> pd.DataFrame:
    r = b.rising
    if not len(r):
        return pd.DataFrame(columns=["title", "since", "plain"])
    return pd.DataFrame({"title": r["title"].to_numpy(),
                         "since": [f"{clock.to_local(v):%Y-%m-%d} 那周" for v in r["valid_from"]],
                         "plain": [json.loads(e).get("说明", "") if isinstance(e, str) else "" for e in r["evidence"]]})


def followup_frame(b: WeeklyBulletin) -> pd.DataFrame:
    st = b.an.followups
    t = st[~st["closed"]] if len(st) else st
    if not len(t):
        return pd.DataFrame(columns=["test_id", "market", "commodity", "test_item", "state", "deadline", "overdue"])
    t = t.sort_values(["overdue", "deadline"], ascending=[False, True])
    return pd.DataFrame({"test_id": t["test_id"].to_numpy(), "market": t["market_id"].map(b.names).fillna(t["market_id"]).to_numpy(),
                         "commodity": t["commodity"].to_numpy(), "test_item": t["test_item"].to_numpy(),
                         "state": t["state"].to_numpy(),
                         "deadline": [f"{clock.to_local(d):%m-%d %H:%M}" if pd.notna(d) else "—" for d in t["deadline"]],
                         "overdue": ["逾期" if o else "" for o in t["overdue"]]})
