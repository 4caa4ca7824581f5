"""A corpus of real-shaped exports (written here), through the generic ingest, on SQLite and PostgreSQL.

Each file asserts its counts, its conversions and that nothing is lost: every row read is loaded,
quarantined, a duplicate, an update or a conflict; every column is a field, kept with its row or
kept in quarantine as the file wrote it. The departments test their own exports (the 12345 work
orders, a market's names and "≥50%", weather rules); this file tests the generic parts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbench.store import hub, ingest
from workbench.store.ingest import AMBIGUOUS_TIME, NONEXISTENT_TIME, IngestError, ingest_file


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def accounted(s) -> bool:
    return s.rows_read == s.loaded + s.quarantined + s.duplicates + s.updated + s.conflicts + s.older


def quarantined(eng, dataset) -> pd.DataFrame:
    return hub.quarantine_rows(dataset, eng=eng).sort_values("line").reset_index(drop=True)


def weather(eng) -> pd.DataFrame:
    return hub.read("weather", eng=eng).sort_values("ts").reset_index(drop=True)


def profile_file(path: Path, text: str) -> Path:
    return write(path, text)


# ------------------------------------------------------------------------------ units in headers

WX_UNITS = ("站点编号,观测时间,气温(℉),降水量（inch）,风速(km/h),相对湿度(%),能见度\n"
            "K01,2026-01-05 08:00,32,0.1,36,80,10\n"
            "K01,2026-01-05 09:00,41,0,18,75,9\n"
            "K01,2026-01-05 10:00,50,,7.2,70,\n")


def test_units_in_headers_are_converted_and_reported(hub_engine, tmp_path):
    s = ingest_file("weather", write(tmp_path / "wx.csv", WX_UNITS), hub_engine)
    assert (s.rows_read, s.loaded, s.quarantined) == (3, 3, 0) and accounted(s)
    said = " ".join(s.conversions)
    assert len(s.conversions) == 3 and all(u in said for u in ("℉ → ℃", "inch → mm", "km/h → m/s"))
    assert "气温(℉)" in said and "表头" in said          # which column, and who declared the unit
    df = weather(hub_engine)
    assert df["temperature"].tolist() == pytest.approx([0.0, 5.0, 10.0])
    assert df["precipitation"].iloc[0] == pytest.approx(2.54) and pd.isna(df["precipitation"].iloc[2])
    assert df["wind_speed"].tolist() == pytest.approx([10.0, 5.0, 2.0])
    assert df["humidity"].tolist() == pytest.approx([80, 75, 70])     # % is the stored unit: unchanged
    # the unknown column is kept with its rows, listed, and queryable
    assert s.unknown_columns == ["能见度"]
    ex = ingest.extras("weather", eng=hub_engine).sort_values("ts").reset_index(drop=True)
    assert ex["能见度"].tolist() == ["10", "9"]            # the blank cell adds nothing
    assert list(ex.columns) == ["station_id", "ts", "issued_at", "能见度"]
    log = hub.ingest_log(eng=hub_engine).iloc[0]
    notes = json.loads(log["notes"])
    assert notes["unknown_columns"] == ["能见度"] and len(notes["conversions"]) == 3


def test_an_implausible_column_stops_with_one_message_naming_the_unit(hub_engine, tmp_path):
    rows = "".join(f"K01,2026-07-05 {h:02d}:00,{70 + h}\n" for h in range(14))   # ℉ read as ℃
    path = write(tmp_path / "summer.csv", "站点编号,观测时间,气温\n" + rows)
    with pytest.raises(IngestError) as err:
        ingest_file("weather", path, hub_engine)
    msg = str(err.value)
    assert "summer.csv" in msg and "气温" in msg and "℉" in msg and "气温(℉)" in msg
    assert len(weather(hub_engine)) == 0 and len(quarantined(hub_engine, "weather")) == 0
    # declared, the same numbers load
    fixed = write(tmp_path / "summer_f.csv", "站点编号,观测时间,气温(℉)\n" + rows)
    s = ingest_file("weather", fixed, hub_engine)
    assert s.loaded == 14 and weather(hub_engine)["temperature"].iloc[0] == pytest.approx((70 - 32) * 5 / 9)


# ------------------------------------------------------------------------------ nothing lost

def test_a_quarantined_row_is_kept_whole_as_raw_text(hub_engine, tmp_path):
    text = ("市场编号,市场名称,区县,摊位数,负责人电话,备注\n"
            "M01,建设农贸市场,芦淞区,45,0731-2888,\n"
            "M02,月塘农贸市场,荷塘区,四十,,  两层  \n")     # 四十: not a number
    s = ingest_file("markets", write(tmp_path / "m.csv", text, "gbk"), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 1) and accounted(s)
    q = quarantined(hub_engine, "markets")
    assert q.loc[0, "reason"] == "摊位数不是整数" and q.loc[0, "line"] == 3
    assert json.loads(q.loc[0, "row_json"]) == {"市场编号": "M02", "市场名称": "月塘农贸市场", "区县": "荷塘区",
                                               "摊位数": "四十", "负责人电话": "", "备注": "  两层  "}
    assert s.unknown_columns == ["负责人电话", "备注"]
    assert ingest.extras("markets", eng=hub_engine).to_dict("records") == [
        {"market_id": "M01", "负责人电话": "0731-2888"}]


def test_a_correction_updates_and_keeps_the_old_values(hub_engine, tmp_path):
    head = "市场编号,市场名称,区县,摊位数\n"
    first = ingest_file("markets", write(tmp_path / "a.csv", head + "M01,建设农贸市场,芦淞区,45\nM02,月塘农贸市场,荷塘区,38\n"),
                        hub_engine)
    assert first.loaded == 2
    # the same key with newer content: updated, the replaced values kept; M02 identical: a duplicate
    again = ingest_file("markets", write(tmp_path / "b.csv", head + "M01,建设路农贸市场,芦淞区,50\nM02,月塘农贸市场,荷塘区,38\n"),
                        hub_engine)
    assert (again.loaded, again.updated, again.duplicates, again.conflicts) == (0, 1, 1, 0) and accounted(again)
    held = hub.read("markets", eng=hub_engine).set_index("market_id")
    assert held.loc["M01", "name"] == "建设路农贸市场" and held.loc["M01", "stall_count"] == 50
    v = ingest.versions("markets", eng=hub_engine)
    assert len(v) == 1 and json.loads(v.loc[0, "row_key"]) == ["M01"]
    assert json.loads(v.loc[0, "old_json"]) == {"name": "建设农贸市场", "stall_count": 45.0}
    assert json.loads(v.loc[0, "new_json"]) == {"name": "建设路农贸市场", "stall_count": 50.0}
    assert v.loc[0, "file_sha256"] == again.sha256
    # a source whose first version wins: a conflict counted, the hub unchanged
    pf = profile_file(tmp_path / "first.yaml", "dataset: markets\ncorrections: first\n")
    third = ingest_file("markets", write(tmp_path / "c.csv", head + "M01,建设农贸市场（新）,芦淞区,60\n"), hub_engine,
                        profile=str(pf))
    assert (third.loaded, third.updated, third.conflicts) == (0, 0, 1) and accounted(third)
    assert hub.read("markets", eng=hub_engine).set_index("market_id").loc["M01", "name"] == "建设路农贸市场"
    assert len(ingest.versions("markets", eng=hub_engine)) == 1
    # a file without a column corrects nothing to empty
    fourth = ingest_file("markets", write(tmp_path / "d.csv", "市场编号,市场名称\nM02,月塘农贸市场\n"), hub_engine)
    assert fourth.duplicates == 1 and hub.read("markets", eng=hub_engine).set_index("market_id").loc["M02", "stall_count"] == 38


# ------------------------------------------------------------------------------ time zones

NY_ROWS = ("station_id,ts,temperature\n"
           "JFK,2013-03-10 01:30,0\n"     # before the spring gap
           "JFK,2013-03-10 02:30,0\n"     # in the gap: never on New York's clocks
           "JFK,2013-07-01 12:00,25\n"    # summer: EDT, UTC-4
           "JFK,2013-11-03 01:30,5\n"     # passed twice (EDT, then EST)
           "JFK,2013-12-01 12:00,2\n")    # winter: EST, UTC-5


def ny_profile(tmp_path, **policy) -> Path:
    extra = "".join(f"{k}: {v}\n" for k, v in policy.items())
    return profile_file(tmp_path / "ny.yaml", f"dataset: weather\ntimezone: America/New_York\n{extra}"
                                              "defaults: {kind: observed}\nplausible: {temperature: [-30, 45]}\n")


def test_time_zone_profile_quarantines_wall_times_it_cannot_place(hub_engine, tmp_path):
    s = ingest_file("weather", write(tmp_path / "ny.csv", NY_ROWS), hub_engine, profile=str(ny_profile(tmp_path)))
    assert (s.loaded, s.quarantined) == (3, 2) and accounted(s)
    assert s.reasons == {NONEXISTENT_TIME: 1, AMBIGUOUS_TIME: 1}
    q = quarantined(hub_engine, "weather")
    assert list(q["line"]) == [3, 5] and "America/New_York" in q.loc[0, "detail"]
    assert json.loads(q.loc[1, "row_json"])["ts"] == "2013-11-03 01:30"
    got = weather(hub_engine)["ts"].map(pd.Timestamp).tolist()
    assert got == [pd.Timestamp("2013-03-10 06:30"), pd.Timestamp("2013-07-01 16:00"), pd.Timestamp("2013-12-01 17:00")]


@pytest.mark.parametrize("ambiguous,nonexistent,amb_utc,gap_utc", [
    ("earliest", "shift_forward", "2013-11-03 05:30", "2013-03-10 07:00"),
    ("latest", "shift_backward", "2013-11-03 06:30", "2013-03-10 06:59:59.999999"),
])
def test_time_zone_policies_place_them_as_declared(hub_engine, tmp_path, ambiguous, nonexistent, amb_utc, gap_utc):
    prof = ny_profile(tmp_path, ambiguous=ambiguous, nonexistent=nonexistent)
    s = ingest_file("weather", write(tmp_path / "ny.csv", NY_ROWS), hub_engine, profile=str(prof))
    assert (s.loaded, s.quarantined) == (5, 0)
    got = set(weather(hub_engine)["ts"].map(pd.Timestamp))
    assert pd.Timestamp(amb_utc) in got
    assert any(abs(t - pd.Timestamp(gap_utc)) < pd.Timedelta("1ms") for t in got)


# ------------------------------------------------------------------------------ names to codes

MARKETS = ("市场编号,市场名称,区县\n"
           "M01,建设农贸市场,荷塘\n"        # short name
           "M02,月塘农贸市场,430202\n"      # adcode
           "M03,田心农贸市场,株洲县\n"      # former name
           "M04,田心农贸市场,石峰区\n")     # the same name twice: ambiguous


def test_districts_by_short_name_adcode_and_former_name(hub_engine, tmp_path):
    s = ingest_file("markets", write(tmp_path / "m.csv", MARKETS), hub_engine)
    assert s.loaded == 4
    d = hub.read("markets", eng=hub_engine).set_index("market_id")["district"].to_dict()
    assert d == {"M01": "荷塘区", "M02": "荷塘区", "M03": "渌口区", "M04": "石峰区"}


def test_market_and_canteen_names_become_codes(hub_engine, tmp_path):
    ingest_file("markets", write(tmp_path / "m.csv", MARKETS), hub_engine)
    text = ("检测编号,检测时间,市场名称,样品名称,检测项目,检测值,检测结果\n"
            "T1,2026-01-05 09:00,建设农贸市场,韭菜,有机磷,12,阴性\n"
            "T2,2026-01-05 09:10, 月塘农贸市场 ,韭菜,有机磷,12,阴性\n"
            "T3,2026-01-05 09:20,月塘市场,韭菜,有机磷,12,阴性\n"
            "T4,2026-01-05 09:30,田心农贸市场,韭菜,有机磷,12,阴性\n")
    s = ingest_file("rapid_tests", write(tmp_path / "t.csv", text), hub_engine)
    assert (s.loaded, s.quarantined) == (2, 2) and accounted(s)
    assert hub.read("rapid_tests", eng=hub_engine).set_index("test_id")["market_id"].to_dict() == {"T1": "M01", "T2": "M02"}
    q = quarantined(hub_engine, "rapid_tests")
    assert q.loc[0, "reason"] == "未登记的农贸市场" and "最接近：月塘农贸市场" in q.loc[0, "detail"]
    assert q.loc[1, "reason"] == "农贸市场名称对应多个编号" and "M03、M04" in q.loc[1, "detail"]
    assert json.loads(q.loc[1, "row_json"])["市场名称"] == "田心农贸市场"
    # canteens alike (cameras name their canteen)
    ingest_file("canteens", write(tmp_path / "c.csv", "食堂编号,食堂名称\nC01,建设小学食堂\nC02,月塘中学食堂\n"),
                hub_engine)
    cams = ("摄像头编号,食堂名称,安装位置\nCAM1,建设小学食堂,后厨\nCAM2,月塘中学食堂,备餐间\nCAM3,建设中学食堂,后厨\n")
    s = ingest_file("cameras", write(tmp_path / "cam.csv", cams), hub_engine)
    assert (s.loaded, s.quarantined) == (2, 1)
    assert hub.read("cameras", eng=hub_engine).set_index("camera_id")["canteen_id"].to_dict() == {"CAM1": "C01", "CAM2": "C02"}
    q = quarantined(hub_engine, "cameras")
    assert q.loc[0, "reason"] == "未登记的学校食堂" and "建设中学食堂" in q.loc[0, "detail"]


# ------------------------------------------------------------------------------ personal data

def test_personal_fields_stored_apart_and_numbers_in_text_masked(hub_engine, tmp_path):
    text = ("工单编号,来电时间,诉求类型,诉求内容,诉求人,联系电话,证件号码,纬度,经度\n"
            "W1,2026-01-05 08:00,施工噪音,工地夜间施工，联系人电话13812345678,王小明,13812345678,"
            "430202199001011234,27.86,113.17\n"
            "W2,2026-01-05 09:00,施工噪音,工地扬尘严重,,,,27.86,113.17\n")
    s = ingest_file("city_events", write(tmp_path / "e.csv", text), hub_engine)
    assert s.loaded == 2 and accounted(s)
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert ev.loc["W1", "description"] == "工地夜间施工，联系人电话138****5678"
    assert ev.loc["W2", "description"] == "工地扬尘严重"
    assert not any(c.startswith("reporter") for c in ev.columns)
    kept = hub.query("select row_key, field, value from personal_data where dataset = 'city_events'", eng=hub_engine)
    assert set(kept["row_key"]) == {'["W1"]'}
    assert dict(zip(kept["field"], kept["value"])) == {
        "reporter_name": "王小明", "reporter_phone": "13812345678", "reporter_id_no": "430202199001011234",
        "description": "工地夜间施工，联系人电话13812345678"}


# ------------------------------------------------------------------------------ preview and the CLI

def nothing_written(eng, data_dir: Path, dataset: str) -> bool:
    raw = data_dir / "raw"
    return (not (raw.exists() and any(p.is_file() for p in raw.rglob("*")))
            and hub.ingest_log(eng=eng).empty and hub.quarantine_rows(eng=eng).empty
            and hub.read(dataset, eng=eng).empty)


def test_preview_reads_everything_and_writes_nothing(hub_engine, tmp_path):
    text = WX_UNITS + "K01,不是时间,40,0,10,70,8\n"
    s = ingest_file("weather", write(tmp_path / "wx.csv", text), hub_engine, preview=True)
    assert (s.rows_read, s.loaded, s.quarantined) == (4, 3, 1)
    assert s.preview is not None and len(s.preview.sample) == 3 and s.preview.unknown == ["能见度"]
    assert s.preview.sample[0]["气温(°C)"] == "0" and s.preview.quarantine_sample[0]["行号"] == 5
    assert any(m["column"] == "气温(℉)" and m["unit"] == "℉ → ℃" for m in s.preview.mapping)
    assert nothing_written(hub_engine, tmp_path / "data", "weather")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


def test_cli_preview_and_profile(hub_engine, tmp_path):
    data = ("origin,time_hour,temp,wind_speed,precip,dewp\n"
            "JFK,2013-01-01 01:00:00,39.02,10.35702,0,26.06\n"
            "JFK,2013-01-01 02:00:00,39.02,13.80936,0,26.96\n")
    path = write(tmp_path / "nyc.csv", data)
    r = run_cli("ingest", "weather", str(path), "--profile", "nycflights13_weather", "--preview")
    assert r.returncode == 0, r.stderr
    assert "预览（未写入任何数据）nyc.csv，配置 nycflights13_weather" in r.stdout
    assert "temp → " in r.stdout and "℉ → ℃" in r.stdout and "将入库 2 行" in r.stdout
    assert nothing_written(hub_engine, tmp_path / "data", "weather")
    r = run_cli("ingest", "weather", str(path), "--profile", "nycflights13_weather", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["loaded"], out["quarantined"], out["profile"]) == (2, 0, "nycflights13_weather")
    assert out["unknown_columns"] == ["dewp"] and len(out["conversions"]) == 3
    df = weather(hub_engine)
    assert pd.Timestamp(df["ts"].iloc[0]) == pd.Timestamp("2013-01-01 06:00")   # New York's clock, not Beijing's
    assert df["temperature"].iloc[0] == pytest.approx(3.9, abs=0.01)
    r = run_cli("ingest", "weather", str(path), "--profile", "no_such_profile")
    assert r.returncode != 0 and "no_such_profile" in r.stderr


# ------------------------------------------------------------------------------ bad input

def test_an_unknown_unit_names_file_column_and_unit_and_good_rows_load(hub_engine, tmp_path):
    text = ("站点编号,观测时间,风速(furlong/fortnight),气温\n"
            "K01,2026-01-05 08:00,3,5\n"
            "K01,2026-01-05 09:00,,6\n")
    s = ingest_file("weather", write(tmp_path / "odd.csv", text), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 1) and accounted(s)
    w = next(w for w in s.warnings if "furlong/fortnight" in w)
    assert "odd.csv" in w and "风速(furlong/fortnight)" in w
    q = quarantined(hub_engine, "weather")
    assert q.loc[0, "reason"] == "单位无法识别" and "furlong/fortnight" in q.loc[0, "detail"]
    assert json.loads(q.loc[0, "row_json"])["风速(furlong/fortnight)"] == "3"


def test_a_profile_column_the_file_lacks(hub_engine, tmp_path):
    prof = profile_file(tmp_path / "p.yaml", "dataset: weather\ncolumns: {站名: station_id, 时间: ts, 雪深: '~'}\n")
    s = ingest_file("weather", write(tmp_path / "w.csv", "站名,时间,气温\nK01,2026-01-05 08:00,5\n"), hub_engine,
                    profile=str(prof))
    assert s.loaded == 1 and any("雪深" in w and "w.csv" in w for w in s.warnings)
    with pytest.raises(IngestError) as err:   # a required one: a clear stop
        ingest_file("weather", write(tmp_path / "x.csv", "时间,气温\n2026-01-05 08:00,5\n"), hub_engine, profile=str(prof))
    assert "x.csv" in str(err.value) and "站点编号" in err.value.problem and "“站名”" in err.value.problem


def test_a_value_map_that_does_not_cover_a_value(hub_engine, tmp_path):
    prof = profile_file(tmp_path / "p.yaml", "dataset: hazards\nvalues:\n  level: {一般隐患: 一般, 重大隐患: 重大}\n")
    text = ("隐患编号,点位编号,隐患类型,隐患等级,发现时间\n"
            "H1,S1,消防通道堵塞,一般隐患,2026-01-05 09:00\n"
            "H2,S1,燃气管道老化,较大隐患,2026-01-05 09:00\n")
    s = ingest_file("hazards", write(tmp_path / "h.csv", text), hub_engine, profile=str(prof))
    assert (s.loaded, s.quarantined) == (1, 1) and accounted(s)
    q = quarantined(hub_engine, "hazards")
    assert q.loc[0, "reason"] == "值映射未覆盖：隐患等级"
    assert "隐患等级" in q.loc[0, "detail"] and "较大隐患" in q.loc[0, "detail"]
    assert hub.read("hazards", eng=hub_engine)["level"].tolist() == ["一般"]


@pytest.mark.parametrize("yaml_text,problem", [
    ("dataset: markets\n", "是农贸市场（markets）的"),
    ("dataset: weather\ncolumns: [unclosed\n", "YAML 格式错误"),
    ("- just\n- a list\n", "至少写明 dataset"),
    ("dataset: weather\ncolumns: {temp: no_such_field}\n", "no_such_field"),
    ("dataset: weather\ntimezone: Mars/Olympus\n", "无法识别的时区"),
])
def test_unusable_profiles_stop_before_reading(hub_engine, tmp_path, yaml_text, problem):
    prof = profile_file(tmp_path / "bad.yaml", yaml_text)
    with pytest.raises(IngestError) as err:
        ingest_file("weather", write(tmp_path / "w.csv", WX_UNITS), hub_engine, profile=str(prof))
    assert problem in err.value.problem and "w.csv" in str(err.value)
    assert hub.read("weather", eng=hub_engine).empty


def test_fraction_and_knots_are_converted(hub_engine, tmp_path):
    text = ("站点编号,观测时间,相对湿度(fraction),风速(kt),气温(K)\n"
            "K01,2026-01-05 08:00,0.85,10,273.15\n"
            "K01,2026-01-05 09:00,0.5,0,283.15\n")
    s = ingest_file("weather", write(tmp_path / "w.csv", text), hub_engine)
    assert s.loaded == 2 and len(s.conversions) == 3
    df = weather(hub_engine)
    assert df["humidity"].tolist() == pytest.approx([85.0, 50.0])
    assert df["wind_speed"].tolist() == pytest.approx([5.14444, 0.0])
    assert df["temperature"].tolist() == pytest.approx([0.0, 10.0])
