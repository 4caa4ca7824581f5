"""Intake of rapid tests (SQLite and PostgreSQL): the market rules quarantine with a stable
reason, never fix; the drop folder takes finished files and keeps the unreadable ones."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from workbench.market import intake
from workbench.store import hub
from workbench.store.ingest import ingest_file

MARKETS = "市场编号,市场名称,区县,开市时间,闭市时间\nM01,荷塘农贸市场,荷塘区,06:00,18:00\nM02,芦淞菜市场,芦淞区,06:00,19:00\n"
HEADER = "检测编号,检测时间,采样时间,市场编号,样品名称,检测项目,检测方法,检测值,单位,判定限值,检测结果,检测员\n"
GOOD = [
    "T01,2026-01-05 08:30,2026-01-05 08:15,M01,韭菜,有机磷和氨基甲酸酯类农药残留,酶抑制率法,12.5,%,50,阴性,张三\n",
    "T02,2026-01-05 09:05,2026-01-05 08:50,M01,芹菜,有机磷和氨基甲酸酯类农药残留,酶抑制率法,61.0,%,50,阳性,张三\n",
    "T03,2026-01-05 10:00,2026-01-05 09:50,M02,猪肉,克伦特罗,胶体金免疫层析法,0,阴/阳(0/1),1,阴性,李四\n",
    "T04,2026-01-05 10:20,2026-01-05 10:05,M02,银耳,二氧化硫,比色法,30,mg/kg,50,阴性,李四\n",
]
BAD = {
    "T11,2026-01-05 08:30,2026-01-05 08:15,M01,韭菜,有机磷和氨基甲酸酯类农药残留,酶抑制率法,130,%,50,阳性,张三\n":
        "百分比读数超过 100%",
    "T12,2026-01-05 08:30,2026-01-05 08:15,M01,韭菜,有机磷和氨基甲酸酯类农药残留,酶抑制率法,130,,50,阳性,张三\n":
        "百分比读数超过 100%",  # no unit: the enzyme method says it is a percentage
    "T13,2026-01-05 08:10,2026-01-05 08:15,M01,韭菜,有机磷和氨基甲酸酯类农药残留,酶抑制率法,12,%,50,阴性,张三\n":
        "检测时间早于采样时间",
    "T14,2026-01-05 08:30,2026-01-05 08:15,M99,韭菜,有机磷和氨基甲酸酯类农药残留,酶抑制率法,12,%,50,阴性,张三\n":
        "未登记的农贸市场",  # the hub's judgement (ingest.References), one reason only
    "T15,2026-01-05 08:30,2026-01-05 08:15,M01,韭莱,有机磷和氨基甲酸酯类农药残留,酶抑制率法,12,%,50,阴性,张三\n":
        "样品名称不在商品目录中",
    "T16,2026-01-05 08:30,2026-01-05 08:15,M01,韭菜,有机磷和氨基甲酸酯类农药残留,酶抑制率法,72.4,%,50,阴性,张三\n":
        "检测结果与检测值、判定限值不符",
    "T17,2026-01-05 08:30,2026-01-05 08:15,M02,猪肉,克伦特罗,胶体金免疫层析法,1,阴/阳(0/1),1,阴性,李四\n":
        "检测结果与检测值、判定限值不符",
    "T18,2026-01-05 08:30,2026-01-05 08:15,M02,猪肉,克伦特罗,胶体金免疫层析法,0.4,阴/阳(0/1),1,阴性,李四\n":
        "胶体金卡读数应为 0 或 1",
    "T19,2026-01-05 08:30,2026-01-05 08:15,M02,银耳,二氧化硫,比色法,50,mg/kg,50,阳性,李四\n":
        "检测结果与检测值、判定限值不符",  # colorimetric: positive only above the limit
}


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def registry(hub_engine, tmp_path):
    s = ingest_file("markets", _write(tmp_path / "markets.csv", MARKETS), hub_engine)
    assert s.loaded == 2
    return hub_engine


def test_good_rows_load_and_each_bad_row_is_quarantined_with_its_reason(registry, tmp_path):
    path = _write(tmp_path / "快检.csv", HEADER + "".join(GOOD) + "".join(BAD), "gbk")
    s = intake.ingest_tests(path, registry)
    assert (s.loaded, s.quarantined, s.rows_read) == (len(GOOD), len(BAD), len(GOOD) + len(BAD))
    q = hub.quarantine_rows("rapid_tests", eng=registry)
    got = {json.loads(r.row_json)["test_id"] if "test_id" in json.loads(r.row_json) else json.loads(r.row_json).get("检测编号"): r.reason
           for r in q.itertuples()}
    want = {line.split(",")[0]: reason for line, reason in BAD.items()}
    for tid, reason in want.items():
        assert reason in got[tid], (tid, got[tid])
    assert got["T14"].count("; ") == 0  # an unknown market is one reason, not the hub's and the market's
    assert q["line"].min() == len(GOOD) + 2  # file lines: header is line 1
    held = hub.read("rapid_tests", eng=registry).set_index("test_id")
    assert sorted(held.index) == ["T01", "T02", "T03", "T04"]
    assert held.loc["T02", "reading"] == 61.0 and held.loc["T02", "result"] == "阳性"  # kept as read


def test_market_codes_are_not_judged_before_a_registry_exists(hub_engine, tmp_path):
    line = next(k for k, v in BAD.items() if v.startswith("未登记的农贸市场"))
    s = intake.ingest_tests(_write(tmp_path / "t.csv", HEADER + line), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 0)


def test_the_generic_ingest_applies_the_same_rules(registry, tmp_path):
    s = ingest_file("rapid_tests", _write(tmp_path / "t.csv", HEADER + "".join(BAD)), registry)
    assert s.quarantined == len(BAD) and s.loaded == 0


def test_rules_are_vectorised_and_leave_missing_values_alone():
    df = pd.DataFrame({"test_item": ["有机磷和氨基甲酸酯类农药残留", "克伦特罗", "二氧化硫", "未知项目"],
                       "method": [None, None, None, "比色法"], "unit": [None, None, None, None],
                       "reading": [55.0, None, 20.0, 5.0], "threshold": [50.0, 1.0, None, 4.0],
                       "result": ["阴性", "阳性", "阳性", "阴性"]})
    assert intake.derived_result(df).tolist() == ["阳性", None, None, "阳性"]
    assert intake.result_contradicts_reading(df).tolist() == [True, False, False, True]


def test_followups_ingest_and_reject_impossible_order(hub_engine, tmp_path):
    text = ("检测编号,登记时间,处置时限,送检时间,复检结果,复检报告时间,销毁数量(kg),摊位复查时间,摊位复查结果\n"
            "T02,2026-01-05 11:00,2026-01-12 18:00,2026-01-05 12:00,阳性,2026-01-07 09:00,3.5,2026-01-09 09:00,阴性\n"
            "T05,2026-01-05 11:00,2026-01-12 18:00,2026-01-05 12:00,阳性,2026-01-04 09:00,2,,\n"
            "T06,2026-01-05 11:00,2026-01-12 18:00,,,,-4,,\n")
    s = ingest_file("market_followups", _write(tmp_path / "处置.csv", text), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 2)
    assert set(s.reasons) == {"复检报告时间早于送检时间", "销毁数量(kg)小于下限 0"}


def test_drop_folder_takes_finished_files_and_keeps_unreadable_ones(registry, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    _write(drop / "reader1.csv", HEADER + "".join(GOOD), "gbk")
    (drop / "broken.csv").write_bytes(b"\x00\x01binary")
    folder = intake.DropFolder(drop, registry)
    assert folder.poll() == []  # first look: files may still be growing
    results = folder.poll()
    assert sorted(r["file"] for r in results) == ["broken.csv", "reader1.csv"]
    assert (drop / "已接入" / "reader1.csv").exists()
    assert (drop / "无法读取" / "broken.csv").exists()
    assert "二进制" in (drop / "无法读取" / "broken.csv.txt").read_text(encoding="utf-8")
    assert len(hub.read("rapid_tests", eng=registry)) == len(GOOD)
    # the same export dropped again adds nothing and still leaves the folder
    _write(drop / "reader1.csv", HEADER + "".join(GOOD), "gbk")
    folder.poll()
    again = folder.poll()
    assert again[0]["summary"].skipped and (drop / "已接入" / "reader1.1.csv").exists()


@pytest.mark.slow
def test_cli_watch_once_and_analyse(tmp_path):
    env = {"WORKBENCH_DB_URL": f"sqlite:///{tmp_path / 'city.db'}", "WORKBENCH_DATA_DIR": str(tmp_path / "data"),
           "PATH": "/usr/bin:/bin"}
    drop = tmp_path / "drop"
    drop.mkdir()
    _write(drop / "a.csv", HEADER + "".join(GOOD) + next(iter(BAD)), "gbk")
    run = lambda *a: subprocess.run([sys.executable, "-m", "workbench.cli", *a], capture_output=True, text=True,  # noqa: E731
                                    env=env, timeout=120)
    r = run("market", "watch", str(drop), "--once", "--interval", "0.2")
    assert r.returncode == 0, r.stderr
    assert "入库 4 行" in r.stdout and "隔离 1 行" in r.stdout
    r = run("market", "analyse", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["tests"] == 4 and s["positive_items"] == 1
    # the positive was raised as it came in (快检阳性, by the watched folder); the rest is new now
    assert s["alerts"]["快检阳性"] == 1
    assert s["written"]["alerts_new"] == sum(s["alerts"].values()) - 1
    # the linkage ran when the folder took the file in: the follow-up case is open already
    assert s["written"]["followup_cases"]["opened"] == 0
    cases_held = hub.query("select case_type, status from cases", eng=hub.engine(env["WORKBENCH_DB_URL"]))
    assert list(cases_held["case_type"]) == ["market_followup"] and list(cases_held["status"]) == ["待处置"]
    r = run("market", "analyse", "--json")
    assert json.loads(r.stdout)["written"]["alerts_new"] == 0  # a rerun adds nothing


def test_generic_ingest_raises_the_positive_alert_too(hub_engine, tmp_path):
    """One ingest path: `workbench ingest rapid_tests` (the hub's ingest) raises the 快检阳性
    alert in the same transaction as the record, like `workbench market ingest`; a record seen
    again (a forced re-read) leaves its alert as it is."""
    from workbench import alerts as alerts_api
    from workbench.store.ingest import ingest_file

    path = _write(tmp_path / "t.csv", HEADER + "".join(GOOD), "gbk")
    s = ingest_file("rapid_tests", path, hub_engine)
    a = hub.query("select alert_id, category, status, subject from alerts", eng=hub_engine)
    assert s.loaded == len(GOOD) and list(a["category"]) == ["快检阳性"]
    assert a["subject"].iloc[0].startswith("rapid_tests:")
    alerts_api.publish(hub_engine, hub.read("alerts", eng=hub_engine).assign(status="已处置"))
    ingest_file("rapid_tests", path, hub_engine, force=True)
    assert hub.query("select status from alerts", eng=hub_engine).iloc[0, 0] == "已处置"
    assert len(alerts_api.history(a["alert_id"].iloc[0], hub_engine)) == 2  # 发布, 更新: nothing from the re-read
