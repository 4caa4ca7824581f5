"""One run of the market analysis: bulletin figures, surveillance, integrity and follow-up,
and what it writes to the hub (alerts, data_quality).

Alerts, one per finding (never one per day it persists), with stable ids, published through
the spine's alert API (workbench.alerts: a rerun changes only what changed, with history):
- MKT-POS-<test_id> 快检阳性: every positive rapid test; subject rapid_tests:<test_id>, attrs
  test_id, market_id, stall_id, commodity, test_item, district (the linkage rules open the
  follow-up case and the schools' notices from it); critical for a banned substance, else
  warning; 已处置 once its follow-up is closed. Also raised right after ingest
  (`raise_positive_alerts`), so a positive reaches the hub within seconds.
- MKT-CUSUM-<market>-<first alarm week> 快检阳性率上升: a market's positive rate rising,
  naming the commodities whose own series alarmed (the surveillance scheme: market × item
  and market × commodity CUSUMs, thresholds from a false-alarm budget; surveillance.scheme);
  warning.
- MKT-CITY-<commodity>-<first alarm week> 快检阳性率上升: one commodity rising across the
  city (its city-wide series alarms, and not only because of the markets that alarmed on
  their own); the markets' alarms of that commodity are in it, not apart; warning.
- MKT-FU-<test_id> 快检阳性处置逾期: a positive whose follow-up went past its deadline;
  subject cases:FU-<test_id> (lifted by the case engine when the case closes).
- MKT-DQ-<finding> 快检数据真实性: an integrity finding; warning.
(MKT-BAN-<test_id> 禁用物质快检阳性 of earlier versions is now the critical 快检阳性 alert.)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from workbench import alerts as alerts_api
from workbench import clock
from workbench.market import catalog
from workbench.market import figures as fg
from workbench.market import followup as fu
from workbench.market import integrity as ig
from workbench.market import surveillance as sv

DEPARTMENT = "市场监管局"
SOURCE = "农贸市场快检"
TEST_COLUMNS = ["test_id", "ts", "sampled_at", "market_id", "stall_id", "vendor", "district", "commodity", "category",
                "origin", "test_item", "method", "reading", "unit", "threshold", "result", "reagent_batch",
                "reagent_expiry", "device_id", "inspector_id"]
ALERT_COLUMNS = ["alert_id", "ts", "department", "category", "severity", "title", "area", "district",
                 "valid_from", "valid_to", "status", "source", "evidence", "level", "updated_at", "subject", "attrs"]
POSITIVE = "快检阳性"
CATEGORIES = (POSITIVE, "快检阳性率上升", "快检阳性处置逾期", "快检数据真实性")


@dataclass
class MarketSurveillance:
    n: pd.DataFrame
    x: pd.DataFrame
    p0: pd.DataFrame  # the reference rate per week and market
    p_chart: dict
    ewma: dict
    cusum: dict
    episodes: pd.DataFrame  # CUSUM alarm episodes per market


@dataclass
class Analysis:
    as_of: pd.Timestamp                  # naive UTC: the last test's time
    tests: pd.DataFrame
    prep: pd.DataFrame
    markets: pd.DataFrame
    city: pd.DataFrame                   # bulletin, whole range, city
    by_market: pd.DataFrame
    market_sv: MarketSurveillance
    city_daily: tuple                    # (n, x) city daily, all items
    ears: dict                           # method -> result on city + district daily positives
    funnel: pd.DataFrame
    trend: pd.DataFrame
    integrity: ig.IntegrityReport
    followups: pd.DataFrame
    alerts: pd.DataFrame
    rules: sv.Rules = field(default_factory=sv.Rules)
    scheme: sv.SchemeResult | None = None   # the alarms: market × item, market × commodity, city × commodity

    @property
    def empty(self) -> bool:
        return self.tests.empty


def market_surveillance(prep: pd.DataFrame, rules: sv.Rules = sv.Rules()) -> MarketSurveillance:
    sel = prep if rules.item is None else prep[prep["test_item"] == rules.item]
    n, x = sv.series(sel, "market_id", rules.freq)
    if n.empty:
        e = pd.DataFrame()
        return MarketSurveillance(n, x, pd.DataFrame(), {}, {}, {}, sv.episodes(e))
    p0 = sv.reference_rate(n, x, rules.baseline_weeks, rules.shrink_tests, rules.reference_smooth)
    pc = sv.p_chart(n, x, p0, rules.p_alpha)
    ew = sv.ewma(n, x, p0, rules.ewma_lambda, rules.ewma_L)
    cs = sv.cusum(n, x, p0, rules.cusum_or, rules.cusum_h)
    return MarketSurveillance(n, x, p0, pc, ew, cs, sv.episodes(cs["alarm"], rules.episode_gap))


def analyse(tests: pd.DataFrame, markets: pd.DataFrame | None = None, followups: pd.DataFrame | None = None,
            rules: sv.Rules = sv.Rules(), as_of=None, progress=None, trend: bool = True,
            cases: pd.DataFrame | None = None, scheme: sv.Scheme = sv.Scheme()) -> Analysis:
    """Everything the dashboard, the bulletin and the alerts need, from DataFrames.
    `cases`: the hub's follow-up cases (followup.read_cases), the authority on follow-up."""
    step = progress or (lambda _s: None)
    markets = markets if markets is not None else pd.DataFrame(columns=["market_id", "name", "district"])
    step("整理检测记录")
    prep = fg.prepare(tests)
    as_of = pd.Timestamp(as_of) if as_of is not None else (prep["ts"].max() if len(prep) else pd.Timestamp.now())
    step("通报数据")
    city = fg.bulletin(prep)
    by_market = fg.bulletin(prep, "market")
    step("控制图与预警统计")
    msv = market_surveillance(prep, rules)
    sch = sv.scheme(prep, rules, scheme) if len(prep) else None
    city_n, city_x = sv.series(prep, None, "D")
    d_n, d_x = sv.series(prep, "district", "D")
    ears_in = pd.concat([city_x, d_x], axis=1) if len(city_x) else city_x
    ears_res = {m: sv.ears(ears_in, m, rules.ears_baseline, rules.ears_alpha.get(m), rules.ears_min_sigma)
                for m in ("C1", "C2", "C3")}
    p_city = float(city["positive_items"].sum() / city["items"].sum()) if len(city) and city["items"].sum() else 0.0
    fun = sv.funnel(by_market, p_city, rules.funnel_levels) if len(by_market) else by_market
    trend_tab = sv.trend_model(prep)[1] if trend else pd.DataFrame()
    step("数据真实性核查")
    integ = ig.check(tests, markets)
    step("阳性处置跟踪")
    fstat = fu.status(tests, followups, as_of, cases=cases)
    an = Analysis(as_of, tests, prep, markets, city, by_market, msv, (city_n, city_x), ears_res, fun, trend_tab,
                  integ, fstat, pd.DataFrame(columns=ALERT_COLUMNS), rules, sch)
    an.alerts = alerts(an)
    return an


# ------------------------------------------------------------------ alerts

def _lookup(markets: pd.DataFrame, col: str) -> dict:
    if markets is None or not len(markets) or col not in markets:
        return {}
    return dict(zip(markets["market_id"], markets[col]))


def _local_text(ts, fmt="%Y-%m-%d %H:%M") -> str:
    return clock.to_local(ts).strftime(fmt)


def _week_utc(week_start: pd.Timestamp) -> pd.Timestamp:
    """A week's Monday 00:00 Beijing time as naive UTC."""
    return clock.to_utc(week_start)


def positive_alerts(tests: pd.DataFrame, mk_name: dict, fstate: pd.Series | None = None) -> pd.DataFrame:
    """One 快检阳性 alert per positive test (MKT-POS-<test_id>); `fstate`: whether each
    test's follow-up is closed (test_id → bool), which makes the alert 已处置."""
    pos = tests[tests["result"] == "阳性"] if len(tests) else tests
    rows = []
    for r in pos.itertuples():
        banned = r.test_item in fg.BANNED
        name = str(mk_name.get(r.market_id, r.market_id))
        attrs = {"test_id": r.test_id, "market_id": r.market_id, "stall_id": r.stall_id, "commodity": r.commodity,
                 "test_item": r.test_item, "district": r.district,
                 "goods": catalog.goods_of(r.commodity, getattr(r, "category", None))}
        ev = {"检测编号": r.test_id, "市场编号": r.market_id, "摊位编号": r.stall_id, "经营户": r.vendor,
              "样品": r.commodity, "检测项目": r.test_item, "读数": r.reading, "检测员": r.inspector_id,
              "检测时间": _local_text(r.ts)}
        closed = bool(fstate.get(r.test_id, False)) if fstate is not None else False
        ts = pd.Timestamp(r.ts)
        rows.append({"alert_id": f"{fu.POSITIVE_ALERT}{r.test_id}"[:64], "ts": ts, "department": DEPARTMENT,
                     "category": POSITIVE, "severity": "critical" if banned else "warning",
                     "title": f"{name}{r.commodity}检出{r.test_item}" + ("（禁用物质）" if banned else "（快检阳性）"),
                     "area": name, "district": r.district, "valid_from": ts, "valid_to": None,
                     "status": "已处置" if closed else "生效中", "source": SOURCE,
                     "evidence": json.dumps({k: (None if pd.isna(v) else v) for k, v in ev.items()},
                                            ensure_ascii=False, default=str),
                     "level": None, "updated_at": ts, "subject": f"rapid_tests:{r.test_id}",
                     "attrs": {k: v for k, v in attrs.items() if v is not None and not pd.isna(v)}})
    return pd.DataFrame(rows, columns=ALERT_COLUMNS)


ITEM_SHORT = {catalog.PESTICIDE: "农药残留"}


def _names(items: list, k: int = 3) -> str:
    """韭菜 / 韭菜、芹菜 / 韭菜、芹菜、菠菜等 5 种样品."""
    items = list(items)
    if len(items) <= k:
        return "、".join(items)
    return "、".join(items[:k]) + f"等 {len(items)} 种样品"


def _span_counts(level: dict, col, weeks) -> tuple[int, int, float]:
    n = level["n"].loc[weeks, col]
    x = level["x"].loc[weeks, col]
    e = float((level["p0"].loc[weeks, col] * n).sum())
    return int(n.sum()), int(x.sum()), e


def _share_words(v: float) -> str:
    return {1 / 12: "十二分之一", 1 / 6: "六分之一", 1 / 3: "三分之一"}.get(min((1 / 12, 1 / 6, 1 / 3), key=lambda s: abs(s - v)), f"{v:.0%}")


def _false_alarm_words() -> str:
    pw = sv.power()
    if not pw:
        return ""
    return f"没有任何变化时，这类报警每个市场每年约 {pw['false_alarms']['alerts_per_market_year']:.2f} 次。"


def scheme_text(sch: sv.Scheme = sv.Scheme()) -> tuple[str, str]:
    """(说明 in plain words, the statistical method behind it): how a rise is judged, how
    sensitive it is and how often it alarms for nothing — the numbers from the simulation
    (benchmarks/market_power.py → surveillance.POWER_FILE)."""
    plain = ("怎么判断“阳性率上升”：每周把每个市场每种样品（如芹菜）、每个市场全部农药残留检测、全市每种样品的阳性数，"
             "与按全市同期和该市场以往水平应有的阳性数比较，超出累积到一定程度就报警；告警写明市场和样品。"
             "一种样品全市普遍上升时只发一条“全市”告警，不再按市场逐个报。")
    pw = sv.power()
    if pw:
        rows = {(round(r["share"], 3), r["rr"]): r for r in pw["summary"]}
        r5 = rows.get((round(1 / 6, 3), 5.0))
        r3 = rows.get((round(1 / 6, 3), 3.0))
        r2 = rows.get((round(1 / 6, 3), 2.0))
        if r5 and r3 and r2:
            plain += (f"灵敏度（模拟）：一种样品约占一个市场农药残留检测的{_share_words(1 / 6)}，阳性率升到 5 倍时，"
                      f"{r5['found_3w']:.0%} 在 3 周内发现、{r5['found_6w']:.0%} 在 6 周内发现；升到 3 倍时 6 周内发现 "
                      f"{r3['found_6w']:.0%}；只升到 2 倍时 22 周内只发现 {r2['found_22w']:.0%}。")
        plain += f"误报：没有任何变化时，每个市场每年约 {pw['false_alarms']['alerts_per_market_year']:.2f} 次。"
    method = (f"分层二项 CUSUM：市场×样品（按优势比 {sch.or_commodity:g} 设计）、市场×检测项目（{sch.or_item:g}）、"
              f"全市×样品（{sch.or_city:g}）；各序列的阈值 h 由 Markov 链（Brook–Evans）平均运行长度定出，"
              f"使无变化时的误报合计为每市场每年 {sch.budget:g} 次（名义值；按检测量分给各序列："
              f"市场×样品 {sch.share_commodity:.0%}、市场×项目 {sch.share_item:.0%}、全市×样品 {sch.share_city:.0%}）。"
              f"预期率：其他市场近 {sch.smooth} 周的阳性率 × 该市场基线期偏移 × 样品比值（基线期前 26 周，最多一半序列）。"
              "全市×样品报警在去掉单独报警的市场后仍报警才算全市上升。")
    return plain, method


def rise_alerts(an: "Analysis", name_of=None, mk_district=None) -> list[dict]:
    """快检阳性率上升 alerts from the scheme's episodes: one per market episode (naming the
    commodities whose series alarmed) and one per city-wide commodity episode. The 说明 says
    in plain words what rose, by how much and how sure; the method stays in 方法."""
    res = an.scheme
    if res is None:
        return []
    name_of = name_of or (lambda m: str(m))
    mk_district = mk_district or {}
    item = an.rules.item or "全部项目"
    short = ITEM_SHORT.get(item, item)
    idx = res.item["n"].index
    last_period = idx.max() if len(idx) else None
    gap = an.rules.episode_gap
    rows = []

    def status(last):
        active = last_period is not None and (last_period - last).days <= 7 * gap
        return active

    for ep in res.market_episodes.itertuples():
        m = ep.market
        weeks = idx[(idx >= ep.first) & (idx <= ep.last)]
        name = name_of(m)
        coms = list(ep.commodities)
        parts = []
        for c in coms:
            n, x, e = _span_counts(res.commodity, (m, c), weeks)
            parts.append(f"{c}：检测 {n} 项、阳性 {x} 项，按全市同期和该市场以往水平应约 {e:.1f} 项")
        n, x, e = _span_counts(res.item, m, weeks)
        what = f"{_names(coms)}{short}快检阳性率上升" if coms else f"{short}快检阳性率上升（多种样品普遍上升）"
        plain = (f"{ep.first:%m月%d日}那周起，{name}" + (f"{'、'.join(coms[:3])}的" if coms else "")
                 + f"{short}快检阳性明显多于预期。" + "；".join(parts)
                 + (f"；全市场{short}检测 {n} 项、阳性 {x} 项，应约 {e:.1f} 项。" if n else "。")
                 + _false_alarm_words())
        cs_c = res.commodity["cusum"]
        method = {"样品序列": {c: {"h": round(float(cs_c["h"][(m, c)]), 2),
                                "CUSUM最大值": round(float(cs_c["s"].loc[weeks, (m, c)].max()), 2)} for c in coms},
                  "市场序列": {"h": round(float(res.item["cusum"]["h"][m]), 2),
                           "CUSUM最大值": round(float(res.item["cusum"]["s"].loc[weeks, m].max()), 2),
                           "报警": bool(ep.item)},
                  "方案": f"分层二项 CUSUM（市场×样品优势比 {res.rules.or_commodity:g}，市场×项目 {res.rules.or_item:g}），"
                        f"阈值按每市场每年 {res.rules.budget:g} 次误报的预算分配"}
        ev = {"说明": plain, "市场编号": m, "样品": coms, "检测项目": item,
              "涉及周": [f"{w:%Y-%m-%d}" for w in weeks], "期间检测": n, "期间阳性": x,
              "期间预期阳性": round(e, 1), "方法": method}
        active = status(ep.last)
        rows.append({"alert_id": f"MKT-CUSUM-{m}-{ep.first:%Y%m%d}", "ts": _week_utc(ep.first) + pd.Timedelta(days=7),
                     "department": DEPARTMENT, "category": "快检阳性率上升", "severity": "warning",
                     "title": f"{name}{what}", "area": name, "district": mk_district.get(m),
                     "valid_from": _week_utc(ep.first),
                     "valid_to": None if active else _week_utc(ep.last) + pd.Timedelta(days=7),
                     "status": "生效中" if active else "已解除", "source": SOURCE,
                     "evidence": json.dumps(ev, ensure_ascii=False), "level": None,
                     "updated_at": _week_utc(ep.last) + pd.Timedelta(days=7),
                     "attrs": {"market_id": m, "commodities": coms, "test_item": item, "level": "market"}})
    for ep in res.city_episodes.itertuples():
        c = ep.commodity
        weeks = idx[(idx >= ep.first) & (idx <= ep.last)]
        n, x, e = _span_counts(res.city, c, weeks)
        mk = [name_of(m) for m in ep.markets]
        plain = (f"{ep.first:%m月%d日}那周起，全市{c}{short}快检阳性明显多于预期：检测 {n} 项、阳性 {x} 项，"
                 f"按以往水平应约 {e:.1f} 项；不是个别市场的问题"
                 + (f"（其中 {'、'.join(mk[:5])} 单独也已报警）。" if mk else "。"))
        ev = {"说明": plain, "样品": c, "检测项目": item, "涉及周": [f"{w:%Y-%m-%d}" for w in weeks],
              "期间检测": n, "期间阳性": x, "期间预期阳性": round(e, 1), "单独报警的市场": list(ep.markets),
              "方法": {"h": round(float(res.city["cusum"]["h"][c]), 2),
                     "CUSUM最大值": round(float(res.city["cusum"]["s"].loc[weeks, c].max()), 2),
                     "方案": f"全市×样品二项 CUSUM（优势比 {res.rules.or_city:g}），去掉单独报警的市场后仍报警才算全市上升"}}
        active = status(ep.last)
        rows.append({"alert_id": f"MKT-CITY-{c}-{ep.first:%Y%m%d}"[:64], "ts": _week_utc(ep.first) + pd.Timedelta(days=7),
                     "department": DEPARTMENT, "category": "快检阳性率上升", "severity": "warning",
                     "title": f"全市{c}{short}快检阳性率上升", "area": "全市", "district": None,
                     "valid_from": _week_utc(ep.first),
                     "valid_to": None if active else _week_utc(ep.last) + pd.Timedelta(days=7),
                     "status": "生效中" if active else "已解除", "source": SOURCE,
                     "evidence": json.dumps(ev, ensure_ascii=False), "level": None,
                     "updated_at": _week_utc(ep.last) + pd.Timedelta(days=7),
                     "attrs": {"commodities": [c], "markets": list(ep.markets), "test_item": item, "level": "city"}})
    return rows


def alerts(an: Analysis) -> pd.DataFrame:
    rows = []
    mk_name, mk_district = _lookup(an.markets, "name"), _lookup(an.markets, "district")
    name_of = lambda m: str(mk_name.get(m, m))  # noqa: E731
    rows += rise_alerts(an, name_of, mk_district)
    fclosed = an.followups.set_index("test_id")["closed"] if len(an.followups) else None
    pos = positive_alerts(an.tests, mk_name, fclosed)
    rows += pos.to_dict("records")
    od = an.followups[an.followups["overdue"]] if len(an.followups) else an.followups
    for r in od.itertuples():
        ev = {"检测编号": r.test_id, "市场编号": r.market_id, "摊位编号": r.stall_id, "样品": r.commodity,
              "检测项目": r.test_item, "处置状态": r.state, "处置时限": _local_text(r.deadline)}
        rows.append({"alert_id": f"MKT-FU-{r.test_id}"[:64], "ts": pd.Timestamp(r.deadline), "department": DEPARTMENT,
                     "subject": f"cases:{fu.case_id(r.test_id)}",
                     "attrs": {"test_id": r.test_id, "market_id": r.market_id, "stall_id": r.stall_id,
                               "district": r.district},
                     "category": "快检阳性处置逾期", "severity": "critical" if r.banned else "warning",
                     "title": f"{name_of(r.market_id)}{r.commodity}{r.test_item}阳性处置逾期（{r.state}）",
                     "area": name_of(r.market_id), "district": r.district,
                     "valid_from": pd.Timestamp(r.deadline), "valid_to": None, "status": "生效中", "source": SOURCE,
                     "evidence": json.dumps(ev, ensure_ascii=False, default=str), "level": None,
                     "updated_at": pd.Timestamp(r.deadline)})
    for f in an.integrity.findings.itertuples():
        rows.append({"alert_id": f"MKT-DQ-{f.finding_id[4:]}"[:64], "ts": pd.Timestamp(f.ts), "department": DEPARTMENT,
                     "category": "快检数据真实性", "severity": "warning", "title": f"{f.kind}：{f.subject}",
                     "area": None, "district": None, "valid_from": pd.Timestamp(f.ts_from), "valid_to": None,
                     "status": "待核查", "source": SOURCE, "evidence": json.dumps(
                         {"说明": f.reason, "问题编号": f.finding_id, "涉及记录数": int(f.rows)}, ensure_ascii=False),
                     "level": None, "updated_at": pd.Timestamp(f.ts)})
    df = pd.DataFrame(rows, columns=ALERT_COLUMNS)
    df["attrs"] = [alerts_api.attrs_json(a) if isinstance(a, dict) else a for a in df["attrs"]]
    for c in ("ts", "valid_from", "valid_to", "updated_at"):
        df[c] = pd.to_datetime(df[c])
    return df


# ------------------------------------------------------------------ the hub

def load(eng=None, since=None, until=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The rapid tests (needed columns only), the markets and the follow-ups from the hub."""
    from workbench.store import hub

    tests = hub.read("rapid_tests", columns=TEST_COLUMNS, since=since, until=until, eng=eng)
    markets = hub.read("markets", eng=eng)
    followups = hub.read("market_followups", eng=eng)
    for c in ("ts", "sampled_at"):
        tests[c] = pd.to_datetime(tests[c])
    for c in ("reading", "threshold"):
        tests[c] = pd.to_numeric(tests[c])
    return tests, markets, followups


def load_cases(eng=None) -> pd.DataFrame:
    """The hub's follow-up cases (the case engine's market_followup)."""
    return fu.read_cases(eng)


def _settled(conn, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` without the alerts the hub holds as lifted that stay lifted (the case engine
    or an earlier run lifted them: their closing time is theirs, a rerun changes nothing)."""
    import sqlalchemy as sa

    from workbench.store.schema import DATASETS

    gone = frame.loc[frame["status"] == alerts_api.LIFTED, "alert_id"].astype(str).tolist()
    if not gone:
        return frame
    alert_table = DATASETS["alerts"].table
    held = set()
    for k in range(0, len(gone), 5000):
        held |= {r[0] for r in conn.execute(sa.select(alert_table.c.alert_id).where(
            alert_table.c.alert_id.in_(gone[k:k + 5000]), alert_table.c.status == alerts_api.LIFTED))}
    return frame[~frame["alert_id"].isin(held)]


def _retire(conn, an: Analysis) -> int:
    """Lift what no longer holds: an overdue-follow-up alert whose follow-up has closed (when
    no case engine closed it), an integrity alert whose finding the analysis no longer makes
    (e.g. the low-positive false alarm of the earlier check), and the MKT-BAN alerts of earlier
    versions (now 快检阳性)."""
    import sqlalchemy as sa

    from workbench.store.schema import DATASETS

    alert_table = DATASETS["alerts"].table
    held = {r[0]: r[1] for r in conn.execute(sa.select(alert_table.c.alert_id, alert_table.c.category).where(
        alert_table.c.department == DEPARTMENT, alert_table.c.status != alerts_api.LIFTED,
        sa.or_(alert_table.c.category == "快检阳性处置逾期", alert_table.c.category == "禁用物质快检阳性",
               alert_table.c.category == "快检数据真实性")))}
    if not held:
        return 0
    st = an.followups
    done = st[st["closed"]] if len(st) else st
    closed_at = {f"MKT-FU-{t}"[:64]: c for t, c in zip(done.get("test_id", []), done.get("closed_at", []))}
    n = 0
    current = set(an.alerts["alert_id"]) if len(an.alerts) else set()
    for aid, cat in held.items():
        if cat == "快检数据真实性":
            if aid not in current:  # the finding no longer holds (new data, or a corrected check)
                n += alerts_api.lift(conn, aid, actor=SOURCE, note="复核后不再成立")
            continue
        if cat == "禁用物质快检阳性":
            n += alerts_api.lift(conn, aid, actor=SOURCE, note="已并入“快检阳性”告警")
        elif aid in closed_at:
            ts = closed_at[aid]
            n += alerts_api.lift(conn, aid, ts=None if pd.isna(ts) else ts, actor=SOURCE, note="阳性处置已办结")
    return n


def save(eng, an: Analysis) -> dict:
    """Alerts through the alert API (workbench.alerts: new, changed, lifted, each with its
    history; a rerun adds nothing) and integrity findings into the hub."""
    from workbench.store.ingest import upsert

    with eng.begin() as conn:
        res = alerts_api.publish(conn, _settled(conn, an.alerts), actor=SOURCE)
        retired = _retire(conn, an)
        f_new, f_upd = upsert(conn, "data_quality", an.integrity.findings,
                              ["ts", "ts_to", "rows", "reason", "evidence"])
    return {"alerts_new": res["new"], "alerts_updated": res["updated"], "alerts_lifted": res["lifted"] + retired,
            "findings_new": f_new, "findings_updated": f_upd}


def raise_positive_alerts(eng=None, since=None) -> dict:
    """The fast path after ingest: a 快检阳性 alert for every positive rapid test (tested at or
    after `since`, naive UTC; default all) that has none yet. Idempotent; reads only the
    positives the alerts table lacks. Returns counts new, history."""
    import sqlalchemy as sa

    from workbench.store import hub
    from workbench.store.schema import DATASETS

    eng = eng or hub.engine()
    t, alert_table, m = (DATASETS[n].table for n in ("rapid_tests", "alerts", "markets"))
    cols = ["test_id", "ts", "market_id", "stall_id", "vendor", "district", "commodity", "test_item", "reading",
            "inspector_id"]
    stmt = (sa.select(*[t.c[c] for c in cols])
            .select_from(t.outerjoin(alert_table, alert_table.c.alert_id == sa.literal(fu.POSITIVE_ALERT) + t.c.test_id))
            .where(t.c.result == "阳性", alert_table.c.alert_id.is_(None)))
    if since is not None:
        stmt = stmt.where(t.c.ts >= pd.Timestamp(since).to_pydatetime())
    with eng.begin() as conn:
        pos = pd.DataFrame(conn.execute(stmt).fetchall(), columns=cols)
        if pos.empty:
            return {"new": 0, "history": 0}
        pos["ts"] = pd.to_datetime(pos["ts"])
        mk = {r[0]: r[1] for r in conn.execute(sa.select(m.c.market_id, m.c.name).where(
            m.c.market_id.in_(pos["market_id"].dropna().unique().tolist())))}
        res = alerts_api.publish(conn, positive_alerts(pos.assign(result="阳性"), mk), actor=SOURCE,
                                 note="快检阳性（接入即发布）")
    return {"new": res["new"], "history": res["history"]}


def link(eng) -> dict:
    """The market's linkage rules (workbench/market/linkage.yaml): a positive's 快检阳性 alert
    → its follow-up case (resolver followup.followup_cases) and the supplied schools' notices."""
    from workbench import linkage

    return linkage.run(eng, departments=["market"])


def run(eng=None, progress=None, write: bool = True, **kw) -> tuple[Analysis, dict]:
    from workbench.store import hub

    step = progress or (lambda _s: None)
    eng = eng or hub.engine()
    step("读取快检记录")
    tests, markets, followups = load(eng)
    an = analyse(tests, markets, followups, progress=progress, cases=load_cases(eng), **kw)
    written = {}
    if write:
        step("写入数据中台")
        written = save(eng, an)
        step("联动处置")
        linked = link(eng)
        with eng.begin() as conn:  # the ledger the hub holds moves the cases (opens any still missing)
            synced = fu.sync_ledger(conn, followups)
        fu_rule = [r for r in linked["per_rule"] if r["case_type"] == fu.CASE_TYPE]
        written["followup_cases"] = {"opened": sum(r["opened"] for r in fu_rule) + synced["opened"],
                                     "steps": synced["steps"]}
        written["linkage"] = {k: linked[k] for k in ("rules", "alerts", "opened", "seconds")}
        # the follow-up is the cases' now: states, and the alerts that depend on them
        an.followups = fu.status(tests, followups, an.as_of, cases=load_cases(eng))
        an.alerts = alerts(an)
        again = save(eng, an)
        for k in ("alerts_updated", "alerts_lifted"):
            written[k] += again[k]
        written["alerts_new"] += again["alerts_new"]
    from workbench.market import view

    view.save_snapshot(an, eng)  # the page reads it instead of analysing on a visit (issue 15: < 3 s)
    return an, written


def summary(an: Analysis, written: dict | None = None) -> dict:
    c = an.city.iloc[0] if len(an.city) else None
    return {
        "tests": int(len(an.tests)),
        "samples": int(c["samples"]) if c is not None else 0,
        "positive_items": int(c["positive_items"]) if c is not None else 0,
        "item_rate": float(c["item_rate"]) if c is not None else None,
        "banned_positive": int(c["banned_positive"]) if c is not None else 0,
        "cusum_episodes": int(len(an.scheme.market_episodes)) if an.scheme is not None else 0,
        "city_commodity_episodes": int(len(an.scheme.city_episodes)) if an.scheme is not None else 0,
        "rising": [a["title"] for a in an.alerts[an.alerts["category"] == "快检阳性率上升"].to_dict("records")]
        if len(an.alerts) else [],
        "funnel_high": [str(m) for m in an.funnel.loc[an.funnel["side"] == "high", "market_id"]] if len(an.funnel) else [],
        "findings": {k: int(v) for k, v in an.integrity.findings.groupby("kind").size().items()},
        "followups": fu.summary(an.followups),
        "alerts": {k: int(v) for k, v in an.alerts.groupby("category").size().items()},
        "written": written or {},
    }
