"""The hazard ledger: states, overdue days, repeats and counts on hand-made frames; and a
screening team's spreadsheet taken in through the real ingest, then shown by the ledger."""
from __future__ import annotations

from datetime import datetime

import openpyxl
import pandas as pd
import pytest

from workbench.safety import ledger as lg
from workbench.store import hub
from workbench.store.ingest import ingest_file

T = pd.Timestamp
AS_OF = T("2026-01-20 08:00")


def sites() -> pd.DataFrame:
    return pd.DataFrame({
        "site_id": ["S1", "S2", "S3"], "site_type": ["养老院", "自建房", "燃气"],
        "name": ["月塘敬老院", "建设一组5号自建房", "枫溪供应站"], "address": ["a", "b", "c"],
        "district": ["荷塘区", "芦淞区", "芦淞区"], "street": ["月塘街道", "建设街道", "枫溪街道"],
        "grid_id": ["HT-1", "LS-1", "LS-2"], "lat": [27.86, 27.80, 27.81], "lon": [113.17, 113.16, 113.18],
        "owner": ["张三", "李四", "王五"],
    })


def hazards() -> pd.DataFrame:
    rows = [
        # id, site, type, level, found, deadline, rectified, verified, status, district
        ("H1", "S1", "灭火器过期失效", "一般", "2026-01-02", "2026-01-10", None, None, "整改中", None),  # overdue 10 d
        ("H2", "S1", "应急照明损坏", "重大", "2026-01-15", "2026-02-15", None, None, "整改中", None),  # open
        ("H3", "S2", "房屋墙体开裂", "一般", "2026-01-01", "2026-01-10", "2026-01-08", None, "已整改", None),
        ("H4", "S2", "房屋墙体开裂", "一般", "2026-01-12", "2026-01-30", "2026-01-14", "2026-01-16", "已验收", None),
        ("H5", "S3", "燃气软管老化", "一般", "2026-01-05", "2026-01-19 20:00", None, None, "整改中", "芦淞区"),  # 12 h late
        ("H6", "S3", "钢瓶超期未检", "一般", "2026-01-25", "2026-02-01", None, None, "整改中", "芦淞区"),  # after as_of
        ("H7", "S2", "违规加层改建", "重大", "2026-01-18", None, None, None, "已销号", None),  # file says done
    ]
    df = pd.DataFrame(rows, columns=["hazard_id", "site_id", "hazard_type", "level", "ts", "deadline",
                                     "rectified_at", "verified_at", "status", "district"])
    for c in ("ts", "deadline", "rectified_at", "verified_at"):
        df[c] = pd.to_datetime(df[c], format="ISO8601")
    return df


def test_states_follow_the_dates():
    st = lg.hazard_states(hazards(), AS_OF, sites()).set_index("hazard_id")
    assert "H6" not in st.index  # found after as_of
    assert st.loc["H1", "state"] == "逾期未整改" and st.loc["H1", "days_overdue"] == 11  # 10 d 8 h: day 11
    assert st.loc["H5", "state"] == "逾期未整改" and st.loc["H5", "days_overdue"] == 1  # 12 h: day 1
    assert st.loc["H2", "state"] == "待整改" and st.loc["H2", "days_overdue"] == 0
    assert st.loc["H3", "state"] == "已整改待验收"
    assert st.loc["H4", "state"] == "已验收" and st.loc["H7", "state"] == "已验收"
    assert st.loc["H1", "open"] and not st.loc["H3", "open"]
    assert st.loc["H1", "age_days"] == pytest.approx(18 + 8 / 24)
    # the site fills what the hazard row lacks
    assert st.loc["H1", "district"] == "荷塘区" and st.loc["H1", "grid_id"] == "HT-1"
    assert st.loc["H1", "site_type"] == "养老院" and st.loc["H1", "site_name"] == "月塘敬老院"


def test_state_moves_with_as_of():
    early = lg.hazard_states(hazards(), T("2026-01-09"), sites()).set_index("hazard_id")
    assert early.loc["H1", "state"] == "待整改" and early.loc["H3", "state"] == "已整改待验收"
    assert "H4" not in early.index
    assert lg.hazard_states(hazards(), T("2026-01-07"), sites()).set_index("hazard_id").loc["H3", "state"] == "待整改"


def test_summary_overdue_and_counts():
    st = lg.hazard_states(hazards(), AS_OF, sites())
    s = lg.summary(st, AS_OF, sites())
    assert (s.total, s.open, s.major_open, s.overdue, s.awaiting_check, s.verified) == (6, 3, 1, 2, 1, 2)
    assert s.sites == 3 and s.sites_with_open == 2
    assert s.on_time_rate == 1.0  # H3, H4 rectified before their deadlines
    od = lg.overdue_hazards(st)
    assert list(od["hazard_id"]) == ["H1", "H5"]  # longest overdue first
    by_district = lg.counts(st, "district").set_index("district")
    assert by_district.loc["芦淞区", "total"] == 4 and by_district.loc["芦淞区", "逾期未整改"] == 1
    assert by_district.loc["荷塘区", "open"] == 2 and by_district.loc["荷塘区", "major_open"] == 1
    by_level = lg.counts(st, "level").set_index("level")
    assert by_level.loc["重大", "total"] == 2 and by_level.loc["一般", "overdue"] == 2
    by_type = lg.counts(st, "site_type").set_index("site_type")
    assert by_type[list(lg.STATES)].sum(axis=1).equals(by_type["total"])
    assert lg.counts(st.iloc[:0], "district").empty


def test_repeat_hazards():
    rep = lg.repeat_hazards(hazards(), sites(), min_count=3, window_days=30)
    again = rep[rep["kind"] == lg.REPEAT_SAME_TYPE]
    assert len(again) == 1 and again.iloc[0]["site_id"] == "S2" and again.iloc[0]["hazard_type"] == "房屋墙体开裂"
    assert again.iloc[0]["hazard_ids"] == "H3、H4" and again.iloc[0]["site_name"] == "建设一组5号自建房"
    cluster = rep[rep["kind"] == lg.REPEAT_CLUSTER]
    assert list(cluster["site_id"]) == ["S2"] and cluster.iloc[0]["count"] == 3  # H3, H4, H7 within 30 days
    # a second hazard of the same type before the first was rectified is not a repeat
    hz = hazards()
    hz.loc[hz.hazard_id == "H3", "rectified_at"] = T("2026-01-13")
    assert lg.repeat_hazards(hz, min_count=9).empty
    assert lg.REPEAT_CLUSTER not in set(lg.repeat_hazards(hazards(), window_days=5, min_count=3)["kind"])


def test_site_ledger_and_data_as_of():
    st = lg.hazard_states(hazards(), AS_OF, sites())
    ins = pd.DataFrame({"inspection_id": ["I1", "I2", "I3"], "ts": pd.to_datetime(["2026-01-02", "2026-01-16", "2026-01-25"]),
                        "site_id": ["S1", "S2", "S2"], "hazard_id": [None, None, None], "inspector": ["甲"] * 3,
                        "result": ["发现隐患", "整改到位", "未发现隐患"], "note": [None] * 3})
    sl = lg.site_ledger(sites(), st, ins, AS_OF).set_index("site_id")
    assert sl.loc["S1", "open"] == 2 and sl.loc["S1", "overdue"] == 1
    assert sl.loc["S2", "last_inspection"] == T("2026-01-16") and sl.loc["S2", "inspections"] == 1
    assert pd.isna(sl.loc["S3", "last_inspection"])
    led = lg.Ledger(sites(), hazards(), ins)
    assert lg.data_as_of(led, now=T("2026-01-21")) == T("2026-01-18")  # newest record up to now (H7)
    assert lg.data_as_of(lg.Ledger(sites().iloc[:0], hazards().iloc[:0], ins.iloc[:0]), now=AS_OF) == AS_OF


def _xlsx(path, title, header, rows):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append([title])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(header) + 1)
    ws.append(["序号", *header])
    for i, r in enumerate(rows, start=1):
        ws.append([i, *r])
    wb.save(path)
    return path


def test_screening_spreadsheet_ingested_shows_in_ledger(hub_engine, tmp_path):
    site_file = _xlsx(tmp_path / "隐患排查点位清单.xlsx", "株洲市安全隐患排查点位清单（2026年）",
                      ["点位编号", "场所类型", "场所名称", "地址", "区县", "街道", "网格编号", "责任人", "联系电话"],
                      [["AQ-1", "养老院", "月塘敬老院", "荷塘区月塘街道", "荷塘区", "月塘街道", "HT-YT-001", "张三", "13800000000"],
                       ["AQ-2", "自建房", "建设一组5号", "芦淞区建设街道", "芦淞区", "建设街道", "LS-JS-002", "李四", "１３９００００００００"]])
    s = ingest_file("hazard_sites", site_file, hub_engine)
    assert (s.loaded, s.quarantined) == (2, 0)
    hz_file = _xlsx(tmp_path / "隐患排查整治台账.xlsx", "株洲市安全隐患排查整治台账（截至2026年1月20日）",
                    ["隐患编号", "点位编号", "隐患类型", "隐患等级", "隐患描述", "发现时间", "整改期限", "整改完成时间",
                     "验收时间", "整改状态", "责任部门"],
                    [["YH1", "AQ-1", "灭火器过期失效", "一般", "灭火器过期", datetime(2026, 1, 2, 10), "2026年1月10日",
                      None, None, "整改中", "民政局"],
                     ["YH2", "AQ-2", "房屋墙体开裂", "重大", "墙体开裂", datetime(2026, 1, 5, 9), datetime(2026, 2, 5),
                      datetime(2026, 1, 15, 16), None, "已整改", "住房和城乡建设局"],
                     # wrong row: verified before it was rectified
                     ["YH3", "AQ-2", "违规加层改建", "重大", "加层", datetime(2026, 1, 6, 9), datetime(2026, 2, 6),
                      datetime(2026, 1, 16, 9), datetime(2026, 1, 10, 9), "已验收", "住房和城乡建设局"]])
    s = ingest_file("hazards", hz_file, hub_engine)
    assert (s.rows_read, s.loaded, s.quarantined) == (3, 2, 1)
    assert s.unknown_columns == []  # 序号 is a row counter
    led = lg.load_ledger(hub_engine)
    assert set(led.hazards["hazard_id"]) == {"YH1", "YH2"}
    st = lg.hazard_states(led.hazards, T("2026-01-20"), led.sites).set_index("hazard_id")
    assert st.loc["YH1", "state"] == "逾期未整改" and st.loc["YH1", "grid_id"] == "HT-YT-001"
    assert st.loc["YH1", "days_overdue"] == 11  # deadline 1-10 00:00 Beijing = 1-09 16:00 UTC
    assert st.loc["YH2", "state"] == "已整改待验收" and st.loc["YH2", "site_type"] == "自建房"
    assert lg.data_as_of(led, now=T("2026-01-20")) == T("2026-01-15 08:00")  # 16:00 Beijing, stored UTC
    q = hub.quarantine_rows("hazards", eng=hub_engine)
    assert list(q["reason"]) == ["验收时间早于整改完成时间"]


def test_empty_ledger(hub_engine):
    led = lg.load_ledger(hub_engine)
    assert led.empty
    st = lg.hazard_states(led.hazards, AS_OF, led.sites)
    assert st.empty and lg.summary(st, AS_OF).total == 0
    assert lg.overdue_hazards(st).empty and lg.repeat_hazards(led.hazards, led.sites).empty
    assert lg.site_ledger(led.sites, st, led.inspections, AS_OF).empty
