"""A half-year export of a market supervision bureau's rapid-test system — synthetic.

Issue 16's realistic case, made up here (no real records): six markets, three inspectors
each, about 26,000 tests in 26 weeks, in the shape the market system's 导出 writes it (the
`market_export` profile: 检测单号, 被检市场, 摊位号, 合格/不合格, 2026/01/05 08:30 wall clock,
gb18030 CSV), with its registries (markets, stalls). Separate from the sample city: its own
markets, people and numbers. Planted (`ExportPlan`):

- one vegetable (芹菜, about a sixth of its market's vegetable tests) at one market rises
  five-fold from a Monday;
- one inspector logs a result every two minutes (the enzyme method reacts ten);
- every device's 采样时间 is the registration time for about 60 % of its enzyme tests,
  which puts the result 6–9 minutes after it: a rule every device breaks (the procedure).

    from workbench.synth.market_export import write_export
    files = write_export(tmp_path, seed=16)
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.market.catalog import PESTICIDE

HEADER = ["序号", "检测单号", "检测时间", "抽样时间", "被检市场", "摊位号", "被检单位", "样品名称", "样品类型", "产地",
          "检测项目", "检测方法", "检测值", "单位", "判定标准", "检测结论", "仪器编号", "检测人员", "上传状态"]
# category → [(commodity, item, method, unit, standard, base rate, weight)]
GOODS = {
    "蔬菜": [("芹菜", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.035, 2.0), ("韭菜", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.05, 2.0),
           ("菠菜", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.04, 1.6), ("小白菜", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.03, 1.6),
           ("豇豆", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.045, 1.2), ("上海青", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.025, 1.0),
           ("黄瓜", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.015, 0.9), ("辣椒", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.02, 0.9),
           ("生菜", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.02, 0.7)],
    "水果": [("草莓", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.03, 1.0), ("葡萄", PESTICIDE, "酶抑制率法", "%", "≥50%", 0.02, 1.0)],
    "猪肉": [("猪肉", "克伦特罗", "胶体金免疫层析法", "", "阴性", 0.002, 1.0), ("猪肉", "莱克多巴胺", "胶体金免疫层析法", "", "阴性", 0.003, 1.0)],
    "水产": [("草鱼", "孔雀石绿", "胶体金免疫层析法", "", "阴性", 0.006, 1.0), ("鲫鱼", "孔雀石绿", "胶体金免疫层析法", "", "阴性", 0.006, 0.8)],
    "干货": [("银耳", "二氧化硫", "比色法", "mg/kg", "≤50mg/kg", 0.025, 1.0)],
}
CATEGORY_SHARE = {"蔬菜": 0.62, "水果": 0.1, "猪肉": 0.12, "水产": 0.1, "干货": 0.06}
REACT = {"酶抑制率法": (10, 14), "胶体金免疫层析法": (5, 8), "比色法": (8, 12)}
MARKETS = [("QY-01", "青阳农贸市场", "荷塘区", "06:00", "19:00"), ("QY-02", "东湖菜市场", "荷塘区", "06:00", "18:30"),
           ("QY-03", "南岭农贸市场", "芦淞区", "05:30", "19:00"), ("QY-04", "西桥综合市场", "芦淞区", "06:00", "18:00"),
           ("QY-05", "北站农贸市场", "石峰区", "06:30", "19:00"), ("QY-06", "河西生鲜市场", "天元区", "06:00", "20:00")]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"


@dataclass
class ExportPlan:
    start: str = "2026-01-05"          # a Monday
    weeks: int = 26
    tests: int = 26000
    rise_market: str = "QY-03"
    rise_commodity: str = "芹菜"
    rise_week: int = 16                 # the rise starts on this week's Monday (0-based)
    rise_rr: float = 5.0
    fast_inspector: str = ""            # set from the names (the second inspector of QY-05)
    fast_every: int = 2                 # minutes between the fast inspector's results
    registration_share: float = 0.6     # enzyme tests whose 采样时间 is the registration time
    people: dict = field(default_factory=dict)

    @property
    def onset(self) -> pd.Timestamp:
        return pd.Timestamp(self.start) + pd.Timedelta(weeks=self.rise_week)


def generate(seed: int = 16, plan: ExportPlan | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, ExportPlan]:
    """(export rows, markets registry, stalls registry, plan): the export as the system writes
    it (column names of HEADER, local wall-clock times as text)."""
    rng = np.random.default_rng([seed, 2026])
    plan = plan or ExportPlan()
    names = []
    while len(names) < 18:
        nm = SURNAMES[rng.integers(len(SURNAMES))] + "".join(GIVEN[i] for i in rng.integers(len(GIVEN), size=rng.integers(1, 3)))
        if nm not in names:
            names.append(nm)
    people = {m[0]: names[3 * i:3 * i + 3] for i, m in enumerate(MARKETS)}
    plan.fast_inspector = plan.fast_inspector or people["QY-05"][1]
    plan.people = people
    markets = pd.DataFrame(MARKETS, columns=["市场编号", "市场名称", "区县", "开市时间", "闭市时间"])
    stall_rows = []
    for mid, *_ in MARKETS:
        k = 0
        for cat, share in CATEGORY_SHARE.items():
            letter = "ABCDE"[list(CATEGORY_SHARE).index(cat)]
            for j in range(max(2, int(round(40 * share)))):
                k += 1
                stall_rows.append((f"{mid}-{k:03d}", mid, f"{letter}{j + 1:02d}", f"{SURNAMES[rng.integers(len(SURNAMES))]}记{cat}", cat))
    stalls = pd.DataFrame(stall_rows, columns=["摊位编号", "市场编号", "摊位号", "经营户", "经营类别"])

    days = pd.date_range(plan.start, periods=plan.weeks * 7, freq="D")
    dayf = np.where(days.day_of_week == 6, 0.5, 1.0)
    mfac = np.exp(rng.normal(0, 0.25, len(MARKETS)))
    size = np.array([1.1, 0.9, 1.0, 0.95, 1.05, 1.0])
    lam = np.outer(dayf, size)
    lam *= plan.tests / lam.sum()
    counts = rng.poisson(lam)
    rows = []
    season = 1 + 0.2 * np.sin(2 * np.pi * (days.day_of_year.to_numpy() - 105) / 365.25)
    cats = list(CATEGORY_SHARE)
    cat_p = np.array([CATEGORY_SHARE[c] for c in cats])
    serial = 0
    for d, day in enumerate(days):
        for m, (mid, mname, _, open_t, close_t) in enumerate(MARKETS):
            c = counts[d, m]
            if not c:
                continue
            st = stalls[stalls["市场编号"] == mid]
            cat = rng.choice(len(cats), size=c, p=cat_p)
            sample_min = np.clip(rng.normal(9 * 60, 75, c), int(open_t[:2]) * 60 + int(open_t[3:]) + 20, 17 * 60).astype(int)
            ins = rng.choice(3, size=c, p=[0.45, 0.35, 0.2])
            for i in range(c):
                cname = cats[cat[i]]
                goods = GOODS[cname]
                w = np.array([g[6] for g in goods])
                com, item, method, unit, std, p, _ = goods[rng.choice(len(goods), p=w / w.sum())]
                p = p * mfac[m] * (season[d] if item == PESTICIDE else 1.0)
                if mid == plan.rise_market and com == plan.rise_commodity and day >= plan.onset:
                    p *= plan.rise_rr
                pos = rng.random() < min(p, 0.9)
                if method == "酶抑制率法":
                    reading = round(float(rng.uniform(51, 90) if pos else np.clip(rng.gamma(3, 6), 0.5, 45)), 1)
                elif method == "比色法":
                    reading = round(float(50 * (rng.uniform(1.1, 2.5) if pos else rng.uniform(0, 0.8))), 1)
                else:
                    reading = int(pos)
                stall = st[st["经营类别"] == cname].iloc[rng.integers((st["经营类别"] == cname).sum())]
                sampled = day + pd.Timedelta(minutes=int(sample_min[i]))
                lo, hi = REACT[method]
                tested = sampled + pd.Timedelta(minutes=int(rng.integers(lo, hi + 1)))
                serial += 1
                rows.append({"检测单号": f"QY{day:%Y%m%d}{m + 1}{serial % 100000:05d}", "_t": tested, "_s": sampled,
                             "被检市场": mname, "摊位号": stall["摊位号"], "被检单位": stall["经营户"], "样品名称": com,
                             "样品类型": cname, "产地": "本市" if rng.random() < 0.55 else "外省", "检测项目": item,
                             "检测方法": method, "检测值": reading, "单位": unit, "判定标准": std,
                             "检测结论": "不合格" if pos else "合格", "仪器编号": f"KJY-{mid[-2:]}-{1 + int(rng.integers(2))}",
                             "检测人员": people[mid][ins[i]], "上传状态": "已上传", "_m": mid})
    df = pd.DataFrame(rows)
    # the fast inspector: a result every `fast_every` minutes from their first of the day
    fast = df["检测人员"] == plan.fast_inspector
    f = df[fast].sort_values("_t")
    day_key = f["_t"].dt.normalize()
    first = f.groupby(day_key)["_t"].transform("min")
    rank = f.groupby(day_key).cumcount()
    new_t = first + pd.to_timedelta(rank * plan.fast_every, unit="min")
    react = (f["_t"] - f["_s"])
    df.loc[f.index, "_t"] = new_t
    df.loc[f.index, "_s"] = new_t - react
    # every device: the registration time as 采样时间 for a share of the enzyme tests (6–9 min before the result)
    enz = (df["检测方法"] == "酶抑制率法").to_numpy() & (rng.random(len(df)) < plan.registration_share)
    df.loc[enz, "_s"] = df.loc[enz, "_t"] - pd.to_timedelta(rng.integers(6, 10, int(enz.sum())), unit="min")
    df = df.sort_values(["_t", "检测单号"], kind="stable").reset_index(drop=True)
    df.insert(0, "序号", np.arange(1, len(df) + 1))
    df["检测时间"] = df["_t"].dt.strftime("%Y/%m/%d %H:%M")
    df["抽样时间"] = df["_s"].dt.strftime("%Y/%m/%d %H:%M")
    return df[HEADER], markets, stalls, plan


def write_export(out_dir: Path, seed: int = 16, plan: ExportPlan | None = None) -> dict:
    """Write 农贸市场名录.csv, 摊位名录.csv and 快检系统导出.csv (gb18030, as the system exports);
    returns their paths and the plan (what was planted)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df, markets, stalls, plan = generate(seed, plan)
    paths = {"markets": out_dir / "农贸市场名录.csv", "stalls": out_dir / "摊位名录.csv",
             "rapid_tests": out_dir / "快检系统导出.csv"}
    markets.to_csv(paths["markets"], index=False, encoding="utf-8")
    stalls.to_csv(paths["stalls"], index=False, encoding="utf-8")
    df.to_csv(paths["rapid_tests"], index=False, encoding="gb18030")
    return {"paths": paths, "plan": asdict(plan) | {"onset": plan.onset.date().isoformat()}, "rows": len(df),
            "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "synthetic": True}
