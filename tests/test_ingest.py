"""Ingest against a real hub (SQLite and PostgreSQL): real files, broken ones included."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import sqlalchemy as sa

from workbench.store import hub
from workbench.store.ingest import IngestError, ingest_file, parse_timestamps
from workbench.store.schema import ingest_files

HEADER = "检测编号,检测时间,采样时间,市场编号,样品名称,检测项目,检测值,判定限值,检测结果,经营户\n"
ROWS = [
    "T001,2023年12月22日 08:30,2023年12月22日 08:15,M01,韭菜,有机磷和氨基甲酸酯类农药残留,１２.5,50,阴性,䶮记菜摊\n",
    "T002,2023/12/22 9:05,2023/12/22 8:50,M01,芹菜,有机磷和氨基甲酸酯类农药残留,61.0,50,阳性,李记\n",
    "T003,2023-12-22 10:00,2023-12-22 09:50,M02,猪肉,克伦特罗,0,1,阴性,王记\n",
]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def accounted(s) -> bool:
    """Nothing lost: every row read was loaded, quarantined or a known duplicate."""
    return s.rows_read == s.loaded + s.quarantined + s.duplicates


def quarantined(eng, dataset="rapid_tests") -> pd.DataFrame:
    return hub.quarantine_rows(dataset, eng=eng).sort_values("line").reset_index(drop=True)


# --------------------------------------------------------------------------- good files

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_encodings_load_the_same_values(hub_engine, tmp_path, encoding):
    text = HEADER + "".join(ROWS)
    s = ingest_file("rapid_tests", write(tmp_path / "tests.csv", text, encoding), hub_engine)
    assert (s.loaded, s.quarantined, s.duplicates) == (3, 0, 0)
    assert s.encoding == encoding
    df = hub.read("rapid_tests", eng=hub_engine).set_index("test_id")
    assert df.loc["T001", "reading"] == 12.5  # full-width digits
    assert df.loc["T001", "vendor"] == "䶮记菜摊"  # a character outside GBK survives
    # 08:30 in Asia/Shanghai is 00:30 UTC; the hub stores UTC
    assert pd.Timestamp(df.loc["T001", "ts"]) == pd.Timestamp("2023-12-22 00:30")
    assert pd.Timestamp(df.loc["T002", "sampled_at"]) == pd.Timestamp("2023-12-22 00:50")


def test_gbk_csv_is_detected(hub_engine, tmp_path):
    text = HEADER + "".join(ROWS).replace("䶮记菜摊", "张记菜摊")
    s = ingest_file("rapid_tests", write(tmp_path / "gbk.csv", text, "gbk"), hub_engine)
    assert s.encoding == "gbk" and s.loaded == 3
    assert set(hub.read("rapid_tests", eng=hub_engine)["vendor"]) == {"张记菜摊", "李记", "王记"}


def test_xlsx_with_title_rows_and_typed_cells(hub_engine, tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["株洲市农贸市场名录（2026年）"])
    ws.append(["填报单位：株洲市市场监督管理局", None, "填报日期：2026年1月5日"])
    ws.append(["市场编号", "市场名称", "区县", "街道", "纬度", "经度", "摊位数", "备注"])
    ws.append(["M01", "建设农贸市场", "芦淞区", "建设街道", 27.80, 113.16, 45, "示范市场"])
    ws.append([None, None, None, None, None, None, None, None])  # blank row in the middle
    ws.append(["M02", "月塘农贸市场", "荷塘区", "月塘街道", "27.86", "113.17", "３８", None])
    path = tmp_path / "markets.xlsx"
    wb.save(path)
    s = ingest_file("markets", path, hub_engine)
    assert (s.rows_read, s.loaded, s.quarantined) == (2, 2, 0)
    assert s.unknown_columns == ["备注"]
    df = hub.read("markets", eng=hub_engine).set_index("market_id")
    assert df.loc["M02", "stall_count"] == 38 and df.loc["M01", "lat"] == pytest.approx(27.80)


def test_xlsx_datetime_cells_and_quarantine_line_numbers(hub_engine, tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["隐患排查台账"])
    ws.append(["隐患编号", "点位编号", "隐患类型", "隐患等级", "发现时间", "整改期限"])
    ws.append(["H1", "S1", "消防通道堵塞", "一般", datetime(2026, 1, 5, 9, 0), datetime(2026, 1, 20)])
    ws.append(["H2", "S1", "燃气管道老化", "特大", datetime(2026, 1, 5, 9, 0), None])  # unknown level
    ws.append(["H3", "S2", "违规用电", "重大", "2026年1月6日", "2026年1月1日"])  # deadline before found
    path = tmp_path / "hazards.xlsx"
    wb.save(path)
    s = ingest_file("hazards", path, hub_engine)
    assert (s.loaded, s.quarantined) == (1, 2) and accounted(s)
    q = quarantined(hub_engine, "hazards")
    assert list(q["line"]) == [4, 5]  # the spreadsheet's own row numbers
    assert "隐患等级取值不在" in q.loc[0, "reason"]
    assert q.loc[1, "reason"] == "整改期限早于发现时间"


def test_json_records_with_english_names(hub_engine, tmp_path):
    recs = [
        {"service_request_id": "E1", "requested_datetime": "2026-01-05T08:00:00+08:00",
         "updated_datetime": "2026-01-05T09:00:00+08:00", "service_code": "暴露垃圾",
         "lat": 27.86, "long": 113.17, "agency_responsible": "城市管理和综合执法局"},
        {"service_request_id": "E2", "requested_datetime": "2026-01-05T10:00:00Z",
         "service_code": "占道经营", "lat": "27.81", "long": "113.15", "extra": {"a": 1}},
    ]
    path = write(tmp_path / "events.json", json.dumps({"records": recs}, ensure_ascii=False))
    s = ingest_file("city_events", path, hub_engine)
    assert s.loaded == 2 and s.unknown_columns == ["extra"]
    df = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert pd.Timestamp(df.loc["E1", "ts"]) == pd.Timestamp("2026-01-05 00:00")  # +08:00 → UTC
    assert pd.Timestamp(df.loc["E2", "ts"]) == pd.Timestamp("2026-01-05 10:00")  # Z stays
    assert df.loc["E1", "department"] == "城市管理和综合执法局"


def test_parse_timestamps_forms():
    s = pd.Series(["2023年12月22日 08:30", "2023年1月2日", "2023/12/22 8:05", "2023-12-22T08:30:00+08:00",
                   "2023.12.22 08:30:15", "2023年12月22日8时30分", "2023-12-22 08:30Z", "not a date", None])
    got = parse_timestamps(s)
    want = ["2023-12-22 00:30", "2023-01-01 16:00", "2023-12-22 00:05", "2023-12-22 00:30",
            "2023-12-22 00:30:15", "2023-12-22 00:30", "2023-12-22 08:30", None, None]
    assert [None if pd.isna(v) else v for v in got] == [None if w is None else pd.Timestamp(w) for w in want]


# --------------------------------------------------------------------------- idempotent, raw kept

def test_same_file_twice_adds_nothing_and_raw_is_kept(hub_engine, tmp_path):
    path = write(tmp_path / "tests.csv", HEADER + "".join(ROWS))
    first = ingest_file("rapid_tests", path, hub_engine)
    second = ingest_file("rapid_tests", path, hub_engine)
    assert first.loaded == 3 and second.skipped and second.loaded == 0
    # the same rows under another file name (other bytes): keys make it add nothing
    third = ingest_file("rapid_tests", write(tmp_path / "again.csv", HEADER + "".join(ROWS), "gb18030"),
                        hub_engine)
    assert (third.loaded, third.duplicates) == (0, 3)
    assert len(hub.read("rapid_tests", eng=hub_engine)) == 3
    raw = hub.ingest_log(eng=hub_engine)
    assert set(raw["status"]) == {"done"} and len(raw) == 2
    for p in raw["raw_path"]:
        assert Path(p).exists() and Path(p).parent.parent.name == "raw"
    assert Path(raw.iloc[-1]["raw_path"]).read_bytes() == path.read_bytes()


# --------------------------------------------------------------------------- broken files

def test_bad_dates_go_to_quarantine_with_line(hub_engine, tmp_path):
    bad = ["T010,2023年13月45日 08:30,,M01,韭菜,有机磷,3,50,阴性,赵记\n",
           "T011,昨天上午,,M01,韭菜,有机磷,3,50,阴性,赵记\n",
           "T012,2023-12-22 08:00,2023-12-22 09:00,M01,韭菜,有机磷,3,50,阴性,赵记\n"]  # tested before sampled
    path = write(tmp_path / "dates.csv", HEADER + ROWS[0] + "".join(bad) + ROWS[1])
    s = ingest_file("rapid_tests", path, hub_engine)
    assert (s.loaded, s.quarantined) == (2, 3) and accounted(s)
    q = quarantined(hub_engine)
    assert list(q["line"]) == [3, 4, 5]
    assert q.loc[0, "reason"] == "检测时间不是有效的日期时间"
    assert q.loc[0, "detail"] == "检测时间: '2023年13月45日 08:30'"
    assert q.loc[2, "reason"] == "检测时间早于采样时间"
    row = json.loads(q.loc[1, "row_json"])  # the row as it was, every column, nothing fixed
    assert row["检测时间"] == "昨天上午" and row["经营户"] == "赵记" and row["采样时间"] == ""
    assert set(q["filename"]) == {"dates.csv"}


def test_negative_counts_and_out_of_range(hub_engine, tmp_path):
    text = ("市场编号,市场名称,区县,摊位数,纬度\n"
            "M01,建设农贸市场,芦淞区,45,27.8\n"
            "M02,月塘农贸市场,荷塘区,-3,27.86\n"
            "M03,田心农贸市场,石峰区,12.5,27.9\n"
            "M04,栗雨农贸市场,天元区,20,127.8\n")
    s = ingest_file("markets", write(tmp_path / "markets.csv", text), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 3)
    reasons = list(quarantined(hub_engine, "markets")["reason"])
    assert reasons == ["摊位数小于下限 0", "摊位数不是整数", "纬度超出上限 90"]
    assert quarantined(hub_engine, "markets").loc[1, "detail"] == "摊位数: '12.5'"


def test_duplicate_keys_within_file(hub_engine, tmp_path):
    dup = ROWS[0].replace("韭菜", "菠菜")
    s = ingest_file("rapid_tests", write(tmp_path / "dups.csv", HEADER + ROWS[0] + ROWS[1] + dup), hub_engine)
    assert (s.loaded, s.quarantined) == (2, 1)
    q = quarantined(hub_engine)
    assert q.loc[0, "reason"] == "文件内主键重复" and q.loc[0, "line"] == 4
    assert q.loc[0, "detail"] == "与文件第 2 行相同"
    assert hub.read("rapid_tests", eng=hub_engine).set_index("test_id").loc["T001", "commodity"] == "韭菜"


def test_malformed_rows_and_missing_values(hub_engine, tmp_path):
    rows = [ROWS[0],
            "T020,2023-12-22 08:00,,M01,韭菜,有机磷,3,50,阴性,赵记,多出来的一列\n",
            "T021,2023-12-22 08:00,,M01\n",
            ",2023-12-22 08:00,,M01,韭菜,有机磷,3,50,阴性,赵记\n",
            "T022,2023-12-22 08:00,,M01,韭菜,有机磷,abc,50,可疑,赵记\n"]
    s = ingest_file("rapid_tests", write(tmp_path / "malformed.csv", HEADER + "".join(rows)), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 4) and accounted(s)
    q = quarantined(hub_engine).set_index("line")
    assert list(q["reason"]) == ["字段数与表头不符", "字段数与表头不符", "缺少检测编号",
                                 "检测值不是数字; 检测结果取值不在 阴性/阳性 之中"]
    assert q.loc[3, "detail"] == "本行 11 个字段，表头 10 列"
    assert q.loc[6, "detail"] == "检测值: 'abc'; 检测结果: '可疑'"
    assert json.loads(q.loc[3, "row_json"])["多余的第11列"] == "多出来的一列"
    assert s.reasons == {"字段数与表头不符": 2, "缺少检测编号": 1, "检测值不是数字": 1,
                         "检测结果取值不在 阴性/阳性 之中": 1}


@pytest.mark.parametrize("name,content,problem", [
    ("empty.csv", b"", "文件为空"),
    ("blank.csv", b"\r\n \r\n", "文件为空"),
    ("header_only.csv", HEADER.encode(), "没有数据行"),
    ("garbage.csv", random.Random(1).randbytes(4096), "二进制"),
    # a whole file in Latin-1 (one stray line in a UTF-8 file is quarantined alone: test_hostile_input)
    ("latin1.csv", ("检测编号,caf\xe9,na\xefve,r\xe9sum\xe9\n" * 40).encode("latin-1", errors="replace")
     .replace(b"?", b"x"), "无法识别文件编码"),
    ("no_item.csv", "检测编号,检测时间,市场编号,样品名称,检测结果\nT1,2023-12-22,M01,韭菜,阴性\n".encode(),
     "缺少必需的列：检测项目(test_item)"),
    ("not_a_table.csv", "这是一封信，不是表格。\n谢谢！\n".encode(), "找不到表头"),
    ("broken.json", b'[{"event_id": "E1", "ts": "2026-01-01"', "JSON 格式错误"),
    ("scalar.json", b'"hello"', "找不到表头"),
    ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "旧版 Excel"),
    ("truncated.xlsx", b"PK\x03\x04" + bytes(100), "无法打开 Excel 文件"),
])
def test_unreadable_files_stop_with_a_clear_message(hub_engine, tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    dataset = "city_events" if name.endswith(".json") else "rapid_tests"
    with pytest.raises(IngestError) as err:
        ingest_file(dataset, path, hub_engine)
    assert problem in err.value.problem and name in str(err.value)
    assert len(hub.read(dataset, eng=hub_engine)) == 0
    log = hub.ingest_log(eng=hub_engine)
    if content.strip():  # everything that was received is recorded as failed, raw bytes kept
        assert list(log["status"]) == ["failed"] and problem in log.iloc[0]["message"]
        assert Path(log.iloc[0]["raw_path"]).read_bytes() == content


def test_failed_file_can_be_fixed_and_loaded(hub_engine, tmp_path):
    path = write(tmp_path / "t.csv", "检测编号,检测时间\nT1,2023-12-22\n")
    with pytest.raises(IngestError):
        ingest_file("rapid_tests", path, hub_engine)
    write(path, HEADER + "".join(ROWS))
    assert ingest_file("rapid_tests", path, hub_engine).loaded == 3
    assert list(hub.ingest_log(eng=hub_engine)["status"]) == ["done", "failed"]


def test_value_too_long_for_its_column(hub_engine, tmp_path):
    text = HEADER + ROWS[0] + ROWS[1].replace("李记", "李" * 200)
    s = ingest_file("rapid_tests", write(tmp_path / "long.csv", text), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 1)
    assert quarantined(hub_engine).loc[0, "reason"] == "经营户超过 128 个字符"


@pytest.mark.slow
def test_100k_row_file_streams_and_counts(hub_engine, tmp_path):
    n = 100_000
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="gbk", newline="") as f:
        f.write(HEADER.replace("䶮", ""))
        for i in range(n):
            reading = "130" if i % 10_000 == 7 else f"{(i * 7) % 60}.5"  # 10 physically bad readings: quarantined
            f.write(f"T{i:07d},2024-03-{1 + i % 28:02d} {8 + i % 10}:{i % 60:02d},,M{i % 36:02d},韭菜,"
                    f"有机磷和氨基甲酸酯类农药残留,{reading},50,{'阳性' if (i * 7) % 60 >= 50 else '阴性'},摊主{i % 500}\n")
    s = ingest_file("rapid_tests", path, hub_engine)
    assert s.rows_read == n and s.loaded == n - 10 and s.quarantined == 10 and accounted(s)
    with hub_engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from rapid_tests")).scalar() == n - 10
    again = ingest_file("rapid_tests", path, hub_engine, force=True)
    assert (again.loaded, again.duplicates) == (0, n - 10)


# --------------------------------------------------------------------------- the command line

def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_ingest_json_summary_and_exit_codes(sqlite_hub, tmp_path):
    import os

    good = write(tmp_path / "good.csv", HEADER + "".join(ROWS) + ROWS[0], "gbk" if False else "utf-8")
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\x00\x01\x02" * 100)
    env = dict(os.environ)
    r = run_cli("ingest", "rapid_tests", str(good), "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["rows_read"], out["loaded"], out["quarantined"], out["duplicates"]) == (4, 3, 1, 0)
    r = run_cli("ingest", "rapid_tests", str(garbage), str(good), env=env)
    assert r.returncode == 2
    assert "garbage.csv" in r.stderr and "二进制" in r.stderr
    assert "已接入过" in r.stdout  # the good file still handled
    r = run_cli("ingest", "no_such_dataset", str(good), env=env)
    assert r.returncode != 0 and "no_such_dataset" in r.stderr


def test_every_verb_has_help():
    for verb in (["--help"], ["ingest", "--help"], ["synth", "--help"], ["serve", "--help"],
                 ["report", "--help"], ["report", "run", "--help"], ["report", "list", "--help"],
                 ["report", "schedule", "--help"], ["db", "--help"], ["db", "upgrade", "--help"],
                 ["db", "status", "--help"]):
        r = run_cli(*verb)
        assert r.returncode == 0 and "Usage:" in r.stdout, verb


def test_ingest_files_table_records_counts(hub_engine, tmp_path):
    s = ingest_file("rapid_tests", write(tmp_path / "t.csv", HEADER + "".join(ROWS) + ROWS[2]), hub_engine)
    with hub_engine.connect() as conn:
        row = conn.execute(sa.select(ingest_files)).mappings().one()
    assert (row["rows_read"], row["loaded"], row["quarantined"], row["duplicates"]) == (4, 3, 1, 0)
    assert row["sha256"] == s.sha256 and row["encoding"] == "utf-8"


def test_percentage_reading_above_100_is_quarantined(hub_engine, tmp_path):
    text = ("检测编号,检测时间,市场编号,样品名称,检测项目,检测值,单位,检测结果,序号\n"
            "T1,2026-01-05 09:00,M01,韭菜,有机磷和氨基甲酸酯类农药残留,130,%,阳性,1\n"
            "T2,2026-01-05 09:10,M01,韭菜,有机磷和氨基甲酸酯类农药残留,62.5,%,阳性,2\n")
    s = ingest_file("rapid_tests", write(tmp_path / "pct.csv", text), hub_engine)
    assert (s.loaded, s.quarantined) == (1, 1) and s.unknown_columns == []  # 序号 is a row counter
    assert quarantined(hub_engine).loc[0, "reason"] == "百分比读数超过 100%"
