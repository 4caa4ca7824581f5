"""农贸市场快检: markets, stalls, inspectors and the rapid tests done at the markets.

Test items, methods and thresholds follow DOMAIN.md: the enzyme-inhibition pesticide
test reads an inhibition rate in % and is positive at ≥ 50; colloidal-gold cards read
0/1 with a threshold of 1; colorimetric tests read mg/kg against the product's limit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.market.catalog import BANNED, PESTICIDE  # noqa: F401 (BANNED: synth.city)
from workbench.synth.calendar import CityCalendar
from workbench.synth.files import insert_rows
from workbench.synth.names import person_names

ENZYME = "酶抑制率法（GB/T 5009.199）"
CARD = "胶体金免疫层析法"
COLOR = "比色法"

# item code -> (test item, method, unit, reaction minutes (lo, hi), reagent life in months)
ITEMS = {
    "NY": (PESTICIDE, ENZYME, "%", (10, 15), 6),
    "KL": ("克伦特罗", CARD, "阴/阳(0/1)", (5, 10), 12),
    "LK": ("莱克多巴胺", CARD, "阴/阳(0/1)", (5, 10), 12),
    "SD": ("沙丁胺醇", CARD, "阴/阳(0/1)", (5, 10), 12),
    "KQ": ("孔雀石绿", CARD, "阴/阳(0/1)", (5, 10), 12),
    "XF": ("硝基呋喃", CARD, "阴/阳(0/1)", (5, 10), 12),
    "EY": ("二氧化硫", COLOR, "mg/kg", (8, 15), 12),
    "JQ": ("甲醛", COLOR, "mg/kg", (8, 15), 12),
    "YX": ("亚硝酸盐", COLOR, "mg/kg", (8, 15), 12),
}
ITEM_CODES = tuple(ITEMS)

# stall category -> [(commodity, item code, threshold, base positive rate, weight)]
COMMODITIES: dict[str, list[tuple[str, str, float, float, float]]] = {
    "蔬菜": [
        ("韭菜", "NY", 50, 0.060, 3), ("芹菜", "NY", 50, 0.045, 3), ("菠菜", "NY", 50, 0.040, 3),
        ("小白菜", "NY", 50, 0.035, 3), ("上海青", "NY", 50, 0.030, 2), ("油麦菜", "NY", 50, 0.030, 2),
        ("豇豆", "NY", 50, 0.050, 2), ("空心菜", "NY", 50, 0.030, 2), ("生菜", "NY", 50, 0.020, 1.5),
        ("黄瓜", "NY", 50, 0.015, 1.5), ("辣椒", "NY", 50, 0.020, 1.5), ("茄子", "NY", 50, 0.015, 1),
        ("大白菜", "NY", 50, 0.010, 1), ("生姜", "EY", 30, 0.030, 0.8),
    ],
    "水果": [
        ("草莓", "NY", 50, 0.030, 1), ("葡萄", "NY", 50, 0.020, 1), ("苹果", "NY", 50, 0.010, 1),
        ("柑橘", "NY", 50, 0.010, 1), ("桃子", "NY", 50, 0.015, 1),
    ],
    "猪肉": [
        ("猪肉", "KL", 1, 0.002, 2), ("猪肉", "LK", 1, 0.003, 2), ("猪肉", "SD", 1, 0.002, 1),
        ("猪肝", "KL", 1, 0.004, 1),
    ],
    "牛羊肉": [
        ("牛肉", "KL", 1, 0.003, 1), ("牛肉", "LK", 1, 0.003, 1), ("羊肉", "KL", 1, 0.003, 1),
        ("羊肉", "SD", 1, 0.003, 1),
    ],
    "水产": [
        ("草鱼", "KQ", 1, 0.006, 2), ("鲫鱼", "KQ", 1, 0.006, 2), ("鲈鱼", "KQ", 1, 0.004, 1),
        ("黄鳝", "XF", 1, 0.006, 1), ("基围虾", "XF", 1, 0.004, 1), ("小龙虾", "XF", 1, 0.004, 1),
        ("水发鱿鱼", "JQ", 5, 0.020, 0.7), ("牛百叶", "JQ", 5, 0.020, 0.7),
    ],
    "干货": [
        ("银耳", "EY", 50, 0.025, 1), ("黄花菜", "EY", 200, 0.025, 1), ("枸杞", "EY", 100, 0.020, 1),
        ("粉丝", "EY", 100, 0.015, 0.8),
    ],
    "腌腊制品": [
        ("腊肉", "YX", 30, 0.015, 1), ("香肠", "YX", 30, 0.015, 1), ("腊鱼", "YX", 30, 0.012, 0.6),
        ("酸菜", "YX", 20, 0.015, 0.6), ("剁辣椒", "YX", 20, 0.012, 0.6),
    ],
}
# how often a stall of the category is sampled (pesticide tests dominate, as in practice)
CATEGORY_TEST_WEIGHT = {"蔬菜": 1.0, "水果": 0.45, "猪肉": 0.5, "牛羊肉": 0.4, "水产": 0.5,
                        "干货": 0.5, "腌腊制品": 0.45, "禽蛋": 0.0, "豆制品": 0.0, "粮油": 0.0, "熟食": 0.0}
STALL_CATEGORY_MIX = {"蔬菜": 0.36, "水果": 0.08, "猪肉": 0.12, "牛羊肉": 0.04, "水产": 0.09,
                      "干货": 0.06, "腌腊制品": 0.05, "禽蛋": 0.06, "豆制品": 0.05, "粮油": 0.05, "熟食": 0.04}
LOCAL_SHARE = {"蔬菜": 0.6, "水果": 0.3, "猪肉": 0.7, "牛羊肉": 0.4, "水产": 0.5, "干货": 0.2, "腌腊制品": 0.8}
SOURCES = ("市场快检室", "监管抽检")

# markets per district (36 in all)
MARKETS_PER_DISTRICT = {"荷塘区": 6, "芦淞区": 6, "石峰区": 5, "天元区": 5, "渌口区": 3,
                        "醴陵市": 4, "攸县": 3, "茶陵县": 2, "炎陵县": 2}
_MARKET_SUFFIX = ("农贸市场", "农贸市场", "菜市场", "生鲜市场", "综合市场")


@dataclass
class MarketWorld:
    markets: pd.DataFrame
    stalls: pd.DataFrame
    inspectors: pd.DataFrame  # market_id, inspector, share of the market's tests
    devices: pd.DataFrame  # device_id, market_id
    roving: str  # the inspector who works in three markets beside their own inspectors


def build_markets(rng: np.random.Generator, streets: pd.DataFrame, grids: pd.DataFrame) -> MarketWorld:
    rows = []
    used: set[str] = set()
    for district, n in MARKETS_PER_DISTRICT.items():
        st = streets[streets.district == district].reset_index(drop=True)
        code = st.district_code.iloc[0]
        picks = rng.permutation(len(st))
        for k in range(n):
            s = st.iloc[picks[k % len(st)]]
            stem = s.street.removesuffix("街道").removesuffix("镇").removesuffix("瑶族乡")
            name = f"{stem}{_MARKET_SUFFIX[int(rng.integers(len(_MARKET_SUFFIX)))]}"
            if name in used:
                name = f"{stem}{['东', '南', '西', '北'][k % 4]}{'农贸市场'}"
            used.add(name)
            g = grids[grids.street == s.street]
            grid = g.iloc[int(rng.integers(len(g)))]
            big = district in ("荷塘区", "芦淞区", "石峰区", "天元区")
            rows.append({
                "market_id": f"SC-{code}-{k + 1:02d}",
                "name": name,
                "district": district, "street": s.street, "grid_id": grid.grid_id,
                "lat": round(grid.lat + rng.normal(0, 0.002), 5),
                "lon": round(grid.lon + rng.normal(0, 0.002), 5),
                "market_type": "农贸市场" if "农贸" in name else ("生鲜超市" if "生鲜" in name else "菜市场"),
                "open_time": ["06:00", "06:00", "06:30", "05:30"][int(rng.integers(4))],
                "close_time": ["18:00", "18:30", "19:00", "20:00"][int(rng.integers(4))],
                "stall_count": int(rng.integers(30, 61) if big else rng.integers(20, 45)),
            })
    markets = pd.DataFrame(rows)

    cats = list(STALL_CATEGORY_MIX)
    p = np.array(list(STALL_CATEGORY_MIX.values()))
    p = p / p.sum()
    stall_rows = []
    for m in markets.itertuples(index=False):
        n = m.stall_count
        c = rng.choice(len(cats), size=n, p=p)
        c[: len(cats)] = np.arange(len(cats))[: min(n, len(cats))]  # every category present
        c = np.sort(c, kind="stable")
        vendors = person_names(rng, n)
        area = {}
        for i in range(n):
            cat = cats[c[i]]
            letter = "ABCDEFGHJK"[min(int(c[i]), 9)]
            area[letter] = area.get(letter, 0) + 1
            vendor = vendors[i]
            if rng.random() < 0.15:
                vendor = f"{vendor[0]}记{cat}"
            stall_rows.append({
                "stall_id": f"{m.market_id}-{i + 1:03d}", "market_id": m.market_id,
                "stall_no": f"{letter}{area[letter]:02d}", "vendor": vendor, "category": cat,
            })
    stalls = pd.DataFrame(stall_rows)
    # vendor names with 记 may repeat inside a market; make them unique by stall number
    dup = stalls.duplicated(["market_id", "vendor"], keep="first")
    stalls.loc[dup, "vendor"] = stalls.loc[dup, "vendor"] + "（" + stalls.loc[dup, "stall_no"] + "）"

    # 25 inspectors: 24 with markets of their own (a main inspector per market, often a
    # second one), and one roving inspector who shares three markets with the others
    n_insp = 25
    names = person_names(rng, n_insp, unique=True)
    assign: dict[str, list[tuple[int, float]]] = {}
    order = rng.permutation(len(markets))
    for j, mi in enumerate(order):
        mid = markets.market_id.iloc[mi]
        main = j % (n_insp - 1)
        if rng.random() < 0.6:
            second = (main + 1 + int(rng.integers(n_insp - 2))) % (n_insp - 1)
            assign[mid] = [(main, 0.7), (second, 0.3)]
        else:
            assign[mid] = [(main, 1.0)]
    roving = n_insp - 1
    urban = markets.index[markets.district.isin(["荷塘区", "芦淞区", "石峰区", "天元区"])].to_numpy()
    for mi in sorted(rng.choice(urban, size=3, replace=False)):
        mid = markets.market_id.iloc[mi]
        assign[mid] = [(i, w * 0.6) for i, w in assign[mid]] + [(roving, 0.4)]
    ins_rows = [{"market_id": mid, "inspector": names[i], "share": w}
                for mid in markets.market_id for i, w in assign[mid]]
    inspectors = pd.DataFrame(ins_rows)
    dev_rows = []
    for m in markets.itertuples(index=False):
        for k in range(1, 1 + (2 if m.stall_count >= 40 else 1)):
            dev_rows.append({"device_id": f"KJY-{m.market_id[3:]}-{k}", "market_id": m.market_id})
    return MarketWorld(markets, stalls, inspectors, pd.DataFrame(dev_rows), names[roving])


def _commodity_table():
    rows = []
    for cat, lst in COMMODITIES.items():
        w = np.array([x[4] for x in lst])
        cum = np.cumsum(w) / w.sum()
        for (name, code, thr, p, _), c in zip(lst, cum):
            rows.append((cat, name, code, thr, p, c))
    return pd.DataFrame(rows, columns=["category", "commodity", "item", "threshold", "p", "cum"])


COMMODITY_TABLE = _commodity_table()


def _pick_within(groups: np.ndarray, cum: np.ndarray, which: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each draw (group `which`, uniform `u`), the index of the row whose cumulative
    weight bracket holds `u`; rows are sorted by group and `cum` rises to 1 within each."""
    key = groups.astype(float) * 2 + cum
    return np.searchsorted(key, which.astype(float) * 2 + u * (1 - 1e-12), side="left")


def reagent_batches(item_codes: np.ndarray, days: np.ndarray, market_idx: np.ndarray):
    """Reagent batch numbers and expiry dates: three lots per item per month, each market
    using one lot of the month. `days` is datetime64[D]. A lot is made about a month
    before use and expires after its shelf life (6 months enzyme, 12 months cards)."""
    months = days.astype("datetime64[M]")
    ym = pd.DatetimeIndex(months.astype("datetime64[ns]"))
    yymm = pd.Series((ym.year % 100) * 100 + ym.month).astype(str).str.zfill(4)
    lot = pd.Series(1 + (market_idx % 3)).astype(str).str.zfill(2)
    batch = pd.Series(item_codes).str.cat([yymm, lot])
    lives = pd.Series(item_codes).map({c: ITEMS[c][4] for c in ITEM_CODES}).to_numpy().astype(int)
    produced = months - np.timedelta64(1, "M")
    expiry = (produced + lives.astype("timedelta64[M]")).astype("datetime64[D]") - np.timedelta64(1, "D")
    return batch.to_numpy(dtype=object), expiry


def plan_market_plants(rng: np.random.Generator, world: MarketWorld, start, days: int, exclude: list[str]) -> dict:
    """The surveillance and integrity plants of issue 16, drawn from their own stream:
    - commodity_rise: one commodity (芹菜, about a tenth of a market's pesticide tests) at one
      market rises five-fold from a Monday;
    - city_rise: one commodity (豇豆) rises three-fold in every market from a Monday;
    - fast_inspector: one inspector logs a result every two minutes (reaction still ten);
    - card_procedure: every device reads about 30 % of its colloidal-gold cards at 3–4
      minutes (the card needs 5): a procedure, not a device."""
    m = world.markets
    urban = m[m.district.isin(["荷塘区", "芦淞区", "石峰区", "天元区"]) & ~m.market_id.isin(exclude)].market_id.tolist()
    market = urban[int(rng.integers(len(urban)))]
    start = pd.Timestamp(start)

    def monday(frac):
        d = start + pd.Timedelta(days=int(round(days * frac)))
        return (d - pd.Timedelta(days=d.weekday())).date().isoformat()

    mains = world.inspectors[(world.inspectors.inspector != world.roving) & (world.inspectors.share >= 0.6)]
    mains = mains[~mains.market_id.isin(exclude + [market])]
    names = sorted(mains.inspector.unique())
    return {"commodity_rise": {"market_id": market, "commodity": "芹菜", "onset": monday(0.62), "rr": 5.0},
            "city_rise": {"commodity": "豇豆", "onset": monday(0.7), "rr": 3.0},
            "fast_inspector": {"inspector": names[int(rng.integers(len(names)))], "every_minutes": 2},
            "card_procedure": {"share": 0.3, "minutes": (3, 4)}}


def rapid_tests(rng: np.random.Generator, cal: CityCalendar, world: MarketWorld,
                rising: dict, clean_inspector: str, plan: dict | None = None) -> pd.DataFrame:
    """All rapid tests of the range, clean (no dirt). Times are naive local. `plan`: the
    plants of plan_market_plants (drawn apart: the other numbers stay as they were)."""
    markets, stalls = world.markets, world.stalls
    nm = len(markets)
    # market activity: 17–30 tests per open weekday, by size
    size = (markets.stall_count.to_numpy() - 20) / 40
    base = 17 + 13 * np.clip(size + rng.normal(0, 0.15, nm), 0, 1)
    dayf = np.where(cal.dow == 6, 0.5, np.where(cal.dow == 5, 0.9, 1.0))
    dayf = np.where(cal.spring_festival, 0.25, dayf)
    lam = np.outer(dayf, base)  # (days, markets)
    counts = rng.poisson(lam)
    day_idx = np.repeat(np.repeat(np.arange(cal.n), nm), counts.ravel())
    mkt_idx = np.repeat(np.tile(np.arange(nm), cal.n), counts.ravel())
    n = len(day_idx)

    # stall: weighted by how often its category is sampled
    st = stalls.merge(markets[["market_id"]].reset_index().rename(columns={"index": "m"}), on="market_id")
    st = st.sort_values(["m", "stall_id"], kind="stable").reset_index(drop=True)
    w = st.category.map(CATEGORY_TEST_WEIGHT).to_numpy()
    cw = pd.Series(w).groupby(st.m.to_numpy()).cumsum().to_numpy()
    tot = pd.Series(w).groupby(st.m.to_numpy()).transform("sum").to_numpy()
    stall_i = _pick_within(st.m.to_numpy(), cw / tot, mkt_idx, rng.random(n))
    stall_cat = st.category.to_numpy()[stall_i]

    # commodity within category
    ct = COMMODITY_TABLE
    cat_codes = {c: i for i, c in enumerate(COMMODITIES)}
    ct_group = ct.category.map(cat_codes).to_numpy()
    com_i = _pick_within(ct_group, ct.cum.to_numpy(), pd.Series(stall_cat).map(cat_codes).to_numpy(),
                         rng.random(n))
    item = ct.item.to_numpy()[com_i]
    is_pest = item == "NY"
    is_card = np.isin(item, ["KL", "LK", "SD", "KQ", "XF"])

    # times: mostly the morning; some in the afternoon, inside market hours
    open_min = markets.open_time.map(lambda s: int(s[:2]) * 60 + int(s[3:])).to_numpy()[mkt_idx]
    close_min = markets.close_time.map(lambda s: int(s[:2]) * 60 + int(s[3:])).to_numpy()[mkt_idx]
    morning = rng.random(n) < 0.8
    t_m = rng.normal(9 * 60, 70, n)
    t_a = rng.uniform(14 * 60, 17 * 60, n)
    sample_min = np.where(morning, t_m, t_a)
    sample_min = np.clip(sample_min, open_min + 15, np.minimum(close_min - 40, 17 * 60 + 30)).astype(int)
    lo = np.where(is_pest, 10, np.where(is_card, 5, 8))
    hi = np.where(is_pest, 15, np.where(is_card, 10, 15))
    react = rng.integers(lo, hi + 1)
    day64 = cal.dates.to_numpy().astype("datetime64[m]")[day_idx]
    sampled = day64 + sample_min.astype("timedelta64[m]")
    ts = sampled + react.astype("timedelta64[m]")

    # inspector: one of the market's inspectors
    ins = world.inspectors.merge(markets[["market_id"]].reset_index().rename(columns={"index": "m"}),
                                 on="market_id").sort_values(["m", "share"], ascending=[True, False],
                                                             kind="stable").reset_index(drop=True)
    icum = ins.groupby("m").share.cumsum() / ins.groupby("m").share.transform("sum")
    ins_i = _pick_within(ins.m.to_numpy(), icum.to_numpy(), mkt_idx, rng.random(n))
    inspector = ins.inspector.to_numpy()[ins_i]

    # origin
    local_p = pd.Series(stall_cat).map(LOCAL_SHARE).to_numpy()
    local = rng.random(n) < local_p

    # positive probability
    p = ct.p.to_numpy()[com_i].copy()
    season = 1 + 0.25 * np.sin(2 * np.pi * (cal.doy[day_idx] - 105) / 365.25)  # summer peak
    p = np.where(is_pest, 0.9 * p * season * np.where(local, 0.9, 1.2), p)
    mfactor = np.exp(rng.normal(0, 0.3, nm))
    p = p * mfactor[mkt_idx]
    rising_m = int(np.flatnonzero(markets.market_id.to_numpy() == rising["market_id"])[0])
    onset = np.datetime64(rising["onset"], "D")
    in_r = is_pest & (mkt_idx == rising_m)
    after = day64.astype("datetime64[D]") >= onset
    clean = inspector == clean_inspector
    if plan:
        com = ct.commodity.to_numpy()[com_i]
        day_d0 = day64.astype("datetime64[D]")
        cr, wr = plan["commodity_rise"], plan["city_rise"]
        up_c = (com == cr["commodity"]) & (markets.market_id.to_numpy()[mkt_idx] == cr["market_id"]) & (
            day_d0 >= np.datetime64(cr["onset"], "D"))
        up_w = (com == wr["commodity"]) & (day_d0 >= np.datetime64(wr["onset"], "D"))
        p = p * np.where(up_c, cr["rr"], 1.0) * np.where(up_w, wr["rr"], 1.0)
    p = np.where(clean | in_r, 0.0, p)
    positive = rng.random(n) < p
    # the rising market: exactly the planted share of its pesticide tests, before and after
    for sel, rate in ((in_r & ~after, rising["rate_before"]), (in_r & after, rising["rate_after"])):
        idx = np.flatnonzero(sel)
        k = int(round(rate * len(idx)))
        if k:
            positive[rng.choice(idx, size=k, replace=False)] = True

    # readings
    thr = ct.threshold.to_numpy()[com_i].astype(float)
    reading = np.empty(n)
    # pesticide: inhibition rate %
    neg_pest = np.clip(rng.gamma(3.0, 6.0, n), 0.5, 45.0)
    neg_pest = np.where(clean, np.clip(rng.gamma(2.0, 2.5, n), 0.3, 15.0), neg_pest)
    pos_pest = rng.uniform(51.0, 92.0, n)
    reading = np.where(is_pest, np.where(positive, pos_pest, neg_pest), reading)
    reading = np.where(is_card, positive.astype(float), reading)
    colour = ~is_pest & ~is_card
    neg_col = thr * rng.uniform(0.0, 0.8, n)
    pos_col = thr * rng.uniform(1.15, 3.0, n)
    reading = np.where(colour, np.where(positive, pos_col, neg_col), reading)
    reading = np.round(reading, 1)

    day_d = day64.astype("datetime64[D]")
    batch, expiry = reagent_batches(item, day_d, mkt_idx)
    devs = world.devices.merge(markets[["market_id"]].reset_index().rename(columns={"index": "m"}),
                               on="market_id")
    ndev = devs.groupby("m").size().reindex(range(nm)).to_numpy()
    first_dev = devs.groupby("m").cumcount().eq(0)
    dev_base = devs[first_dev.to_numpy()].sort_values("m").device_id.str[:-1].to_numpy()
    dev_no = 1 + (rng.integers(0, 2, n) % ndev[mkt_idx])
    device = pd.Series(dev_base[mkt_idx]).str.cat(dev_no.astype(str)).to_numpy(dtype=object)

    if plan:
        sampled, ts = _plant_times(plan, sampled, ts, inspector, mkt_idx, is_card, react)
    item_name = pd.Series(item).map({c: ITEMS[c][0] for c in ITEM_CODES}).to_numpy(dtype=object)
    method = pd.Series(item).map({c: ITEMS[c][1] for c in ITEM_CODES}).to_numpy(dtype=object)
    unit = pd.Series(item).map({c: ITEMS[c][2] for c in ITEM_CODES}).to_numpy(dtype=object)
    source = np.where(rng.random(n) < 0.88, SOURCES[0], SOURCES[1])

    df = pd.DataFrame({
        "ts": ts, "sampled_at": sampled,
        "market_id": markets.market_id.to_numpy()[mkt_idx],
        "stall_id": st.stall_id.to_numpy()[stall_i],
        "vendor": st.vendor.to_numpy()[stall_i],
        "district": markets.district.to_numpy()[mkt_idx],
        "commodity": ct.commodity.to_numpy()[com_i],
        "category": stall_cat,
        "origin": np.where(local, "本地", "外地"),
        "test_item": item_name, "method": method, "reading": reading, "unit": unit,
        "threshold": thr, "result": np.where(positive, "阳性", "阴性"),
        "reagent_batch": batch, "reagent_expiry": expiry,
        "device_id": device, "inspector_id": inspector, "source": source,
        "_m": mkt_idx,
    })
    df = df.sort_values(["ts", "_m", "stall_id"], kind="stable").reset_index(drop=True)
    # test ids: KJ + date + market sequence + daily number, numbered in time order
    day_str = pd.Series(df.ts.to_numpy().astype("datetime64[D]").astype(str)).str.replace("-", "", regex=False)
    seq = df.groupby([day_str, df._m]).cumcount() + 1
    df.insert(0, "test_id", ("KJ" + day_str + (df._m + 1).astype(str).str.zfill(2)
                             + seq.astype(str).str.zfill(3)).to_numpy(dtype=object))
    return df.drop(columns="_m")


def _plant_times(plan: dict, sampled: np.ndarray, ts: np.ndarray, inspector: np.ndarray, mkt_idx: np.ndarray,
                 is_card: np.ndarray, react: np.ndarray):
    """The fast inspector's results every `every_minutes` from their first of the day in each
    market (sampled the reaction time before: the reaction rule holds), and the cards of
    every device read early in a share of tests (result time kept, sampling time later)."""
    sampled, ts = sampled.copy(), ts.copy()
    fi = plan["fast_inspector"]
    mine = np.flatnonzero(inspector == fi["inspector"])
    if len(mine):
        frame = pd.DataFrame({"i": mine, "m": mkt_idx[mine], "d": ts[mine].astype("datetime64[D]"), "t": ts[mine]})
        frame = frame.sort_values(["m", "d", "t"], kind="stable")
        rank = frame.groupby(["m", "d"]).cumcount().to_numpy()
        first = frame.groupby(["m", "d"])["t"].transform("min").to_numpy().astype("datetime64[m]")
        new_ts = first + (rank * fi["every_minutes"]).astype("timedelta64[m]")
        idx = frame["i"].to_numpy()
        ts[idx] = new_ts
        sampled[idx] = new_ts - react[idx].astype("timedelta64[m]")
    cp = plan["card_procedure"]
    g = np.random.default_rng([len(ts), 16])  # its own numbers: the city's streams are untouched
    early = is_card & (g.random(len(ts)) < cp["share"])
    lo, hi = cp["minutes"]
    sampled[early] = ts[early] - g.integers(lo, hi + 1, len(ts))[early].astype("timedelta64[m]")
    return sampled, ts


def describe_market_plants(tests: pd.DataFrame, plan: dict, markets: pd.DataFrame) -> list[dict]:
    """What plan_market_plants planted, with the counts the tests can check (plants.yaml)."""
    cr, wr, fi, cp = plan["commodity_rise"], plan["city_rise"], plan["fast_inspector"], plan["card_procedure"]
    pest = tests[tests.test_item == PESTICIDE]
    ts = pd.to_datetime(pest.ts)

    def rates(sel, onset):
        after = ts >= pd.Timestamp(onset)
        pos = pest.result == "阳性"
        return {"tests_before": int((sel & ~after).sum()), "positives_before": int((sel & ~after & pos).sum()),
                "tests_after": int((sel & after).sum()), "positives_after": int((sel & after & pos).sum())}

    in_m = pest.market_id == cr["market_id"]
    share = float((in_m & (pest.commodity == cr["commodity"])).sum() / max(int(in_m.sum()), 1))
    mine = tests[tests.inspector_id == fi["inspector"]]
    card = tests[tests.method == CARD]
    early = (pd.to_datetime(card.ts) - pd.to_datetime(card.sampled_at)) < pd.Timedelta(minutes=5)
    return [
        {"name": "commodity_rise", "what": "某市场某一样品农药残留快检阳性率自某周起升至 5 倍", "dataset": "rapid_tests",
         "market_id": cr["market_id"], "market_name": markets.set_index("market_id").loc[cr["market_id"], "name"],
         "commodity": cr["commodity"], "onset": cr["onset"], "relative_risk": cr["rr"],
         "share_of_market_pesticide_tests": round(share, 3), **rates(in_m & (pest.commodity == cr["commodity"]), cr["onset"])},
        {"name": "city_rise", "what": "全市某一样品农药残留快检阳性率自某周起升至 3 倍", "dataset": "rapid_tests",
         "commodity": wr["commodity"], "onset": wr["onset"], "relative_risk": wr["rr"],
         **rates(pest.commodity == wr["commodity"], wr["onset"])},
        {"name": "fast_inspector", "what": "检测员每 2 分钟出具一个结果（酶抑制法需反应 10 分钟）", "dataset": "rapid_tests",
         "inspector_id": fi["inspector"], "every_minutes": fi["every_minutes"], "tests": int(len(mine)),
         "market_ids": sorted(mine.market_id.unique().tolist())},
        {"name": "card_procedure", "what": "各设备约 30% 的胶体金卡在 3–4 分钟读数（应 5 分钟）：规程问题", "dataset": "rapid_tests",
         "share": cp["share"], "card_tests": int(len(card)), "read_early": int(early.sum()),
         "devices": int(card.device_id.nunique()), "devices_reading_early": int(card[early.to_numpy()].device_id.nunique())},
    ]


def followups(rng: np.random.Generator, tests: pd.DataFrame, end) -> pd.DataFrame:
    """The follow-up ledger of the positives (naive local times): registered a few hours after
    the test, goods destroyed on the spot, a lab re-test within days, the stall re-tested
    within the 7-day deadline as a rule (some late, a few not yet). Nothing after the data's
    last day is known yet; positives of the last two days are not registered yet."""
    pos = tests[tests.result == "阳性"].reset_index(drop=True)
    n = len(pos)
    cols = ["test_id", "ts", "deadline", "lab_sent_at", "lab_result", "lab_result_at", "destroyed_kg",
            "destroyed_at", "stall_retest_at", "stall_retest_result", "handler", "note"]
    if not n:
        return pd.DataFrame(columns=cols)
    now = pd.Timestamp(end) + pd.Timedelta(days=1)
    t = pd.to_datetime(pos.ts)
    reg = (t + pd.to_timedelta(rng.uniform(0.5, 6, n), unit="h")).dt.floor("min")
    sent = (reg + pd.to_timedelta(rng.uniform(0.5, 3, n), unit="h")).dt.floor("min")
    lab_at = (sent + pd.to_timedelta(rng.uniform(20, 72, n), unit="h")).dt.floor("min")
    lab_pos = rng.random(n) < 0.85
    retest_days = np.where(rng.random(n) < 0.9, rng.uniform(2, 6.5, n), rng.uniform(7.5, 12, n))
    never = rng.random(n) < 0.03  # a few stalls never re-tested (closed, vendor gone)
    retest = t.dt.normalize() + pd.to_timedelta(np.floor(retest_days), unit="D") + pd.Timedelta(hours=9)
    retest_pos = rng.random(n) < 0.04
    kg = np.round(np.where(pos.category.isin(["猪肉", "牛羊肉", "水产"]), rng.uniform(2, 25, n), rng.uniform(0.5, 12, n)), 1)
    df = pd.DataFrame({
        "test_id": pos.test_id.to_numpy(), "ts": reg, "deadline": t.dt.normalize() + pd.Timedelta(days=7, hours=18),
        "lab_sent_at": sent, "lab_result": np.where(lab_pos, "阳性", "阴性"), "lab_result_at": lab_at,
        "destroyed_kg": kg, "destroyed_at": reg + pd.Timedelta(minutes=30),
        "stall_retest_at": retest.where(lab_pos & ~never), "stall_retest_result": np.where(retest_pos, "阳性", "阴性"),
        "handler": pos.inspector_id.to_numpy(), "note": np.where(lab_pos, "现场销毁，已送检复检", "现场销毁，复检阴性"),
    })
    known_lab = df.lab_result_at < now
    df.loc[~known_lab, ["lab_result", "lab_result_at"]] = None
    known_retest = df.stall_retest_at.notna() & (df.stall_retest_at < now)
    df.loc[~known_retest, ["stall_retest_at", "stall_retest_result"]] = None
    df["lab_result_at"] = pd.to_datetime(df["lab_result_at"])
    df["stall_retest_at"] = pd.to_datetime(df["stall_retest_at"])
    return df[df.ts < now - pd.Timedelta(days=2)][cols].reset_index(drop=True)


def plant_dirt(t: pd.DataFrame, pest: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, list[dict]]:
    """Four rapid tests the market rules must quarantine (workbench/market/intake.py), one per
    rule, placed among the rows with their own generator (the city's dirt stream is untouched)."""
    bad = pest.sample(n=4, random_state=np.random.RandomState((seed + 5) % (2**32))).copy()
    bad["test_id"] = bad.test_id.str[:-3] + "7" + bad.test_id.str[-2:]
    bad = bad.reset_index(drop=True)
    bad.loc[0, ["reading", "result"]] = [130.0, "阳性"]  # an inhibition rate cannot exceed 100 %
    bad.loc[1, "market_id"] = "SC-XX-99"  # not in the registry
    bad.loc[2, "commodity"] = "韭莱"  # a misspelt commodity
    bad.loc[3, ["reading", "result"]] = [72.4, "阴性"]  # 72.4 % ≥ 50 % is positive
    out = insert_rows(t, bad, np.random.default_rng([seed, 41, 1]))
    dirt = [
        {"dataset": "rapid_tests", "what": what, "expected_reason": reason, "rows": 1, "ids": [bad.test_id[i]]}
        for i, (what, reason) in enumerate([
            ("酶抑制率读数 130%（超出物理范围）", "百分比读数超过 100%"),
            ("市场编号不在名录中", "未登记的农贸市场"),
            ("样品名称错字（韭莱）", "样品名称不在商品目录中"),
            ("读数 72.4% 却判为阴性", "检测结果与检测值、判定限值不符"),
        ])]
    return out, dirt
