"""城市事件: urban events (GB/T 30428) and their flow records.

Flow: 信息收集 → 案卷建立 → 任务派遣 → 任务处理 → 处理反馈 → 核查结案. A grid worker may
handle a small matter on the spot (自行处置): 信息收集 → 任务处理 → 核查结案. An event's
`status` is the last step it reached by the export moment; closed events are 核查结案 and
carry `closed_at`. A city patrol settles some camera-AI street-order cases at once in the
same short way. Reports found to be repeats or untrue are closed without a case
(信息收集 → 核查结案, 不予立案). `deadline` is hours for urgent cases, working days for
routine ones.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.synth.calendar import CityCalendar, add_workdays
from workbench.synth.geography import DISTRICT_BY_NAME

STEPS = ("信息收集", "案卷建立", "任务派遣", "任务处理", "处理反馈", "核查结案")
CLOSED = "核查结案"
SOURCES = ("12345热线", "网格员", "物联感知", "视频AI", "部门转办")
CENTER = "市城市运行管理服务中心"
CITY_MGMT = "城市管理和综合执法局"

# class: (group, department, p urgent, urgent deadline h, routine deadline working days,
#         source affinity [12345, 网格员, 物联感知, 视频AI, 部门转办], base weight)
CLASSES = {
    "暴露垃圾": ("市容环境", CITY_MGMT, 0.02, 4, 1, (3, 5, 0, 4, 1), 14),
    "道路不洁": ("市容环境", CITY_MGMT, 0.0, 4, 1, (2, 4, 0, 2, 1), 8),
    "垃圾满溢": ("市容环境", CITY_MGMT, 0.02, 4, 1, (2, 3, 2, 3, 0), 8),
    "乱堆物料": ("市容环境", CITY_MGMT, 0.0, 4, 2, (2, 4, 0, 2, 1), 5),
    "非法小广告": ("宣传广告", CITY_MGMT, 0.0, 4, 3, (1, 5, 0, 1, 0), 7),
    "违规户外广告": ("宣传广告", CITY_MGMT, 0.0, 4, 5, (1, 2, 0, 0, 2), 2),
    "违规横幅标语": ("宣传广告", CITY_MGMT, 0.0, 4, 2, (1, 3, 0, 1, 0), 2),
    "施工噪音": ("施工管理", "生态环境局", 0.05, 4, 2, (8, 1, 1, 0, 1), 6),
    "施工扬尘": ("施工管理", "住房和城乡建设局", 0.0, 4, 2, (3, 2, 3, 2, 1), 4),
    "渣土撒漏": ("施工管理", CITY_MGMT, 0.05, 4, 1, (2, 2, 0, 4, 1), 3),
    "路面塌陷": ("突发事件", "住房和城乡建设局", 0.9, 4, 2, (2, 2, 1, 1, 1), 0.5),
    "供水管爆裂": ("突发事件", "水务", 0.9, 4, 1, (3, 1, 2, 0, 1), 0.8),
    "燃气泄漏": ("突发事件", "燃气", 1.0, 1, 1, (3, 1, 4, 0, 1), 0.3),
    "下水道堵塞": ("突发事件", "水务", 0.3, 6, 2, (3, 3, 2, 0, 1), 2),
    "道路积水": ("突发事件", "水务", 0.6, 4, 1, (3, 2, 4, 2, 1), 0.6),
    "道路结冰": ("突发事件", CITY_MGMT, 0.8, 3, 1, (2, 2, 2, 1, 1), 0.0),
    "占道经营": ("街面秩序", CITY_MGMT, 0.0, 4, 1, (2, 4, 0, 6, 0), 12),
    "流动摊贩": ("街面秩序", CITY_MGMT, 0.0, 4, 1, (2, 3, 0, 6, 0), 8),
    "违章停车": ("街面秩序", "公安交警", 0.05, 2, 1, (4, 1, 0, 6, 1), 10),
    "店外经营": ("街面秩序", CITY_MGMT, 0.0, 4, 2, (1, 4, 0, 3, 0), 5),
    "井盖破损": ("部件", CITY_MGMT, 0.4, 4, 2, (2, 2, 4, 0, 1), 2),
    "路灯不亮": ("部件", CITY_MGMT, 0.0, 4, 3, (2, 3, 2, 0, 1), 3),
    "垃圾桶破损": ("部件", CITY_MGMT, 0.0, 4, 3, (1, 3, 0, 1, 0), 1.5),
}
CLASS_NAMES = tuple(CLASSES)
WEATHER_CLASSES = ("道路积水", "道路结冰")
SELF_HANDLED = ("暴露垃圾", "道路不洁", "垃圾满溢", "非法小广告", "违规横幅标语", "乱堆物料", "店外经营",
                "占道经营", "流动摊贩", "垃圾桶破损")
ON_THE_SPOT = ("占道经营", "流动摊贩", "店外经营")  # a patrol settles a camera-AI case at once

DESCRIPTIONS = {
    "暴露垃圾": ("{a}路边有生活垃圾堆放，未及时清运", "{a}绿化带内垃圾堆积，气味较大"),
    "道路不洁": ("{a}路面污渍、泥沙较多，影响通行", "{a}人行道有大面积油污"),
    "垃圾满溢": ("{a}垃圾桶满溢，周边散落垃圾", "{a}垃圾收集点满溢未清运"),
    "乱堆物料": ("{a}人行道上乱堆建材、杂物", "{a}门店外堆放杂物占用人行道"),
    "非法小广告": ("{a}墙面、电杆上张贴大量小广告", "{a}路面喷涂办证小广告"),
    "违规户外广告": ("{a}楼顶设置广告牌未经审批", "{a}门头广告牌破损有坠落风险"),
    "违规横幅标语": ("{a}私自悬挂横幅", "{a}行道树上悬挂宣传横幅"),
    "施工噪音": ("{a}工地夜间施工噪音扰民", "{a}装修施工噪音大，影响居民休息"),
    "施工扬尘": ("{a}工地未覆盖裸土，扬尘严重", "{a}拆除作业未采取降尘措施"),
    "渣土撒漏": ("{a}渣土车沿途撒漏", "{a}路面有渣土撒漏，未清理"),
    "路面塌陷": ("{a}路面出现塌陷坑洞，存在安全隐患", "{a}人行道下沉塌陷"),
    "供水管爆裂": ("{a}供水管爆裂，路面大量积水", "{a}地下水管破裂冒水"),
    "燃气泄漏": ("{a}闻到明显燃气味，疑似燃气泄漏", "{a}燃气管道泄漏报警"),
    "下水道堵塞": ("{a}下水道堵塞，污水外溢", "{a}雨水井堵塞，排水不畅"),
    "道路积水": ("{a}路段积水较深，车辆通行困难", "{a}下穿通道积水"),
    "道路结冰": ("{a}路面结冰，易发生车辆打滑", "{a}桥面结冰，需撒布融雪剂"),
    "占道经营": ("{a}商贩占道经营，影响行人通行", "{a}早市占道摆卖"),
    "流动摊贩": ("{a}流动摊贩聚集，秩序混乱", "{a}路口流动摊贩占道"),
    "违章停车": ("{a}车辆违停堵塞通道", "{a}人行道上乱停车辆"),
    "店外经营": ("{a}门店出店经营，占用人行道", "{a}餐馆店外摆桌经营"),
    "井盖破损": ("{a}井盖破损，存在安全隐患", "{a}井盖缺失，已临时围挡"),
    "路灯不亮": ("{a}一排路灯不亮", "{a}路灯杆倾斜，灯具损坏"),
    "垃圾桶破损": ("{a}垃圾桶破损需更换", "{a}分类垃圾桶缺盖破损"),
}

# hourly profiles by source (local hour 0..23)
_H = {
    "12345热线": [1, .6, .4, .3, .3, .5, 1.5, 4, 8, 10, 10, 9, 6, 6, 8, 9, 9, 8, 6, 6, 5, 4, 3, 2],
    "网格员": [0, 0, 0, 0, 0, 0, .2, 2, 9, 10, 10, 9, 3, 2, 7, 10, 10, 8, 3, .5, .2, 0, 0, 0],
    "物联感知": [3, 3, 3, 3, 3, 3, 4, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 5, 5, 4, 4, 3, 3],
    "视频AI": [.5, .3, .2, .2, .3, 2, 6, 10, 9, 6, 5, 6, 6, 4, 4, 5, 6, 9, 10, 9, 6, 3, 1.5, 1],
    "部门转办": [0, 0, 0, 0, 0, 0, 0, .5, 6, 10, 10, 8, 1, 1, 8, 10, 10, 6, .5, 0, 0, 0, 0, 0],
}
# share of each source on weekdays and weekends
_SRC_WEEKDAY = np.array([0.28, 0.36, 0.09, 0.17, 0.10])
_SRC_WEEKEND = np.array([0.38, 0.20, 0.13, 0.25, 0.04])


def _class_given_source() -> np.ndarray:
    w = np.array([[CLASSES[c][5][s] * CLASSES[c][6] for s in range(len(SOURCES))] for c in CLASS_NAMES], float)
    return (w / w.sum(axis=0)).T  # (sources, classes)


def city_events(rng: np.random.Generator, cal: CityCalendar, grids: pd.DataFrame,
                daily_weather: pd.DataFrame, backlog: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All events and their flow records, clean. Times naive local, to the minute.

    `daily_weather`: district, date, precipitation (mm/day), road_min (°C).
    `backlog`: street, since (date) and stuck_share — the planted overdue street.
    """
    # --- how many, when, from which source
    season = 1 + 0.12 * np.sin(2 * np.pi * (cal.doy - 100) / 365.25)
    lam = np.where(cal.weekend, 150.0, 210.0) * season
    lam = np.where(cal.holiday & ~cal.weekend, lam * 0.75, lam)
    lam = np.where(cal.spring_festival, lam * 0.5, lam)
    counts = rng.poisson(lam)
    day_idx = np.repeat(np.arange(cal.n), counts)
    n = len(day_idx)
    wkend = cal.weekend[day_idx] | cal.holiday[day_idx]
    u = rng.random(n)
    src = np.where(wkend, np.searchsorted(np.cumsum(_SRC_WEEKEND), u * _SRC_WEEKEND.sum()),
                   np.searchsorted(np.cumsum(_SRC_WEEKDAY), u * _SRC_WEEKDAY.sum()))
    src = np.minimum(src, len(SOURCES) - 1)
    cgs = _class_given_source()
    cls = np.empty(n, dtype=np.int64)
    hour = np.empty(n, dtype=np.int64)
    for s in range(len(SOURCES)):
        sel = src == s
        k = int(sel.sum())
        cls[sel] = rng.choice(len(CLASS_NAMES), size=k, p=cgs[s])
        hp = np.array(_H[SOURCES[s]], float)
        hour[sel] = rng.choice(24, size=k, p=hp / hp.sum())
    # construction noise calls come at night more often
    noise = (np.array(CLASS_NAMES)[cls] == "施工噪音") & (rng.random(n) < 0.4)
    hour = np.where(noise, rng.choice([21, 22, 23, 0, 1], size=n), hour)

    # --- where: grids weighted by population (the urban core reports more)
    gw = grids.population.to_numpy() * np.where(grids.district.isin(["荷塘区", "芦淞区", "石峰区", "天元区"]), 1.0, 0.45)
    grid_i = rng.choice(len(grids), size=n, p=gw / gw.sum())

    # --- weather-driven events: waterlogging after heavy rain, ice on cold wet days
    extra_day, extra_grid, extra_cls = [], [], []
    dw = daily_weather
    gidx_by_d = {d: np.flatnonzero(grids.district.to_numpy() == d) for d in DISTRICT_BY_NAME}
    lam_w = np.clip(dw.precipitation.to_numpy() - 20, 0, None) * 0.25
    lam_i = np.where((dw.road_min.to_numpy() < 0) & (dw.precipitation.to_numpy() > 0.2), 3.0, 0.0)
    kw = rng.poisson(lam_w)
    ki = rng.poisson(lam_i)
    for j in np.flatnonzero((kw + ki) > 0):
        di = cal.index_of(dw.date.iloc[j])
        pool = gidx_by_d[dw.district.iloc[j]]
        for c, k in (("道路积水", kw[j]), ("道路结冰", ki[j])):
            if k:
                extra_day.append(np.full(k, di))
                extra_grid.append(rng.choice(pool, size=k))
                extra_cls.append(np.full(k, CLASS_NAMES.index(c)))
    if extra_day:
        ed = np.concatenate(extra_day)
        m = len(ed)
        day_idx = np.concatenate([day_idx, ed])
        grid_i = np.concatenate([grid_i, np.concatenate(extra_grid)])
        cls = np.concatenate([cls, np.concatenate(extra_cls)])
        es = rng.choice([0, 1, 2], size=m, p=[0.5, 0.2, 0.3])
        src = np.concatenate([src, es])
        hour = np.concatenate([hour, rng.choice(24, size=m, p=np.array(_H["12345热线"]) / sum(_H["12345热线"]))])
        n += m

    minute = hour * 60 + rng.integers(0, 60, n)
    day64 = cal.dates.to_numpy().astype("datetime64[m]")[day_idx]
    ts = day64 + minute.astype("timedelta64[m]")

    cname = np.array(CLASS_NAMES, dtype=object)[cls]
    meta = {c: CLASSES[c] for c in CLASS_NAMES}
    group = pd.Series(cname).map({c: m[0] for c, m in meta.items()}).to_numpy(dtype=object)
    dept = pd.Series(cname).map({c: m[1] for c, m in meta.items()}).to_numpy(dtype=object)
    p_urg = pd.Series(cname).map({c: m[2] for c, m in meta.items()}).to_numpy(float)
    h_urg = pd.Series(cname).map({c: m[3] for c, m in meta.items()}).to_numpy(float)
    wd = pd.Series(cname).map({c: m[4] for c, m in meta.items()}).to_numpy(int)
    urgent = rng.random(n) < p_urg
    street = grids.street.to_numpy()[grid_i]
    to_street = np.isin(group, ["市容环境", "宣传广告"]) & (rng.random(n) < 0.35)
    dept = np.where(to_street, pd.Series(street).astype(str).to_numpy() + "办事处", dept)
    dept = np.where((cname == "施工噪音") & (rng.random(n) < 0.4), CITY_MGMT, dept)
    deadline = np.where(urgent, ts + (h_urg * 60).astype("timedelta64[m]"), add_workdays(ts, wd))
    span = (deadline - ts).astype(float)  # minutes

    # --- flow: how long each event takes, split across steps
    r_self = rng.random(n)
    self_h = (((src == 1) & np.isin(cname, SELF_HANDLED) & (r_self < 0.7))
              | ((src == 3) & np.isin(cname, ON_THE_SPOT) & (r_self < 0.35)))
    invalid = ~self_h & ~urgent & np.isin(src, [0, 2, 3]) & (rng.random(n) < 0.1)
    ratio = np.exp(rng.normal(np.log(0.42), 0.5, n))  # duration / deadline span
    total = np.maximum(ratio * span, np.where(self_h, 15, 40))
    total = np.where(invalid, rng.uniform(30, 360, n), total)
    frac = rng.dirichlet([1.0, 1.5, 3.0, 5.0, 2.0], size=n)
    steps = np.cumsum(frac * total[:, None], axis=1)  # offsets of steps 2..6
    offs = np.concatenate([np.zeros((n, 1)), steps], axis=1)
    offs = np.round(offs) + np.arange(6)  # minutes, strictly increasing
    step_ts = ts[:, None] + offs.astype("timedelta64[m]")
    reach = np.ones((n, 6), bool)
    reach[self_h] = np.array([True, False, False, True, False, True])
    reach[invalid] = np.array([True, False, False, False, False, True])

    # the planted overdue backlog: most events of one street since a day get stuck
    stuck = (street == backlog["street"]) & (day64 >= np.datetime64(backlog["since"], "m")) \
        & (rng.random(n) < backlog["stuck_share"]) & ~urgent & ~invalid
    stop_at = np.where(rng.random(n) < 0.5, 2, 3)  # stuck after 任务派遣 or 任务处理
    reach[stuck] = False
    reach[stuck, 0] = True
    col = np.arange(6)
    reach[stuck] |= (col[None, :] <= stop_at[stuck, None]) & (col[None, :] >= 0)
    reach[stuck & self_h] = (col[None, :] <= stop_at[stuck & self_h, None])

    now = cal.now.to_datetime64().astype("datetime64[m]")
    reach &= step_ts <= now
    last = 5 - np.argmax(reach[:, ::-1], axis=1)
    status = np.array(STEPS, dtype=object)[last]
    updated = step_ts[np.arange(n), last]
    closed = last == 5
    closed_at = np.where(closed, step_ts[:, 5], np.datetime64("NaT"))

    g = grids.iloc[grid_i]
    lat = np.round(g.lat.to_numpy() + rng.normal(0, 0.0025, n), 5)
    lon = np.round(g.lon.to_numpy() + rng.normal(0, 0.0025, n), 5)
    dist = g.district.to_numpy()
    road_k = rng.integers(0, 1000, n)
    roads = pd.Series(dist).map({d.name: d.roads for d in DISTRICT_BY_NAME.values()}).to_numpy()
    road = np.array([r[k % len(r)] for r, k in zip(roads, road_k)], dtype=object)
    num = rng.integers(1, 400, n).astype(str)
    address = pd.Series(dist).str.cat([pd.Series(street), pd.Series(road), pd.Series(num)], sep="") + "号附近"
    addr_short = pd.Series(road).str.cat(pd.Series(num)) + "号"
    tmpl_k = rng.integers(0, 2, n)
    desc = [DESCRIPTIONS[c][k].format(a=a) for c, k, a in zip(cname, tmpl_k, addr_short)]

    ev = pd.DataFrame({
        "ts": ts, "updated_at": updated, "source": np.array(SOURCES, dtype=object)[src],
        "event_group": group, "event_class": cname, "description": desc,
        "district": dist, "street": street, "grid_id": g.grid_id.to_numpy(), "lat": lat, "lon": lon,
        "address": address.to_numpy(dtype=object), "status": status, "department": dept,
        "urgency": np.where(urgent, "紧急", "一般"), "deadline": deadline, "closed_at": closed_at,
        "_worker": g.worker.to_numpy(), "_self": self_h, "_invalid": invalid, "_stuck": stuck,
    })
    order = np.lexsort((ev.grid_id.to_numpy().astype(str), ev.ts.to_numpy()))
    ev = ev.iloc[order].reset_index(drop=True)
    reach, step_ts = reach[order], step_ts[order]
    day_str = pd.Series(ev.ts.to_numpy().astype("datetime64[D]").astype(str)).str.replace("-", "", regex=False)
    seq = ev.groupby(day_str).cumcount() + 1
    ev.insert(0, "event_id", ("AJ" + day_str + seq.astype(str).str.zfill(5)).to_numpy(dtype=object))
    ext = np.full(len(ev), None, dtype=object)
    s_arr = ev.source.to_numpy()
    rnd = rng.integers(100000, 999999, len(ev)).astype(str)
    for name, prefix in (("12345热线", "ZZ12345-"), ("物联感知", "IOT-"), ("视频AI", "AIV-"), ("部门转办", "ZB-")):
        sel = s_arr == name
        ext[sel] = (prefix + day_str[sel] + "-" + pd.Series(rnd[sel], index=day_str[sel].index)).to_numpy()
    ev.insert(4, "external_id", ext)

    # --- flow records
    ii, jj = np.nonzero(reach)
    dep = ev.department.to_numpy()
    srcs = ev.source.to_numpy()
    worker = ev._worker.to_numpy()
    self_arr = ev._self.to_numpy()
    invalid_arr = ev._invalid.to_numpy()
    handler = np.where(srcs == "网格员", "网格员" + pd.Series(worker).astype(str).to_numpy(),
                       ev.street.astype(str).to_numpy() + "城管执法中队")
    actor = np.empty(len(ii), dtype=object)
    note = np.empty(len(ii), dtype=object)
    intake_actor = np.where(srcs == "网格员", "网格员" + pd.Series(worker).astype(str).to_numpy(),
                            np.where(srcs == "12345热线", "12345热线",
                                     np.where(srcs == "物联感知", "物联感知平台",
                                              np.where(srcs == "视频AI", "视频AI平台", dep))))
    intake_note = np.where(srcs == "12345热线", "市民来电反映，受理登记",
                           np.where(srcs == "网格员", "网格巡查发现，上报登记",
                                    np.where(srcs == "物联感知", "传感器告警，自动生成工单",
                                             np.where(srcs == "视频AI", "视频智能识别告警，人工确认", "部门转办，受理登记"))))
    for j in range(6):
        sel = jj == j
        e = ii[sel]
        if j == 0:
            actor[sel], note[sel] = intake_actor[e], intake_note[e]
        elif j in (1, 2):
            actor[sel] = CENTER
            note[sel] = "符合立案条件，立案" if j == 1 else ("派遣至" + pd.Series(dep[e]).astype(str)).to_numpy()
        elif j == 3:
            actor[sel] = np.where(self_arr[e], handler[e], dep[e])
            note[sel] = np.where(self_arr[e], "现场自行处置", "已安排人员现场处置")
        elif j == 4:
            actor[sel], note[sel] = dep[e], "处置完毕，已上传处置后照片"
        else:
            actor[sel] = np.where(self_arr[e] | invalid_arr[e], CENTER,
                                  "网格员" + pd.Series(worker[e]).astype(str).to_numpy())
            why = np.where(rng.random(len(e)) < 0.6, "经核实为重复上报，不予立案，结案", "经核实情况不属实，不予立案，结案")
            note[sel] = np.where(invalid_arr[e], why,
                                 np.where(self_arr[e], "自行处置，核查结案", "现场核查已处置到位，予以结案"))
    hist = pd.DataFrame({
        "event_id": ev.event_id.to_numpy()[ii],
        "ts": step_ts[ii, jj],
        "status": np.array(STEPS, dtype=object)[jj],
        "actor": actor, "note": note,
    })
    ev = ev.drop(columns=["_worker", "_self", "_invalid"])
    return ev, hist
