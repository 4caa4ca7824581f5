"""Corrected re-sends of rapid tests (SQLite and PostgreSQL): the same 检测编号 with other
content updates the test and keeps the old values (row_versions); a correction to 阳性 raises
the 快检阳性 alert; a correction to 阴性 lifts it and withdraws the open follow-up case; back to
阳性 raises it again and reopens the case; a correction of a positive's vendor follows into
its alert; a column the re-send lacks is not a correction to empty."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench import alerts, cases
from workbench.market import intake
from workbench.store import hub
from workbench.store.ingest import ingest_file, versions

MARKETS = "市场编号,市场名称,区县\nM01,荷塘农贸市场,荷塘区\nM02,芦淞菜市场,芦淞区\n"
STALLS = ("摊位编号,市场编号,摊位号,经营户\n"
          "M01-001,M01,A01,张记蔬菜\nM01-002,M01,A02,李记蔬菜\nM02-001,M02,A01,王记蔬菜\n")
HEAD = "检测编号,检测时间,市场名称,摊位号,经营户,样品名称,检测项目,检测方法,检测值(%),判定标准,检测结果,检测员"
PEST = "有机磷和氨基甲酸酯类农药残留,酶抑制率法"
FIRST = (HEAD.replace("检测时间,", "检测时间,采样时间,") + "\n"
         f"C1,2026-01-05 08:30,2026-01-05 08:10,荷塘农贸市场,A01,张记蔬菜,韭菜,{PEST},12.5,≥50%,阴性,张三\n"
         f"C2,2026-01-05 08:50,2026-01-05 08:20,荷塘农贸市场,A02,李记蔬菜,芹菜,{PEST},61.0,≥50%,阳性,张三\n"
         f"C3,2026-01-05 09:10,2026-01-05 08:40,芦淞菜市场,A01,王记,豇豆,{PEST},70.0,≥50%,阳性,李四\n")
# the re-send: the reader's export again, corrected, and without the 采样时间 column
SECOND = (HEAD + "\n"
          f"C1,2026-01-05 08:30,荷塘农贸市场,A01,张记蔬菜,韭菜,{PEST},58.0,≥50%,阳性,张三\n"      # 阴性 → 阳性
          f"C2,2026-01-05 08:50,荷塘农贸市场,A02,李记蔬菜,芹菜,{PEST},31.0,≥50%,阴性,张三\n"      # 阳性 → 阴性
          f"C3,2026-01-05 09:10,芦淞菜市场,A01,王记蔬菜,豇豆,{PEST},70.0,≥50%,阳性,李四\n")      # the vendor's name
THIRD = (HEAD + "\n"
         f"C2,2026-01-05 08:50,荷塘农贸市场,A02,李记蔬菜,芹菜,{PEST},66.0,≥50%,阳性,张三\n")       # back to 阳性


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def city(hub_engine, tmp_path):
    ingest_file("markets", _write(tmp_path / "markets.csv", MARKETS), hub_engine)
    ingest_file("stalls", _write(tmp_path / "stalls.csv", STALLS), hub_engine)
    s = intake.ingest_tests(_write(tmp_path / "first.csv", FIRST), hub_engine)
    assert (s.loaded, s.quarantined) == (3, 0)
    return hub_engine


def _alerts(eng) -> pd.DataFrame:
    return hub.read("alerts", eng=eng).set_index("alert_id")


def _case(eng, cid):
    c = hub.read("cases", where={"case_id": cid}, eng=eng)
    return c.iloc[0] if len(c) else None


def test_corrected_resend_updates_keeps_old_values_and_moves_alerts_and_cases(city, tmp_path):
    a = _alerts(city)
    assert sorted(a.index) == ["MKT-POS-C2", "MKT-POS-C3"]
    assert _case(city, "FU-C2")["status"] == "待处置"   # the linkage opened the follow-up at ingest
    sampled = hub.read("rapid_tests", eng=city).set_index("test_id")["sampled_at"]

    s = intake.ingest_tests(_write(tmp_path / "second.csv", SECOND), city)
    assert (s.loaded, s.updated, s.duplicates, s.quarantined) == (0, 3, 0, 0)
    held = hub.read("rapid_tests", eng=city).set_index("test_id")
    assert held["result"].to_dict() == {"C1": "阳性", "C2": "阴性", "C3": "阳性"}
    assert held.loc["C1", "reading"] == 58.0 and held.loc["C3", "vendor"] == "王记蔬菜"
    # the re-send has no 采样时间 column: that is no correction to empty
    assert held["sampled_at"].notna().all()
    assert (pd.to_datetime(held["sampled_at"]) == pd.to_datetime(sampled)).all()
    # the old values are kept, per test, with what replaced them
    v = versions("rapid_tests", city)
    old = {json.loads(k)[0]: json.loads(o) for k, o in zip(v["row_key"], v["old_json"])}
    new = {json.loads(k)[0]: json.loads(n) for k, n in zip(v["row_key"], v["new_json"])}
    assert old["C2"] == {"reading": 61.0, "result": "阳性"} and new["C2"] == {"reading": 31.0, "result": "阴性"}
    assert old["C1"] == {"reading": 12.5, "result": "阴性"} and old["C3"] == {"vendor": "王记"}
    assert set(v["file_sha256"]) == {s.sha256}

    a = _alerts(city)
    # 阴性 → 阳性: raised through the alert API, and the linkage opened its follow-up
    assert a.loc["MKT-POS-C1", "status"] == alerts.ACTIVE
    h1 = alerts.history("MKT-POS-C1", city)
    assert h1["action"].tolist() == [alerts.RAISE] and "更正为阳性" in h1["note"].iloc[0]
    assert _case(city, "FU-C1")["status"] == "待处置"
    # 阳性 → 阴性: the alert lifted, the open follow-up withdrawn (a void closing)
    assert a.loc["MKT-POS-C2", "status"] == alerts.LIFTED and pd.notna(a.loc["MKT-POS-C2", "valid_to"])
    h2 = alerts.history("MKT-POS-C2", city)
    assert h2["action"].tolist() == [alerts.RAISE, alerts.LIFT] and "更正为阴性" in h2["note"].iloc[-1]
    c2 = _case(city, "FU-C2")
    assert c2["status"] == "更正为阴性" and pd.notna(c2["closed_at"])
    assert cases.history("FU-C2", eng=city)["status"].tolist() == ["待处置", "更正为阴性"]
    f = cases.frame(city, types=["market_followup"]).set_index("case_id")
    assert bool(f.loc["FU-C2", "void"]) and bool(f.loc["FU-C2", "closed"])
    # still positive, another vendor: the alert's evidence follows, its status stays
    assert json.loads(a.loc["MKT-POS-C3", "evidence"])["经营户"] == "王记蔬菜"
    assert a.loc["MKT-POS-C3", "status"] == alerts.ACTIVE
    assert alerts.history("MKT-POS-C3", city)["action"].tolist() == [alerts.RAISE, alerts.UPDATE]

    # back to 阳性: raised again (生效中, no end), the withdrawn case reopened for handling
    s = intake.ingest_tests(_write(tmp_path / "third.csv", THIRD), city)
    assert (s.loaded, s.updated) == (0, 1)
    a = _alerts(city)
    assert a.loc["MKT-POS-C2", "status"] == alerts.ACTIVE and pd.isna(a.loc["MKT-POS-C2", "valid_to"])
    h2 = alerts.history("MKT-POS-C2", city)
    assert h2["action"].tolist() == [alerts.RAISE, alerts.LIFT, alerts.UPDATE]
    assert pd.Timestamp(h2["ts"].iloc[-1]) >= pd.Timestamp(h2["ts"].iloc[-2])   # in the order it happened
    c2 = _case(city, "FU-C2")
    assert c2["status"] == "待处置" and pd.isna(c2["closed_at"])
    assert cases.history("FU-C2", eng=city)["status"].tolist() == ["待处置", "更正为阴性", "待处置"]

    # the same file read again changes nothing: no versions, no alert or case history
    n_hist = len(hub.read("alert_history", eng=city))
    n_case = len(hub.read("case_history", eng=city))
    again = intake.ingest_tests(tmp_path / "third.csv", city, force=True)
    assert (again.loaded, again.updated, again.duplicates) == (0, 0, 1)
    assert len(versions("rapid_tests", city)) == 4
    assert (len(hub.read("alert_history", eng=city)), len(hub.read("case_history", eng=city))) == (n_hist, n_case)


def test_a_case_already_closed_keeps_its_history(city, tmp_path):
    """A positive whose follow-up is done (lab-confirmed, stall re-tested) and later corrected to
    阴性: the alert is lifted, the closed case is left as it was handled."""
    ledger = ("检测编号,登记时间,送检时间,复检结果,复检报告时间,摊位复查时间,摊位复查结果,处置人\n"
              "C2,2026-01-05 11:00,2026-01-05 12:00,阳性,2026-01-06 15:00,2026-01-07 09:00,阴性,王五\n")
    ingest_file("market_followups", _write(tmp_path / "ledger.csv", ledger), city)
    assert _case(city, "FU-C2")["status"] == "已办结"
    intake.ingest_tests(_write(tmp_path / "second.csv", SECOND), city)
    assert _case(city, "FU-C2")["status"] == "已办结"
    assert cases.history("FU-C2", eng=city)["status"].tolist() == ["待处置", "已送检", "待复查", "已办结"]
    assert _alerts(city).loc["MKT-POS-C2", "status"] == alerts.LIFTED


def test_generic_ingest_applies_the_same_corrections(city, tmp_path):
    """`workbench ingest rapid_tests` goes through the same loader: the correction and its alert."""
    s = ingest_file("rapid_tests", _write(tmp_path / "second.csv", SECOND), city)
    assert s.updated == 3
    a = _alerts(city)
    assert a.loc["MKT-POS-C1", "status"] == alerts.ACTIVE and a.loc["MKT-POS-C2", "status"] == alerts.LIFTED
    assert _case(city, "FU-C2")["status"] == "更正为阴性"
