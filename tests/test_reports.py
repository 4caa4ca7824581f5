"""Reports: real papermill runs of the report notebooks against a sample city."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from workbench import reports


def cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)


@pytest.mark.slow
def test_report_run_writes_notebook_html_and_index(sample_city):
    r = cli("report", "run", "hub_report", "-p", "days", "7", "-p", "end", "2026-01-20", "--date", "2026-01-21")
    assert r.returncode == 0, r.stderr[-2000:]
    out = Path(sample_city["WORKBENCH_REPORTS_OUT"]) / "hub_report"
    nb = nbformat.read(out / "2026-01-21.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "days = 7" in injected[0].source and "end = \"2026-01-20\"" in injected[0].source
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    page = (out / "2026-01-21.html").read_text(encoding="utf-8")
    assert "数据中台报告 · 周报" in page and "2026-01-14 至 2026-01-20" in page
    assert "农贸市场快检" in page and "data:image/png;base64" in page  # the table and the chart
    assert "import " not in page.split("<body", 1)[1]  # code hidden
    index = (out.parent / "index.html").read_text(encoding="utf-8")
    assert "hub_report/2026-01-21.html" in index


def test_bad_parameter_fails_with_the_reason(sample_city):
    r = cli("report", "run", "hub_report", "-p", "days", "abc")
    assert r.returncode == 2
    assert "参数 days 应为整数" in r.stderr and "未生成任何文件" in r.stderr   # checked before papermill runs


def test_unknown_report_is_refused(sample_city):
    r = cli("report", "run", "no_such_report")
    assert r.returncode == 2 and "hub_report" in r.stderr


def test_schedule_names_existing_notebooks():
    items = reports.load_schedule()
    assert items and {i["notebook"] for i in items} <= set(reports.available())
    assert len({i["id"] for i in items}) == len(items)
    sched = reports.run_schedule(block=False)  # builds the jobs (cron parsing) without starting
    assert {j.id for j in sched.get_jobs()} == {i["id"] for i in items}


def test_period_is_whole_beijing_days():
    p = reports.period(7, "2026-01-20")
    assert p.text == "2026-01-14 至 2026-01-20" and p.title == "周报"
    assert str(p.start_utc) == "2026-01-13 16:00:00" and str(p.end_utc) == "2026-01-20 16:00:00"
    for bad in (0, -1, 1.5, "x"):
        with pytest.raises(ValueError, match="days"):
            reports.period(bad)
