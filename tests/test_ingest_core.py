"""Review of the issue-12 ingest core: each test failed before its fix (SQLite and PostgreSQL)."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from workbench.store import hub, ingest, profiles
from workbench.store.ingest import AMBIGUOUS_TIME, IngestError, ingest_file

RT_HEADER = "检测编号,检测时间,市场编号,样品名称,检测项目,检测值,检测结果"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def quarantined(eng, dataset) -> pd.DataFrame:
    return hub.quarantine_rows(dataset, eng=eng).sort_values("line").reset_index(drop=True)


def test_a_date_is_the_day_written_not_moved_by_the_city_zone(hub_engine, tmp_path):
    # a calendar day read as Beijing midnight and turned into UTC became the day before
    text = (RT_HEADER + ",试剂有效期\n"
            "T1,2026-01-05 09:00,M01,韭菜,有机磷,12,阴性,2025-12-31\n"
            "T2,2026-01-05 09:10,M01,韭菜,有机磷,12,阴性,2026年3月1日\n")
    s = ingest_file("rapid_tests", write(tmp_path / "t.csv", text), hub_engine)
    assert s.loaded == 2
    df = hub.read("rapid_tests", eng=hub_engine).set_index("test_id")
    assert pd.Timestamp(df.loc["T1", "reagent_expiry"]).date() == date(2025, 12, 31)
    assert pd.Timestamp(df.loc["T2", "reagent_expiry"]).date() == date(2026, 3, 1)


def test_an_ambiguous_required_time_is_reported_once(hub_engine, tmp_path):
    prof = profiles.from_dict({"name": "ny", "dataset": "weather", "timezone": "America/New_York",
                               "defaults": {"kind": "observed"}})
    text = ("station_id,ts,temperature\n"
            "JFK,2013-11-03 00:00,10\n"
            "JFK,2013-11-03 01:00,10\n")   # 01:00 happens twice that night
    s = ingest_file("weather", write(tmp_path / "w.csv", text), hub_engine, profile=prof)
    assert (s.loaded, s.quarantined) == (1, 1)
    q = quarantined(hub_engine, "weather")
    assert q.loc[0, "reason"] == AMBIGUOUS_TIME          # not also "缺少观测时间"
    assert "America/New_York" in q.loc[0, "detail"]


def test_xlsx_cells_right_of_the_header_are_not_dropped(hub_engine, tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["市场编号", "市场名称", "区县"])
    ws.append(["M01", "建设农贸市场", "芦淞区"])
    ws.append(["M02", "月塘农贸市场", "荷塘区", None, "另有说明"])   # a value under no header
    path = tmp_path / "markets.xlsx"
    wb.save(path)
    s = ingest_file("markets", path, hub_engine)
    assert (s.rows_read, s.loaded, s.quarantined) == (2, 1, 1)
    q = quarantined(hub_engine, "markets")
    assert q.loc[0, "reason"] == "字段数与表头不符" and q.loc[0, "line"] == 3
    assert json.loads(q.loc[0, "row_json"])["多余的第5列"] == "另有说明"


def test_blank_and_repeated_header_names_lose_no_cell(hub_engine, tmp_path):
    text = ("市场编号,市场名称,备注,备注,\n"
            "M01,建设农贸市场,一,二,三\n"
            "M02,月塘农贸市场,四,五,\n"
            "M03,田心农贸市场,六,七,八,九\n")   # malformed: one field too many
    s = ingest_file("markets", write(tmp_path / "m.csv", text), hub_engine)
    assert (s.loaded, s.quarantined) == (2, 1)
    assert s.unknown_columns == ["备注", "备注(2)"]    # the unnamed column is kept, not listed
    ex = ingest.extras("markets", eng=hub_engine).set_index("market_id")
    assert ex.loc["M01"].to_dict() == {"备注": "一", "备注(2)": "二", "第5列": "三"}
    row = json.loads(quarantined(hub_engine, "markets").loc[0, "row_json"])
    assert row == {"市场编号": "M03", "市场名称": "田心农贸市场", "备注": "六", "备注(2)": "七", "第5列": "八",
                   "多余的第6列": "九"}


def test_preview_counts_conflicts_under_a_first_wins_profile(hub_engine, tmp_path):
    text = "市场编号,市场名称\nM01,建设农贸市场\n"
    ingest_file("markets", write(tmp_path / "a.csv", text), hub_engine)
    prof = profiles.from_dict({"name": "first", "dataset": "markets", "corrections": "first"})
    resent = write(tmp_path / "b.csv", "市场编号,市场名称\nM01,建设路农贸市场\n")
    pv = ingest_file("markets", resent, hub_engine, profile=prof, preview=True)
    real = ingest_file("markets", resent, hub_engine, profile=prof)
    assert (pv.updated, pv.conflicts) == (real.updated, real.conflicts) == (0, 1)


def test_profile_columns_and_units_as_the_file_has_them(hub_engine, tmp_path):
    prof = profiles.from_dict({
        "name": "wx", "dataset": "weather", "columns": {"temp": "temperature", "site": "station_id"},
        "units": {"temperature": "℉", "temperature_min": "℉"}, "defaults": {"kind": "observed"}})
    text = "site,ts,temp(℉)\nA,2026-01-05 08:00,50\n"
    s = ingest_file("weather", write(tmp_path / "w.csv", text), hub_engine, profile=prof)
    assert s.loaded == 1
    assert not any("temp" in w for w in s.warnings)          # matched through its bracketed header
    assert len(s.conversions) == 1 and "℉ → ℃" in s.conversions[0]   # nothing said of the absent tmin
    assert hub.read("weather", eng=hub_engine)["temperature"].iloc[0] == pytest.approx(10.0)


def test_unknown_market_reason_groups_and_detail_names_value(hub_engine, tmp_path):
    ingest_file("markets", write(tmp_path / "m.csv", "市场编号,市场名称\nM01,建设农贸市场\nM02,月塘农贸市场\n"),
                hub_engine)
    text = (RT_HEADER.replace("市场编号", "市场名称") + "\n"
            "T1,2026-01-05 09:00,建设农贸市场,韭菜,有机磷,12,阴性\n"
            "T2,2026-01-05 09:10,建设路农贸市场,韭菜,有机磷,12,阴性\n"
            "T3,2026-01-05 09:20,火星市场,韭菜,有机磷,12,阴性\n")
    s = ingest_file("rapid_tests", write(tmp_path / "t.csv", text), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 2)
    assert s.reasons == {"未登记的农贸市场": 2}
    q = quarantined(hub_engine, "rapid_tests")
    assert "建设路农贸市场" in q.loc[0, "detail"] and "最接近：建设农贸市场" in q.loc[0, "detail"]
    assert "火星市场" in q.loc[1, "detail"]
    assert hub.read("rapid_tests", eng=hub_engine)["market_id"].tolist() == ["M01"]


def test_loader_receives_the_write_arguments_and_prepare_the_context(hub_engine, tmp_path, monkeypatch):
    seen = {}

    def load(conn, ds, frame, *, present=None, file_sha256=None, corrections=None):
        seen.update(present=present, sha=file_sha256, corrections=corrections)
        return ingest.write_rows(conn, ds, frame, present=present, file_sha256=file_sha256, corrections=corrections)

    def prepare(frame, path, ctx):
        seen["eng"] = ctx.refs.eng
        return frame

    load.prepare = prepare
    monkeypatch.setitem(ingest._LOADERS, "grids", (load, "test"))
    prof = profiles.from_dict({"name": "g", "dataset": "grids", "corrections": "first"})
    text = "网格编号,区县,街道\nG1,荷塘区,月塘街道\n"
    s = ingest_file("grids", write(tmp_path / "g.csv", text), hub_engine, profile=prof)
    assert s.loaded == 1
    assert seen["present"] >= {"grid_id", "district", "street"} and "population" not in seen["present"]
    assert seen["sha"] == s.sha256 and seen["corrections"] == "first" and seen["eng"] is hub_engine


def test_read_header_and_field_for_header(hub_engine, tmp_path):
    path = write(tmp_path / "w.csv", "气象站逐时观测\n站点编号,观测时间,气温(℉),,风速\nA,2026-01-05 08:00,50,x,3\n")
    assert ingest.read_header("weather", path) == ["站点编号", "观测时间", "气温(℉)", "第4列", "风速"]
    assert ingest.field_for_header("weather", "气温(℉)") == ("temperature", "°F")   # the bracket as NFKC writes it
    assert ingest.field_for_header("weather", "露点") == (None, None)


def test_a_unit_stop_carries_the_files_columns(hub_engine, tmp_path):
    rows = "".join(f"A,2026-01-05 {h:02d}:00,{60 + h}\n" for h in range(12))
    path = write(tmp_path / "w.csv", "站点编号,观测时间,气温\n" + rows)
    with pytest.raises(IngestError) as err:
        ingest_file("weather", path, hub_engine, preview=True)
    assert "℉" in err.value.problem
    assert err.value.header == ["站点编号", "观测时间", "气温"]
    assert [m["field"] for m in err.value.mapping] == ["station_id", "ts", "temperature"]


def test_an_unknown_unit_in_a_header_quarantines_that_columns_rows(hub_engine, tmp_path):
    # it crashed (a plain-text detail) instead of quarantining the rows with a value there
    text = "站点编号,观测时间,气温(兰氏度),相对湿度\nA,2026-01-05 08:00,500,60\nA,2026-01-05 09:00,,61\n"
    s = ingest_file("weather", write(tmp_path / "w.csv", text), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 1)
    assert any("气温(兰氏度)" in w and "兰氏度" in w for w in s.warnings)
    q = quarantined(hub_engine, "weather")
    assert q.loc[0, "reason"] == "单位无法识别" and "兰氏度" in q.loc[0, "detail"]


def test_a_value_the_map_does_not_cover_has_one_reason(hub_engine, tmp_path):
    prof = profiles.from_dict({"name": "r", "dataset": "rapid_tests",
                               "values": {"result": {"合格": "阴性", "不合格": "阳性"}}})
    text = RT_HEADER + "\nT1,2026-01-05 09:00,M01,韭菜,有机磷,12,合格\nT2,2026-01-05 09:10,M01,韭菜,有机磷,12,待定\n"
    s = ingest_file("rapid_tests", write(tmp_path / "t.csv", text), hub_engine, profile=prof)
    assert (s.loaded, s.quarantined) == (1, 1)
    q = quarantined(hub_engine, "rapid_tests")
    assert q.loc[0, "reason"] == "值映射未覆盖：检测结果"          # not also "缺少检测结果"
    assert "待定" in q.loc[0, "detail"] and "检测结果" in q.loc[0, "detail"]


def test_free_text_keeps_its_chinese_punctuation(hub_engine, tmp_path):
    text = ("工单编号,来电时间,诉求类型,诉求内容,纬度,经度\n"
            "W1,2026-01-05 08:00,施工噪音,楼下施工（夜间）噪音大，请处理：谢谢！编号ＡＢ１２,27.8,113.1\n")
    s = ingest_file("city_events", write(tmp_path / "e.csv", text), hub_engine)
    assert s.loaded == 1, s.reasons
    got = hub.read("city_events", eng=hub_engine)["description"].iloc[0]
    assert got == "楼下施工（夜间）噪音大，请处理：谢谢！编号AB12"   # only full-width letters/digits become ASCII


def test_quarantine_masks_personal_cells_and_keeps_them_apart(hub_engine, tmp_path):
    text = ("工单编号,来电时间,诉求类型,诉求内容,诉求人,联系电话,纬度,经度\n"
            "W1,不是时间,施工噪音,请回电13812345678,王小明,13812345678,27.8,113.1\n")
    s = ingest_file("city_events", write(tmp_path / "e.csv", text), hub_engine)
    assert s.quarantined == 1
    q = quarantined(hub_engine, "city_events")
    row = json.loads(q.loc[0, "row_json"])
    assert row["联系电话"] == "138****5678" and row["诉求人"] == "王**" and row["诉求内容"] == "请回电138****5678"
    assert row["工单编号"] == "W1" and row["来电时间"] == "不是时间"     # the rest as the file had it
    kept = hub.query("select row_key, field, value from personal_data where dataset = 'quarantine'", eng=hub_engine)
    assert dict(zip(kept["field"], kept["value"])) == {"联系电话": "13812345678", "诉求人": "王小明",
                                                       "诉求内容": "请回电13812345678"}
    assert json.loads(kept["row_key"].iloc[0]) == ["city_events", s.sha256, 2]


def test_a_corrected_phone_keeps_the_old_number_protected(hub_engine, tmp_path):
    head = "工单编号,来电时间,诉求类型,诉求人,联系电话,纬度,经度\n"
    ingest_file("city_events", write(tmp_path / "a.csv", head + "W1,2026-01-05 08:00,施工噪音,王小明,13812345678,27.8,113.1\n"),
                hub_engine)
    ingest_file("city_events", write(tmp_path / "b.csv", head + "W1,2026-01-05 08:00,施工噪音,王小明,13900001111,27.8,113.1\n"),
                hub_engine)
    kept = hub.query("select field, value from personal_data where dataset = 'city_events'", eng=hub_engine)
    kept = dict(zip(kept["field"], kept["value"]))
    assert kept["reporter_phone"] == "13900001111"
    assert [v for f, v in kept.items() if f.startswith("reporter_phone@")] == ["13812345678"]


def test_monthly_plausible_ranges_in_a_profile():
    from workbench.store import units

    p = profiles.from_dict({"name": "m", "dataset": "weather",
                            "plausible": {"temperature": [[-10, 15]] * 6 + [[5, 40]] * 6}})
    assert units.plausible_range("weather", "temperature", p.plausible) == (-10.0, 40.0)
    with pytest.raises(profiles.ProfileError):
        profiles.from_dict({"name": "m", "dataset": "weather", "plausible": {"temperature": [[1, 2]] * 5}})


def test_text_with_tabs_newlines_and_backslashes_round_trips(hub_engine, tmp_path):
    # PostgreSQL loads through COPY's text format: these must be escaped, NULL kept apart from ''
    text = ('市场编号,市场名称,街道,摊位数,纬度\n'
            'M01,"建设\\农贸\t市场","第一行\n第二行\r\n",45,27.8\n'
            'M02,\\N,,,\n')
    s = ingest_file("markets", write(tmp_path / "m.csv", text), hub_engine)
    assert s.loaded == 2
    df = hub.read("markets", eng=hub_engine).set_index("market_id")
    assert df.loc["M01", "name"] == "建设\\农贸\t市场" and df.loc["M01", "street"] == "第一行\n第二行"
    assert df.loc["M02", "name"] == "\\N" and pd.isna(df.loc["M02", "street"]) and pd.isna(df.loc["M02", "lat"])
    assert df.loc["M01", "stall_count"] == 45 and pd.isna(df.loc["M02", "stall_count"])


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_line_numbers_count_line_breaks_inside_quoted_cells(hub_engine, tmp_path, monkeypatch, newline):
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 3)   # several chunks, read by csv.reader in batches
    rows = ["市场编号,市场名称,街道,摊位数"] + [f"F{i:02d},菜场{i},,{i}" for i in range(30)] + [   # past the header scan
            'M01,"建设\r\n农贸市场","一\n二\n三",1',   # ends on line 5
            "",                                          # line 6: blank
            "M02,月塘农贸市场,,x",                        # line 7: bad
            'M03,"田心\n市场",,3',                         # lines 8-9
            "M04,栗雨农贸市场,,4,多",                      # line 10: one field too many
            ",,,",                                       # line 11: blank cells
            "M05,白关农贸市场,,y"]                        # line 12: bad
    text = newline.join(rows) + newline
    s = ingest_file("markets", write(tmp_path / "m.csv", text), hub_engine)
    assert (s.rows_read, s.loaded, s.quarantined) == (35, 32, 3)
    q = quarantined(hub_engine, "markets")
    assert list(q["line"]) == [37, 40, 42]   # the lines noted above, after 30 filler rows
    assert list(q["reason"]) == ["摊位数不是整数", "字段数与表头不符", "摊位数不是整数"]


HOTLINE = ("工单编号,来电时间,诉求类型,诉求内容,诉求人,联系电话,手机号码,备注,纬度,经度\n"
           "W1,2026-01-05 08:00,施工噪音,夜间施工,王小明,13812345678,+86 139 0000 1111,身份证430202199001011234,27.8,113.1\n"
           "W2,不是时间,施工噪音,夜间施工,李四,13812345678,13900001111,回电0731-28881234,27.8,113.1\n")


def test_unknown_columns_never_keep_numbers_in_clear(hub_engine, tmp_path):
    s = ingest_file("city_events", write(tmp_path / "e.csv", HOTLINE), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 1) and s.unknown_columns == ["手机号码", "备注"]
    ex = ingest.extras("city_events", eng=hub_engine).set_index("event_id")
    assert ex.loc["W1", "手机号码"] == "139****1111" and ex.loc["W1", "备注"] == "身份证430202********1234"
    kept = hub.query("select row_key, field, value from personal_data where dataset = 'city_events'", eng=hub_engine)
    kept = dict(zip(kept["field"], kept["value"]))
    assert kept["extra:手机号码"] == "+86 139 0000 1111" and kept["extra:备注"] == "身份证430202199001011234"
    # the quarantined row: every cell with a number masked, mapped or not
    row = json.loads(quarantined(hub_engine, "city_events").loc[0, "row_json"])
    assert row["手机号码"] == "139****1111" and row["备注"] == "回电0731****1234" and row["诉求人"] == "李*"
    q = hub.query("select field, value from personal_data where dataset = 'quarantine'", eng=hub_engine)
    assert dict(zip(q["field"], q["value"]))["备注"] == "回电0731-28881234"


def test_preview_shows_the_caller_masked(hub_engine, tmp_path):
    s = ingest_file("city_events", write(tmp_path / "e.csv", HOTLINE), hub_engine, preview=True)
    sample = s.preview.sample[0]
    assert sample["诉求人"] == "王**" and sample["联系电话"] == "138****5678"
    assert "13812345678" not in json.dumps(s.preview.quarantine_sample, ensure_ascii=False)


def test_mask_quarantined_for_records_that_come_without_a_file():
    rows, kept = ingest.mask_quarantined([{"工单编号": "W9", "诉求人": "王小明", "联系电话": "13812345678",
                                           "诉求内容": "请回电8613812345678"}], "city_events")
    assert rows == [{"工单编号": "W9", "诉求人": "王**", "联系电话": "138****5678", "诉求内容": "请回电138****5678"}]
    assert kept == [{"诉求人": "王小明", "联系电话": "13812345678", "诉求内容": "请回电8613812345678"}]


def test_phone_masks_with_country_code_and_short_numbers():
    from workbench import privacy

    assert privacy.mask_text("+8613812341234 / 86 138 1234 1234") == "138****1234 / 138****1234"
    assert privacy.mask_phone("22334455") == "****4455"            # 4 of 8 digits shown, not 7
    assert privacy.mask_phone("0731-28881234") == "0731****1234"


def test_a_saved_profile_cannot_shadow_a_shipped_one(hub_engine):
    p = profiles.load("nycflights13_weather")
    with pytest.raises(profiles.ProfileError, match="随系统提供"):
        profiles.save(p)
    p.name = "nycflights13_weather_copy"
    assert profiles.save(p).name == "nycflights13_weather_copy.yaml"


def test_keep_quarantined_writes_what_ingest_file_writes(hub_engine):
    rows, kept = ingest.mask_quarantined([{"工单编号": "W9", "联系电话": "13812345678"}], "city_events")
    with hub_engine.begin() as conn:
        assert ingest.keep_quarantined(conn, "city_events", "mqtt-abc", [7], kept) == 1
    got = hub.query("select row_key, field, value from personal_data where dataset = 'quarantine'", eng=hub_engine)
    assert got.to_dict("records") == [{"row_key": '["city_events", "mqtt-abc", 7]', "field": "联系电话",
                                       "value": "13812345678"}]


def test_an_in_memory_sqlite_hub_is_written_from_one_thread(tmp_path, monkeypatch):
    # SQLAlchemy gives each thread its own :memory: database: a writer thread would write elsewhere
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    eng = hub.engine("sqlite://")
    try:
        text = "市场编号,市场名称\n" + "".join(f"M{i},市场{i}\n" for i in range(5))
        s = ingest_file("markets", write(tmp_path / "m.csv", text), eng)
        assert s.loaded == 5 and len(hub.read("markets", eng=eng)) == 5
    finally:
        hub.dispose("sqlite://")


def test_profile_options_reach_the_loader(hub_engine, tmp_path, monkeypatch):
    seen = {}

    def load(conn, ds, frame, *, ctx=None):
        seen["options"] = ctx.profile.options
        return ingest.insert_new(conn, ds, frame)

    monkeypatch.setitem(ingest._LOADERS, "grids", (load, "test"))
    path = write(tmp_path / "p.yaml", "dataset: grids\noptions: {city: minneapolis, strict: true}\n")
    s = ingest_file("grids", write(tmp_path / "g.csv", "网格编号,区县,街道\nG1,荷塘区,月塘街道\n"), hub_engine,
                    profile=str(path))
    assert s.loaded == 1 and seen["options"] == {"city": "minneapolis", "strict": True}
    with pytest.raises(profiles.ProfileError):
        profiles.from_dict({"dataset": "grids", "options": ["not", "a", "map"]})
