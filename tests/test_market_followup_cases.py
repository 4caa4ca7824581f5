"""The follow-up of a positive as a case of the spine's engine, and the 快检阳性 alert
(SQLite and PostgreSQL): an ingested follow-up ledger opens and moves the case at the
ledger's own times; a positive is raised once (a rerun adds nothing)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench import alerts, cases
from workbench.market import analysis as ma
from workbench.market import followup as fu
from workbench.store import hub
from workbench.store.ingest import ingest_file

MARKETS = "市场编号,市场名称,区县,街道,开市时间,闭市时间\nM01,荷塘农贸市场,荷塘区,月塘街道,06:00,18:00\nM02,芦淞菜市场,芦淞区,建设街道,06:00,19:00\n"
TESTS = ("检测编号,检测时间,采样时间,市场编号,摊位编号,样品名称,检测项目,检测方法,检测值,单位,判定限值,检测结果,检测员\n"
         "T01,2026-01-05 08:30,2026-01-05 08:15,M01,A01,韭菜,有机磷和氨基甲酸酯类农药残留,酶抑制率法,12.5,%,50,阴性,张三\n"
         "T02,2026-01-05 09:05,2026-01-05 08:50,M01,A02,芹菜,有机磷和氨基甲酸酯类农药残留,酶抑制率法,61.0,%,50,阳性,张三\n"
         "T03,2026-01-05 10:00,2026-01-05 09:50,M02,B07,猪肉,克伦特罗,胶体金免疫层析法,1,阴/阳(0/1),1,阳性,李四\n"
         "T04,2026-01-05 10:20,2026-01-05 10:05,M02,B08,豇豆,有机磷和氨基甲酸酯类农药残留,酶抑制率法,70,%,50,阳性,李四\n")
# T02: sent to the lab, confirmed, stall re-tested clean → 已办结 (late: past 72 h)
# T03: sent, nothing back yet → 已送检
# T04: lab re-test negative → 复检阴性 (a false positive, closed)
LEDGER_1 = ("检测编号,登记时间,送检时间,复检结果,复检报告时间,销毁数量(kg),销毁时间,摊位复查时间,摊位复查结果,处置人\n"
            "T02,2026-01-05 11:00,2026-01-05 12:00,阳性,2026-01-06 15:00,3.5,2026-01-05 11:30,2026-01-09 09:00,阴性,王五\n"
            "T03,2026-01-05 12:00,2026-01-05 13:00,,,,,,,赵六\n"
            "T04,2026-01-05 12:30,2026-01-05 13:30,阴性,2026-01-06 10:00,,,,,赵六\n")


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _utc(local: str) -> pd.Timestamp:
    return pd.Timestamp(local) - pd.Timedelta(hours=8)


@pytest.fixture
def city(hub_engine, tmp_path):
    ingest_file("markets", _write(tmp_path, "markets.csv", MARKETS), hub_engine)
    from workbench.market.intake import ingest_tests

    s = ingest_tests(_write(tmp_path, "tests.csv", TESTS), hub_engine)
    assert s.loaded == 4
    return hub_engine


def _hist(eng, cid):
    return cases.history(cid, eng=eng)


def test_positive_alert_raised_at_ingest_once_with_its_keys(city):
    a = hub.read("alerts", eng=city)
    pos = a[a["category"] == "快检阳性"].set_index("alert_id")
    assert sorted(pos.index) == ["MKT-POS-T02", "MKT-POS-T03", "MKT-POS-T04"]  # T01 is negative
    assert pos.loc["MKT-POS-T03", "severity"] == "critical" and pos.loc["MKT-POS-T02", "severity"] == "warning"
    assert pos.loc["MKT-POS-T03", "subject"] == "rapid_tests:T03"
    assert alerts.attrs_of(pos.loc["MKT-POS-T03", "attrs"]) == {
        "test_id": "T03", "market_id": "M02", "stall_id": "B07", "commodity": "猪肉", "test_item": "克伦特罗",
        "goods": "肉类"}  # the purchase-list class the school notices match on
    assert pd.Timestamp(pos.loc["MKT-POS-T02", "ts"]) == _utc("2026-01-05 09:05")
    assert "荷塘农贸市场" in pos.loc["MKT-POS-T02", "title"]
    # a rerun of the fast path and then the whole analysis add nothing for these positives
    assert ma.raise_positive_alerts(city) == {"new": 0, "history": 0}
    h = hub.read("alert_history", eng=city)
    assert (h[h["alert_id"].str.startswith("MKT-POS-")]["action"] == "发布").sum() == 3
    ma.run(city)
    n_alerts, n_hist = len(hub.read("alerts", eng=city)), len(hub.read("alert_history", eng=city))
    an, written = ma.run(city)
    assert (written["alerts_new"], written["alerts_updated"], written["alerts_lifted"]) == (0, 0, 0)
    assert written["followup_cases"] == {"opened": 0, "steps": 0}
    assert (len(hub.read("alerts", eng=city)), len(hub.read("alert_history", eng=city))) == (n_alerts, n_hist)
    a = hub.read("alerts", eng=city)
    assert (a["category"] == "快检阳性").sum() == 3 and "禁用物质快检阳性" not in set(a["category"])


def test_ledger_opens_and_moves_the_cases_at_its_own_times(city, tmp_path):
    s = ingest_file("market_followups", _write(tmp_path, "ledger.csv", LEDGER_1), city)
    assert s.loaded == 3 and s.quarantined == 0
    c = hub.read("cases", where={"case_type": "market_followup"}, eng=city).set_index("case_id")
    assert c["status"].to_dict() == {"FU-T02": "已办结", "FU-T03": "已送检", "FU-T04": "复检阴性"}
    t02 = c.loc["FU-T02"]
    assert pd.Timestamp(t02["ts"]) == _utc("2026-01-05 09:05")               # opened at the test
    assert pd.Timestamp(t02["deadline"]) == _utc("2026-01-08 09:05")         # handled within 72 h
    assert pd.Timestamp(t02["closed_at"]) == _utc("2026-01-09 09:00")        # the stall re-test
    assert t02["subject"] == "rapid_tests:T02" and t02["alert_id"] == "MKT-POS-T02"
    assert t02["department"] == "市场监管局" and t02["district"] == "荷塘区" and t02["street"] == "月塘街道"
    h = _hist(city, "FU-T02")
    assert h["status"].tolist() == ["待处置", "已送检", "待复查", "已办结"]
    assert [pd.Timestamp(x) for x in h["ts"]] == [_utc("2026-01-05 09:05"), _utc("2026-01-05 12:00"),
                                                   _utc("2026-01-06 15:00"), _utc("2026-01-09 09:00")]
    assert h["actor"].tolist()[1:] == ["王五"] * 3 and "销毁 3.5 kg" in h["note"].iloc[1]
    assert _hist(city, "FU-T04")["status"].tolist() == ["待处置", "已送检", "复检阴性"]
    steps = fu.ledger_steps(pd.DataFrame([{"test_id": "X", "ts": pd.Timestamp("2026-01-05 04:00"),
                                           "lab_sent_at": pd.Timestamp("2026-01-05 05:00"), "lab_result": "阴性"}]))
    assert steps[["status", "ts"]].values.tolist() == [["已送检", pd.Timestamp("2026-01-05 05:00")],
                                                       ["复检阴性", pd.Timestamp("2026-01-05 05:00")]]
    assert pd.Timestamp(c.loc["FU-T04", "closed_at"]) == _utc("2026-01-06 10:00")

    # the ledger re-exported with more dates: T03's lab result and stall re-test still positive
    more = ("检测编号,登记时间,送检时间,复检结果,复检报告时间,摊位复查时间,摊位复查结果,处置人\n"
            "T03,2026-01-05 12:00,2026-01-05 13:00,阳性,2026-01-07 09:00,2026-01-10 09:00,阳性,赵六\n")
    s2 = ingest_file("market_followups", _write(tmp_path, "ledger2.csv", more), city)
    assert s2.loaded == 0 and s2.duplicates == 1  # the ledger row is held as it was
    h3 = _hist(city, "FU-T03")
    assert h3["status"].tolist() == ["待处置", "已送检", "待复查", "复查仍阳性"]
    # then a person takes it on through the engine, and the re-test comes back clean
    cases.act(city, "FU-T03", "confirm", actor="赵六", ts=_utc("2026-01-10 10:00"))
    cases.act(city, "FU-T03", "close", actor="赵六", ts=_utc("2026-01-12 09:00"))
    assert hub.read("cases", where={"case_id": "FU-T03"}, eng=city)["status"].iloc[0] == "已办结"
    with pytest.raises(cases.CaseError, match="可转为"):
        cases.act(city, "FU-T02", "send_lab", actor="王五")  # closed: nothing follows

    # the same file again (forced) and the analysis: nothing more
    n_hist = len(hub.read("case_history", eng=city))
    ingest_file("market_followups", tmp_path / "ledger.csv", city, force=True)
    an, written = ma.run(city)
    assert len(hub.read("case_history", eng=city)) == n_hist
    st = an.followups.set_index("test_id")
    assert st["source"].eq("案件").all()
    assert st["state"].to_dict() == {"T02": "已办结", "T03": "已办结", "T04": "复检阴性"}
    assert bool(st.loc["T02", "late"]) and not bool(st.loc["T04", "late"])  # closed after the 72 h
    # closed follow-ups: the positive alerts are marked handled
    a = hub.read("alerts", eng=city).set_index("alert_id")
    assert a.loc["MKT-POS-T02", "status"] == "已处置"


def test_analysis_opens_cases_for_positives_without_a_ledger(city):
    an, written = ma.run(city)
    c = hub.read("cases", where={"case_type": "market_followup"}, eng=city).set_index("case_id")
    assert sorted(c.index) == ["FU-T02", "FU-T03", "FU-T04"] and set(c["status"]) == {"待处置"}
    assert c.loc["FU-T03", "alert_id"] == "MKT-POS-T03"
    st = an.followups.set_index("test_id")
    assert st["state"].eq("待处置").all() and st["overdue"].eq(False).all()  # as of the last test
    assert (pd.to_datetime(st["deadline"]) - pd.to_datetime(st["ts"])).eq(pd.Timedelta(hours=72)).all()
    # the resolver the linkage rule calls gives the same case rows, from the alerts
    pos = hub.read("alerts", where={"category": "快检阳性"}, eng=city)
    with city.connect() as conn:
        rows = fu.followup_cases(conn, pos)
    assert sorted(rows["case_id"]) == ["FU-T02", "FU-T03", "FU-T04"]
    assert set(rows["alert_id"]) == set(pos["alert_id"]) and rows["subject"].str.startswith("rapid_tests:").all()
    assert {"case_id", "ts", "title", "department", "district", "deadline", "subject", "alert_id",
            "description"} <= set(rows.columns)
    with city.begin() as conn:
        assert fu.open_followups(conn, hub.read("rapid_tests", eng=city)) == 0  # idempotent


def test_overdue_follow_up_is_raised_and_lifted_when_its_case_closes(city, tmp_path):
    ma.run(city)
    # a week later with no step: the analysis as of a later test sees the 72 h passed
    later = ("检测编号,检测时间,采样时间,市场编号,摊位编号,样品名称,检测项目,检测方法,检测值,单位,判定限值,检测结果,检测员\n"
             "T09,2026-01-12 08:30,2026-01-12 08:15,M01,A01,韭菜,有机磷和氨基甲酸酯类农药残留,酶抑制率法,12.5,%,50,阴性,张三\n")
    from workbench.market.intake import ingest_tests

    ingest_tests(_write(tmp_path, "later.csv", later), city)
    an, _ = ma.run(city)
    a = hub.read("alerts", where={"category": "快检阳性处置逾期"}, eng=city).set_index("alert_id")
    assert sorted(a.index) == ["MKT-FU-T02", "MKT-FU-T03", "MKT-FU-T04"] and set(a["status"]) == {"生效中"}
    assert a.loc["MKT-FU-T03", "subject"] == "cases:FU-T03"
    ingest_file("market_followups", _write(tmp_path, "ledger.csv", LEDGER_1), city)
    a = hub.read("alerts", where={"category": "快检阳性处置逾期"}, eng=city).set_index("alert_id")
    assert a["status"].to_dict() == {"MKT-FU-T02": "已解除", "MKT-FU-T03": "生效中", "MKT-FU-T04": "已解除"}
    ma.run(city)  # T03 moved on (已送检): its overdue alert says so; the lifted stay lifted
    a = hub.read("alerts", where={"category": "快检阳性处置逾期"}, eng=city).set_index("alert_id")
    assert a["status"].to_dict() == {"MKT-FU-T02": "已解除", "MKT-FU-T03": "生效中", "MKT-FU-T04": "已解除"}
    assert json.loads(a.loc["MKT-FU-T03", "evidence"])["处置状态"] == "已送检"
    h = alerts.history("MKT-FU-T02", eng=city)
    assert h["action"].tolist() == ["发布", "解除"] and h["actor"].iloc[-1] == "王五"
    n = len(hub.read("alert_history", eng=city))
    ma.run(city)
    assert len(hub.read("alert_history", eng=city)) == n  # a rerun: nothing churns
