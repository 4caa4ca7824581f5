"""The CLI speaks as the screens do: `db status` in Beijing dates with columns aligned by display
width, case actions named in Chinese (the English names still work)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pandas as pd
import pytest

from workbench.cli_text import ChineseChoice, display_width, text_columns


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          env=env or dict(os.environ), timeout=600)


DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def test_db_status_beijing_dates_in_aligned_columns(sample_city):
    from workbench import clock
    from workbench.store import hub

    r = cli("db", "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header, rows = lines[0], lines[1:]
    assert "最早（北京时间）" in header and "记录数" in header
    status = hub.dataset_status().set_index("dataset")
    assert len(rows) == len(status)
    date_cols, count_ends = set(), set()
    for line in rows:
        label, name = line.split()[:2]
        st = status.loc[name]
        assert st["label"] == label
        m = DATE.search(line)
        if pd.notna(st["first_ts"]):
            first, last = DATE.findall(line)
            # Beijing dates: the weather's first hour (00:00 Beijing) is the day before in UTC
            assert first == f"{clock.to_local(st['first_ts']):%Y-%m-%d}" and last == f"{clock.to_local(st['last_ts']):%Y-%m-%d}"
            date_cols.add(display_width(line[:m.start()]))
        count = f"{int(st['rows']):,}"
        end = line.index(count, display_width(label)) + len(count)
        count_ends.add(display_width(line[:end]))
    assert date_cols == {display_width(header[:header.index("最早")])}   # every date under its heading
    assert len(count_ends) == 1                                          # the counts right-aligned
    weather = status.loc["weather"]
    assert f"{clock.to_local(weather['first_ts']):%Y-%m-%d}" != f"{weather['first_ts']:%Y-%m-%d}"  # the case UTC got wrong


def test_text_columns_align_by_display_width():
    out = text_columns([["数据集", "n"], ["农贸市场快检", "16,317"], ["grids", "5"]], right={1})
    assert [display_width(x) for x in out] == [display_width(out[1])] * 3
    assert out[2].startswith("grids" + " " * (display_width("农贸市场快检") - 5 + 2))


def test_chinese_choice_takes_chinese_and_english():
    from workbench.events.flow import ACTION_LABELS

    choice = ChineseChoice(ACTION_LABELS, aliases={"受理": "accept"})
    assert choice.convert("派遣", None, None) == "dispatch" and choice.convert("dispatch", None, None) == "dispatch"
    assert choice.convert("受理立案", None, None) == "accept" and choice.convert("受理", None, None) == "accept"
    assert choice.convert("ACCEPT", None, None) == "accept"
    with pytest.raises(click.BadParameter, match="受理立案（accept）"):
        choice.convert("派单", None, None)


@pytest.mark.slow
def test_case_actions_in_chinese_and_in_english(sample_city, tmp_path):
    """Real steps on a copy of the sample city's hub: 受理立案 and accept both open a case."""
    from workbench.store import hub

    src = Path(sample_city["WORKBENCH_DB_URL"].removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{src}{suffix}").exists():
            shutil.copy(f"{src}{suffix}", tmp_path / f"city.db{suffix}")
    url = f"sqlite:///{tmp_path / 'city.db'}"
    env = {**os.environ, "WORKBENCH_DB_URL": url}
    waiting = hub.query("select event_id from city_events where status = '信息收集' order by event_id",
                        eng=hub.engine(url))["event_id"].tolist()
    assert len(waiting) >= 2
    help_text = cli("events", "act", "--help", env=env).stdout
    assert "受理立案" in help_text and "派遣" in help_text
    r = cli("events", "act", waiting[0], "受理立案", "--note", "测试", env=env)
    assert r.returncode == 0, r.stderr
    assert "信息收集 → 案卷建立" in r.stdout
    r = cli("events", "act", waiting[1], "accept", env=env)
    assert r.returncode == 0 and "→ 案卷建立" in r.stdout, r.stderr
    r = cli("events", "act", waiting[1], "派单", env=env)
    assert r.returncode == 2 and "不是可选的操作" in r.stderr and "派遣（dispatch）" in r.stderr
    now = hub.query("select event_id, status from city_events where event_id in (:a, :b)",
                    {"a": waiting[0], "b": waiting[1]}, eng=hub.engine(url))
    assert set(now["status"]) == {"案卷建立"}
    # the kitchen's rectification cases: the Chinese action names too (通知整改 → 已通知, 登记整改 → 已整改)
    eng = hub.engine(url)
    fresh = hub.query("select case_id from cases where case_type = 'canteen_rectification' and status = '待处理' "
                      "order by case_id", eng=eng)["case_id"].tolist()
    notified = hub.query("select case_id from cases where case_type = 'canteen_rectification' and status = '已通知' "
                         "order by case_id", eng=eng)["case_id"].tolist()
    assert fresh and len(notified) >= 2
    assert "通知整改" in cli("canteen", "case", "--help", env=env).stdout
    r = cli("canteen", "case", fresh[0], "通知整改", env=env)
    assert r.returncode == 0 and "待处理 → 已通知" in r.stdout, r.stderr
    r = cli("canteen", "case", notified[0], "登记整改", "--note", "已更换工作帽", env=env)
    assert r.returncode == 0 and "已通知 → 已整改" in r.stdout, r.stderr
    r = cli("canteen", "case", notified[1], "rectify", env=env)      # English still taken
    assert r.returncode == 0 and "已通知 → 已整改" in r.stdout, r.stderr
    r = cli("canteen", "case", notified[1], "派单", env=env)
    assert r.returncode == 2 and "通知整改" in r.stderr and "Traceback" not in r.stderr
    hub.dispose(url)
