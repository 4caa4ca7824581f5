"""A market's rapid-test export as markets send it (SQLite and PostgreSQL): markets by name,
检测值(%) with its unit in the header, 判定标准 as written ("≥50%", "≤50mg/kg", "阴性"),
摊位号 within the market, 检测设备; results that contradict their readings, unknown and
ambiguous names, unknown stalls, unreadable standards and a profile's value map that does not
cover a value are quarantined with the file, the column and the value; the good rows load."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa

from workbench.market import intake
from workbench.store import hub, profiles
from workbench.store.ingest import ingest_file

MARKETS = ("市场编号,市场名称,区县\n"
           "M01,荷塘农贸市场,荷塘区\n"
           "M02,芦淞菜市场,芦淞区\n"
           "M03,石峰农贸市场,石峰区\n"
           "M04,建设农贸市场,石峰区\n"      # two markets of one name: a row naming it cannot be placed
           "M05,建设农贸市场,天元区\n")
STALLS = ("摊位编号,市场编号,摊位号,经营户,经营类别\n"
          "M01-001,M01,A01,张记蔬菜,蔬菜\n"
          "M01-002,M01,A02,李记蔬菜,蔬菜\n"
          "M01-003,M01,B12,王记肉铺,猪肉\n"
          "M02-001,M02,A01,赵记蔬菜,蔬菜\n"      # A01 again: a stall number is unique only within its market
          "M02-002,M02,C03,钱记水产,水产\n")      # M03 has no stalls registered: its numbers stay as written

# the export of a market's rapid-test system, in the shape the issue names
EXPORT_HEADER = "序号,检测编号,检测时间,采样时间,市场名称,摊位号,经营户,样品名称,检测项目,检测方法,检测值(%),判定标准,检测结果,检测设备,检测员\n"
PEST = "有机磷和氨基甲酸酯类农药残留,酶抑制率法"
CARD = "克伦特罗,胶体金免疫层析法"
GOOD = [
    f"1,K001,2026-01-05 08:30,2026-01-05 08:15,荷塘农贸市场,A01,张记蔬菜,韭菜,{PEST},12.5,≥50%,阴性,KJY-01,张三\n",
    f"2,K002,2026-01-05 08:45,2026-01-05 08:20,荷塘农贸市场,a-02,李记蔬菜,芹菜,{PEST},61.0,≥50%,阳性,KJY-01,张三\n",
    f"3,K003,2026-01-05 09:00,2026-01-05 08:40,芦淞菜市场,A01,赵记蔬菜,菠菜,{PEST},20.0,≥50%,阴性,KJY-02,李四\n",
    f"4,K004,2026-01-05 09:10,2026-01-05 08:50,石峰农贸市场,D07,孙记蔬菜,小白菜,{PEST},8.0,≥50%,阴性,KJY-03,王五\n",
    f"5,K005,2026-01-05 09:20,2026-01-05 09:05,荷塘农贸市场,B12,王记肉铺,猪肉,{CARD},,阴性,阴性,KJY-01,张三\n",
]
BAD = {  # line → (reason, a piece of the detail)
    f"6,K006,2026-01-05 09:30,2026-01-05 09:15,荷塘农贸市场,A01,张记蔬菜,韭菜,{PEST},72.4,≥50%,阴性,KJY-01,张三\n":
        (intake.RESULT_CONTRADICTS, "按读数应为阳性"),
    f"7,K007,2026-01-05 09:40,2026-01-05 09:25,荷塘农贸市场,B12,王记肉铺,猪肉,{CARD},1,阴性,阴性,KJY-01,张三\n":
        (intake.RESULT_CONTRADICTS, "判定标准 阴性"),   # the card shows its line: positive, recorded 阴性
    f"8,K008,2026-01-05 09:50,2026-01-05 09:35,荷塘农贸市常,A01,张记蔬菜,韭菜,{PEST},10.0,≥50%,阴性,KJY-01,张三\n":
        ("未登记的农贸市场", "“荷塘农贸市常”|'荷塘农贸市常'|最接近：荷塘农贸市场"),
    f"9,K009,2026-01-05 10:00,2026-01-05 09:45,建设农贸市场,A01,周记蔬菜,韭菜,{PEST},10.0,≥50%,阴性,KJY-04,赵六\n":
        ("农贸市场名称", "对应多个编号：M04、M05"),
    f"10,K010,2026-01-05 10:10,2026-01-05 09:55,荷塘农贸市场,A03,吴记蔬菜,韭菜,{PEST},10.0,≥50%,阴性,KJY-01,张三\n":
        (intake.UNKNOWN_STALL, "市场 M01 的摊位号“A03”未登记，最接近：A01、A02"),
    f"11,K011,2026-01-05 10:20,2026-01-05 10:05,荷塘农贸市场,A01,张记蔬菜,韭菜,{PEST},10.0,按国标判定,阴性,KJY-01,张三\n":
        (intake.UNREADABLE_CRITERION, "判定标准: '按国标判定'"),
}


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def registry(hub_engine, tmp_path):
    assert ingest_file("markets", _write(tmp_path / "农贸市场名录.csv", MARKETS), hub_engine).loaded == 5
    assert ingest_file("stalls", _write(tmp_path / "摊位名录.csv", STALLS), hub_engine).loaded == 5
    return hub_engine


def _quarantine(eng) -> dict:
    q = hub.quarantine_rows("rapid_tests", eng=eng)
    return {json.loads(r.row_json)["检测编号"]: r for r in q.itertuples()}


def test_market_export_loads_by_name_with_units_standards_and_stalls(registry, tmp_path):
    path = _write(tmp_path / "荷塘等市场快检导出.csv", EXPORT_HEADER + "".join(GOOD) + "".join(BAD), "gbk")
    s = intake.ingest_tests(path, registry)
    assert (s.rows_read, s.loaded, s.quarantined) == (len(GOOD) + len(BAD), len(GOOD), len(BAD))
    assert s.unknown_columns == []      # 序号 is a row counter; every other column has its field
    held = hub.read("rapid_tests", eng=registry).set_index("test_id")
    assert sorted(held.index) == ["K001", "K002", "K003", "K004", "K005"]
    # names → codes; (market, 摊位号) → the registry's stall_id; a market without stalls keeps its number
    assert held["market_id"].to_dict() == {"K001": "M01", "K002": "M01", "K003": "M02", "K004": "M03", "K005": "M01"}
    assert held["stall_id"].to_dict() == {"K001": "M01-001", "K002": "M01-002", "K003": "M02-001",
                                          "K004": "D07", "K005": "M01-003"}
    # 检测值(%): the reading and its unit; 判定标准: the number and the text as written
    assert held.loc["K002", "reading"] == 61.0 and held.loc["K002", "unit"] == "%"
    assert held.loc["K002", "threshold"] == 50.0 and held.loc["K002", "criterion"] == "≥50%"
    assert pd.isna(held.loc["K005", "threshold"]) and held.loc["K005", "criterion"] == "阴性"
    assert held.loc["K001", "device_id"] == "KJY-01"
    # each bad row: one reason, with the value and the closest registry entries
    q = _quarantine(registry)
    for line, (reason, detail) in BAD.items():
        tid = line.split(",")[1]
        said = q[tid].reason + " " + (q[tid].detail or "")
        assert q[tid].reason.startswith(reason) and "; " not in q[tid].reason, (tid, q[tid].reason)
        for piece in detail.split("|")[-1:] + (["荷塘农贸市常"] if tid == "K008" else []):
            assert piece in said, (tid, said)
        assert q[tid].filename == path.name
    assert json.loads(q["K010"].row_json)["摊位号"] == "A03"   # the row as the file had it
    # the positive's alert names the stall by the registry's id
    a = hub.read("alerts", eng=registry).set_index("alert_id")
    assert list(a.index) == ["MKT-POS-K002"]
    assert json.loads(a.loc["MKT-POS-K002", "attrs"])["stall_id"] == "M01-002"


def test_generic_ingest_reads_the_export_the_same_way(registry, tmp_path):
    """`workbench ingest rapid_tests FILE` = `workbench market ingest FILE`: the same loader."""
    path = _write(tmp_path / "export.csv", EXPORT_HEADER + "".join(GOOD) + "".join(BAD))
    s = ingest_file("rapid_tests", path, registry)
    assert (s.loaded, s.quarantined) == (len(GOOD), len(BAD))
    held = hub.read("rapid_tests", eng=registry).set_index("test_id")
    assert held.loc["K003", "stall_id"] == "M02-001" and held.loc["K003", "market_id"] == "M02"
    assert sum(s.reasons.values()) == len(BAD) and all(any(r.startswith(w) for r in s.reasons) for w, _ in BAD.values())


def test_without_a_stall_registry_stall_numbers_are_kept_as_written(hub_engine, tmp_path):
    ingest_file("markets", _write(tmp_path / "m.csv", MARKETS), hub_engine)
    s = intake.ingest_tests(_write(tmp_path / "t.csv", EXPORT_HEADER + GOOD[0] + GOOD[2]
                                   + next(k for k, v in BAD.items() if v[0] == intake.UNKNOWN_STALL)), hub_engine)
    assert (s.loaded, s.quarantined) == (3, 0)
    held = hub.read("rapid_tests", eng=hub_engine).set_index("test_id")
    assert held["stall_id"].to_dict() == {"K001": "A01", "K003": "A01", "K010": "A03"}


def test_stall_codes_are_accepted_within_their_market_only(registry, tmp_path):
    text = ("检测编号,检测时间,市场编号,摊位编号,样品名称,检测项目,检测值,判定限值,检测结果\n"
            "S1,2026-01-05 08:30,M01,M01-002,韭菜,有机磷和氨基甲酸酯类农药残留,10,50,阴性\n"
            "S2,2026-01-05 08:40,M02,M01-002,韭菜,有机磷和氨基甲酸酯类农药残留,10,50,阴性\n")
    s = ingest_file("rapid_tests", _write(tmp_path / "codes.csv", text), registry)
    assert (s.loaded, s.quarantined) == (1, 1)
    assert _quarantine_by_code(registry)["S2"].reason == intake.UNKNOWN_STALL


def _quarantine_by_code(eng) -> dict:
    q = hub.quarantine_rows("rapid_tests", eng=eng)
    return {json.loads(r.row_json)["检测编号"]: r for r in q.itertuples()}


# ------------------------------------------------------------------ 判定标准: the direction matters

def _judge(rows: list[tuple]) -> list:
    df = pd.DataFrame(rows, columns=["test_item", "method", "unit", "reading", "threshold", "criterion", "result"])
    return intake.derived_result(df).tolist()


def test_the_standard_says_which_side_is_positive():
    assert _judge([
        ("有机磷和氨基甲酸酯类农药残留", None, "%", 50.0, 50.0, "≥50%", None),     # at the threshold: positive
        ("有机磷和氨基甲酸酯类农药残留", None, "%", 50.0, 50.0, ">50%", None),      # strictly above only
        ("有机磷和氨基甲酸酯类农药残留", None, "%", 50.0, 50.0, "50%以上", None),
        ("二氧化硫", "比色法", "mg/kg", 50.0, 50.0, "≤50mg/kg", None),             # a compliant sample keeps the limit
        ("二氧化硫", "比色法", "mg/kg", 50.1, 50.0, "≤50mg/kg", None),
        ("甲醛", "比色法", "mg/kg", 0.05, 0.05, "<0.05mg/kg", None),               # must stay below: 0.05 is positive
        ("亚硝酸盐", "比色法", "mg/kg", 0.05, 0.05, "不超过0.05mg/kg", None),
        ("二氧化硫", "比色法", "mg/kg", 50.0, 50.0, "50", None),                   # no operator: the method (above)
        ("有机磷和氨基甲酸酯类农药残留", None, "%", 50.0, 50.0, "50", None),        # no operator: enzyme (at or above)
        ("克伦特罗", "胶体金免疫层析法", None, 1.0, None, "阴性", None),             # qualitative: the card's line
        ("克伦特罗", "胶体金免疫层析法", None, 0.0, None, "未检出", None),
        ("克伦特罗", "胶体金免疫层析法", None, None, None, "阴性", None),           # no reading: not judged
        ("有机磷和氨基甲酸酯类农药残留", None, "%", 72.0, None, "阴性", None),       # qualitative, not a card: not judged
    ]) == ["阳性", "阴性", "阳性", "阴性", "阳性", "阳性", "阴性", "阴性", "阳性", "阳性", "阴性", None, None]


def test_quantitative_limits_in_a_file_quarantine_contradictions_both_ways(registry, tmp_path):
    text = ("检测编号,检测时间,市场名称,样品名称,检测项目,检测方法,检测值,单位,判定标准,检测结果\n"
            "Q1,2026-01-05 08:30,芦淞菜市场,银耳,二氧化硫,比色法,50,mg/kg,≤50mg/kg,阴性\n"     # at the limit: compliant
            "Q2,2026-01-05 08:40,芦淞菜市场,银耳,二氧化硫,比色法,50,mg/kg,≤50mg/kg,阳性\n"     # contradicts
            "Q3,2026-01-05 08:50,芦淞菜市场,银耳,二氧化硫,比色法,80,mg/kg,≤50mg/kg,阴性\n"     # contradicts
            "Q4,2026-01-05 09:00,芦淞菜市场,腊肉,亚硝酸盐,比色法,0.05,mg/kg,<0.05mg/kg,阳性\n"  # not below: positive
            "Q5,2026-01-05 09:10,芦淞菜市场,腊肉,亚硝酸盐,比色法,0.01,mg/kg,<0.05mg/kg,阳性\n")  # contradicts
    s = ingest_file("rapid_tests", _write(tmp_path / "colour.csv", text), registry)
    assert (s.loaded, s.quarantined) == (2, 3)
    q = _quarantine_by_code(registry)
    assert sorted(q) == ["Q2", "Q3", "Q5"] and {r.reason for r in q.values()} == {intake.RESULT_CONTRADICTS}
    assert q["Q3"].detail == "检测值 80.0mg/kg，判定标准 ≤50mg/kg，检测结果 阴性（按读数应为阳性）"
    held = hub.read("rapid_tests", eng=registry).set_index("test_id")
    assert held.loc["Q4", "threshold"] == 0.05 and held.loc["Q4", "criterion"] == "<0.05mg/kg"


# ------------------------------------------------------------------ a profile for the market system's export

SYSTEM_HEADER = "序号,检测单号,检测时间,抽样时间,被检市场,摊位号,被检单位,样品名称,样品类型,产地,检测项目,检测方法,检测值,单位,判定标准,检测结论,仪器编号,检测人员,上传状态\n"
SYSTEM_ROWS = [
    "1,KJ20260105001,2026/01/05 08:30,2026/01/05 08:10,荷塘农贸市场,A01,张记蔬菜,韭菜,蔬菜,本市,有机磷和氨基甲酸酯类农药残留,酶抑制率法,12.5,%,≥50%,合格,KJY-01,张三,已上传\n",
    "2,KJ20260105002,2026/01/05 08:50,2026/01/05 08:20,荷塘农贸市场,A02,李记蔬菜,芹菜,蔬菜,外省,有机磷和氨基甲酸酯类农药残留,酶抑制率法,63.1,%,≥50%,不合格,KJY-01,张三,已上传\n",
    "3,KJ20260105003,2026/01/05 09:10,2026/01/05 08:40,芦淞菜市场,C03,钱记水产,草鱼,水产,本地,孔雀石绿,胶体金免疫层析法,0,,阴性,合格,KJY-02,李四,未上传\n",
    "4,KJ20260105004,2026/01/05 09:30,2026/01/05 09:00,芦淞菜市场,A01,赵记蔬菜,豇豆,蔬菜,本地,有机磷和氨基甲酸酯类农药残留,酶抑制率法,48.9,%,≥50%,可疑,KJY-02,李四,已上传\n",
]


def test_shipped_profile_reads_the_market_systems_export(registry, tmp_path):
    p = profiles.load("market_export")
    assert p.dataset == "rapid_tests" and p.values["result"]["不合格"] == "阳性"
    path = _write(tmp_path / "快检系统导出.csv", SYSTEM_HEADER + "".join(SYSTEM_ROWS), "gb18030")
    s = ingest_file("rapid_tests", path, registry, profile="market_export")
    assert (s.rows_read, s.loaded, s.quarantined) == (4, 3, 1) and s.profile == "market_export"
    assert s.unknown_columns == []   # 上传状态 is kept aside by the profile
    held = hub.read("rapid_tests", eng=registry).set_index("test_id")
    assert held["result"].to_dict() == {"KJ20260105001": "阴性", "KJ20260105002": "阳性", "KJ20260105003": "阴性"}
    assert held["origin"].to_dict() == {"KJ20260105001": "本地", "KJ20260105002": "外地", "KJ20260105003": "本地"}
    assert held.loc["KJ20260105002", "stall_id"] == "M01-002" and held.loc["KJ20260105003", "stall_id"] == "M02-002"
    assert pd.Timestamp(held.loc["KJ20260105001", "ts"]) == pd.Timestamp("2026-01-05 00:30")   # Beijing 08:30
    assert set(held["source"]) == {"市场快检系统"} and held.loc["KJ20260105002", "device_id"] == "KJY-01"
    # 可疑 is no result the hub knows: the row waits in quarantine, naming the file, column and value
    (q,) = hub.quarantine_rows("rapid_tests", eng=registry).itertuples()
    assert q.reason.startswith("值映射未覆盖：检测结果") and q.filename == path.name
    assert q.detail == "列“检测结论”的值 '可疑' 不在配置的 values.result 中"
    assert json.loads(q.row_json)["检测结论"] == "可疑"
    extras = hub.query("select data from row_extras where dataset = 'rapid_tests'", eng=registry)
    assert {json.loads(d)["上传状态"] for d in extras["data"]} == {"已上传", "未上传"}
    with registry.connect() as conn:
        assert conn.execute(sa.text("select profile from ingest_files where dataset = 'rapid_tests'")).scalar() == "market_export"


def test_profile_preview_writes_nothing(registry, tmp_path):
    path = _write(tmp_path / "预览.csv", SYSTEM_HEADER + "".join(SYSTEM_ROWS))
    before = {t: _count(registry, t) for t in ("rapid_tests", "quarantine", "ingest_files", "alerts", "row_extras", "cases")}
    s = intake.ingest_tests(path, registry, profile="market_export", preview=True)
    assert s.preview is not None and (s.loaded, s.quarantined) == (3, 1)
    assert {t: _count(registry, t) for t in before} == before
    mapping = {m["column"]: m["field"] for m in s.mapping}
    assert mapping["检测结论"] == "result" and mapping["被检市场"] == "market_id" and mapping["上传状态"] == "~"
    assert s.preview.sample[1]["摊位编号"] == "M01-002" and s.preview.sample[1]["检测结果"] == "阳性"
    assert s.preview.quarantine_sample[0]["原因"].startswith("值映射未覆盖：检测结果")


def _count(eng, table) -> int:
    with eng.connect() as conn:
        return conn.execute(sa.text(f"select count(*) from {table}")).scalar()


@pytest.mark.slow
def test_cli_verbs_agree_on_the_export(tmp_path):
    """`workbench ingest rapid_tests FILE` and `workbench market ingest FILE` (two hubs, same file)."""
    out = []
    for verb in (["ingest", "rapid_tests"], ["market", "ingest"]):
        d = tmp_path / verb[0]
        d.mkdir()
        env = {"WORKBENCH_DB_URL": f"sqlite:///{d / 'city.db'}", "WORKBENCH_DATA_DIR": str(d / "data"), "PATH": "/usr/bin:/bin"}
        def run(*a, env=env):
            return subprocess.run([sys.executable, "-m", "workbench.cli", *a], capture_output=True, text=True,
                                  env=env, timeout=300, check=False)

        for ds, name, text in (("markets", "m.csv", MARKETS), ("stalls", "s.csv", STALLS)):
            r = run("ingest", ds, str(_write(d / name, text)), "--json")
            assert r.returncode == 0, r.stderr
        r = run(*verb, str(_write(d / "export.csv", EXPORT_HEADER + "".join(GOOD) + "".join(BAD))), "--json")
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout)
        res = res[0] if isinstance(res, list) else res
        out.append((res["loaded"], res["quarantined"], sorted(res["reasons"].items())))
        held = hub.read("rapid_tests", eng=hub.engine(env["WORKBENCH_DB_URL"]))
        out.append(sorted(zip(held["test_id"], held["stall_id"])))
        hub.dispose(env["WORKBENCH_DB_URL"])
    assert out[0] == out[2] and out[1] == out[3] and out[0][:2] == (len(GOOD), len(BAD))


def test_profile_reads_the_system_export_as_xlsx_with_a_title_row(registry, tmp_path):
    """The 导出 button writes XLSX: a title row above the header, times as Excel dates, numbers as numbers."""
    from datetime import datetime

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["荷塘农贸市场快检数据导出（2026年01月05日）"])
    ws.append(SYSTEM_HEADER.strip().split(","))
    for line in SYSTEM_ROWS[:3]:
        cells = line.strip().split(",")
        cells[0] = int(cells[0])
        cells[2] = datetime.strptime(cells[2], "%Y/%m/%d %H:%M")
        cells[3] = datetime.strptime(cells[3], "%Y/%m/%d %H:%M")
        cells[12] = float(cells[12])
        ws.append(cells)
    path = tmp_path / "快检系统导出.xlsx"
    wb.save(path)
    s = intake.ingest_tests(path, registry, profile="market_export")
    assert (s.rows_read, s.loaded, s.quarantined) == (3, 3, 0)
    held = hub.read("rapid_tests", eng=registry).set_index("test_id")
    assert pd.Timestamp(held.loc["KJ20260105002", "ts"]) == pd.Timestamp("2026-01-05 00:50")
    assert held.loc["KJ20260105002", "reading"] == 63.1 and held.loc["KJ20260105002", "result"] == "阳性"
    assert held.loc["KJ20260105001", "stall_id"] == "M01-001"
    assert list(hub.read("alerts", eng=registry)["alert_id"]) == ["MKT-POS-KJ20260105002"]


def test_a_stall_number_the_registry_gives_two_stalls_is_not_guessed(registry, tmp_path):
    ingest_file("stalls", _write(tmp_path / "more.csv", "摊位编号,市场编号,摊位号\nM01-009,M01,A-02\n"), registry)
    s = ingest_file("rapid_tests", _write(tmp_path / "t.csv", EXPORT_HEADER + GOOD[0] + GOOD[1]), registry)
    assert (s.loaded, s.quarantined) == (1, 1)
    (q,) = hub.quarantine_rows("rapid_tests", eng=registry).itertuples()
    assert q.reason == intake.AMBIGUOUS_STALL
    assert q.detail == "市场 M01 的摊位号“a-02”对应多个摊位编号：M01-002、M01-009"
