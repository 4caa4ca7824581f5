"""城市安全: hazard sites of the screening campaign, their hazards and inspections.

Site types follow DOMAIN.md (农贸市场, 城中村, 高层建筑, 养老院, 自建房, 燃气, 公共交通).
Hazards are 一般 or 重大, each with a deadline; most are rectified before it and then
verified (验收); the status is what the ledger shows at the export moment.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.synth.calendar import CityCalendar
from workbench.synth.names import person_names

# type -> (count, hazards per site per year, supervising department, hazard types)
SITE_TYPES = {
    "农贸市场": (None, 3.0, "市场监管局", ("消防通道堵塞", "电气线路私拉乱接", "灭火器过期失效", "液化气瓶违规使用", "疏散指示标志损坏")),
    "城中村": (30, 3.0, "住房和城乡建设局", ("电动车违规停放充电", "电气线路老化", "消防通道堵塞", "违规搭建", "房屋墙体开裂")),
    "高层建筑": (60, 2.5, "应急管理局", ("消防设施损坏", "安全出口锁闭", "消防控制室无人值守", "应急照明损坏", "楼道堆放杂物")),
    "养老院": (28, 2.0, "民政局", ("灭火器过期失效", "应急照明损坏", "电气线路老化", "疏散通道堵塞", "厨房燃气软管老化")),
    "自建房": (80, 1.5, "住房和城乡建设局", ("房屋墙体开裂", "违规加层改建", "承重结构受损", "电动车违规充电", "经营场所无消防设施")),
    "燃气": (40, 2.0, "住房和城乡建设局", ("燃气软管老化", "未安装燃气泄漏报警器", "钢瓶超期未检", "调压设施锈蚀", "管道占压")),
    "公共交通": (20, 1.5, "交通运输局", ("站台护栏损坏", "消防设施损坏", "安检设备故障", "应急照明损坏", "疏散指示标志损坏")),
}
_TALL = ("华晨", "神农", "湘江", "天元", "中央", "新华", "锦绣", "时代", "世纪", "泰山", "长江", "滨江", "金色", "钻石", "嘉盛", "恒大")
_VILLAGE = ("新塘", "樟树", "大塘", "枫林", "石塘", "清塘", "白石", "马家", "杨家", "三星", "双塘", "荷花",
            "桃花", "金星", "红星", "长塘", "黄泥", "石门", "龙井", "泉塘")
_VILLAGE_END = ("", "坪", "湾", "冲", "岭", "铺", "垅")
_STOPS = ("株洲站", "株洲西站", "株洲南站", "株洲汽车站", "芦淞汽车站", "火车站公交首末站", "神农城公交首末站",
          "智轨1号线车辆段", "田心公交站场", "河西公交枢纽")


def build_sites(rng: np.random.Generator, streets: pd.DataFrame, grids: pd.DataFrame,
                markets: pd.DataFrame) -> pd.DataFrame:
    rows = []
    seq = {}
    urban = grids.district.isin(["荷塘区", "芦淞区", "石峰区", "天元区"]).to_numpy()

    def add(stype, name, g, address, owner):
        code = g.grid_id.split("-")[0]
        seq[code] = seq.get(code, 0) + 1
        rows.append({"site_id": f"AQ-{code}-{seq[code]:03d}", "site_type": stype, "name": name,
                     "address": address, "district": g.district, "street": g.street, "grid_id": g.grid_id,
                     "lat": round(g.lat + rng.normal(0, 0.002), 5), "lon": round(g.lon + rng.normal(0, 0.002), 5),
                     "owner": owner, "phone": f"1{int(rng.choice([3, 5, 7, 8, 9]))}{int(rng.integers(0, 10**9)):09d}"})

    gi = {g: i for i, g in enumerate(grids.grid_id)}
    for m in markets.itertuples(index=False):
        g = grids.iloc[gi[m.grid_id]]
        add("农贸市场", m.name, g, f"{m.district}{m.street}", person_names(rng, 1)[0])
    used: set[str] = set()
    for stype, (count, *_rest) in SITE_TYPES.items():
        if count is None:
            continue
        owners = person_names(rng, count)
        for k in range(count):
            for _attempt in range(12):  # draw again rather than number a repeated name
                pool = np.flatnonzero(urban) if stype in ("高层建筑", "城中村", "公共交通") else np.arange(len(grids))
                g = grids.iloc[int(rng.choice(pool))]
                stem = g.street.removesuffix("街道").removesuffix("镇").removesuffix("瑶族乡")
                if stype == "城中村":
                    name = (f"{_VILLAGE[int(rng.integers(len(_VILLAGE)))]}"
                            f"{_VILLAGE_END[int(rng.integers(len(_VILLAGE_END)))]}村")
                elif stype == "高层建筑":
                    w = _TALL[int(rng.integers(len(_TALL)))]
                    name = [f"{w}大厦", f"{w}国际{int(rng.integers(1, 9))}栋", f"{w}花园{int(rng.integers(1, 20))}栋",
                            f"{w}广场"][int(rng.integers(4))]
                elif stype == "养老院":
                    name = [f"{stem}敬老院", f"{stem}养老服务中心", f"{g.district}社会福利中心", f"{stem}康养中心"][int(rng.integers(4))]
                elif stype == "自建房":
                    name = f"{stem}{['一', '二', '三', '四', '五', '六'][int(rng.integers(6))]}组{int(rng.integers(1, 80))}号自建房"
                elif stype == "燃气":
                    name = [f"{stem}液化石油气供应站", f"{stem}天然气调压站", f"{stem}加气站", f"{stem}餐饮燃气用户集中区"][int(rng.integers(4))]
                else:
                    name = _STOPS[k] if k < len(_STOPS) else f"{stem}公交首末站"
                if name not in used:
                    break
            base, i = name, 2
            while name in used:
                name = f"{base}（{g.street}）" if i == 2 else f"{base}{i}"
                i += 1
            used.add(name)
            add(stype, name, g, f"{g.district}{g.street}", owners[k])
    return pd.DataFrame(rows)


def hazards_and_inspections(rng: np.random.Generator, cal: CityCalendar, sites: pd.DataFrame,
                            inspectors: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    now = cal.now.to_datetime64().astype("datetime64[m]")
    ns = len(sites)
    rate = sites.site_type.map({k: v[1] for k, v in SITE_TYPES.items()}).to_numpy() / 365.0
    dayf = np.where(cal.workday, 1.35, 0.1)
    counts = rng.poisson(np.outer(dayf, rate))
    day_idx = np.repeat(np.repeat(np.arange(cal.n), ns), counts.ravel())
    site_i = np.repeat(np.tile(np.arange(ns), cal.n), counts.ravel())
    n = len(day_idx)
    minute = rng.integers(9 * 60, 17 * 60 + 30, n)
    day64 = cal.dates.to_numpy().astype("datetime64[m]")[day_idx]
    ts = day64 + minute.astype("timedelta64[m]")
    stype = sites.site_type.to_numpy()[site_i]
    htypes = [SITE_TYPES[t][3] for t in stype]
    htype = np.array([h[int(k) % len(h)] for h, k in zip(htypes, rng.integers(0, 1000, n))], dtype=object)
    major = rng.random(n) < np.where(np.isin(htype, ["承重结构受损", "违规加层改建", "房屋墙体开裂", "管道占压"]), 0.3, 0.05)
    level = np.where(major, "重大", "一般")
    days_limit = np.where(major, rng.choice([30, 45, 60, 90], n), rng.choice([7, 10, 15, 30], n))
    deadline = (ts.astype("datetime64[D]") + days_limit.astype("timedelta64[D]")).astype("datetime64[m]") \
        + np.timedelta64(17 * 60 + 30, "m")
    ratio = np.exp(rng.normal(np.log(0.5), 0.55, n))
    rect = ts + (ratio * (deadline - ts).astype(float)).astype("timedelta64[m]")
    rect = rect.astype("datetime64[D]").astype("datetime64[m]") + rng.integers(9 * 60, 18 * 60, n).astype("timedelta64[m]")
    rect = np.maximum(rect, ts + np.timedelta64(60, "m"))
    ver = rect + (rng.exponential(4.0, n) * 24 * 60 + 60).astype("timedelta64[m]")
    rectified = rect <= now
    verified = rectified & (ver <= now)
    status = np.where(verified, "已验收", np.where(rectified, "已整改", "整改中"))
    desc = [f"{sites.name.iloc[s]}{h}" for s, h in zip(site_i, htype)]
    dept = sites.site_type.map({k: v[2] for k, v in SITE_TYPES.items()}).to_numpy()[site_i]
    hz = pd.DataFrame({
        "site_id": sites.site_id.to_numpy()[site_i], "hazard_type": htype, "level": level,
        "description": desc, "ts": ts, "deadline": deadline,
        "rectified_at": np.where(rectified, rect, np.datetime64("NaT")),
        "verified_at": np.where(verified, ver, np.datetime64("NaT")),
        "status": status, "district": sites.district.to_numpy()[site_i], "department": dept,
        "_inspector": np.array(inspectors, dtype=object)[rng.integers(0, len(inspectors), n)],
    }).sort_values(["ts", "site_id"], kind="stable").reset_index(drop=True)
    ds = pd.Series(hz.ts.to_numpy().astype("datetime64[D]").astype(str)).str.replace("-", "", regex=False)
    hz.insert(0, "hazard_id", ("YH" + ds + (hz.groupby(ds).cumcount() + 1).astype(str).str.zfill(3)).to_numpy(dtype=object))

    # inspections: the visit that found each hazard, the check that verified it, and
    # routine monthly visits that found nothing
    found = pd.DataFrame({"ts": hz.ts, "site_id": hz.site_id, "hazard_id": hz.hazard_id,
                          "inspector": hz._inspector, "result": "发现隐患",
                          "note": "发现" + hz.hazard_type + "，已下达整改通知"})
    v = hz[hz.verified_at.notna()]
    check = pd.DataFrame({"ts": v.verified_at, "site_id": v.site_id, "hazard_id": v.hazard_id,
                          "inspector": v._inspector, "result": "整改到位",
                          "note": "复查：" + v.hazard_type + "已整改到位，同意销号"})
    rt_rows = []
    start64 = np.datetime64(cal.start, "D")
    for s in range(ns):
        first = int(rng.integers(0, 30))
        k = np.arange(first, cal.n, 30) + rng.integers(-4, 5, size=len(range(first, cal.n, 30)))
        k = k[(k >= 0) & (k < cal.n)]
        k = k[cal.workday[k]]
        for d in k:
            rt_rows.append((start64 + np.timedelta64(int(d), "D"), s))
    if rt_rows:
        rd = np.array([r[0] for r in rt_rows]).astype("datetime64[m]")
        rs = np.array([r[1] for r in rt_rows])
        routine = pd.DataFrame({
            "ts": rd + rng.integers(9 * 60, 17 * 60, len(rd)).astype("timedelta64[m]"),
            "site_id": sites.site_id.to_numpy()[rs], "hazard_id": None,
            "inspector": np.array(inspectors, dtype=object)[rng.integers(0, len(inspectors), len(rd))],
            "result": "未发现隐患", "note": "例行巡查，未发现明显隐患"})
    else:
        routine = found.iloc[:0]
    ins = pd.concat([found, check, routine], ignore_index=True)
    ins = ins[ins.ts < cal.now].sort_values(["ts", "site_id"], kind="stable").reset_index(drop=True)
    di = pd.Series(ins.ts.to_numpy().astype("datetime64[D]").astype(str)).str.replace("-", "", regex=False)
    ins.insert(0, "inspection_id", ("XC" + di + (ins.groupby(di).cumcount() + 1).astype(str).str.zfill(4)).to_numpy(dtype=object))
    return hz.drop(columns="_inspector"), ins
