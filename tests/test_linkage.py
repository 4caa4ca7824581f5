"""Linkage (联动): each rule end to end on a real hub (SQLite and PostgreSQL), idempotence,
links back to the alert and its evidence, the chain query, the CLI, and rules files refused
before anything runs (unknown category, department, case type, loops) with file and line."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from workbench import alerts, cases, clock, linkage, registry
from workbench.registry import Department
from workbench.store import hub
from workbench.store.ingest import insert_new
from workbench.store.schema import DATASETS


def _rule(rule_id: str) -> list[linkage.Rule]:
    rules = [r for r in linkage.load_rules() if r.id == rule_id]
    assert len(rules) == 1, rule_id
    return rules


def _put(eng, dataset: str, rows: list[dict]) -> None:
    with eng.begin() as conn:
        insert_new(conn, DATASETS[dataset], pd.DataFrame(rows))


def _cases(eng, **where) -> pd.DataFrame:
    t = DATASETS["cases"].table
    stmt = sa.select(t).order_by(t.c.case_id)
    for k, v in where.items():
        stmt = stmt.where(t.c[k] == v)
    return hub.query(stmt, eng=eng)


def _history(eng, case_id: str) -> pd.DataFrame:
    h = DATASETS["case_history"].table
    return hub.query(sa.select(h).where(h.c.case_id == case_id).order_by(h.c.ts), eng=eng)


T0 = pd.Timestamp("2025-01-06 02:30:00")  # naive UTC


@pytest.fixture
def city(hub_engine):
    eng = hub_engine
    _put(eng, "markets", [
        {"market_id": "M1", "name": "荷塘农贸市场", "district": "荷塘区"},
        {"market_id": "M2", "name": "芦淞农贸市场", "district": "芦淞区"},
    ])
    _put(eng, "canteens", [
        {"canteen_id": "C1", "name": "一中食堂", "school_name": "株洲市第一中学", "district": "荷塘区"},
        {"canteen_id": "C2", "name": "实验小学食堂", "school_name": "株洲市实验小学", "district": "石峰区"},
        {"canteen_id": "C3", "name": "芦淞中学食堂", "school_name": "芦淞中学", "district": "芦淞区"},
        {"canteen_id": "C4", "name": "荷塘小学食堂", "school_name": "荷塘小学", "district": "荷塘区"},
        {"canteen_id": "C5", "name": "荷塘幼儿园食堂", "school_name": "荷塘幼儿园", "district": "荷塘区"},
    ])
    _put(eng, "canteen_suppliers", [
        {"canteen_id": "C1", "market_id": "M1", "goods": "蔬菜"},
        {"canteen_id": "C2", "market_id": "M1", "goods": "蔬菜"},
        {"canteen_id": "C3", "market_id": "M2", "goods": "肉类"},
        {"canteen_id": "C4", "market_id": "M1", "goods": "水产、肉类"},  # buys at M1, but no vegetables
        {"canteen_id": "C5", "market_id": "M1"},  # buys at M1, the list does not say what: notified
    ])
    _put(eng, "cameras", [
        {"camera_id": "CAM1", "canteen_id": "C1", "name": "后厨1", "location": "切配间"},
        {"camera_id": "CAM2", "canteen_id": "C2", "name": "后厨1", "location": "烹饪间"},
    ])
    _put(eng, "hazard_sites", [{"site_id": "S1", "site_type": "燃气站", "name": "天元燃气调压站", "district": "天元区"}])
    _put(eng, "hazards", [{"hazard_id": "H1", "site_id": "S1", "hazard_type": "燃气泄漏", "level": "重大",
                           "description": "调压阀锈蚀", "ts": T0 - pd.Timedelta(days=40),
                           "deadline": T0 - pd.Timedelta(days=10), "district": "天元区", "department": "应急管理局"}])
    return eng


def _positive(eng, test_id="T1", market_id="M1", ts=T0):
    """A positive rapid test in the hub and its 快检阳性 alert (as the market raises it)."""
    _put(eng, "rapid_tests", [{"test_id": test_id, "ts": ts, "market_id": market_id, "stall_id": f"{market_id}-S01",
                               "commodity": "韭菜", "test_item": "有机磷和氨基甲酸酯类农药残留", "reading": 63.2,
                               "unit": "%", "threshold": 50.0, "result": "阳性", "district": "荷塘区"}])
    alerts.raise_alert(eng, alert_id=f"PT-{test_id}", ts=ts, department="市场监管局", category="快检阳性",
                       severity="warning", title=f"{market_id} 韭菜 有机磷农药残留 阳性",
                       subject=f"rapid_tests:{test_id}", evidence=json.dumps({"抑制率": 63.2}, ensure_ascii=False),
                       attrs={"test_id": test_id, "market_id": market_id, "stall_id": f"{market_id}-S01",
                              "commodity": "韭菜", "test_item": "有机磷和氨基甲酸酯类农药残留", "district": "荷塘区",
                              "goods": "蔬菜"})
    return f"PT-{test_id}"


# ------------------------------------------------------------------------------- the rules end to end

def test_positive_test_notifies_every_school_buying_there(city):
    eng = city
    aid = _positive(eng)
    rules = _rule("positive-test-school-notice")
    s = linkage.run(eng, rules=rules)
    assert s["alerts"] == 1 and s["opened"] == 3 and s["per_rule"][0]["opened"] == 3
    got = _cases(eng, case_type="school_notice")
    # C3 buys elsewhere; C4 buys at M1 but no vegetables (contains: {goods: goods}); C5's list is silent
    assert list(got["case_id"]) == [f"LK-SN-{aid}-C1", f"LK-SN-{aid}-C2", f"LK-SN-{aid}-C5"]
    c1 = got.iloc[0]
    assert c1["department"] == "教育局" and c1["status"] == "已下发" and c1["alert_id"] == aid
    assert c1["rule"] == "positive-test-school-notice" and c1["subject"] == "canteens:C1"
    assert c1["title"].startswith("株洲市第一中学：供货市场荷塘农贸市场快检阳性（韭菜")
    assert c1["district"] == "荷塘区" and got.iloc[1]["district"] == "石峰区"
    assert pd.Timestamp(c1["ts"]) == T0 and pd.Timestamp(c1["deadline"]) == T0 + pd.Timedelta(hours=72)
    ev = json.loads(c1["evidence"])
    assert ev["告警"] == aid and ev["关联键"]["market_id"] == "M1" and ev["证据"] == {"抑制率": 63.2}
    h = _history(eng, c1["case_id"])
    assert list(h["status"]) == ["已下发"] and h.iloc[0]["actor"] == linkage.ACTOR
    assert "positive-test-school-notice" in h.iloc[0]["note"]
    again = linkage.run(eng, rules=rules)
    assert again["opened"] == 0 and again["alerts"] == 1
    assert len(_cases(eng)) == 3 and len(_history(eng, c1["case_id"])) == 1


def test_positive_test_followup_for_the_stall(city):
    eng = city
    aid = _positive(eng, test_id="T9")
    rules = _rule("positive-test-followup")
    s = linkage.run(eng, rules=rules)
    assert s["opened"] == 1
    fu = cases.frame(eng, types=["market_followup"])
    assert len(fu) == 1
    got = _cases(eng, case_type="market_followup").iloc[0]
    assert got["alert_id"] == aid and got["subject"] == "rapid_tests:T9" and got["rule"] == "positive-test-followup"
    assert got["case_id"] == "FU-T9"
    assert len(_history(eng, "FU-T9")) >= 1
    assert linkage.run(eng, rules=rules)["opened"] == 0


def test_critical_violation_opens_a_supervision_case(city):
    eng = city
    alerts.raise_alert(eng, alert_id="CV-V1", ts=T0, department="市场监管局", category="明厨亮灶严重违规",
                       severity="critical", title="株洲市第一中学后厨发现老鼠", subject="canteen_violations:V1",
                       evidence="snapshots/V1.jpg",
                       attrs={"violation_id": "V1", "canteen_id": "C1", "camera_id": "CAM1",
                              "violation_class": "老鼠", "district": "荷塘区"})
    rules = _rule("critical-violation-supervision")
    assert linkage.run(eng, rules=rules)["opened"] == 1
    c = _cases(eng, case_type="supervision").iloc[0]
    assert c["case_id"] == "LK-CV-CV-V1-C1" and c["department"] == "市场监管局" and c["urgency"] == "紧急"
    assert c["subject"] == "canteen_violations:V1" and c["status"] == "已立案" and c["alert_id"] == "CV-V1"
    assert "株洲市第一中学后厨老鼠" in c["title"]
    assert json.loads(c["evidence"])["证据"] == "snapshots/V1.jpg"
    assert list(_history(eng, c["case_id"])["status"]) == ["已立案"]
    assert linkage.run(eng, rules=rules)["opened"] == 0


def test_camera_offline_for_a_day_opens_a_maintenance_case(city):
    eng = city
    now = clock.now()
    for cam, hours in (("CAM1", 30), ("CAM2", 3)):
        alerts.raise_alert(eng, alert_id=f"OFF-{cam}", ts=now - pd.Timedelta(hours=hours), department="市场监管局",
                           category="摄像头离线", severity="warning", title=f"{cam} 离线", subject=f"cameras:{cam}",
                           attrs={"camera_id": cam, "canteen_id": "C1" if cam == "CAM1" else "C2"})
    rules = _rule("camera-offline-maintenance")
    s = linkage.run(eng, rules=rules)
    assert s["alerts"] == 1 and s["opened"] == 1  # CAM2 only 3 h offline
    c = _cases(eng, case_type="maintenance").iloc[0]
    assert c["case_id"] == "LK-CAM-OFF-CAM1-CAM1" and c["subject"] == "cameras:CAM1" and c["status"] == "已派单"
    assert pd.Timestamp(c["ts"]) == (now - pd.Timedelta(hours=30) + pd.Timedelta(hours=24)).floor("us")
    assert "株洲市第一中学摄像头CAM1（切配间）离线超过24小时" == c["title"]
    # a camera back online before 24 h never gets one, even later
    alerts.lift(eng, "OFF-CAM2", ts=now)
    assert linkage.run(eng, rules=rules, now=now + pd.Timedelta(days=2))["opened"] == 0
    assert linkage.run(eng, rules=rules)["opened"] == 0


def test_cold_weather_warning_sets_off_inspection_tasks(city):
    eng = city
    alerts.raise_alert(eng, alert_id="W-DL-430202-2025010608", ts=T0, department="应急管理局", category="道路结冰",
                       severity="critical", level="橙色", title="荷塘区道路结冰橙色预警", area="荷塘区",
                       district="荷塘区", attrs={"district": "荷塘区", "area": "荷塘区"})
    rules = _rule("cold-weather-inspection")
    s = linkage.run(eng, rules=rules)
    assert s["opened"] >= 1
    tasks = cases.frame(eng, types=["inspection_task"])
    assert len(tasks) == s["opened"]
    ch = linkage.chain("W-DL-430202-2025010608", eng)
    assert set(ch.cases["case_type"]) == {"inspection_task"} and len(ch.cases) == s["opened"]
    assert set(ch.steps["case_id"]) == set(ch.cases["case_id"])
    assert linkage.run(eng, rules=rules)["opened"] == 0


def test_overdue_major_hazard_escalates_to_the_district_government(city):
    eng = city
    alerts.raise_alert(eng, alert_id="HZ-H1", ts=T0, department="应急管理局", category="重大隐患逾期",
                       severity="critical", title="重大隐患 H1 逾期未整改", subject="hazards:H1",
                       attrs={"hazard_id": "H1", "site_id": "S1", "district": "天元区"})
    rules = _rule("major-hazard-escalation")
    assert linkage.run(eng, rules=rules)["opened"] == 1
    c = _cases(eng, case_type="supervision").iloc[0]
    assert c["department"] == "区人民政府" and c["district"] == "天元区" and c["subject"] == "hazards:H1"
    assert c["title"] == "天元区天元燃气调压站重大隐患（燃气泄漏）逾期未整改，提请区人民政府督办"
    assert pd.Timestamp(c["deadline"]) == T0 + pd.Timedelta(hours=120)  # not the hazard's own deadline
    assert "调压阀锈蚀" in c["description"]
    assert linkage.run(eng, rules=rules)["opened"] == 0


def test_chain_from_alert_and_from_case(city):
    eng = city
    aid = _positive(eng)
    linkage.run(eng, rules=_rule("positive-test-school-notice"))
    cases.act(eng, f"LK-SN-{aid}-C1", "sign", actor="一中 王老师")
    ch = linkage.chain(aid, eng)
    assert ch.alert_id == aid and list(ch.alert_history["action"]) == ["发布"]
    assert sorted(ch.cases["case_id"]) == [f"LK-SN-{aid}-C1", f"LK-SN-{aid}-C2", f"LK-SN-{aid}-C5"]
    assert set(ch.cases["type_label"]) == {"通报核查"}
    s1 = ch.steps[ch.steps["case_id"] == f"LK-SN-{aid}-C1"]
    assert list(s1["status"]) == ["已下发", "已签收"] and s1.iloc[1]["actor"] == "一中 王老师"
    by_case = linkage.chain_of_case(f"LK-SN-{aid}-C2", eng)
    assert by_case.alert_id == aid and len(by_case.cases) == 3
    with pytest.raises(linkage.WorkbenchError, match="找不到告警"):
        linkage.chain("nope", eng)


def test_lifted_alerts_and_since(city):
    eng = city
    aid = _positive(eng, test_id="T2")
    alerts.lift(eng, aid, ts=T0 + pd.Timedelta(hours=1))
    rules = _rule("positive-test-school-notice")
    assert linkage.run(eng, rules=rules)["alerts"] == 0  # only active alerts
    _positive(eng, test_id="T3", ts=T0 - pd.Timedelta(days=3))
    assert linkage.run(eng, rules=rules, since=T0 - pd.Timedelta(days=1))["alerts"] == 0
    assert linkage.run(eng, rules=rules)["opened"] == 3


def test_long_ids_are_hashed_to_64():
    a = linkage.case_id("SN", "X" * 80, "C1")
    b = linkage.case_id("SN", "X" * 80, "C2")
    assert len(a) == 64 and a != b and a.startswith("LK-SN-XXX") and linkage.case_id("SN", "A1", "C1") == "LK-SN-A1-C1"


# ------------------------------------------------------------------------------- refusals

@pytest.fixture
def test_dept(tmp_path):
    """A department of the test's own, with two alert categories and two case types that
    raise them (for the loop)."""
    types = {
        "lk_demo_a": {"label": "甲案件", "department": "测试局", "intake": "登记", "transitions": {"登记": ["办结"]},
                      "closed": ["办结"], "raises": ["测试告警乙"]},
        "lk_demo_b": {"label": "乙案件", "department": "测试局", "intake": "登记", "transitions": {"登记": ["办结"]},
                      "closed": ["办结"], "raises": ["测试告警甲"]},
    }
    for name, d in types.items():
        cases.register_type(cases.CaseType.from_dict(name, d, where="test"))
    rules_file = tmp_path / "linkage.yaml"
    dept = Department(name="lktest", label="联动测试", agency="测试局", alert_categories=("测试告警甲", "测试告警乙"),
                      linkage=rules_file)
    registry.register(dept)
    yield rules_file
    registry.registry._departments.pop("lktest", None)
    for name in types:
        cases.TYPES.pop(name, None)


GOOD = """\
- id: a-to-b
  when:
    category: 测试告警甲
  open:
    case_type: lk_demo_a
    department: 教育局
"""


def _refused(path, match: str, line: int):
    with pytest.raises(linkage.LinkageError) as exc:
        linkage.validate(linkage.parse_rules(path, "lktest"))
    hits = [(w, p) for w, p in exc.value.problems if match in p]
    assert hits, exc.value.problems
    assert hits[0][0].endswith(f"linkage.yaml:{line}"), hits
    return exc.value


def test_a_good_file_passes(test_dept):
    test_dept.write_text(GOOD, encoding="utf-8")
    assert [r.id for r in linkage.validate(linkage.parse_rules(test_dept))] == ["a-to-b"]


def test_unknown_category_is_refused_with_file_and_line(test_dept):
    test_dept.write_text(GOOD.replace("测试告警甲", "快检阴性"), encoding="utf-8")
    _refused(test_dept, "未知的告警类别“快检阴性”", 3)


def test_unknown_department_is_refused_with_file_and_line(test_dept):
    test_dept.write_text(GOOD.replace("教育局", "宇宙管理局"), encoding="utf-8")
    _refused(test_dept, "未知的部门“宇宙管理局”", 6)


def test_unknown_case_type_is_refused_with_file_and_line(test_dept):
    test_dept.write_text(GOOD.replace("lk_demo_a", "no_such_type"), encoding="utf-8")
    _refused(test_dept, "未登记的案件类型“no_such_type”", 5)


def test_rules_that_loop_are_refused_naming_the_rules(test_dept):
    test_dept.write_text(GOOD + """\
- id: b-to-a
  when: {category: 测试告警乙}
  open: {case_type: lk_demo_b}
""", encoding="utf-8")
    err = _refused(test_dept, "成环", 3)
    text = str(err)
    assert "a-to-b" in text and "b-to-a" in text and "linkage.yaml:7" in text


def test_typos_and_broken_yaml_are_refused(test_dept):
    test_dept.write_text(GOOD.replace("  when:", "  wehn:"), encoding="utf-8")
    with pytest.raises(linkage.LinkageError) as exc:
        linkage.parse_rules(test_dept)
    assert any("未知的项“wehn”" in p and w.endswith(":2") for w, p in exc.value.problems)
    test_dept.write_text(GOOD + "- id: [broken\n", encoding="utf-8")
    with pytest.raises(linkage.LinkageError, match="YAML"):
        linkage.parse_rules(test_dept)


def test_a_refused_file_runs_nothing(test_dept, sqlite_hub):
    test_dept.write_text(GOOD.replace("教育局", "宇宙管理局"), encoding="utf-8")
    with pytest.raises(linkage.LinkageError):
        linkage.run(sqlite_hub, departments=["lktest"])
    assert _cases(sqlite_hub).empty


def test_cli_check_run_and_chain(test_dept, sqlite_hub):
    from workbench.cli import main

    runner = CliRunner()
    test_dept.write_text(GOOD.replace("教育局", "宇宙管理局"), encoding="utf-8")
    r = runner.invoke(main, ["linkage", "check", "-d", "lktest"])
    assert r.exit_code == 2 and "未知的部门“宇宙管理局”" in r.output and "linkage.yaml:6" in r.output
    test_dept.write_text(GOOD, encoding="utf-8")
    r = runner.invoke(main, ["linkage", "check", "-d", "lktest"])
    assert r.exit_code == 0 and "a-to-b" in r.output and "检查通过" in r.output
    alerts.raise_alert(sqlite_hub, alert_id="DEMO-1", ts=T0, department="测试局", category="测试告警甲",
                       severity="info", title="测试告警")
    r = runner.invoke(main, ["linkage", "run", "-d", "lktest", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["opened"] == 1 and out["per_rule"][0]["rule"] == "a-to-b"
    r = runner.invoke(main, ["linkage", "run", "-d", "lktest"])
    assert r.exit_code == 0 and "新开案件 0 件" in r.output
    r = runner.invoke(main, ["linkage", "chain", "DEMO-1"])
    assert r.exit_code == 0 and "LK-a-to-b-DEMO-1" in r.output and "登记" in r.output
    r = runner.invoke(main, ["linkage", "chain", "NOPE"])
    assert r.exit_code == 2 and "找不到告警" in r.output
