"""12345 hotline work orders on a real hub (SQLite and PostgreSQL): the hotline's own column
names and categories through the shipped profile, places from addresses (no coordinates), the
caller's personal data kept apart and numbers in the text masked, corrected re-sends, the MQTT
path doing the same, and bad input (a category the map does not cover, an address naming
nothing, no place at all, broken files)."""
from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import sqlalchemy as sa

from workbench.events import dispatch as dp
from workbench.events import flow, intake
from workbench.store import hub, ingest, profiles
from workbench.store.ingest import IngestError
from workbench.store.schema import DATASETS, personal_data

NOW = pd.Timestamp.now(tz="Asia/Shanghai").floor("min").tz_localize(None)
HEADER = "工单编号,来电时间,诉求类型,诉求地址,诉求内容,诉求人,联系电话,回访满意度\n"


def local(hours_ago: float) -> str:
    return f"{NOW - pd.Timedelta(hours=hours_ago):%Y-%m-%d %H:%M}"


def work_orders(path, rows, encoding="gbk"):
    path.write_bytes((HEADER + "".join(",".join(r) + "\n" for r in rows)).encode(encoding))
    return path


def add_grids(eng):
    grids = pd.DataFrame({"grid_id": ["HT-YT-01", "HT-GH-01", "TY-SS-01"], "district": ["荷塘区", "荷塘区", "天元区"],
                          "street": ["月塘街道", "桂花街道", "嵩山路街道"], "lat": [27.86, 27.87, 27.80],
                          "lon": [113.17, 113.18, 113.08], "population": [9000, 8000, 7000]})
    with eng.begin() as conn:
        ingest.write_rows(conn, DATASETS["grids"], grids)


def personal(eng) -> dict:
    with eng.connect() as conn:
        rows = conn.execute(sa.select(personal_data.c.row_key, personal_data.c.field, personal_data.c.value)
                            .where(personal_data.c.dataset == "city_events")).all()
    return {(json.loads(k)[0], f): v for k, f, v in rows}


ORDERS = [
    ("GD001", local(5), "垃圾堆放", "荷塘区月塘街道新华东路12号", "路边垃圾无人清理，请回电13812341234", "张三", "13912345678", "满意"),
    ("GD002", local(4), "路灯故障", "株洲市芦淞区建设路口", "一排路灯不亮", "李四", "0731-22881234", ""),
    ("GD003", local(3), "夜间施工", "小区门口", "工地夜间施工，身份证430202199001011234，请处理", "王五", "13700001111", ""),
    ("GD004", local(3), "劳动保障", "天元区嵩山路街道泰山路8号", "拖欠工资", "赵六", "13600002222", ""),
    ("GD005", local(2), "乱停乱放", "嵩山路街道黄河北路", "人行道上停满车", "", "", "不满意"),
]


def test_work_orders_load_placed_by_address_with_the_caller_kept_apart(hub_engine, tmp_path):
    add_grids(hub_engine)
    path = work_orders(tmp_path / "12345工单.csv", ORDERS)
    s = intake.intake_file(path, eng=hub_engine, profile="hotline_12345")
    assert (s.rows_read, s.loaded, s.quarantined) == (5, 4, 1)
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    # places from the address text against the hub's streets; nothing dropped for lacking coordinates
    assert ev["lat"].isna().all()
    assert ev.loc["GD001", ["district", "street", "loc_precision"]].tolist() == ["荷塘区", "月塘街道", "street"]
    assert ev.loc["GD002", ["district", "loc_precision"]].tolist() == ["芦淞区", "district"]
    assert pd.isna(ev.loc["GD002", "street"])
    assert ev.loc["GD003", "loc_precision"] == "city" and pd.isna(ev.loc["GD003", "district"])  # names nothing
    assert ev.loc["GD005", ["district", "street", "loc_precision"]].tolist() == ["天元区", "嵩山路街道", "street"]
    # the hotline's categories in the city's classes; its channel from the profile
    assert ev.loc["GD001", "event_class"] == "暴露垃圾" and ev.loc["GD005", "event_class"] == "违章停车"
    assert ev.loc["GD003", "event_class"] == "施工噪音" and set(ev["source"]) == {"12345热线"}
    assert ev.loc["GD005", "department"] == "公安交警"          # routed as any event of its class
    assert pd.Timestamp(ev.loc["GD001", "ts"]) == pd.Timestamp(ORDERS[0][1]) - pd.Timedelta(hours=8)  # Beijing → UTC
    # numbers typed into the text are masked in the event; the whole values only in personal_data
    assert ev.loc["GD001", "description"].endswith("请回电138****1234")
    assert "430202********1234" in ev.loc["GD003", "description"]
    with hub_engine.connect() as conn:
        dumped = " ".join(str(v) for r in conn.execute(sa.select(DATASETS["city_events"].table)) for v in r)
    for secret in ("13812341234", "430202199001011234", "13912345678", "张三"):
        assert secret not in dumped
    p = personal(hub_engine)
    assert p[("GD001", "reporter_phone")] == "13912345678" and p[("GD001", "reporter_name")] == "张三"
    assert p[("GD001", "description")].endswith("请回电13812341234")
    assert p[("GD003", "description")].count("430202199001011234") == 1
    assert ("GD005", "reporter_name") not in p                   # nothing given, nothing kept
    # a category the map does not cover: quarantined naming the file, the column and the value
    q = hub.quarantine_rows("city_events", eng=hub_engine).iloc[0]
    assert q["reason"].startswith("值映射未覆盖：小类") and q["filename"] == "12345工单.csv"
    assert "诉求类型" in q["detail"] and "劳动保障" in q["detail"]
    assert json.loads(q["row_json"])["工单编号"] == "GD004"       # the row as the file had it
    # a column the hub has no field for stays with its row
    extras = ingest.extras("city_events", eng=hub_engine).set_index("event_id")
    assert extras.loc["GD001", "回访满意度"] == "满意"


def test_a_corrected_resend_updates_and_keeps_the_old_values(hub_engine, tmp_path):
    add_grids(hub_engine)
    first = intake.intake_file(work_orders(tmp_path / "a.csv", ORDERS), eng=hub_engine, profile="hotline_12345")
    assert first.loaded == 4
    again = [list(r) for r in ORDERS]
    again[0][3] = "荷塘区桂花街道桂花路3号"          # GD001: the operator corrected the address
    again[1][6] = "13577778888"                     # GD002: the caller left another number
    s = intake.intake_file(work_orders(tmp_path / "b.csv", [tuple(r) for r in again]), eng=hub_engine,
                           profile="hotline_12345")
    assert (s.loaded, s.updated, s.duplicates, s.quarantined) == (0, 2, 2, 1)
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert len(ev) == 4
    assert ev.loc["GD001", ["address", "street", "district"]].tolist() == ["荷塘区桂花街道桂花路3号", "桂花街道", "荷塘区"]
    v = ingest.versions("city_events", eng=hub_engine)
    assert len(v) == 1 and json.loads(v.iloc[0]["row_key"]) == ["GD001"]
    old, new = json.loads(v.iloc[0]["old_json"]), json.loads(v.iloc[0]["new_json"])
    assert old == {"address": "荷塘区月塘街道新华东路12号", "street": "月塘街道"}
    assert new == {"address": "荷塘区桂花街道桂花路3号", "street": "桂花街道"}
    assert personal(hub_engine)[("GD002", "reporter_phone")] == "13577778888"   # newest wins


def test_mqtt_messages_are_masked_and_placed_like_files(hub_engine):
    add_grids(hub_engine)
    t = NOW - pd.Timedelta(hours=1)
    msgs = [json.dumps({"工单编号": "M1", "来电时间": f"{t:%Y-%m-%d %H:%M:%S}", "诉求类型": "暴露垃圾",
                        "诉求地址": "荷塘区桂花街道红旗路", "诉求内容": "垃圾没人收，电话 13812341234",
                        "诉求人": "钱七", "联系电话": "13811112222", "回访满意度": "满意"}, ensure_ascii=False).encode(),
            json.dumps({"工单编号": "M2", "来电时间": f"{t:%Y-%m-%d %H:%M:%S}", "诉求类型": "暴露垃圾"},
                       ensure_ascii=False).encode()]
    s = intake.message_batch(msgs, topic="city/12345", rules=dp.load_rules(), eng=hub_engine)
    assert (s.loaded, s.quarantined) == (1, 1) and s.reasons == {intake.NO_LOCATION: 1}
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert ev.loc["M1", "description"].endswith("电话 138****1234")
    assert ev.loc["M1", ["street", "loc_precision"]].tolist() == ["桂花街道", "street"]
    p = personal(hub_engine)
    assert p[("M1", "reporter_phone")] == "13811112222" and p[("M1", "description")].endswith("13812341234")
    # a key the hub has no field for stays with its record; the quarantine keeps the record as it came
    assert ingest.extras("city_events", eng=hub_engine).set_index("event_id").loc["M1", "回访满意度"] == "满意"
    q = hub.quarantine_rows("city_events", eng=hub_engine).iloc[0]
    assert json.loads(q["row_json"]) == {"工单编号": "M2", "来电时间": f"{t:%Y-%m-%d %H:%M:%S}", "诉求类型": "暴露垃圾"}
    # a time in Beijing without an offset is Beijing time (the city's zone), kept as UTC
    assert pd.Timestamp(ev.loc["M1", "ts"]) == t - pd.Timedelta(hours=8)


def test_broken_files_stop_with_the_file_named(hub_engine, tmp_path):
    empty = tmp_path / "空工单.csv"
    empty.write_text(HEADER, encoding="utf-8")
    with pytest.raises(IngestError, match="空工单.csv.*没有数据行"):
        intake.intake_file(empty, eng=hub_engine, profile="hotline_12345")
    no_time = tmp_path / "缺列.csv"
    no_time.write_text("工单编号,诉求类型,诉求地址\nGD9,垃圾堆放,荷塘区\n", encoding="utf-8")
    with pytest.raises(IngestError, match="缺列.csv.*缺少必需的列.*上报时间"):
        intake.intake_file(no_time, eng=hub_engine, profile="hotline_12345")
    fake = tmp_path / "工单.xlsx"
    fake.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(IngestError, match="工单.xlsx"):
        intake.intake_file(fake, eng=hub_engine, profile="hotline_12345")
    with pytest.raises(IngestError, match="找不到配置"):
        intake.intake_file(work_orders(tmp_path / "x.csv", ORDERS[:1]), eng=hub_engine, profile="no_such_profile")
    assert hub.read("city_events", eng=hub_engine).empty


def test_preview_shows_the_hotline_mapping_and_writes_nothing(sqlite_hub, tmp_path):
    s = intake.intake_file(work_orders(tmp_path / "p.csv", ORDERS), eng=sqlite_hub, profile="hotline_12345",
                           preview=True)
    assert (s.loaded, s.quarantined) == (4, 1)
    fields = {m["column"]: m["field"] for m in s.hub.mapping}
    assert fields["诉求地址"] == "address" and fields["联系电话"] == "reporter_phone" and fields["回访满意度"] is None
    assert hub.read("city_events", eng=sqlite_hub).empty and hub.quarantine_rows("city_events", eng=sqlite_hub).empty


def test_a_plain_resend_is_a_duplicate_even_when_the_hub_could_place_it_better(hub_engine, tmp_path):
    """No grids at first (GD001 placed to its district); the streets arrive; the same work
    orders sent again are duplicates, not corrections: the source changed nothing."""
    first = intake.intake_file(work_orders(tmp_path / "a.csv", ORDERS), eng=hub_engine, profile="hotline_12345")
    assert first.loaded == 4
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert ev.loc["GD001", ["district", "loc_precision"]].tolist() == ["荷塘区", "district"]
    add_grids(hub_engine)
    s = intake.intake_file(work_orders(tmp_path / "b.csv", ORDERS, encoding="utf-8"), eng=hub_engine,
                           profile="hotline_12345")
    assert (s.loaded, s.updated, s.duplicates) == (0, 0, 4)
    assert ingest.versions("city_events", eng=hub_engine).empty


def test_hotline_states_are_read_through_the_profile(sqlite_hub, tmp_path):
    path = tmp_path / "状态.csv"
    path.write_text("工单编号,来电时间,诉求类型,诉求地址,诉求内容,办理状态\n"
                    f"S1,{local(30)},垃圾堆放,荷塘区月塘街道,垃圾,已回访\n"
                    f"S2,{local(3)},垃圾堆放,芦淞区建设路,垃圾,待签收\n"
                    f"S3,{local(3)},路灯故障,天元区,路灯,已退回\n", encoding="utf-8")
    s = intake.intake_file(path, eng=sqlite_hub, profile="hotline_12345")
    assert (s.loaded, s.quarantined) == (2, 1) and s.reasons == {intake.BAD_STATUS: 1}
    ev = hub.read("city_events", eng=sqlite_hub).set_index("event_id")
    assert ev.loc["S1", "status"] == flow.CLOSED and ev.loc["S2", "status"] == flow.DISPATCH


def test_a_profile_column_the_file_lacks_is_a_warning_and_the_rows_load(sqlite_hub, tmp_path):
    prof = profiles.load("hotline_12345")
    prof = dataclasses.replace(prof, name="hotline_with_unit", columns={**prof.columns, "承办单位": "department"})
    s = intake.intake_file(work_orders(tmp_path / "w.csv", ORDERS), eng=sqlite_hub, profile=prof)
    assert (s.loaded, s.quarantined) == (4, 1)
    assert any("中的列“承办单位”不在文件中" in line for line in s.details())


def test_repeated_calls_about_one_address_are_merged_into_one_case(hub_engine, tmp_path):
    """Three calls about the rubbish at one address within hours (written with a space and
    full-width digits by different operators) become one case and two 重复件; the same address
    for another class, or 30 hours later, is a case of its own; an address that names nothing
    known is never merged (no place to be the same). A later file's call joins the case."""
    add_grids(hub_engine)
    a = "荷塘区月塘街道新华东路12号"
    rows = [("C1", local(6), "垃圾堆放", a, "垃圾", "", "", ""),
            ("C2", local(5), "生活垃圾", "荷塘区 月塘街道新华东路１２号", "垃圾还在", "", "", ""),
            ("C3", local(4), "垃圾堆放", a, "还没人管", "", "", ""),
            ("C4", local(4), "路灯故障", a, "路灯不亮", "", "", ""),
            ("C5", local(36), "垃圾堆放", a, "垃圾", "", "", ""),
            ("C6", local(5), "施工扰民", "小区门口", "吵", "", "", ""),
            ("C7", local(4), "施工扰民", "小区门口", "吵", "", "", "")]
    s = intake.intake_file(work_orders(tmp_path / "calls.csv", rows), eng=hub_engine, profile="hotline_12345")
    assert (s.loaded, s.merged) == (7, 2)
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert ev.loc[["C2", "C3"], "duplicate_of"].tolist() == ["C1", "C1"]
    assert (ev.loc[["C2", "C3"], "status"] == flow.DUPLICATE).all()
    assert ev.loc[["C1", "C4", "C5", "C6", "C7"], "duplicate_of"].isna().all()
    later = intake.intake_file(work_orders(tmp_path / "later.csv", [("C8", local(1), "垃圾堆放", a, "又有了", "", "", "")]),
                               eng=hub_engine, profile="hotline_12345")
    assert later.merged == 1
    assert hub.read("city_events", where={"event_id": "C8"}, eng=hub_engine)["duplicate_of"].iloc[0] == "C1"


def test_calls_naming_only_a_district_or_street_are_not_merged(hub_engine, tmp_path):
    """Two rubbish calls whose address is only "芦淞区" (or only a street) are two complaints
    somewhere in an area of thousands of doors: neither is made a 重复件 of the other."""
    add_grids(hub_engine)
    rows = [("D1", local(6), "垃圾堆放", "芦淞区", "垃圾", "", "", ""),
            ("D2", local(5), "垃圾堆放", "芦淞区", "垃圾", "", "", ""),
            ("D3", local(6), "垃圾堆放", "荷塘区月塘街道", "垃圾", "", "", ""),
            ("D4", local(5), "垃圾堆放", "荷塘区月塘街道", "垃圾", "", "", "")]
    s = intake.intake_file(work_orders(tmp_path / "areas.csv", rows), eng=hub_engine, profile="hotline_12345")
    assert (s.loaded, s.merged) == (4, 0)
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert ev["duplicate_of"].isna().all()
    assert ev.loc["D1", "loc_precision"] == "district" and ev.loc["D3", "loc_precision"] == "street"


def test_an_address_in_another_city_is_quarantined_not_loaded_as_ours(hub_engine, tmp_path):
    """A work order whose address names another city (长沙市…) is not placed in Zhuzhou at city
    precision: it is quarantined as outside the city, with the address in the detail."""
    add_grids(hub_engine)
    rows = [("X1", local(3), "垃圾堆放", "长沙市天心区芙蓉路1号", "垃圾", "", "", ""),
            ("X2", local(3), "垃圾堆放", "芦淞区醴陵路12号", "垃圾", "", "", "")]
    s = intake.intake_file(work_orders(tmp_path / "away.csv", rows), eng=hub_engine, profile="hotline_12345")
    assert (s.loaded, s.quarantined) == (1, 1) and s.reasons == {intake.OUT_OF_CITY: 1}
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert ev.loc["X2", "district"] == "芦淞区"     # 醴陵路 is a road of 芦淞区, not 醴陵市
    q = hub.read("quarantine", eng=hub_engine)
    assert "长沙市天心区芙蓉路1号" in q["detail"].iloc[0]


def test_a_quarantined_mqtt_message_keeps_no_caller_data_in_clear(hub_engine):
    """A message quarantined (no place at all) is kept whole, but masked as a file's rows are:
    the caller's name and phone and the numbers in its text masked; the originals only in the
    protected table (dataset "quarantine")."""
    t = NOW - pd.Timedelta(hours=1)
    msg = json.dumps({"工单编号": "M9", "来电时间": f"{t:%Y-%m-%d %H:%M:%S}", "诉求类型": "暴露垃圾",
                      "诉求内容": "请回电13812341234", "诉求人": "钱七", "联系电话": "13811112222"},
                     ensure_ascii=False).encode()
    s = intake.message_batch([msg], topic="city/12345", rules=dp.load_rules(), eng=hub_engine)
    assert (s.loaded, s.quarantined) == (0, 1)
    q = hub.quarantine_rows("city_events", eng=hub_engine).iloc[0]
    row = json.loads(q["row_json"])
    assert row["联系电话"] == "138****2222" and row["诉求人"] == "钱*" and row["诉求内容"] == "请回电138****1234"
    assert "13811112222" not in q["row_json"] and "13812341234" not in q["row_json"]
    with hub_engine.connect() as conn:
        kept = dict(conn.execute(sa.select(personal_data.c.field, personal_data.c.value)
                                 .where(personal_data.c.dataset == "quarantine")).all())
    assert kept["联系电话"] == "13811112222" and kept["诉求人"] == "钱七" and kept["诉求内容"] == "请回电13812341234"
