"""The seeded sample city: generate every dataset, plant the signals, write the files a
department would send, and take them in through the real ingest path."""
from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from workbench import config
from workbench.synth import canteens as ct
from workbench.synth import events as evm
from workbench.synth import markets as mk
from workbench.synth import safety as sf
from workbench.synth import weather as wx
from workbench.synth.calendar import CityCalendar, yesterday_local
from workbench.synth.files import (fmt_chinese, insert_rows, fmt_date, fmt_iso_offset, fmt_minute, fmt_second,
                                   frame_records, labels, write_csv, write_json, write_xlsx)
from workbench.synth.geography import build_grids, build_streets

URBAN = ("荷塘区", "芦淞区", "石峰区", "天元区")
# fixed sub-streams of the seed, so each part of the city draws its own numbers
_STREAMS = {"geo": 1, "markets": 2, "canteens": 3, "sites": 4, "plants": 5, "tests": 6,
            "violations": 7, "weather": 8, "events": 9, "hazards": 10, "dirt": 11, "alerts": 12,
            "market_followups": 41, "market_plants": 42}
INGEST_ORDER = ("grids", "markets", "stalls", "canteens", "cameras", "canteen_suppliers",
                "hazard_sites", "rapid_tests", "market_followups", "canteen_violations", "city_events", "event_history",
                "hazards", "inspections", "weather", "alerts")


@dataclass
class SynthResult:
    out_dir: Path
    files: list[tuple[str, Path]] = field(default_factory=list)
    summaries: list = field(default_factory=list)  # IngestSummary, one per file
    plants: list[dict] = field(default_factory=list)
    dirt: list[dict] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # rows the hub should hold, per dataset
    start: dt.date | None = None
    end: dt.date | None = None


def _rng(seed: int, part: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[part]])


def _local(ts) -> str | None:
    if ts is None or pd.isna(ts):
        return None
    return pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M")


def _rate(pos: int, n: int) -> float:
    return round(pos / n, 4) if n else 0.0


# ------------------------------------------------------------------------------ city

def generate(days: int, seed: int, end: dt.date) -> dict:
    """All clean frames of the city (naive local times) and the planted facts."""
    if days < 7:
        raise ValueError("样例城市至少需要 7 天 (days must be at least 7)")
    start = end - dt.timedelta(days=days - 1)
    cal = CityCalendar(start, end)
    g = _rng(seed, "geo")
    streets = build_streets(g)
    grids = build_grids(g, streets)
    world = mk.build_markets(_rng(seed, "markets"), streets, grids)
    cw = ct.build_canteens(_rng(seed, "canteens"), streets, grids, world.markets, pd.Timestamp(start))
    sites = sf.build_sites(_rng(seed, "sites"), streets, grids, world.markets)

    # --- choose what to plant
    p = _rng(seed, "plants")
    markets = world.markets
    roving_markets = world.inspectors.loc[world.inspectors.inspector == world.roving, "market_id"].tolist()
    cands = markets[markets.district.isin(URBAN) & ~markets.market_id.isin(roving_markets)].market_id.tolist()
    rising_id = cands[int(p.integers(len(cands)))]
    target = start + dt.timedelta(days=int(round(days * 0.55)))
    onset = target - dt.timedelta(days=target.weekday())
    if onset <= start and onset + dt.timedelta(days=7) <= end:
        onset += dt.timedelta(days=7)
    rising = {"market_id": rising_id, "onset": onset.isoformat(), "rate_before": 0.02, "rate_after": 0.08}
    cc = cw.canteens
    ccands = cc[cc.district.isin(URBAN) & cc.school_type.isin(["小学", "初中"])].canteen_id.tolist()
    recurring = {"canteen_id": ccands[int(p.integers(len(ccands)))], "rate_factor": 6.0}
    scands = streets[streets.urban].street.tolist()
    back_street = scands[int(p.integers(len(scands)))]
    since = end - dt.timedelta(days=min(41, max(6, days * 2 // 3)))
    backlog = {"street": back_street, "since": max(since, start).isoformat(), "stuck_share": 0.7}

    market_plan = mk.plan_market_plants(_rng(seed, "market_plants"), world, start, days, roving_markets + [rising_id])
    tests = mk.rapid_tests(_rng(seed, "tests"), cal, world, rising, world.roving, market_plan)
    market_followups = mk.followups(_rng(seed, "market_followups"), tests, cal.end)
    viol = ct.violations(_rng(seed, "violations"), cal, cw, recurring)
    weather, cold = wx.hourly_weather(_rng(seed, "weather"), cal)
    daily = wx.daily_summary(weather)
    events, history = evm.city_events(_rng(seed, "events"), cal, grids, daily, backlog)
    safety_team = _safety_team(seed)
    hazards, inspections = sf.hazards_and_inspections(_rng(seed, "hazards"), cal, sites, safety_team)

    frames = {
        "grids": grids, "markets": markets, "stalls": world.stalls, "canteens": cw.canteens,
        "cameras": cw.cameras, "canteen_suppliers": cw.suppliers, "hazard_sites": sites,
        "rapid_tests": tests, "market_followups": market_followups, "canteen_violations": viol,
        "city_events": events.drop(columns="_stuck"),
        "event_history": history, "hazards": hazards, "inspections": inspections, "weather": weather,
    }
    plants = [
        _plant_rising(tests, markets, rising),
        _plant_clean(tests, world, roving_markets),
        _plant_canteen(viol, cw.canteens, recurring, cal),
        _plant_backlog(events, backlog, cal),
        _plant_cold(weather, cold, cal),
    ]
    frames["alerts"] = _alerts(_rng(seed, "alerts"), cal, frames, plants)
    return {"cal": cal, "frames": frames, "plants": plants, "streets": streets,
            "market_plants": mk.describe_market_plants(tests, market_plan, markets)}


def _safety_team(seed: int) -> list[str]:
    from workbench.synth.names import person_names

    return person_names(np.random.default_rng([seed, 99]), 18, unique=True)


# ------------------------------------------------------------------------------ plants

def _plant_rising(tests, markets, rising) -> dict:
    m = markets.set_index("market_id").loc[rising["market_id"]]
    t = tests[(tests.market_id == rising["market_id"]) & (tests.test_item == mk.PESTICIDE)]
    after = t.ts >= pd.Timestamp(rising["onset"])
    pos = t.result == "阳性"
    others = tests[(tests.market_id != rising["market_id"]) & (tests.test_item == mk.PESTICIDE)]
    oa = others.ts >= pd.Timestamp(rising["onset"])
    return {
        "name": "rising_market",
        "what": "农贸市场农药残留快检阳性率自某周起上升",
        "dataset": "rapid_tests",
        "market_id": rising["market_id"], "market_name": m["name"], "district": m.district, "street": m.street,
        "test_item": mk.PESTICIDE,
        "onset": rising["onset"], "onset_note": "该周周一（本地时间）起",
        "planned_rate_before": rising["rate_before"], "planned_rate_after": rising["rate_after"],
        "tests_before": int((~after).sum()), "positives_before": int((pos & ~after).sum()),
        "rate_before": _rate(int((pos & ~after).sum()), int((~after).sum())),
        "tests_after": int(after.sum()), "positives_after": int((pos & after).sum()),
        "rate_after": _rate(int((pos & after).sum()), int(after.sum())),
        "city_rate_after_other_markets": _rate(int((others.result[oa] == "阳性").sum()), int(oa.sum())),
    }


def _plant_clean(tests, world, roving_markets) -> dict:
    ins = world.roving
    mine = tests[tests.inspector_id == ins]
    coms = sorted(mine.commodity.unique().tolist())
    peers = tests[(tests.inspector_id != ins) & tests.market_id.isin(roving_markets)
                  & tests.commodity.isin(coms)]
    pest = mine[mine.test_item == mk.PESTICIDE]
    ppest = peers[peers.test_item == mk.PESTICIDE]
    return {
        "name": "clean_inspector",
        "what": "检测员结果异常干净：与同市场同行相比阳性为零",
        "dataset": "rapid_tests", "inspector_id": ins, "market_ids": list(roving_markets),
        "tests": int(len(mine)), "positives": int((mine.result == "阳性").sum()),
        "pesticide_tests": int(len(pest)), "pesticide_positives": int((pest.result == "阳性").sum()),
        "peer_tests_same_markets_commodities": int(len(peers)),
        "peer_positives": int((peers.result == "阳性").sum()),
        "peer_rate": _rate(int((peers.result == "阳性").sum()), len(peers)),
        "peer_pesticide_rate": _rate(int((ppest.result == "阳性").sum()), len(ppest)),
        "note": "该检测员的抑制率读数也集中在很低的区间（多在 15% 以下）",
    }


def _synth_fields(dataset: str, df: pd.DataFrame) -> list[str]:
    """The dataset's fields the sample frame has (camera-pipeline-only columns are left out)."""
    from workbench.store.schema import DATASETS

    return [f.name for f in DATASETS[dataset].fields if f.name in df.columns]


def _plant_canteen(viol, canteens, recurring, cal) -> dict:
    c = canteens.set_index("canteen_id").loc[recurring["canteen_id"]]
    per = viol.groupby("canteen_id").size().reindex(canteens.canteen_id, fill_value=0)
    n = int(per.loc[recurring["canteen_id"]])
    others = per.drop(recurring["canteen_id"])
    school_days = int(cal.school_day.sum())
    top = viol[viol.canteen_id == recurring["canteen_id"]].violation_class.value_counts()
    return {
        "name": "recurring_canteen",
        "what": "学校食堂违规反复发生（数倍于全市平均）",
        "dataset": "canteen_violations", "canteen_id": recurring["canteen_id"], "canteen_name": c["name"],
        "district": c.district, "street": c.street, "planned_rate_factor": recurring["rate_factor"],
        "violations": n, "school_days": school_days,
        "city_mean_per_canteen": round(float(others.mean()), 2),
        "city_median_per_canteen": float(others.median()),
        "ratio_to_city_mean": round(n / float(others.mean()), 2) if others.mean() else None,
        "top_classes": {str(k): int(v) for k, v in top.head(3).items()},
        "note": ("范围内有上学日，违规只在上学日的后厨作业时段发生" if school_days
                 else "范围内没有上学日（寒暑假或节假日），该信号在此范围内看不出"),
    }


def _plant_backlog(events, backlog, cal) -> dict:
    now = cal.now
    open_ = events.status != evm.CLOSED
    overdue = open_ & (events.deadline < now)
    per = events[overdue].groupby("street").size()
    n_st = int(per.get(backlog["street"], 0))
    others = per.drop(backlog["street"], errors="ignore")
    nstreets = events.street.nunique() - 1
    e = events[events.street == backlog["street"]]
    return {
        "name": "overdue_street",
        "what": "街道事件超期积压：大量事件超过处置时限仍未办结",
        "dataset": "city_events", "street": backlog["street"], "district": e.district.iloc[0] if len(e) else None,
        "since": backlog["since"], "planned_stuck_share": backlog["stuck_share"],
        "as_of": _local(now), "as_of_note": "导出时刻（末日次日 00:00，本地时间）",
        "events_since": int((e.ts >= pd.Timestamp(backlog["since"])).sum()),
        "open_overdue": n_st,
        "other_streets_open_overdue_mean": round(float(others.sum()) / max(nstreets, 1), 2),
        "other_streets_open_overdue_max": int(others.max()) if len(others) else 0,
        "stuck_statuses": sorted(e[e._stuck].status.unique().tolist()),
    }


def _plant_cold(weather, cold, cal) -> dict:
    day = pd.Timestamp(cold["day"])
    d = weather.assign(date=weather.ts.dt.normalize())
    daily = d.groupby(["station_id", "date"]).agg(tmin=("temperature", "min"), wind=("wind_speed", "max"))
    rows = []
    for sid in sorted(weather.station_id.unique()):
        x = daily.loc[sid]
        prev = x.tmin.get(day - pd.Timedelta(days=1))
        now_ = x.tmin.get(day)
        after = x.tmin.get(day + pd.Timedelta(days=1))
        rows.append({"station_id": sid, "tmin_before": None if prev is None else float(prev),
                     "tmin_front_day": float(now_), "tmin_day_after": None if after is None else float(after),
                     "drop_24h": None if prev is None else round(float(prev - now_), 1),
                     "wind_max": float(x.wind.get(day))})
    drops = [r["drop_24h"] for r in rows if r["drop_24h"] is not None]
    note = ("日期范围包含一月，寒潮安排在一月" if cold["in_january"]
            else "日期范围不含一月：寒潮安排在范围内气候上最冷的时段")
    return {
        "name": "cold_wave",
        "what": "寒潮：24 小时内最低气温下降 ≥ 10 °C 至 ≤ 4 °C，风力 ≥ 6 级（黄色预警标准）",
        "dataset": "weather", "signal": "寒潮黄色预警", "level": "yellow",
        "front_day": day.date().isoformat(), "in_january": bool(cold["in_january"]), "note": note,
        "window": [_local(day - pd.Timedelta(days=1)), _local(day + pd.Timedelta(days=2))],
        "stations": rows, "min_drop_24h": min(drops) if drops else None,
        "max_drop_24h": max(drops) if drops else None,
        "lowest_tmin_after": round(min(min(r["tmin_front_day"], r["tmin_day_after"] or 99) for r in rows), 1),
        "max_wind": max(r["wind_max"] for r in rows),
        "wind_threshold": 10.8, "drop_threshold": 10, "tmin_threshold": 4,
    }


# ------------------------------------------------------------------------------ alerts

def _alerts(rng, cal, frames, plants) -> pd.DataFrame:
    rows = []
    now = cal.now
    P = {p["name"]: p for p in plants}
    c = P["cold_wave"]
    day = pd.Timestamp(c["front_day"])
    issued = day - pd.Timedelta(hours=8)
    rows.append(dict(ts=issued, department="应急管理局", category="寒潮预警", severity="warning",
                     title="株洲市气象台发布寒潮黄色预警信号", area="株洲市全市", district=None,
                     valid_from=issued, valid_to=day + pd.Timedelta(hours=36), source="气象局",
                     evidence={"最低气温降幅(°C)": c["max_drop_24h"], "最大风速(m/s)": c["max_wind"]}))
    # The market's positives and rising rates, the kitchens' rodents and the overdue backlog are
    # raised by the departments' own analyses through the alert API (workbench.alerts); the
    # file holds only signals from outside the workbench (the weather bureau, the gas company,
    # the screening teams).
    ev = frames["city_events"]
    gas = ev[ev.event_class == "燃气泄漏"]
    if len(gas):
        x = gas.iloc[0]
        rows.append(dict(ts=x.ts + pd.Timedelta(minutes=5), department="燃气", category="城市事件",
                         severity="critical", title=f"{x.street}疑似燃气泄漏", area=f"{x.district}{x.street}",
                         district=x.district, valid_from=x.ts, valid_to=x.closed_at if pd.notna(x.closed_at) else None,
                         source="城市事件", evidence={"事件编号": x.event_id}))
    w = frames["weather"]
    dd = w.assign(date=w.ts.dt.normalize()).groupby(["district", "date"]).precipitation.sum()
    if len(dd) and dd.max() >= 50:
        (dist, date), mm = dd.idxmax(), dd.max()
        t = date + pd.Timedelta(hours=6)
        rows.append(dict(ts=t, department="应急管理局", category="暴雨预警", severity="warning",
                         title=f"{dist}暴雨蓝色预警", area=dist, district=dist, valid_from=t,
                         valid_to=t + pd.Timedelta(hours=18), source="气象局", evidence={"日降水量(mm)": round(float(mm), 1)}))
    hz = frames["hazards"]
    major = hz[hz.level == "重大"]
    if len(major):
        x = major.iloc[0]
        rows.append(dict(ts=x.ts + pd.Timedelta(hours=1), department=x.department, category="重大隐患",
                         severity="warning", title=f"发现重大隐患：{x.description}", area=x.district,
                         district=x.district, valid_from=x.ts, valid_to=x.verified_at if pd.notna(x.verified_at) else None,
                         source="隐患排查", evidence={"隐患编号": x.hazard_id}))
    df = pd.DataFrame(rows)
    df = df[df.ts < now].sort_values("ts", kind="stable").reset_index(drop=True)
    df["valid_to"] = pd.to_datetime(df.valid_to)
    df["status"] = np.where(df.valid_to.notna() & (df.valid_to < now), "已解除", "生效中")
    ds = df.ts.dt.strftime("%Y%m%d")
    df.insert(0, "alert_id", ("GJ" + ds + (df.groupby(ds).cumcount() + 1).astype(str).str.zfill(3)).to_numpy(dtype=object))
    df["evidence"] = [json.dumps(e, ensure_ascii=False) for e in df.evidence]
    return df


# ------------------------------------------------------------------------------ dirt and files

def _month_key(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y年%m月")


def write_files(city: dict, out_dir: Path, seed: int) -> tuple[list[tuple[str, Path]], list[dict]]:
    """Write the sample files with a little planted dirt; returns (files, dirt)."""
    cal, F = city["cal"], city["frames"]
    rng = _rng(seed, "dirt")
    samples = out_dir / "samples"
    year = cal.end.year
    stamp = dt.datetime(cal.end.year, cal.end.month, cal.end.day, 18, 0, 0)
    files: list[tuple[str, Path]] = []
    dirt: list[dict] = []

    def add(ds, path):
        files.append((ds, path))

    # grids: CSV from the social-governance centre
    add("grids", write_csv(F["grids"], samples / "grids" / "株洲市网格划分.csv", labels("grids")))
    # registries: XLSX with a title row
    for ds, name, title, sheet in (
        ("markets", "农贸市场名录.xlsx", f"株洲市农贸市场名录（{year}年）", "市场名录"),
        ("stalls", "农贸市场摊位名录.xlsx", f"株洲市农贸市场摊位名录（{year}年）", "摊位"),
        ("canteens", "学校食堂名录.xlsx", f"株洲市中小学校及幼儿园食堂名录（{year}年）", "食堂"),
        ("cameras", "明厨亮灶摄像头台账.xlsx", f"株洲市学校食堂“明厨亮灶”摄像头台账（{year}年）", "摄像头"),
        ("canteen_suppliers", "学校食堂采购来源登记表.xlsx", f"学校食堂食材采购来源登记表（{year}年）", "采购来源"),
    ):
        df = F[ds]
        if ds == "canteen_suppliers":
            df = df.assign(since=pd.to_datetime(df.since))
        add(ds, write_xlsx(df, samples / ds / name, labels(ds), title, stamp, sheet))

    # hazard screening spreadsheets
    sites = F["hazard_sites"].copy()
    wide = rng.random(len(sites)) < 0.06  # phone numbers typed with full-width digits
    sites.loc[wide, "phone"] = sites.loc[wide, "phone"].str.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    add("hazard_sites", write_xlsx(sites, samples / "hazard_sites" / "隐患排查点位清单.xlsx",
                                   labels("hazard_sites"), f"株洲市安全隐患排查点位清单（{year}年）", stamp, "点位"))
    hz = F["hazards"].copy()
    bad_hz = hz.sample(n=min(2, len(hz)), random_state=np.random.RandomState(seed % (2**32))).copy()
    if len(bad_hz):
        bad_hz["hazard_id"] = bad_hz.hazard_id + "-1"
        bad_hz["rectified_at"] = bad_hz.ts - pd.DateOffset(years=1)  # year typed wrong
        bad_hz["verified_at"] = pd.NaT
        bad_hz["status"] = "已整改"
        hz = insert_rows(hz, bad_hz, rng)
        dirt.append({"dataset": "hazards", "what": "整改完成时间的年份填错，早于发现时间",
                     "expected_reason": "整改完成时间早于发现时间", "rows": len(bad_hz),
                     "ids": bad_hz.hazard_id.tolist()})
    add("hazards", write_xlsx(hz, samples / "hazards" / "隐患排查整治台账.xlsx", labels("hazards"),
                              f"株洲市安全隐患排查整治台账（截至{cal.end.year}年{cal.end.month}月{cal.end.day}日）",
                              stamp, "台账"))
    add("inspections", write_xlsx(F["inspections"], samples / "inspections" / "安全巡查记录.xlsx",
                                  labels("inspections"), None, stamp, "巡查记录", serial=False))

    # rapid tests: GBK CSV per month; the city system (urban districts) and the county
    # system (Chinese dates, other column names)
    t = F["rapid_tests"]
    bad_order = t.sample(n=4, random_state=np.random.RandomState((seed + 1) % (2**32))).copy()
    bad_order["test_id"] = bad_order.test_id.str[:-3] + "9" + bad_order.test_id.str[-2:]
    bad_order["ts"] = bad_order.sampled_at - pd.Timedelta(minutes=47)  # reader clock wrong
    pest = t[t.test_item == mk.PESTICIDE]
    bad_neg = pest.sample(n=3, random_state=np.random.RandomState((seed + 2) % (2**32))).copy()
    bad_neg["test_id"] = bad_neg.test_id.str[:-3] + "8" + bad_neg.test_id.str[-2:]
    bad_neg["reading"] = -np.round(rng.uniform(2.0, 9.0, len(bad_neg)), 1)
    bad_neg["result"] = "阴性"
    dup = t.sample(n=2, random_state=np.random.RandomState((seed + 3) % (2**32))).copy()
    t = insert_rows(t, pd.concat([bad_order, bad_neg, dup]), rng)
    dirt += [
        {"dataset": "rapid_tests", "what": "检测仪时钟错误：检测时间早于采样时间",
         "expected_reason": "检测时间早于采样时间", "rows": len(bad_order), "ids": bad_order.test_id.tolist()},
        {"dataset": "rapid_tests", "what": "酶抑制率读数为负（仪器校准异常）",
         "expected_reason": "检测值小于下限 0", "rows": len(bad_neg), "ids": bad_neg.test_id.tolist()},
        {"dataset": "rapid_tests", "what": "导出时重复的行（同一检测编号出现两次）",
         "expected_reason": "主键重复", "rows": len(dup), "ids": dup.test_id.tolist()},
    ]
    t, market_dirt = mk.plant_dirt(t, pest, seed)
    dirt += market_dirt
    city_hdr = labels("rapid_tests")
    county_hdr = labels("rapid_tests", alias={
        "test_id": "样品编号", "ts": "检测日期", "sampled_at": "抽样时间", "market_id": "市场代码",
        "vendor": "被检单位", "commodity": "品名", "category": "商品类别", "origin": "产地类型",
        "test_item": "项目", "method": "方法", "reading": "读数", "threshold": "限值",
        "result": "判定结果", "reagent_batch": "批号", "reagent_expiry": "有效期至",
        "device_id": "仪器编号", "inspector_id": "检测人员"})
    urban = t.district.isin(URBAN + ("渌口区",)).to_numpy()
    month = _month_key(t.ts)
    for m in sorted(month.unique()):
        sel = (month == m).to_numpy()
        u = t[sel & urban]
        if len(u):
            u = u.assign(ts=fmt_minute(u.ts).to_numpy(), sampled_at=fmt_minute(u.sampled_at).to_numpy(),
                         reagent_expiry=fmt_date(u.reagent_expiry).to_numpy())
            add("rapid_tests", write_csv(u, samples / "rapid_tests" / f"城区农贸市场快检数据_{m}.csv", city_hdr, "gbk"))
        c = t[sel & ~urban]
        if len(c):
            c = c.assign(ts=fmt_chinese(c.ts).to_numpy(), sampled_at=fmt_chinese(c.sampled_at).to_numpy(),
                         reagent_expiry=fmt_chinese(c.reagent_expiry, with_time=False).to_numpy())
            add("rapid_tests", write_csv(c, samples / "rapid_tests" / f"县市快检汇总_{m}.csv", county_hdr, "gbk"))

    # positives' follow-up ledger: XLSX kept by the market supervision bureau
    add("market_followups", write_xlsx(F["market_followups"], samples / "market_followups" / "快检阳性处置台账.xlsx",
                                       labels("market_followups"), f"株洲市农贸市场快检阳性处置台账（{year}年）",
                                       stamp, "处置台账"))

    # canteen violations: the 明厨亮灶 platform's monthly UTF-8 CSV export
    v = F["canteen_violations"]
    bad_v = v.sample(n=min(2, len(v)), random_state=np.random.RandomState((seed + 4) % (2**32))).copy()
    if len(bad_v):
        bad_v["violation_id"] = bad_v.violation_id + "R"
        bad_v["ts_end"] = bad_v.ts - pd.Timedelta(seconds=30)
        v = insert_rows(v, bad_v, rng)
        dirt.append({"dataset": "canteen_violations", "what": "告警结束时间早于开始时间（平台重推的告警）",
                     "expected_reason": "结束时间早于开始时间", "rows": len(bad_v), "ids": bad_v.violation_id.tolist()})
    month = _month_key(v.ts)
    for m in sorted(month.unique()):
        x = v[(month == m).to_numpy()]
        x = x.assign(ts=fmt_second(x.ts).to_numpy(), ts_end=fmt_second(x.ts_end).to_numpy(),
                     **({"updated_at": fmt_second(x.updated_at).to_numpy()} if "updated_at" in x else {}))
        add("canteen_violations", write_csv(x, samples / "canteen_violations" / f"明厨亮灶告警_{m}.csv",
                                            labels("canteen_violations", _synth_fields("canteen_violations", x))))

    # city events: JSON (Open311-style names), history: UTF-8 with BOM CSV, per month
    e = F["city_events"]
    bad_e = e.sample(n=5, random_state=np.random.RandomState((seed + 5) % (2**32))).copy()
    bad_e["event_id"] = bad_e.event_id.str.replace("AJ", "AJX", regex=False)
    bad_e["updated_at"] = bad_e.ts - pd.Timedelta(hours=3)
    e = insert_rows(e, bad_e, rng)
    dirt.append({"dataset": "city_events", "what": "更新时间早于上报时间（对接系统时钟错误）",
                 "expected_reason": "更新时间早于上报时间", "rows": len(bad_e), "ids": bad_e.event_id.tolist()})
    open311 = {"event_id": "service_request_id", "ts": "requested_datetime", "updated_at": "updated_datetime",
               "event_class": "service_code", "department": "agency_responsible", "deadline": "expected_datetime",
               "lon": "long"}
    month = _month_key(e.ts)
    for m in sorted(month.unique()):
        x = e[(month == m).to_numpy()]
        x = x.assign(**{c: fmt_iso_offset(x[c]).to_numpy() for c in ("ts", "updated_at", "deadline", "closed_at")})
        x = x.rename(columns=open311)
        add("city_events", write_json(frame_records(x), samples / "city_events" / f"城市事件_{m}.json"))
    h = F["event_history"]
    month = _month_key(h.ts)
    for m in sorted(month.unique()):
        x = h[(month == m).to_numpy()]
        x = x.assign(ts=fmt_minute(x.ts).to_numpy())
        add("event_history", write_csv(x, samples / "event_history" / f"事件流转记录_{m}.csv",
                                       labels("event_history", _synth_fields("event_history", x)), "utf-8-sig"))

    # weather: one UTF-8 CSV per station, with a few sensor-fault values
    w = F["weather"].copy()
    front = pd.Timestamp(city["plants"][4]["front_day"])
    far = ((w.ts - front).abs() > pd.Timedelta(days=6)).to_numpy()
    idx = np.flatnonzero(far)
    pick = np.sort(rng.choice(idx, size=min(3, len(idx)), replace=False))
    w.loc[pick, "temperature"] = 999.9
    dirt.append({"dataset": "weather", "what": "自动站传感器故障值 999.9（该小时观测缺失）",
                 "expected_reason": "气温(°C)超出上限 70", "rows": len(pick),   # the value set aside, the row loads
                 "ids": [f"{w.station_id[i]} {_local(w.ts[i])}" for i in pick]})
    for sid in sorted(w.station_id.unique()):
        x = w[w.station_id == sid]
        x = x.assign(ts=fmt_minute(x.ts).to_numpy(), issued_at=fmt_minute(x.issued_at).to_numpy())
        add("weather", write_csv(x, samples / "weather" / f"气象观测_{sid}_{x.district.iloc[0]}.csv",
                                 labels("weather")))

    # alerts: JSON with the hub's field names
    a = F["alerts"]
    a = a.assign(**{c: fmt_iso_offset(a[c]).to_numpy() for c in ("ts", "valid_from", "valid_to")})
    add("alerts", write_json(frame_records(a), samples / "alerts" / "预警告警.json"))
    files.sort(key=lambda f: (INGEST_ORDER.index(f[0]), str(f[1])))
    return files, dirt


# ------------------------------------------------------------------------------ entry

def write_city(days: int = 365, seed: int = 7, end: dt.date | None = None,
               out_dir: Path | None = None) -> SynthResult:
    """Generate the city and write its sample files and plants.yaml, without ingesting."""
    end = _as_date(end) or yesterday_local()
    out_dir = Path(out_dir) if out_dir is not None else config.data_dir() / "synth"
    city = generate(days, seed, end)
    files, dirt = write_files(city, out_dir, seed)
    # the feed's violations carry their snapshots, written where the camera watcher keeps evidence
    # (those already on disk are kept); plants.yaml records how many the feed has, not how many
    # this run wrote, so the same seed gives the same bytes whatever the data folder holds
    viol = city["frames"]["canteen_violations"]
    ct.write_snapshots(viol)
    snapshots = int(viol["snapshot"].notna().sum()) if "snapshot" in viol else 0
    cal = city["cal"]
    rows = {k: int(len(v)) for k, v in city["frames"].items()}
    for d in dirt:  # dirt that replaced a good row (a sensor fault) leaves that row out
        rows[d["dataset"]] -= d.get("replaced", 0)
    doc = {
        "city": "株洲市", "timezone": config.TZ, "seed": seed, "days": days,
        "start": cal.start.isoformat(), "end": cal.end.isoformat(),
        "note": "时间均为本地时间（Asia/Shanghai）；库中 ts 为 UTC",
        "rows": rows, "total_rows": int(sum(rows.values())),
        "plants": city["plants"],
        "market_plants": city["market_plants"],  # issue 16: commodity rises, a fast inspector, a card procedure
        "dirt": dirt, "dirt_total": int(sum(d["rows"] for d in dirt)),
        "snapshots": int(snapshots),
        "files": [{"dataset": ds, "path": p.relative_to(out_dir).as_posix()} for ds, p in files],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plants.yaml").write_text(
        yaml.safe_dump(_plain(doc), allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")
    return SynthResult(out_dir=out_dir, files=files, plants=_plain(city["plants"]), dirt=dirt, rows=rows,
                       start=cal.start, end=cal.end)


def synth_city(days: int = 365, seed: int = 7, end: dt.date | None = None,
               out_dir: Path | None = None, eng=None, progress: bool = True) -> SynthResult:
    """Make the seeded sample city, write its sample files and load them through ingest.

    The range is the `days` days ending on `end` (default: yesterday in Asia/Shanghai).
    The same (days, seed, end) gives byte-identical files. Files go to
    `out_dir/samples/…` (default out_dir: data/synth), the planted signals to
    `out_dir/plants.yaml`. Loading the same city twice adds nothing.
    """
    from tqdm import tqdm

    from workbench.store import hub
    from workbench.store.ingest import ingest_file

    bar = tqdm(total=1 + len(INGEST_ORDER), desc="样例城市", unit="步", disable=not progress, file=sys.stderr)
    bar.set_postfix_str("生成数据、写入样例文件")
    result = write_city(days, seed, end, out_dir)
    bar.update(1)
    eng = eng or hub.engine()
    for ds in INGEST_ORDER:
        bar.set_postfix_str(ds)
        for d, path in result.files:
            if d == ds:
                result.summaries.append(ingest_file(ds, path, eng=eng, progress=False))
        bar.update(1)
    bar.close()
    return result


def _as_date(end) -> dt.date | None:
    if end is None or (isinstance(end, dt.date) and not isinstance(end, dt.datetime)):
        return end
    return pd.Timestamp(end).date()


def _plain(x):
    """Numpy and pandas scalars as plain Python values (for YAML)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (pd.Timestamp, dt.datetime)):
        return x.strftime("%Y-%m-%d %H:%M")
    if isinstance(x, dt.date):
        return x.isoformat()
    return x
