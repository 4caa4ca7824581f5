"""Hostile and broken input, contained (issue 13): each file made here, on purpose, and taken
in by the real command on a real hub (SQLite and PostgreSQL where it matters). Every case
asserts what happened, the rows lost (0), the duplicates (0), the message and the exit code."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from workbench.store.ingest import IngestError, ingest_file
from workbench.store.schema import DATASETS, ingest_files, personal_data, quarantine
from workbench.synth import hostile

WRAPPER = r"""
import resource, sys
from workbench.cli import main
try:
    main(sys.argv[1:], prog_name="workbench")
finally:
    # VmHWM: the peak of this process's own memory (ru_maxrss would count the parent's at fork)
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    sys.stderr.write("\nMAXRSS_KIB=%d\n" % (int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def run_cli(*args, env=None, timeout=300):
    """The real command in a process of its own; returns (result, its peak resident memory in MiB)."""
    r = subprocess.run([sys.executable, "-c", WRAPPER, *map(str, args)], capture_output=True, text=True,
                       env=env or dict(os.environ), timeout=timeout)
    rss = [int(line.split("=")[1]) for line in r.stderr.splitlines() if line.startswith("MAXRSS_KIB=")]
    return r, (rss[-1] / 1024 if rss else None)


def table_rows(eng, dataset="rapid_tests") -> int:
    with eng.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(DATASETS[dataset].table)).scalar()


def quarantine_rows(eng) -> list[dict]:
    with eng.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(quarantine).order_by(quarantine.c.line)).mappings()]


def file_row(eng, name) -> dict:
    with eng.connect() as conn:
        return dict(conn.execute(sa.select(ingest_files).where(ingest_files.c.filename == name)).mappings().one())


def accounted(s) -> bool:
    return s["rows_read"] == s["loaded"] + s["quarantined"] + s["duplicates"]


# ------------------------------------------------------------------------------ CSV lines

def test_a_huge_line_is_one_quarantined_row_and_the_next_file_loads(sqlite_hub, tmp_path, monkeypatch):
    """A 20 MB line (limit lowered to 1 MB by configuration: the benchmark runs the 200 MB one)."""
    monkeypatch.setenv("WORKBENCH_INGEST_MAX_LINE", str(1 << 20))
    big = hostile.write_huge_line_csv(tmp_path / "huge_line.csv", 20 << 20, rows=100, at=2)
    nxt = hostile.rapid_csv(tmp_path / "next.csv", 50, start=1000)
    r, rss = run_cli("ingest", "rapid_tests", big, nxt, "--json")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    huge, after = out
    assert huge["ok"] and after["ok"]
    assert (huge["rows_read"], huge["loaded"], huge["quarantined"], huge["duplicates"]) == (101, 100, 1, 0)
    assert huge["damaged"] == 1 and accounted(huge)
    assert (after["loaded"], after["duplicates"]) == (50, 0)
    assert "huge_line.csv" in r.stderr and "1 行无法读取" in r.stderr
    q = quarantine_rows(sqlite_hub)
    assert len(q) == 1 and q[0]["line"] == 4 and q[0]["reason"] == "行过长"
    assert "超过上限 1,048,576" in q[0]["detail"]
    assert len(q[0]["row_json"]) < 2000   # the line was read past, not kept
    assert table_rows(sqlite_hub) == 150
    assert rss < 1024, f"peak {rss:.0f} MiB"


def test_a_field_over_the_limit_inside_quotes_is_one_row(sqlite_hub, tmp_path, monkeypatch):
    """A quote never closed makes one field of the rest of the file: the field limit stops it."""
    monkeypatch.setenv("WORKBENCH_INGEST_MAX_LINE", "100000")
    path = tmp_path / "open_quote.csv"
    with open(path, "wb") as f:
        f.write(hostile.RAPID_HEADER.encode())
        for i in range(10):
            f.write(hostile.rapid_row(i).encode())
        f.write(b'TQ,2023-12-22 08:30,2023-12-22 08:15,M01,"' + (b"x" * 1000 + b"\n") * 300)
    s = ingest_file("rapid_tests", path, sqlite_hub)
    assert s.loaded == 10 and s.damaged >= 1 and s.duplicates == 0
    assert any(r["reason"] == "字段过长" for r in quarantine_rows(sqlite_hub))


def test_one_gbk_line_in_a_utf8_file_is_one_quarantined_line(hub_engine, tmp_path):
    gbk = hostile.rapid_row(7).replace("李记", "张记菜摊").encode("gbk")
    path = hostile.rapid_csv(tmp_path / "mixed.csv", 200, insert={7: gbk})
    r, _ = run_cli("ingest", "rapid_tests", path, "--json")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    assert out["encoding"] == "utf-8"
    assert (out["rows_read"], out["loaded"], out["quarantined"], out["duplicates"]) == (200, 199, 1, 0)
    q = quarantine_rows(hub_engine)
    assert [x["line"] for x in q] == [9] and q[0]["reason"] == "编码错误"
    assert "不是 utf-8 编码" in q[0]["detail"]
    row = json.loads(q[0]["row_json"])
    assert row["经营户"] == "张记菜摊"   # the bytes read as GB18030 for the person looking at it
    assert table_rows(hub_engine) == 199


def test_nul_bytes_are_quarantined_the_same_on_sqlite_and_postgresql(hub_engine, tmp_path):
    """NUL cannot be stored in PostgreSQL text: the row is quarantined (not stripped: a value
    silently changed is worse than a row held back) on both backends alike."""
    nul = hostile.rapid_row(3).replace("李记", "李\x00记").encode()
    nul2 = hostile.rapid_row(5).replace("12.5", "1\x002.5").encode()
    path = hostile.rapid_csv(tmp_path / "nul.csv", 50, insert={3: nul, 5: nul2})
    r, _ = run_cli("ingest", "rapid_tests", path, "--json")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert (out["rows_read"], out["loaded"], out["quarantined"], out["duplicates"]) == (50, 48, 2, 0)
    q = quarantine_rows(hub_engine)
    assert [x["line"] for x in q] == [5, 7] and {x["reason"] for x in q} == {"含有 NUL 空字符"}
    assert json.loads(q[0]["row_json"])["经营户"] == "李\u2400记"
    assert table_rows(hub_engine) == 48
    assert file_row(hub_engine, "nul.csv")["status"] == "done"


# ------------------------------------------------------------------------------ the XLSX bomb

def test_an_xlsx_bomb_is_refused_before_it_is_unpacked(sqlite_hub, tmp_path):
    bomb = hostile.write_xlsx_bomb(tmp_path / "bomb.xlsx")          # ~2 MB that unpack to 1.5 GiB
    assert bomb.stat().st_size < 4 << 20
    good = hostile.rapid_csv(tmp_path / "good.csv", 30)
    r, rss = run_cli("ingest", "rapid_tests", bomb, good, "--json")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    assert not out[0]["ok"] and out[1]["ok"] and out[1]["loaded"] == 30
    msg = out[0]["error"]
    assert "压缩炸弹" in msg and "xl/worksheets/sheet1.xml" in msg and "WORKBENCH_INGEST_XLSX_" in msg
    assert "bomb.xlsx" in r.stderr
    assert file_row(sqlite_hub, "bomb.xlsx")["status"] == "failed"
    assert table_rows(sqlite_hub) == 30 and quarantine_rows(sqlite_hub) == []
    assert rss < 1024, f"peak {rss:.0f} MiB"


def test_xlsx_limits_on_shared_strings_and_members(sqlite_hub, tmp_path, monkeypatch):
    import openpyxl

    path = tmp_path / "many_strings.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(hostile.RAPID_HEADER.strip().split(","))
    for i in range(300):
        ws.append(hostile.rapid_row(i).strip().split(","))
    wb.save(path)
    import shutil
    import zipfile

    sst = tmp_path / "sst.xlsx"   # the same workbook with a shared-strings table claiming 5,000,000 strings
    shutil.copy(path, sst)
    with zipfile.ZipFile(sst, "a") as z:
        z.writestr("xl/sharedStrings.xml", '<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/'
                   'spreadsheetml/2006/main" count="5000000" uniqueCount="5000000"><si><t>x</t></si></sst>')
    with pytest.raises(IngestError) as err:
        ingest_file("rapid_tests", sst, sqlite_hub)
    assert "5,000,000" in err.value.problem and "sst.xlsx" in str(err.value)
    monkeypatch.setenv("WORKBENCH_INGEST_XLSX_SST_COUNT", "100")
    with pytest.raises(IngestError) as err:
        ingest_file("rapid_tests", sst, sqlite_hub)
    assert "共享字符串表声明" in err.value.problem and "WORKBENCH_INGEST_XLSX_SST_COUNT" in err.value.problem
    monkeypatch.delenv("WORKBENCH_INGEST_XLSX_SST_COUNT")
    monkeypatch.setenv("WORKBENCH_INGEST_XLSX_MEMBERS", "3")
    with pytest.raises(IngestError) as err:
        ingest_file("rapid_tests", path, sqlite_hub, force=True)
    assert "个文件，超过上限 3" in err.value.problem
    monkeypatch.delenv("WORKBENCH_INGEST_XLSX_MEMBERS")
    s = ingest_file("rapid_tests", path, sqlite_hub, force=True)   # within the limits it loads as before
    assert (s.loaded, s.quarantined, s.duplicates) == (300, 0, 0)


# ------------------------------------------------------------------------------ killed ingest

def _wait_for_commit(eng, name, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with eng.connect() as conn:
            row = conn.execute(sa.select(ingest_files.c.status, ingest_files.c.notes)
                               .where(ingest_files.c.filename == name)).first()
        if row is not None and row.status == "running" and row.notes:
            line = (json.loads(row.notes).get("resume") or {}).get("line") or 0
            if line > 0:
                return line
        time.sleep(0.05)
    raise AssertionError("the ingest never committed a chunk")


def test_a_killed_ingest_is_marked_and_resumed_without_doubles(hub_engine, tmp_path):
    rows, bad_every = 200_000, 500
    path = hostile.rapid_csv(tmp_path / "big.csv", rows, bad_every=bad_every)
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "ingest", "rapid_tests", str(path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        line = _wait_for_commit(hub_engine, "big.csv")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    row = file_row(hub_engine, "big.csv")
    assert row["status"] == "running"          # as the killed process left it
    committed = json.loads(row["notes"])["resume"]
    assert 0 < committed["line"] < rows + 1, "killed after the end: make the file bigger"
    before_table, before_q = table_rows(hub_engine), len(quarantine_rows(hub_engine))
    assert before_table == committed["loaded"] and before_q == committed["quarantined"]

    from workbench.store import ingest

    assert ingest.mark_interrupted(hub_engine) == ["big.csv"]   # the owner is gone: marked, audited
    row = file_row(hub_engine, "big.csv")
    assert row["status"] == "interrupted" and "接入中断" in row["message"] and "继续" in row["message"]
    from workbench import audit

    log = audit.frame(hub_engine)
    assert "ingest.interrupted" in set(log["action"])
    from workbench.ui import hub_page

    snap = hub_page.load()   # the hub page says it, in the failure tone, and counts it with the failures
    assert "已中断" in hub_page.files_table(snap) and hub_page.STATUS_TONE["interrupted"] == "bad"
    kpis = str(hub_page.kpis(snap))
    assert "接入失败文件" in kpis and ">1<" in kpis.split("接入失败文件", 1)[1].replace(" ", "")[:400]

    r, _ = run_cli("ingest", "rapid_tests", path, "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    n_bad = rows // bad_every
    assert out["resumed_from"] == committed["line"]
    assert (out["rows_read"], out["loaded"], out["quarantined"], out["duplicates"]) == (rows, rows - n_bad, n_bad, 0)
    assert table_rows(hub_engine) == rows - n_bad                 # none lost, none twice
    q = quarantine_rows(hub_engine)
    assert len(q) == n_bad and len({x["line"] for x in q}) == n_bad   # no quarantine row doubled
    assert file_row(hub_engine, "big.csv")["status"] == "done"
    r, _ = run_cli("ingest", "rapid_tests", path, "--json")     # and the same file once more: skipped
    assert json.loads(r.stdout)["skipped"]


def test_a_running_file_whose_owner_lives_is_not_taken_twice(sqlite_hub, tmp_path):
    from workbench.store import ingest

    path = hostile.rapid_csv(tmp_path / "small.csv", 10)
    s = ingest_file("rapid_tests", path, sqlite_hub)
    with sqlite_hub.begin() as conn:   # as if this very process were still reading it
        conn.execute(ingest_files.update().values(status="running", notes=json.dumps({"owner": ingest._owner()})))
    with pytest.raises(IngestError) as err:
        ingest_file("rapid_tests", path, sqlite_hub)
    assert "正由" in err.value.problem and str(os.getpid()) in err.value.problem
    assert s.loaded == 10


# ------------------------------------------------------------------------------ the drop folder

def test_the_drop_folder_refuses_links_and_never_reads_them(sqlite_hub, tmp_path):
    from workbench.market import intake

    drop = tmp_path / "drop"
    drop.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (drop / "passwd.csv").symlink_to("/etc/passwd")
    hostile.rapid_csv(outside / "elsewhere.csv", 5)
    (drop / "elsewhere.csv").symlink_to(outside / "elsewhere.csv")
    os.link(outside / "elsewhere.csv", drop / "hardlink.csv")
    hostile.rapid_csv(drop / "good.csv", 20)
    folder = intake.DropFolder(drop, sqlite_hub)
    first = folder.poll()
    refused = {r["file"]: r["error"] for r in first if not r["ok"]}
    assert set(refused) == {"passwd.csv", "elsewhere.csv", "hardlink.csv"}
    assert "符号链接" in refused["passwd.csv"] and "/etc/passwd" in refused["passwd.csv"]
    assert "硬链接" in refused["hardlink.csv"]
    second = folder.poll()
    assert [(r["file"], r["ok"]) for r in second] == [("good.csv", True)]
    # the links were moved aside as links (never followed), each with its reason beside it
    failed = drop / intake.FAILED_DIR
    assert (failed / "passwd.csv").is_symlink()
    assert "符号链接" in (failed / "passwd.csv.txt").read_text(encoding="utf-8")
    assert table_rows(sqlite_hub) == 20
    with sqlite_hub.connect() as conn:
        names = set(conn.execute(sa.select(ingest_files.c.filename)).scalars())
    assert names == {"good.csv"}                     # /etc/passwd never reached the hub
    raw = list((Path(os.environ["WORKBENCH_DATA_DIR"]) / "raw").rglob("*.csv"))
    assert raw and all(not p.is_symlink() for p in raw)
    with pytest.raises(IngestError) as err:          # nor does the ingest verb follow a link
        ingest_file("rapid_tests", failed / "passwd.csv", sqlite_hub)
    assert "符号链接" in err.value.problem


def test_raw_copies_are_private(sqlite_hub, tmp_path):
    import stat

    s = ingest_file("rapid_tests", hostile.rapid_csv(tmp_path / "private.csv", 3), sqlite_hub)
    raw_dir = Path(os.environ["WORKBENCH_DATA_DIR"]) / "raw"
    copy = next(raw_dir.rglob(f"{s.sha256}*"))
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(raw_dir.stat().st_mode) == 0o700 and stat.S_IMODE(copy.parent.stat().st_mode) == 0o700


# ------------------------------------------------------------------------------ models

@pytest.mark.parametrize("kind", ["torch.save", "pickle2", "pickle4"])
def test_a_model_carrying_code_is_refused_before_it_runs(tmp_path, kind):
    from workbench.canteen.detector import Detector, ModelError

    marker = tmp_path / "pwned.txt"
    model = tmp_path / "kitchen-evil.pt"
    if kind == "torch.save":
        hostile.write_malicious_pt(model, marker)
    else:
        hostile.write_malicious_pickle(model, marker, protocol=int(kind[-1]))
    import pickle

    with pytest.raises(ModelError) as err:
        Detector(model, closeup=None)
    assert "kitchen-evil.pt" in str(err.value) and "可执行的引用" in str(err.value) and "exec" in str(err.value)
    assert not marker.exists()
    # the payload is real: loading it the way ultralytics does would have run it
    if kind != "torch.save":
        with open(model, "rb") as f:
            pickle.load(f)
        assert marker.read_text() == "pwned"


def test_a_model_carrying_code_stops_the_watch_command(tmp_path):
    marker = tmp_path / "pwned.txt"
    model = hostile.write_malicious_pt(tmp_path / "evil.pt", marker)
    frames = tmp_path / "frames"
    frames.mkdir()
    r = subprocess.run([sys.executable, "-m", "workbench.cli", "canteen", "watch", str(frames), "--model", str(model),
                        "--no-hub"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "evil.pt" in r.stderr and "拒绝" in r.stderr
    assert not marker.exists()


def test_a_model_calling_an_allowed_package_is_refused_and_runs_nothing(tmp_path):
    """Review H1: numpy.memmap(path, "w+") and ultralytics.YOLO("other.pt") are classes of packages a
    checkpoint uses, but calling them makes a file / loads another file unchecked: refused by the
    opcode scan, and the check itself creates and loads nothing."""
    from workbench.canteen.detector import Detector, ModelError
    from workbench.canteen.yolo_env import checkpoint_problem

    target = tmp_path / "made_by_model_check.bin"
    memmap = hostile.write_memmap_pt(tmp_path / "memmap.pt", target)
    problem = checkpoint_problem(memmap)
    assert problem and "numpy.memmap" in problem and "可执行的引用" in problem
    with pytest.raises(ModelError, match="memmap.pt.*numpy.memmap"):
        Detector(memmap, closeup=None)
    assert not target.exists()

    marker = tmp_path / "pwned.txt"
    other = hostile.write_malicious_pt(tmp_path / "other.pt", marker)
    loader = hostile.write_yolo_loader_pt(tmp_path / "loader.pt", other)
    problem = checkpoint_problem(loader)
    assert problem and "ultralytics.models.yolo.model.YOLO" in problem
    with pytest.raises(ModelError, match="loader.pt"):
        Detector(loader, closeup=None)
    assert not marker.exists()
    # both payloads are real: unpickling them the way ultralytics does makes the file / loads the other
    import torch

    torch.load(memmap, weights_only=False)
    assert target.exists()


def test_a_model_class_called_with_the_files_arguments_is_refused(tmp_path):
    """Every global is on the allow list, but DetectionModel is called (REDUCE) with a cfg from the
    file instead of made empty and filled with weights: refused, DetectionModel never runs."""
    from workbench.canteen.yolo_env import checkpoint_problem

    yaml_file = tmp_path / "never-read.yaml"   # DetectionModel(cfg=path) would read it: it does not exist
    model = hostile.write_model_class_call_pt(tmp_path / "builds.pt", str(yaml_file))
    problem = checkpoint_problem(model)
    assert problem and "构造 DetectionModel" in problem and "已拒绝" in problem


def test_training_from_a_pt_goes_through_the_same_check(tmp_path):
    """`train --model x.pt`, `closeup --init x.pt`, export and val: the .pt is checked first."""
    from workbench.canteen import closeup, train

    target = tmp_path / "made.bin"
    memmap = hostile.write_memmap_pt(tmp_path / "memmap.pt", target)
    with pytest.raises(train.CheckpointError, match="起始模型 memmap.pt.*numpy.memmap"):
        train.train(data=tmp_path / "no-data.yaml", model=str(memmap), out=tmp_path / "runs")
    with pytest.raises(train.CheckpointError, match="起始模型 memmap.pt"):
        closeup.train_closeup(tmp_path / "crops", init=memmap, out=tmp_path / "runs")
    with pytest.raises(train.CheckpointError, match="memmap.pt"):
        train.export_onnx(memmap)
    assert train.main(["export", str(memmap)]) == 2
    assert closeup.main(["--init", str(memmap), "--out", str(tmp_path / "co")]) == 2
    assert not target.exists() and not (tmp_path / "runs").exists() and not (tmp_path / "co").exists()


def test_our_committed_models_still_load():
    from workbench import config
    from workbench.canteen.detector import Detector
    from workbench.canteen.yolo_env import checkpoint_problem

    kitchen = config.ROOT / "models" / "kitchen"
    assert checkpoint_problem(kitchen / "kitchen-yolo11n.pt") is None
    assert checkpoint_problem(kitchen / "kitchen-closeup.pt") is None
    d = Detector(kitchen / "kitchen-yolo11n.pt", closeup=None)
    assert d.backend == "torch" and "person" in d.model.names.values()
    assert Detector(kitchen / "kitchen-yolo11n.onnx", closeup=None).backend == "onnx"


# ------------------------------------------------------------------------------ report parameters

def test_report_parameters_are_checked_before_papermill_runs(tmp_path, monkeypatch):
    from workbench import reports

    out = tmp_path / "out"
    monkeypatch.setenv("WORKBENCH_REPORTS_OUT", str(out))
    earlier = out / "hub_report" / "2026-01-05.html"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("an earlier good report", encoding="utf-8")
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "workbench.cli", "report", "run", "hub_report", "-p", "dayz", "7",
                        "-p", "__import__('os').system('touch /tmp/x')", "1", "--date", "2026-01-05"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "没有参数 dayz" in r.stderr and "可用的参数：days" in r.stderr and "end" in r.stderr
    r = subprocess.run([sys.executable, "-m", "workbench.cli", "report", "run", "hub_report", "-p", "days", "一周"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and "参数 days 应为整数" in r.stderr, r.stderr
    with pytest.raises(reports.ReportError) as err:
        reports.run("hub_report", {"end": "2026-13-45"})
    assert "YYYY-MM-DD" in str(err.value)
    with pytest.raises(reports.ReportError):
        reports.run("hub_report", {"days": True})          # a flag is not a number of days
    # nothing rendered, nothing overwritten
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["hub_report", "hub_report/2026-01-05.html"]
    assert earlier.read_text(encoding="utf-8") == "an earlier good report"
    assert reports.check_parameters("hub_report", {"days": "7", "end": "2026-01-05"}) == {"days": 7, "end": "2026-01-05"}
    assert reports.check_parameters("events_weekly", {"district": "荷塘区"}) == {"district": "荷塘区"}


# ------------------------------------------------------------------------------ profiles audited

def test_saving_and_deleting_a_profile_is_audited_with_who(hub_engine, monkeypatch):
    from workbench import access, audit
    from workbench.store import profiles, upload

    page_user = access.Principal("wang", "王五", role="staff", department="safety")
    p = profiles.load("nycflights13_weather")
    path = upload.save_profile(p, "纽约机场_复制", "纽约（复制）", who=page_user, eng=hub_engine)
    assert path.is_file()
    monkeypatch.delenv("WORKBENCH_USER", raising=False)
    r = subprocess.run([sys.executable, "-m", "workbench.cli", "profiles", "--delete", "纽约机场_复制"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert not path.exists()
    log = audit.frame(hub_engine)
    saved = log[log["action"] == "profile.save"]
    deleted = log[log["action"] == "profile.delete"]
    assert len(saved) == 1 and saved["actor"].iloc[0] == page_user.actor and saved["target"].iloc[0] == "纽约机场_复制"
    assert len(deleted) == 1 and deleted["actor"].iloc[0].startswith("命令行")
    r = subprocess.run([sys.executable, "-m", "workbench.cli", "profiles", "--delete", "nycflights13_weather"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 2 and "随系统提供" in r.stderr


def test_each_file_taken_in_is_audited_under_who_took_it_in(hub_engine, tmp_path, monkeypatch):
    """Review M7: the page passes its user, the CLI acts as access.current(); one "ingest.file" row
    per file with name, sha256 and counts; a Voilà kernel without a signed-in user is refused
    before anything is written."""
    from workbench import access, audit

    page_user = access.Principal("wang", "王五", role="staff", department="market")
    path = hostile.rapid_csv(tmp_path / "page.csv", 20, bad_every=5)
    s = ingest_file("rapid_tests", path, eng=hub_engine, who=page_user)
    monkeypatch.delenv("WORKBENCH_USER", raising=False)
    cli_file = hostile.rapid_csv(tmp_path / "cli.csv", 3, start=100)
    r, _ = run_cli("ingest", "rapid_tests", cli_file, "--no-progress")
    assert r.returncode == 0, r.stderr
    log = audit.frame(hub_engine)
    rows = log[log["action"] == "ingest.file"].set_index("target")
    assert set(rows.index) == {"page.csv", "cli.csv"} and set(rows["label"]) == {"文件接入"}
    assert rows.loc["page.csv", "actor"] == page_user.actor and rows.loc["cli.csv", "actor"].startswith("命令行")
    detail = json.loads(rows.loc["page.csv", "detail"])
    assert detail["sha256"] == s.sha256 and detail["dataset"] == "rapid_tests" and detail["status"] == "done"
    assert (detail["rows_read"], detail["loaded"], detail["quarantined"]) == (20, 16, 4)
    with hub_engine.connect() as conn:
        notes = conn.execute(sa.select(ingest_files.c.notes).where(ingest_files.c.filename == "page.csv")).scalar()
    assert json.loads(notes)["who"] == page_user.actor

    monkeypatch.setenv("VOILA_KERNEL_ID", "k-test")      # a page's kernel the server named no user for
    monkeypatch.delenv(access.USER_ENV, raising=False)
    nobody = hostile.rapid_csv(tmp_path / "nobody.csv", 3, start=200)
    with pytest.raises(IngestError, match="请先登录"):
        ingest_file("rapid_tests", nobody, eng=hub_engine)
    with hub_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ingest_files)
                            .where(ingest_files.c.filename == "nobody.csv")).scalar() == 0
    raw_dir = Path(os.environ["WORKBENCH_DATA_DIR"]) / "raw"
    assert not any(raw_dir.rglob(f"{hostile_sha(nobody)}*"))


def hostile_sha(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ retention

def test_retention_deletes_old_personal_raw_copies_and_evidence_and_records_it(hub_engine, tmp_path):
    import datetime as dt

    from workbench import audit, retention

    data = Path(os.environ["WORKBENCH_DATA_DIR"])
    # a 12345 work order file (callers' names and phones) received 200 days ago, one yesterday,
    # and a rapid-test file (no personal data) 200 days ago
    calls = tmp_path / "calls.csv"
    when = (dt.datetime.now() - dt.timedelta(days=2)).strftime("%Y-%m-%d %H:%M")
    calls.write_text("工单编号,来电时间,诉求类型,诉求内容,诉求人,联系电话,所属区县\n"
                     f"W1,{when},施工噪音,楼下施工太吵 13812341234,王小明,13812341234,荷塘区\n"
                     "W9,不是时间,噪音扰民,楼下施工太吵,王小明,13812341234,荷塘区\n",   # quarantined: its originals apart
                     encoding="utf-8")
    old = ingest_file("city_events", calls, hub_engine)
    assert old.quarantined == 1
    recent_calls = tmp_path / "calls2.csv"
    recent_calls.write_text(calls.read_text(encoding="utf-8").replace("W1,", "W2,"), encoding="utf-8")
    recent = ingest_file("city_events", recent_calls, hub_engine)
    tests_file = ingest_file("rapid_tests", hostile.rapid_csv(tmp_path / "t.csv", 3), hub_engine)
    now = dt.datetime.utcnow()
    with hub_engine.begin() as conn:
        conn.execute(ingest_files.update().where(ingest_files.c.sha256.in_([old.sha256, tests_file.sha256]))
                     .values(received_at=now - dt.timedelta(days=200)))
        conn.execute(ingest_files.update().where(ingest_files.c.sha256 == recent.sha256)
                     .values(received_at=now - dt.timedelta(days=1)))
        conn.execute(personal_data.update().where(personal_data.c.file_sha256 == old.sha256)
                     .values(stored_at=now - dt.timedelta(days=200)))
        held = dict(conn.execute(sa.select(personal_data.c.dataset, sa.func.count())
                                 .where(personal_data.c.file_sha256 == old.sha256).group_by(personal_data.c.dataset)).all())
        recent_originals = conn.execute(sa.select(sa.func.count()).select_from(personal_data)
                                        .where(personal_data.c.file_sha256 == recent.sha256)).scalar()
    assert set(held) == {"city_events", "quarantine"} and recent_originals > 0
    raw = {s.sha256: next((data / "raw").rglob(f"{s.sha256}*")) for s in (old, recent, tests_file)}
    # evidence: a folder 40 days old and one from today, and a violation naming the old image
    old_day = (dt.date.today() - dt.timedelta(days=40)).isoformat()
    for day in (old_day, dt.date.today().isoformat()):
        folder = data / "evidence" / "cam1" / day
        folder.mkdir(parents=True)
        (folder / "V1.jpg").write_bytes(b"jpg")
        (folder / "V1.clean.jpg").write_bytes(b"jpg")
    table = DATASETS["canteen_violations"].table
    with hub_engine.begin() as conn:
        required = {c.name for c in table.columns if not c.nullable and c.server_default is None}
        sample = {"violation_id": "V1", "camera_id": "cam1", "ts": now, "kind": "no_hat", "status": "new",
                  "snapshot": f"evidence/cam1/{old_day}/V1.jpg", "clean_snapshot": f"evidence/cam1/{old_day}/V1.clean.jpg"}
        missing = required - set(sample)
        for c in missing:
            col = table.c[c]
            sample[c] = now if isinstance(col.type, sa.DateTime) else (0 if isinstance(col.type, (sa.Integer, sa.Float)) else "x")
        conn.execute(table.insert().values({k: v for k, v in sample.items() if k in table.c}))

    r = subprocess.run([sys.executable, "-m", "workbench.cli", "retention", "run", "--json"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["raw_files"] == ["calls.csv"] and out["evidence"]["folders"] == 1 and out["violations_cleared"] == 2
    assert out["personal_rows"] == held and out["personal_days"] == 180   # the raw period by default
    with hub_engine.connect() as conn:   # the old file's originals (its records' and its quarantined row's) gone
        left = dict(conn.execute(sa.select(personal_data.c.file_sha256, sa.func.count())
                                 .group_by(personal_data.c.file_sha256)).all())
    assert left == {recent.sha256: recent_originals}
    assert not raw[old.sha256].exists() and raw[recent.sha256].exists() and raw[tests_file.sha256].exists()
    assert not (data / "evidence" / "cam1" / old_day).exists()
    assert (data / "evidence" / "cam1" / dt.date.today().isoformat() / "V1.jpg").exists()
    with hub_engine.connect() as conn:
        snap = conn.execute(sa.select(table.c.snapshot, table.c.clean_snapshot)).one()
        notes = json.loads(conn.execute(sa.select(ingest_files.c.notes)
                                        .where(ingest_files.c.sha256 == old.sha256)).scalar())
    assert tuple(snap) == (None, None) and "raw_deleted_at" in notes
    log = audit.frame(hub_engine)
    rows = log[log["action"] == "retention"]
    assert list(rows["target"]) == ["evidence", "raw+personal_data"]   # newest first: what went, said first
    said = json.loads(rows["detail"].iloc[1])
    assert said["raw_files"] == ["calls.csv"] and said["personal_rows"] == held
    assert json.loads(rows["detail"].iloc[0])["evidence"]["canteen"]["folders"] == 1
    again = retention.run(hub_engine)     # a second run finds nothing more
    assert again.raw_files == [] and again.personal_rows == {}
    r = subprocess.run([sys.executable, "-m", "workbench.cli", "retention", "run", "--personal-days", "0", "--dry-run",
                        "--json"], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert sum(json.loads(r.stdout)["personal_rows"].values()) == recent_originals   # said, nothing deleted
    # a shorter period for the originals alone: the recent file's go, its raw copy stays
    shorter = retention.run(hub_engine, personal=0)
    assert shorter.raw_files == [] and sum(shorter.personal_rows.values()) == recent_originals
    assert raw[recent.sha256].exists()


def test_quarantine_keeps_no_phone_or_id_in_clear(hub_engine, tmp_path):
    """Every path to quarantine masks: a malformed line (wrong field count), a damaged line
    (NUL) and a value error, each carrying a phone and an ID number."""
    phone, ident = "13812341234", "430202199001011234"
    lines = {0: f"T0,2023-12-22 08:30,2023-12-22 08:15,M01,韭菜,有机磷,12.5,50,阴性,李记 {phone},多余\n".encode(),
             1: hostile.rapid_row(1).replace("李记", f"李\x00记 {ident}").encode(),
             2: hostile.rapid_row(2, "十二").replace("李记", f"李记 {phone}").encode(),
             3: hostile.rapid_row(3, phone).encode()}   # the bad value itself a phone: quoted in the detail
    path = hostile.rapid_csv(tmp_path / "pii.csv", 10, insert=lines)
    s = ingest_file("rapid_tests", path, hub_engine)
    assert s.quarantined == 4
    for q in quarantine_rows(hub_engine):
        assert phone not in q["row_json"] and ident not in q["row_json"] and phone not in (q["detail"] or "")
        assert "138****1234" in q["row_json"] or "430202********1234" in q["row_json"]


def test_a_json_file_over_its_limit_is_refused_whole(sqlite_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_INGEST_JSON_MAX", "1000")
    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"event_id": f"E{i}", "ts": "2026-01-05 09:00"} for i in range(100)]), encoding="utf-8")
    with pytest.raises(IngestError) as err:
        ingest_file("city_events", path, sqlite_hub)
    assert "WORKBENCH_INGEST_JSON_MAX" in err.value.problem and "big.json" in str(err.value)


@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
def test_line_ends_and_breaks_inside_cells_read_as_before(sqlite_hub, tmp_path, newline):
    """The bounded reader splits lines itself: CRLF, LF and old-Mac CR files, a cell holding
    U+2028 or a form feed, and a quoted cell spanning lines keep their rows and line numbers."""
    rows = [hostile.rapid_row(i).rstrip("\n") for i in range(6)]
    rows[1] = rows[1].replace("李记", "李\u2028记")
    rows[2] = rows[2].replace("李记", "李\x0c记")
    rows[3] = rows[3].replace("李记", '"李' + newline + '记"')
    rows[4] = rows[4].replace("12.5", "十二")        # a bad value: its line number is the test
    text = hostile.RAPID_HEADER.rstrip("\n") + newline + newline.join(rows) + newline
    path = tmp_path / "ends.csv"
    path.write_bytes(text.encode("utf-8"))
    s = ingest_file("rapid_tests", path, sqlite_hub)
    assert (s.rows_read, s.loaded, s.quarantined, s.damaged) == (6, 5, 1, 0)
    assert [q["line"] for q in quarantine_rows(sqlite_hub)] == [7]
    with sqlite_hub.connect() as conn:
        vendors = dict(conn.execute(sa.text("SELECT test_id, vendor FROM rapid_tests")).all())
    assert vendors["T0000001"] == "李\u2028记" and vendors["T0000003"].replace("\r", "") == "李\n记"


def test_an_upload_is_kept_private_until_it_is_taken_in(tmp_path):
    import stat

    from workbench.store import upload

    path = upload.keep_upload("../../来电.csv", "工单编号,诉求人,联系电话\nW1,王小明,13812341234\n".encode())
    try:
        assert path.name == "来电.csv"                                  # no path taken from the name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        upload.discard_upload(path)
    assert not path.exists()


def test_the_events_intake_masks_the_detail_of_its_quarantined_rows(hub_engine):
    """A message's bad record: the quarantine's row AND its detail (which quotes the offending value)
    hold no phone or ID number in clear, as for files."""
    from workbench.events import dispatch as dp
    from workbench.events import intake
    from workbench.store import hub as hub_mod

    phone, idno = "13812345678", "430202199001011234"
    rec = {"event_id": "M-1", "ts": f"电话{phone}", "event_class": "暴露垃圾", "description": f"身份证{idno}",
           "lat": "27.86", "lon": "113.17", "district": "荷塘区"}
    s = intake.message_batch([json.dumps(rec, ensure_ascii=False).encode()], topic="t", rules=dp.load_rules(),
                             eng=hub_engine)
    assert s.quarantined == 1
    q = hub_mod.quarantine_rows("city_events", eng=hub_engine)
    assert len(q) == 1 and "138****5678" in q["detail"].iloc[0]
    for col in ("detail", "row_json"):
        text = " ".join(map(str, q[col].fillna("")))
        assert phone not in text and idno not in text, (col, text)


# ------------------------------------------------------------------------------ times out of range

FAR_TIMES = ("9999-12-31 23:59:59", "0001-01-01 00:00:00")


@pytest.mark.parametrize("dataset", [n for n, d in DATASETS.items() if any(f.kind in ("ts", "date") for f in d.fields)])
def test_a_time_out_of_range_in_any_dataset_is_one_quarantined_row(sqlite_hub, tmp_path, dataset):
    """9999-12-31 / 0001-01-01 (outside pandas' nanosecond range) in every time and date field of a
    dataset: each row is one quarantined row with its reason, never an OutOfBoundsDatetime."""
    import csv

    ds = DATASETS[dataset]
    path = tmp_path / f"{dataset}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([x.label for x in ds.fields])
        for k, far in enumerate(FAR_TIMES):
            w.writerow([far if x.kind in ("ts", "date") else f"X{k}" for x in ds.fields])
    s = ingest_file(dataset, path, eng=sqlite_hub)
    assert (s.rows_read, s.loaded, s.quarantined) == (2, 0, 2), s.reasons
    with sqlite_hub.connect() as conn:
        reasons = [r.reason for r in conn.execute(sa.select(quarantine.c.reason))]
    assert len(reasons) == 2 and "OutOfBounds" not in " ".join(reasons)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_time_out_of_range_is_said_plainly(hub_engine, tmp_path, fmt):
    """Rapid tests and city events, CSV and JSON, file and MQTT paths: the reason names the field
    and the range; the good rows load."""
    from workbench.events import dispatch as dp
    from workbench.events import intake

    good = hostile.rapid_row(1).strip().split(",")
    header = hostile.RAPID_HEADER.strip().split(",")
    rows = [good, [f"T{9:07d}", "9999-12-31 08:30", *good[2:]], [f"T{8:07d}", good[1], "0001-01-01", *good[3:]]]
    if fmt == "csv":
        path = tmp_path / "rapid.csv"
        path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    else:
        path = tmp_path / "rapid.json"
        path.write_text(json.dumps([dict(zip(header, r)) for r in rows], ensure_ascii=False), encoding="utf-8")
    s = ingest_file("rapid_tests", path, eng=hub_engine)
    assert (s.loaded, s.quarantined) == (1, 2)
    assert s.reasons == {"检测时间超出 1900—2100 年范围": 1, "采样时间超出 1900—2100 年范围": 1}

    ev = [{"event_id": f"E{k}", "ts": ts, "event_class": "暴露垃圾", "description": "路边垃圾", "lat": "27.86",
           "lon": "113.17", "district": "荷塘区"} for k, ts in enumerate(["9999-12-31T10:00:00+08:00", "0001-01-01"])]
    if fmt == "csv":
        path = tmp_path / "events.csv"
        path.write_text("\n".join([",".join(ev[0])] + [",".join(e.values()) for e in ev]) + "\n", encoding="utf-8")
    else:
        path = tmp_path / "events.json"
        path.write_text(json.dumps(ev, ensure_ascii=False), encoding="utf-8")
    s = intake.intake_file(path, eng=hub_engine)
    assert (s.loaded, s.quarantined) == (0, 2) and s.reasons == {"上报时间超出 1900—2100 年范围": 2}
    m = intake.message_batch([json.dumps(e).encode() for e in ev], topic="t", rules=dp.load_rules(), eng=hub_engine)
    assert (m.loaded, m.quarantined) == (0, 2) and m.reasons == {"上报时间超出 1900—2100 年范围": 2}
