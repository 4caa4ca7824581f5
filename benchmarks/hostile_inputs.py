"""Hostile and broken input, at their real sizes (issue 13, "Measure"): for each file, what the
workbench did, the rows lost, the duplicates, the exit code and the peak resident memory of the
process that took it in (each case in a fresh process; its own ru_maxrss).

    .venv/bin/python benchmarks/hostile_inputs.py [--pg URL] [--out benchmarks/out/hostile_inputs.md]
                                                  [--huge-mb 200] [--rows 200000]

Cases: a 200 MB line near the top of a CSV (then the next file on the command line); one GBK
line in a UTF-8 file; NUL bytes (SQLite and PostgreSQL); a ~2 MB XLSX that unpacks to 1.5 GiB;
an ingest SIGKILLed mid-file and run again (SQLite and PostgreSQL); a symbolic link to
/etc/passwd in the market's drop folder; a .pt whose pickle writes a file when loaded; a report
run with an unknown parameter.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WRAPPER = r"""
import resource, sys
code = sys.argv[1]
sys.argv = ["workbench"] + sys.argv[2:]
try:
    if code == "cli":
        from workbench.cli import main
        main(sys.argv[1:], prog_name="workbench")
    else:
        exec(code)
finally:
    # VmHWM: the peak of this process's own memory (ru_maxrss would count the parent's at fork)
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    sys.stderr.write("\nMAXRSS_KIB=%d\n" % (int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def run(code: str, *args, env: dict, timeout: int = 1800) -> tuple[subprocess.CompletedProcess, float]:
    r = subprocess.run([sys.executable, "-c", WRAPPER, code, *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout, cwd=ROOT)
    rss = [int(x.split("=")[1]) for x in r.stderr.splitlines() if x.startswith("MAXRSS_KIB=")]
    return r, (rss[-1] / 1024 if rss else float("nan"))


class Hub:
    """A fresh hub (SQLite file, or a PostgreSQL schema) and data folder for one case."""

    def __init__(self, work: Path, pg: str | None = None):
        from workbench.store import hub

        self.data = Path(tempfile.mkdtemp(dir=work))
        if pg:
            self.schema = f"wb_hostile_{uuid.uuid4().hex[:8]}"
            self.url = hub.pg_schema_url(pg, self.schema)
        else:
            self.schema = None
            self.url = f"sqlite:///{self.data / 'city.db'}"
        self.pg = pg
        self.env = dict(os.environ, WORKBENCH_DB_URL=self.url, WORKBENCH_DATA_DIR=str(self.data / "data"))
        os.environ.update(WORKBENCH_DATA_DIR=self.env["WORKBENCH_DATA_DIR"])
        self.eng = hub.engine(self.url)

    def count(self, table: str, where: str = "") -> int:
        import sqlalchemy as sa

        with self.eng.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {table} {where}")).scalar()

    def quarantine_lines(self) -> list[int]:
        import sqlalchemy as sa

        with self.eng.connect() as conn:
            return list(conn.execute(sa.text("SELECT line FROM quarantine")).scalars())

    def close(self):
        import sqlalchemy as sa

        from workbench.store import hub

        hub.dispose(self.url)
        if self.pg:
            admin = sa.create_engine(self.pg)
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            admin.dispose()
        shutil.rmtree(self.data, ignore_errors=True)


def backend(h: Hub) -> str:
    return "PostgreSQL" if h.pg else "SQLite"


def first_error(r) -> str:
    import re

    lines = [x for x in r.stderr.splitlines() if x.startswith("错误") or "拒绝" in x]
    text = (lines[0] if lines else r.stderr.strip().splitlines()[0] if r.stderr.strip() else "").strip()
    return re.sub(r"/\S*/", "", text)[:160]   # file names, not the temporary folders


def case_huge_line(work: Path, pg, huge_mb: int) -> list[dict]:
    from workbench.synth import hostile

    h = Hub(work)
    big = hostile.write_huge_line_csv(work / "huge_line.csv", huge_mb << 20, rows=10_000, at=2)
    nxt = hostile.rapid_csv(work / "next.csv", 10_000, start=100_000)
    r, rss = run("cli", "ingest", "rapid_tests", big, nxt, "--json", "--no-progress", env=h.env)
    out = json.loads(r.stdout)
    loaded = h.count("rapid_tests")
    q = h.quarantine_lines()
    row = {"case": f"CSV 第 4 行长 {huge_mb} MB（默认上限 1 MiB 字符），其后还有 1 万行；命令行上的下一个文件 1 万行",
           "backend": backend(h), "exit": r.returncode,
           "what": f"该行隔离（行过长），其余 {out[0]['loaded']:,} 行入库；下一个文件 {out[1]['loaded']:,} 行入库；"
                   f"{first_error(r)}",
           "lost": 20_001 - loaded - len(q), "duplicates": len(q) - len(set(q)), "peak_mib": rss,
           "traceback": "Traceback" in r.stderr}
    h.close()
    big.unlink()
    return [row]


def case_gbk_line(work: Path, pg) -> list[dict]:
    from workbench.synth import hostile

    out = []
    for url in [None] + ([pg] if pg else []):
        h = Hub(work, url)
        line = hostile.rapid_row(7).replace("李记", "张记菜摊").encode("gbk")
        path = hostile.rapid_csv(work / "mixed.csv", 100_000, insert={7: line})
        r, rss = run("cli", "ingest", "rapid_tests", path, "--json", "--no-progress", env=h.env)
        s = json.loads(r.stdout)
        q = h.quarantine_lines()
        out.append({"case": "UTF-8 文件（10 万行）中一行 GBK", "backend": backend(h), "exit": r.returncode,
                    "what": f"编码 {s['encoding']}；第 {q} 行隔离（编码错误，按 GB18030 显示原文），其余 {s['loaded']:,} 行入库",
                    "lost": 100_000 - h.count("rapid_tests") - len(q), "duplicates": s["duplicates"],
                    "peak_mib": rss, "traceback": "Traceback" in r.stderr})
        h.close()
    return out


def case_nul(work: Path, pg) -> list[dict]:
    from workbench.synth import hostile

    out = []
    for url in [None] + ([pg] if pg else []):
        h = Hub(work, url)
        ins = {i: hostile.rapid_row(i).replace("李记", "李\x00记").encode() for i in (3, 500, 99_000)}
        path = hostile.rapid_csv(work / "nul.csv", 100_000, insert=ins)
        r, rss = run("cli", "ingest", "rapid_tests", path, "--json", "--no-progress", env=h.env)
        s = json.loads(r.stdout)
        q = h.quarantine_lines()
        out.append({"case": "10 万行 CSV 中 3 行含 NUL 字节", "backend": backend(h), "exit": r.returncode,
                    "what": f"3 行隔离（含 NUL 空字符，以 ␀ 显示），{s['loaded']:,} 行入库；两种数据库相同",
                    "lost": 100_000 - h.count("rapid_tests") - len(q), "duplicates": s["duplicates"],
                    "peak_mib": rss, "traceback": "Traceback" in r.stderr})
        h.close()
    return out


def case_bomb(work: Path, pg) -> list[dict]:
    from workbench.synth import hostile

    h = Hub(work)
    bomb = hostile.write_xlsx_bomb(work / "bomb.xlsx")
    import zipfile

    with zipfile.ZipFile(bomb) as z:
        unpacked = sum(i.file_size for i in z.infolist())
    good = hostile.rapid_csv(work / "good.csv", 1000)
    r, rss = run("cli", "ingest", "rapid_tests", bomb, good, "--json", "--no-progress", env=h.env)
    s = json.loads(r.stdout)
    row = {"case": f"XLSX 炸弹：{bomb.stat().st_size / 1e6:.1f} MB，解压后 {unpacked / 2**30:.2f} GiB；其后一个正常文件 1000 行",
           "backend": backend(h), "exit": r.returncode,
           "what": f"拒绝，未解压：{s[0]['error'][:90]}…；正常文件 {s[1]['loaded']} 行入库",
           "lost": 1000 - h.count("rapid_tests"), "duplicates": 0, "peak_mib": rss,
           "traceback": "Traceback" in r.stderr}
    h.close()
    return [row]


def case_killed(work: Path, pg, rows: int) -> list[dict]:
    import sqlalchemy as sa

    from workbench.store.schema import ingest_files
    from workbench.synth import hostile

    out = []
    for url in [None] + ([pg] if pg else []):
        h = Hub(work, url)
        bad_every = 500
        path = hostile.rapid_csv(work / "big.csv", rows, bad_every=bad_every)
        proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "ingest", "rapid_tests", str(path),
                                 "--no-progress"], env=h.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        line = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300 and not line:
            try:
                with h.eng.connect() as conn:
                    notes = conn.execute(sa.select(ingest_files.c.notes)).scalar()
                line = (json.loads(notes or "{}").get("resume") or {}).get("line") or 0
            except Exception:  # noqa: BLE001 - the tables are being made
                pass
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        r, rss = run("cli", "ingest", "rapid_tests", path, "--json", "--no-progress", env=h.env)
        s = json.loads(r.stdout)
        q = h.quarantine_lines()
        n_bad = rows // bad_every
        with h.eng.connect() as conn:
            status = conn.execute(sa.select(ingest_files.c.status)).scalar()
        out.append({"case": f"接入 {rows:,} 行时 SIGKILL（已提交至第 {line:,} 行），再次接入",
                    "backend": backend(h), "exit": r.returncode,
                    "what": f"标记为中断（已审计），重跑从第 {s['resumed_from']:,} 行后继续；读取 {s['rows_read']:,}、"
                            f"入库 {s['loaded']:,}、隔离 {s['quarantined']}、重复 {s['duplicates']}；状态 {status}",
                    "lost": rows - h.count("rapid_tests") - len(set(q)),
                    "duplicates": (len(q) - len(set(q))) + max(0, h.count("rapid_tests") - (rows - n_bad)) + s["duplicates"],
                    "peak_mib": rss, "traceback": "Traceback" in r.stderr})
        h.close()
    return out


def case_symlink(work: Path, pg) -> list[dict]:
    from workbench.synth import hostile

    h = Hub(work)
    drop = work / "drop"
    drop.mkdir(exist_ok=True)
    (drop / "passwd.csv").symlink_to("/etc/passwd")
    hostile.rapid_csv(drop / "good.csv", 100)
    code = ("from workbench.market import intake; from workbench.store import hub\n"
            "f = intake.DropFolder(sys.argv[1], hub.engine())\n"
            "rs = f.poll() + f.poll()\n"
            "print(__import__('json').dumps([{'file': r['file'], 'ok': r['ok'], 'error': r.get('error')} for r in rs],"
            " ensure_ascii=False))")
    r, rss = run(code, drop, env=h.env)
    rs = json.loads(r.stdout)
    refused = next(x for x in rs if x["file"] == "passwd.csv")
    row = {"case": "投递目录中指向 /etc/passwd 的符号链接", "backend": backend(h), "exit": r.returncode,
           "what": f"{refused['error']}；链接移入“无法读取”，good.csv 100 行入库；hub 中 ingest_files "
                   f"{h.count('ingest_files')} 行",
           "lost": 100 - h.count("rapid_tests"), "duplicates": 0, "peak_mib": rss, "traceback": "Traceback" in r.stderr}
    h.close()
    return [row]


def case_model(work: Path, pg) -> list[dict]:
    from workbench.synth import hostile

    marker = work / "pwned.txt"
    model = hostile.write_malicious_pt(work / "evil.pt", marker)
    code = ("from workbench.canteen.detector import Detector, ModelError\n"
            "try:\n    Detector(sys.argv[1], closeup=None)\nexcept ModelError as e:\n    print(e)\n    raise SystemExit(2)")
    r, rss = run(code, model, env=dict(os.environ))
    return [{"case": "带代码的 .pt（反序列化时写文件）", "backend": "—", "exit": r.returncode,
             "what": f"{r.stdout.strip()[:120]}；标记文件{'出现（代码已运行！）' if marker.exists() else '未出现'}",
             "lost": 0, "duplicates": 0, "peak_mib": rss, "traceback": "Traceback" in r.stderr}]


def case_report(work: Path, pg) -> list[dict]:
    out_dir = work / "reports_out"
    env = dict(os.environ, WORKBENCH_REPORTS_OUT=str(out_dir))
    r, rss = run("cli", "report", "run", "hub_report", "-p", "dayz", "7", env=env)
    made = [p for p in out_dir.rglob("*") if p.is_file()] if out_dir.exists() else []
    return [{"case": "报告参数：未知参数 dayz", "backend": "—", "exit": r.returncode,
             "what": f"{first_error(r)[:110]}…；生成文件 {len(made)} 个",
             "lost": 0, "duplicates": 0, "peak_mib": rss, "traceback": "Traceback" in r.stderr}]


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default=os.environ.get("WORKBENCH_TEST_PG_URL"))
    ap.add_argument("--out", default="benchmarks/out/hostile_inputs.md")
    ap.add_argument("--huge-mb", type=int, default=200)
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the file killed mid-ingest")
    ap.add_argument("--only", default=None, help="comma-separated case names (huge,gbk,nul,bomb,killed,symlink,model,report)")
    a = ap.parse_args()
    cases = {"huge": lambda w: case_huge_line(w, a.pg, a.huge_mb), "gbk": lambda w: case_gbk_line(w, a.pg),
             "nul": lambda w: case_nul(w, a.pg), "bomb": lambda w: case_bomb(w, a.pg),
             "killed": lambda w: case_killed(w, a.pg, a.rows), "symlink": lambda w: case_symlink(w, a.pg),
             "model": lambda w: case_model(w, a.pg), "report": lambda w: case_report(w, a.pg)}
    wanted = a.only.split(",") if a.only else list(cases)
    rows = []
    for name in wanted:
        with tempfile.TemporaryDirectory(prefix=f"hostile_{name}_") as tmp:
            t = time.perf_counter()
            got = cases[name](Path(tmp))
            for g in got:
                g["seconds"] = time.perf_counter() - t
                print(json.dumps(g, ensure_ascii=False), flush=True)
            rows += got
    table = ["| 恶意/损坏输入 | 数据库 | 结果 | 退出码 | 丢失行 | 重复 | 进程峰值内存 |",
             "|---|---|---|---:|---:|---:|---:|"]
    for g in rows:
        table.append(f"| {g['case']} | {g['backend']} | {g['what']}{'（有 Traceback！）' if g['traceback'] else ''} | "
                     f"{g['exit']} | {g['lost']} | {g['duplicates']} | {g['peak_mib']:.0f} MiB |")
    text = (f"# 恶意输入 (issue 13) — `benchmarks/hostile_inputs.py`\n\nMachine: {machine()}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Each file taken in by the real command in a "
            f"fresh process; peak memory is that process's own peak resident set (VmHWM; ru_maxrss would include the parent's at fork).\n\n" + "\n".join(table) + "\n")
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
