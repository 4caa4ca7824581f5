"""Linkage (联动) benchmark: a year of alerts of a sample-sized city through the linkage rules,
and the seconds from a positive rapid test's ingest to the schools' notice cases.

Fill (fast, through the real APIs, into a fresh temporary hub): markets, canteens (each buying
from 2–3 markets), cameras, grids, hazard sites and hazards, and a year of alerts raised through
workbench.alerts: N 快检阳性 (each with its rapid-test row), cold-weather warnings (寒潮, 道路结冰,
暴雪; lifted), critical kitchen violations, cameras offline (half past 24 h), overdue major hazards.

Measures: `linkage.run` over all of it (goal < 30 s) with the cases opened per rule, the rerun
(idempotent: opens nothing), and the path of one new positive: a one-row file through
`workbench.store.ingest.ingest_file` (the market's loader raises the 快检阳性 alert as the row
loads), the fast path that would catch a positive without one
(`workbench.market.analysis.raise_positive_alerts`, nothing left to do) and
`linkage.run(departments=["market"])`.

    .venv/bin/python benchmarks/linkage_bench.py [--positives 5000] [--seed 7] [--db URL]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fill(eng, n_pos: int, seed: int) -> dict:
    from workbench import alerts, geo
    from workbench.market.catalog import goods_of
    from workbench.store.ingest import insert_new
    from workbench.store.schema import DATASETS

    rng = np.random.default_rng(seed)
    districts = [d.name for d in geo.DISTRICTS]
    end = pd.Timestamp("2025-12-31 16:00")
    start = end - pd.Timedelta(days=365)

    def put(name, df):
        with eng.begin() as conn:
            insert_new(conn, DATASETS[name], df)

    n_mk, n_ct = 36, 150  # the sample city's markets and school canteens (workbench/synth)
    mk = pd.DataFrame({"market_id": [f"M{i:03d}" for i in range(n_mk)], "name": [f"第{i}农贸市场" for i in range(n_mk)],
                       "district": rng.choice(districts, n_mk)})
    ct = pd.DataFrame({"canteen_id": [f"C{i:04d}" for i in range(n_ct)], "name": [f"学校{i}食堂" for i in range(n_ct)],
                       "school_name": [f"株洲市第{i}学校" for i in range(n_ct)], "district": rng.choice(districts, n_ct)})
    # what each canteen buys there, as the sample city's purchase lists say it
    goods = ["蔬菜", "蔬菜、肉类", "水产、肉类", "蔬菜、水果", "粮油、干货", "肉类", "蔬菜、豆制品"]
    sup = pd.DataFrame([{"canteen_id": c, "market_id": m, "goods": goods[int(rng.integers(0, len(goods)))]}
                        for c in ct["canteen_id"] for m in rng.choice(mk["market_id"], rng.integers(1, 4), replace=False)])
    cams = pd.DataFrame({"camera_id": [f"CAM{i:04d}" for i in range(n_ct)], "canteen_id": ct["canteen_id"],
                         "location": "后厨"})
    grids = pd.DataFrame([{"grid_id": f"G{k:03d}{j}", "district": d, "street": f"{d}第{j}街道"}
                          for k, d in enumerate(districts) for j in range(3)])
    sites = pd.DataFrame({"site_id": [f"S{i:03d}" for i in range(200)], "site_type": "燃气站",
                          "name": [f"调压站{i}" for i in range(200)], "district": rng.choice(districts, 200)})
    hz = pd.DataFrame({"hazard_id": [f"H{i:03d}" for i in range(200)], "site_id": sites["site_id"], "hazard_type": "燃气泄漏",
                       "level": "重大", "ts": start, "deadline": start + pd.Timedelta(days=30), "district": sites["district"]})
    for name, df in (("markets", mk), ("canteens", ct), ("canteen_suppliers", sup), ("cameras", cams),
                     ("grids", grids), ("hazard_sites", sites), ("hazards", hz)):
        put(name, df)

    ts = start + pd.to_timedelta(np.sort(rng.uniform(0, 365 * 86400, n_pos)), unit="s")
    tests = pd.DataFrame({"test_id": [f"T{i:06d}" for i in range(n_pos)], "ts": ts.floor("s"),
                          "market_id": rng.choice(mk["market_id"], n_pos),
                          "commodity": rng.choice(["韭菜", "芹菜", "猪肉", "草鱼", "草莓"], n_pos, p=[.4, .2, .2, .1, .1]),
                          "test_item": "有机磷和氨基甲酸酯类农药残留", "reading": 60.0, "unit": "%",
                          "threshold": 50.0, "result": "阳性"})
    tests["stall_id"] = tests["market_id"] + "-S01"
    tests["district"] = tests["market_id"].map(mk.set_index("market_id")["district"])
    put("rapid_tests", tests)
    rows = []
    for r in tests.itertuples():
        rows.append({"alert_id": f"MKT-POS-{r.test_id}", "ts": r.ts, "department": "市场监管局", "category": "快检阳性",
                     "severity": "warning", "title": f"{r.market_id} {r.commodity} 阳性", "district": r.district,
                     "subject": f"rapid_tests:{r.test_id}",
                     "attrs": {"test_id": r.test_id, "market_id": r.market_id, "stall_id": r.stall_id,
                               "commodity": r.commodity, "test_item": r.test_item, "district": r.district,
                               "goods": goods_of(r.commodity)}})
    for i in range(120):  # cold-weather warnings, one per district-episode, lifted
        d, sig = districts[i % len(districts)], ["寒潮", "道路结冰", "暴雪"][i % 3]
        t0 = start + pd.Timedelta(days=int(rng.integers(0, 80)), hours=int(rng.integers(0, 24)))
        rows.append({"alert_id": f"W-{i:04d}", "ts": t0, "department": "应急管理局", "category": sig, "severity": "warning",
                     "level": "黄色", "title": f"{d}{sig}黄色预警", "area": d, "district": d, "status": "已解除",
                     "valid_from": t0, "valid_to": t0 + pd.Timedelta(hours=30), "attrs": {"district": d, "area": d}})
    for i in range(600):  # critical kitchen violations
        c = ct.iloc[int(rng.integers(0, n_ct))]
        rows.append({"alert_id": f"CV-{i:05d}", "ts": start + pd.Timedelta(hours=int(rng.integers(0, 8700))),
                     "department": "市场监管局", "category": "明厨亮灶严重违规", "severity": "critical",
                     "title": f"{c.school_name}后厨发现老鼠", "subject": f"canteen_violations:V{i:05d}",
                     "attrs": {"violation_id": f"V{i:05d}", "canteen_id": c.canteen_id, "camera_id": f"CAM{c.canteen_id[1:]}",
                               "violation_class": "老鼠", "district": c.district}})
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    for i in range(100):  # cameras offline now: half for more than 24 h (some more than once: one alert each)
        rows.append({"alert_id": f"OFF-{i:04d}", "ts": now - pd.Timedelta(hours=30 if i % 2 else 5), "department": "市场监管局",
                     "category": "摄像头离线", "severity": "warning", "title": f"CAM{i:04d} 离线",
                     "subject": f"cameras:CAM{i % n_ct:04d}", "attrs": {"camera_id": f"CAM{i % n_ct:04d}", "canteen_id": f"C{i % n_ct:04d}"}})
    for i in range(50):
        h = hz.iloc[i]
        rows.append({"alert_id": f"HZO-{h.hazard_id}", "ts": h.deadline, "department": "应急管理局", "category": "重大隐患逾期",
                     "severity": "critical", "title": f"重大隐患 {h.hazard_id} 逾期", "subject": f"hazards:{h.hazard_id}",
                     "district": h.district, "attrs": {"hazard_id": h.hazard_id, "site_id": h.site_id, "district": h.district}})
    t0 = time.perf_counter()
    res = alerts.publish(eng, pd.DataFrame(rows), actor="基准测试")
    return {"alerts": res["new"], "publish_s": time.perf_counter() - t0, "markets": mk, "suppliers": sup}


def one_positive(eng, tmp: Path, mk: pd.DataFrame, sup: pd.DataFrame) -> dict:
    """A one-row rapid-test file → ingest → the market's fast alert → linkage → notices."""
    from workbench import linkage
    from workbench.market.analysis import raise_positive_alerts
    from workbench.store.ingest import ingest_file

    market = sup["market_id"].value_counts().index[0]
    schools = int(((sup["market_id"] == market) & sup["goods"].str.contains("蔬菜")).sum())  # buy vegetables there
    ts = pd.Timestamp.now(tz="Asia/Shanghai").tz_localize(None).floor("s")
    path = tmp / "one_positive.csv"
    path.write_text("检测编号,检测时间,市场编号,摊位编号,样品名称,检测项目,检测值,单位,判定限值,检测结果\n"
                    f"TNEW1,{ts:%Y-%m-%d %H:%M:%S},{market},{market}-S01,韭菜,有机磷和氨基甲酸酯类农药残留,71.5,%,50,阳性\n",
                    encoding="utf-8")
    t0 = time.perf_counter()
    s = ingest_file("rapid_tests", path, eng, progress=False)  # the market's loader raises 快检阳性 as it loads
    t1 = time.perf_counter()
    a = raise_positive_alerts(eng, since=pd.Timestamp(ts) - pd.Timedelta(days=1))  # the fast path: nothing left
    t2 = time.perf_counter()
    lk = linkage.run(eng, departments=["market"], since=pd.Timestamp(ts) - pd.Timedelta(days=1))
    t3 = time.perf_counter()
    ch = linkage.chain("MKT-POS-TNEW1", eng)
    notices = int((ch.cases["case_type"] == "school_notice").sum())
    return {"loaded": s.loaded, "alerts_new": a["new"], "schools": schools, "notices": notices,
            "followups": int((ch.cases["case_type"] == "market_followup").sum()),
            "ingest_s": t1 - t0, "alert_s": t2 - t1, "linkage_s": t3 - t2, "total_s": t3 - t0, "opened": lk["opened"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positives", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--db", default=None, help="hub URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="linkage_bench_"))
    url = args.db or f"sqlite:///{tmp / 'city.db'}"
    os.environ["WORKBENCH_DB_URL"] = url
    os.environ["WORKBENCH_DATA_DIR"] = str(tmp / "data")
    from workbench import linkage
    from workbench.store import hub

    eng = hub.engine(url)
    print(f"机器：{platform.platform()}，Python {platform.python_version()}，CPU {os.cpu_count()} 核；数据中台 {hub.backend(eng)}")
    f = fill(eng, args.positives, args.seed)
    print(f"告警（一年）：{f['alerts']} 条经告警接口发布，用时 {f['publish_s']:.1f} 秒")
    t0 = time.perf_counter()
    s = linkage.run(eng)
    wall = time.perf_counter() - t0
    for p in s["per_rule"]:
        print(f"  {p['rule']:32s} 告警 {p['alerts']:>6d}  新开案件 {p['opened']:>6d}  {p['seconds']:6.2f} 秒")
    print(f"联动全年告警：{s['alerts']} 条告警 → {s['opened']} 件案件，用时 {wall:.2f} 秒（目标 < 30 秒）")
    t0 = time.perf_counter()
    again = linkage.run(eng)
    print(f"重跑：新开 {again['opened']} 件，用时 {time.perf_counter() - t0:.2f} 秒")
    one = one_positive(eng, tmp, f["markets"], f["suppliers"])
    print(f"单条快检阳性：入库并发布告警 {one['ingest_s']:.2f} 秒 + 补发检查 {one['alert_s']:.2f} 秒 + 联动 {one['linkage_s']:.2f} 秒"
          f" = {one['total_s']:.2f} 秒 → 跟踪处置 {one['followups']} 件、学校通报 {one['notices']}/{one['schools']} 件")
    hub.dispose(url)
    ok = again["opened"] == 0 and one["notices"] == one["schools"] and one["followups"] == 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
