"""明厨亮灶: school canteens, their kitchen cameras, suppliers and AI-flagged violations.

Violations happen in kitchen hours on school days; lighter on working days in the
winter and summer holidays, none at weekends. 陌生人闯入 (a stranger in the kitchen
zone) and 老鼠 (rodents) are, by their nature, seen outside staff hours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.synth.calendar import CityCalendar
from workbench.synth.names import person_names

# class -> (severity, weight)
VIOLATIONS = {
    "未戴口罩": ("warning", 30), "未戴厨师帽": ("warning", 25), "未穿工作服": ("warning", 12),
    "玩手机": ("warning", 11), "垃圾桶未盖": ("info", 11), "赤膊": ("warning", 3),
    "陌生人闯入": ("warning", 4), "抽烟": ("critical", 3), "老鼠": ("critical", 1),
}
OFF_HOURS = ("陌生人闯入", "老鼠")
SCHOOL_TYPES = {"小学": 0.42, "初中": 0.2, "高中": 0.1, "幼儿园": 0.22, "职业学校": 0.06}
CANTEENS_PER_DISTRICT = {"荷塘区": 22, "芦淞区": 22, "石峰区": 18, "天元区": 24, "渌口区": 12,
                         "醴陵市": 18, "攸县": 13, "茶陵县": 11, "炎陵县": 10}
STAFF_HOURS = {
    "小学": "06:30-13:30,15:30-17:30", "初中": "06:00-13:30,15:30-18:30",
    "高中": "05:30-13:30,15:00-19:30", "幼儿园": "06:30-16:30", "职业学校": "06:00-13:30,15:30-19:00",
}
LOCATIONS = ("后厨操作间", "切配间", "备餐间", "洗消间", "粗加工区", "库房")
GOODS = ("蔬菜", "蔬菜、水果", "肉类", "蔬菜、肉类", "水产、肉类", "粮油、干货", "蔬菜、豆制品")
_SCHOOL_WORDS = ("实验", "第一", "第二", "第三", "育才", "育英", "新华", "光明", "东方", "阳光", "红旗",
                 "向阳", "明德", "启航", "博雅", "培英", "湘江", "建设", "长青", "桃李")


@dataclass
class CanteenWorld:
    canteens: pd.DataFrame
    cameras: pd.DataFrame
    suppliers: pd.DataFrame


def _intervals(hours: str) -> list[tuple[int, int]]:
    out = []
    for part in hours.split(","):
        a, b = part.split("-")
        out.append((int(a[:2]) * 60 + int(a[3:]), int(b[:2]) * 60 + int(b[3:])))
    return out


def build_canteens(rng: np.random.Generator, streets: pd.DataFrame, grids: pd.DataFrame,
                   markets: pd.DataFrame, before: pd.Timestamp) -> CanteenWorld:
    types = list(SCHOOL_TYPES)
    tp = np.array(list(SCHOOL_TYPES.values()))
    rows, cams, sups = [], [], []
    used: set[str] = set()
    for district, n in CANTEENS_PER_DISTRICT.items():
        code = streets.loc[streets.district == district, "district_code"].iloc[0]
        dgrids = grids[grids.district == district].reset_index(drop=True)
        managers = person_names(rng, n)
        dm = markets[markets.district == district]
        for k in range(n):
            stype = types[int(rng.choice(len(types), p=tp / tp.sum()))]
            g = dgrids.iloc[int(rng.integers(len(dgrids)))]
            stem = g.street.removesuffix("街道").removesuffix("镇").removesuffix("瑶族乡")
            word = _SCHOOL_WORDS[int(rng.integers(len(_SCHOOL_WORDS)))]
            suffix = {"小学": "小学", "初中": "中学", "高中": "高级中学", "幼儿园": "幼儿园",
                      "职业学校": "职业技术学校"}[stype]
            prefix = "株洲市" if district in ("荷塘区", "芦淞区", "石峰区", "天元区") else district
            for cand in (f"{stem}{suffix}", f"{stem}{word}{suffix}", f"{prefix}{word}{suffix}",
                         f"{prefix}{stem}{word}{suffix}"):
                if cand not in used:
                    school = cand
                    break
            else:
                school = f"{prefix}{stem}第{k + 1}{suffix}"
            used.add(school)
            cid = f"ST-{code}-{k + 1:03d}"
            students = {"小学": (400, 1800), "初中": (500, 2000), "高中": (1200, 3500),
                        "幼儿园": (90, 420), "职业学校": (800, 3000)}[stype]
            rows.append({
                "canteen_id": cid, "name": f"{school}食堂", "school_name": school, "school_type": stype,
                "district": district, "street": g.street, "grid_id": g.grid_id,
                "lat": round(g.lat + rng.normal(0, 0.002), 5), "lon": round(g.lon + rng.normal(0, 0.002), 5),
                "students": int(rng.integers(*students)), "staff_hours": STAFF_HOURS[stype],
                "manager": managers[k],
            })
            ncam = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.35, 0.3, 0.2]))
            locs = rng.permutation(len(LOCATIONS))[:ncam]
            ip = f"10.{31 + len(rows) // 200}.{(len(rows) % 200) + 10}"
            for j in range(ncam):
                loc = LOCATIONS[locs[j]]
                cams.append({
                    "camera_id": f"{cid}-C{j + 1}", "canteen_id": cid, "name": f"{school}{loc}",
                    "location": loc,
                    "source_url": f"rtsp://{ip}.{64 + j}:554/Streaming/Channels/101",
                })
            # suppliers: 1–3 markets, nearest in the district first
            nsup = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
            pool = dm if len(dm) else markets
            d2 = (pool.lat - g.lat) ** 2 + (pool.lon - g.lon) ** 2
            near = pool.assign(_d=d2.to_numpy()).sort_values(["_d", "market_id"]).market_id.tolist()
            if nsup > len(near):
                others = markets[~markets.market_id.isin(near)].market_id.tolist()
                near += [others[i] for i in rng.permutation(len(others))[: nsup - len(near)]]
            for mid in near[:nsup]:
                since = before - pd.Timedelta(days=int(rng.integers(60, 1500)))
                sups.append({"canteen_id": cid, "market_id": mid, "since": since.date(),
                             "goods": GOODS[int(rng.integers(len(GOODS)))]})
    return CanteenWorld(pd.DataFrame(rows), pd.DataFrame(cams), pd.DataFrame(sups))


def violations(rng: np.random.Generator, cal: CityCalendar, world: CanteenWorld,
               recurring: dict) -> pd.DataFrame:
    """AI-flagged violations over the range, clean. Times naive local, to the second."""
    canteens, cams = world.canteens, world.cameras
    nc = len(canteens)
    rate = 0.32 * np.exp(rng.normal(0, 0.35, nc))  # violations per school day
    ri = int(np.flatnonzero(canteens.canteen_id.to_numpy() == recurring["canteen_id"])[0])
    rate[ri] = recurring["rate_factor"] * 0.32
    dayf = np.where(cal.school_day, 1.0, np.where(cal.holiday_term, 0.12, 0.0))
    counts = rng.poisson(np.outer(dayf, rate))
    day_idx = np.repeat(np.repeat(np.arange(cal.n), nc), counts.ravel())
    can_idx = np.repeat(np.tile(np.arange(nc), cal.n), counts.ravel())
    n = len(day_idx)

    classes = list(VIOLATIONS)
    w = np.array([VIOLATIONS[c][1] for c in classes], float)
    cls = rng.choice(len(classes), size=n, p=w / w.sum())
    cls_name = np.array(classes, dtype=object)[cls]
    off = np.isin(cls_name, OFF_HOURS)

    # time inside the canteen's kitchen hours (or, for off-hours classes, at night)
    hours = canteens.staff_hours.to_numpy()
    iv = [_intervals(h) for h in hours]
    lens = np.array([sum(b - a for a, b in x) for x in iv], float)
    u = rng.random(n) * lens[can_idx]
    minute = np.zeros(n)
    for c in range(nc):
        sel = can_idx == c
        if not sel.any():
            continue
        uu = u[sel].copy()
        out = np.empty(sel.sum())
        done = np.zeros(sel.sum(), bool)
        for a, b in iv[c]:
            inside = ~done & (uu < (b - a))
            out[inside] = a + uu[inside]
            done |= inside
            uu = np.where(done, uu, uu - (b - a))
        minute[sel] = out
    night = rng.uniform(20 * 60 + 30, 29 * 60, n) % (24 * 60)  # 20:30–05:00
    minute = np.where(off, night, minute)
    secs = (minute * 60 + rng.integers(0, 60, n)).astype(np.int64)
    day64 = cal.dates.to_numpy().astype("datetime64[s]")[day_idx]
    ts = day64 + secs.astype("timedelta64[s]")
    dur = rng.integers(4, 180, n)
    ts_end = ts + dur.astype("timedelta64[s]")

    # camera of the canteen
    cam = cams.merge(canteens[["canteen_id"]].reset_index().rename(columns={"index": "c"}), on="canteen_id")
    cam = cam.sort_values(["c", "camera_id"], kind="stable").reset_index(drop=True)
    ncam = cam.groupby("c").size().reindex(range(nc)).to_numpy()
    first = cam.groupby("c").cumcount().eq(0).to_numpy()
    first_idx = np.flatnonzero(first)
    cam_i = first_idx[can_idx] + (rng.integers(0, 1_000_000, n) % ncam[can_idx])

    score = np.round(0.5 + 0.48 * rng.beta(4, 2, n), 3)
    sev = pd.Series(cls_name).map({c: VIOLATIONS[c][0] for c in classes}).to_numpy(dtype=object)

    # handling: notified, rectified, verified; status is what the export moment sees
    now = cal.now.to_datetime64().astype("datetime64[s]")
    crit = sev == "critical"
    t_notify = ts + (rng.exponential(np.where(crit, 0.3, 2.0), n) * 3600).astype("timedelta64[s]")
    t_rect = t_notify + (rng.exponential(np.where(crit, 24.0, 30.0), n) * 3600).astype("timedelta64[s]")
    t_ver = t_rect + (rng.exponential(72.0, n) * 3600).astype("timedelta64[s]")
    never_verified = rng.random(n) < 0.04
    status = np.where(t_ver <= now, "verified",
                      np.where(t_rect <= now, "rectified", np.where(t_notify <= now, "notified", "open")))
    status = np.where(never_verified & (status == "verified"), "rectified", status)
    # 更新时间: when the case reached the status the export reports (the hub's loader takes the
    # status onto the violation's rectification case at that time, workbench.cases.sync)
    updated = np.where(status == "verified", t_ver, np.where(status == "rectified", t_rect,
                                                             np.where(status == "notified", t_notify, ts)))

    df = pd.DataFrame({
        "ts": ts, "ts_end": ts_end,
        "camera_id": cam.camera_id.to_numpy()[cam_i],
        "canteen_id": canteens.canteen_id.to_numpy()[can_idx],
        "district": canteens.district.to_numpy()[can_idx],
        "violation_class": cls_name, "severity": sev, "score": score,
        "status": status, "source": "明厨亮灶AI", "updated_at": updated,
    })
    df = df.sort_values(["ts", "camera_id"], kind="stable").reset_index(drop=True)
    day_str = pd.Series(df.ts.to_numpy().astype("datetime64[D]").astype(str)).str.replace("-", "", regex=False)
    seq = df.groupby(day_str).cumcount() + 1
    vid = ("MC" + day_str + seq.astype(str).str.zfill(4))
    df.insert(0, "violation_id", vid.to_numpy(dtype=object))
    # the platform keeps a face-blurred snapshot of the violations still inside the evidence
    # retention; the sample city renders those the feed shows first (write_snapshots) and
    # records their path, the others carry none
    from workbench.retention import EVIDENCE_DAYS

    shown = feed_selection(df, canteens, cal.now, keep_days=EVIDENCE_DAYS)
    snap = snapshot_path(df).where(df["violation_id"].isin(set(shown["violation_id"])), None)
    df.insert(8, "snapshot", snap.to_numpy(dtype=object))
    return df


# ------------------------------------------------------------------ snapshots of the sample city's violations
SNAPSHOT_PER_VIEW = 8   # the feed shows the newest 8 violations of a view (see feed_selection)
SNAPSHOT_SIZE = (640, 360)
# violation → (the detector class whose box shows it, the person who commits it)
_SCENES = {
    "未戴口罩": ("no_mask", {"mask": False, "facing": "front"}),
    "未戴厨师帽": ("no_chef_hat", {"hat": "none"}),
    "未穿工作服": ("no_uniform", {"torso": "shirt"}),
    "玩手机": ("phone", {"phone": "chest", "arms": "up"}),
    "赤膊": ("shirtless", {"torso": "shirtless"}),
    "抽烟": ("cigarette", {"smoking": True, "mask": False, "facing": "front", "arms": "up"}),
    "陌生人闯入": ("person", {"hat": "baseball", "torso": "shirt", "mask": False}),
    "垃圾桶未盖": ("bin_open", None),
    "老鼠": ("rodent", None),
}
_COMPLIANT = {"hat": "toque", "mask": True, "torso": "uniform", "phone": "", "smoking": False}


def snapshot_path(violations: pd.DataFrame) -> pd.Series:
    """Where the watcher keeps each violation's face-blurred snapshot, relative to the data folder
    (workbench.canteen.evidence.event_dir: evidence/<camera>/<local date>/<id>.jpg). `ts` naive local."""
    day = pd.to_datetime(violations["ts"]).dt.strftime("%Y-%m-%d")
    cam = violations["camera_id"].astype(str).str.replace(r"[^0-9A-Za-z_.\-]", "_", regex=True)
    return "evidence/" + cam + "/" + day + "/" + violations["violation_id"].astype(str) + ".jpg"


def feed_selection(violations: pd.DataFrame, canteens: pd.DataFrame, now, per: int = SNAPSHOT_PER_VIEW,
                   keep_days: float = 30) -> pd.DataFrame:
    """The violations the 明厨亮灶 feed shows first: the newest `per` of the whole city and of
    every district, school type and violation class, among those still inside the evidence
    retention (`keep_days` before `now`, naive local). Older evidence the retention sweep
    deletes, so a sample city carries none."""
    if violations.empty:
        return violations
    v = violations[pd.to_datetime(violations["ts"]) >= pd.Timestamp(now) - pd.Timedelta(days=keep_days)]
    v = v.merge(canteens[["canteen_id", "school_type"]], on="canteen_id", how="left")
    v = v.sort_values(["ts", "violation_id"], ascending=False, kind="stable")
    keep = set(v["violation_id"].head(per))
    for col in ("district", "school_type", "violation_class"):
        keep |= set(v.groupby(col, sort=True).head(per)["violation_id"])
    return violations[violations["violation_id"].isin(keep)]


def render_violation(violation_class: str, rng: np.random.Generator, size=SNAPSHOT_SIZE):
    """A ceiling camera's kitchen frame that shows `violation_class` (the synthetic kitchens of
    workbench.canteen.synthkitchen): (BGR image, [events.Box]) — the violation's box in red with
    its name, each person's box (their heads are blurred in the shown copy)."""
    from dataclasses import replace

    from workbench.canteen import synthkitchen as sk
    from workbench.canteen.classes import LABELS_ZH
    from workbench.canteen.events import Box

    w, h = size
    img, lay = sk._background(rng, w, h)
    owner = np.zeros((h, w), np.uint16)
    p = sk.Painter(img, owner)
    ids = sk.Ids()
    target, spec = _SCENES.get(violation_class, ("person", {}))
    night = violation_class in OFF_HOURS
    people = [] if violation_class == "老鼠" else [spec] if spec is not None else []
    people += [dict(_COMPLIANT) for _ in range(0 if night else int(rng.integers(0, 3)))]
    # far to near, the one who commits it near the middle of the frame
    feet = sorted(rng.uniform(lay.floor_y + 0.25 * h, h * 1.05, len(people)))
    order = rng.permutation(len(people))
    drawn = []  # (things, is the offender)
    objs = []
    for k, i in enumerate(order):
        objs.append(("person", feet[k], i == 0 and spec is not None and violation_class != "老鼠", people[i]))
    if violation_class == "垃圾桶未盖":
        objs.append(("bin", rng.uniform(lay.floor_y + 0.2 * h, h * 0.95), True, None))
    if violation_class == "老鼠":
        objs.append(("rodent", rng.uniform(lay.floor_y + 0.15 * h, h * 0.9), True, None))
    objs.sort(key=lambda o: o[1])
    xs = iter(np.linspace(0.2, 0.8, max(1, len(objs)))[rng.permutation(max(1, len(objs)))])
    for kind, y, offender, attrs in objs:
        x = float(next(xs)) * w
        if kind == "person":
            s = sk.random_person(rng, lay, x=x, foot_y=y)
            s = replace(s, **{**(_COMPLIANT if not offender else {}), **(attrs or {})})
            if s.facing == "back" and (s.mask is False or s.smoking):
                s = replace(s, facing="front")
            if s.arms == "up" and not (s.phone or s.smoking):
                s = replace(s, arms="work")
            things = sk.draw_person(p, rng, s, ids, lay.tilt)
        elif kind == "bin":
            things = sk.draw_bin(p, rng, x, y, sk._height_at(lay, y) * 0.4, True, ids)
        else:
            size_ = sk._height_at(lay, y) * 0.16
            things = sk.draw_rodent(p, rng, x, y, size_, 1 if rng.random() < 0.5 else -1, ids, rng.uniform(0, 6))
        drawn.append((things, offender))
    f = img.astype(np.float32) * (rng.uniform(0.5, 0.6) if night else rng.uniform(0.9, 1.08))
    f += rng.normal(0, 2.5, f.shape).astype(np.float32)
    img = np.clip(f, 0, 255).astype(np.uint8)
    boxes = []
    for things, offender in drawn:
        for t in things:
            box = sk._bbox(owner, t.ids)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            if t.cls == "person":
                boxes.append(Box(violation_class if offender and target == "person" else LABELS_ZH["person"],
                                 (x0, y0, x1 + 1, y1 + 1), offender and target == "person", person=True))
            elif offender and t.cls == target:
                boxes.append(Box(violation_class, (x0, y0, x1 + 1, y1 + 1), True))
    return img, boxes


def write_snapshots(violations: pd.DataFrame) -> int:
    """Render and keep, as the camera watcher would (workbench.canteen.evidence.save_frame: faces
    blurred in the shown copy, the clean copy for review), the snapshot of each violation that
    records one (`snapshot` set by violations(): the ones the feed shows first). `violations` as
    violations() makes them (naive local `ts`); each image is deterministic for its violation and
    camera. Existing files are kept. Returns how many were written."""
    import zlib

    from workbench import config
    from workbench.canteen import evidence

    n = 0
    if violations.empty or "snapshot" not in violations:
        return n
    for r in violations[violations["snapshot"].notna()].itertuples(index=False):
        ts_utc = pd.Timestamp(r.ts).tz_localize(config.TZ).tz_convert("UTC").tz_localize(None)
        if evidence.find_snapshot(r.violation_id, r.camera_id, ts_utc) is not None:
            continue
        rng = np.random.default_rng([zlib.crc32(f"{r.violation_id}|{r.camera_id}".encode()), 15])
        img, boxes = render_violation(r.violation_class, rng)
        # every person in a rendered frame is known: their head regions are blurred, no face search
        evidence.save_frame(r.violation_id, r.camera_id, ts_utc.to_pydatetime(), img, boxes, everyone_boxed=True)
        n += 1
    return n
