"""The weekly market bulletin's summary states the right numbers (against the hub's rows), the
change against the previous week, and what needs a decision; the notebook renders it as a
bulletin (one title, no developer line)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.market import bulletin as mb
from workbench.market import figures as fg
from workbench.store import hub
from workbench.store.ingest import upsert

PEST = "有机磷和氨基甲酸酯类农药残留"
ROOT = Path(__file__).resolve().parents[1]


def _rows(seed=4) -> pd.DataFrame:
    """Two weeks (2026-02-23 … 2026-03-08, Beijing) of tests at three markets; the second week
    has more positives and two banned-substance positives (东门市场, 西门市场)."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(14):
        day = pd.Timestamp("2026-02-23 01:00") + pd.Timedelta(days=d)  # 09:00 Beijing
        for k in range(40):
            m = k % 3
            item = PEST if k % 4 else "克伦特罗"
            p = (0.03 if d < 7 else 0.08) if item == PEST else 0.0
            pos = rng.random() < p
            ts = day + pd.Timedelta(minutes=7 * k)
            rows.append(dict(test_id=f"K{d:02d}{k:03d}", ts=ts, sampled_at=ts - pd.Timedelta(minutes=12),
                             market_id=f"M{m}", stall_id=f"S{m}-{k % 5}", district="荷塘区", commodity="韭菜" if item == PEST else "猪肉",
                             category="蔬菜" if item == PEST else "猪肉", origin="本地", test_item=item,
                             reading=60.0 if pos else 10.0, result="阳性" if pos else "阴性", inspector_id=f"I{k % 4}"))
    df = pd.DataFrame(rows)
    for tid in ("K10000", "K12004"):  # banned positives in the second week (M0 东门, M1 西门)
        df.loc[df["test_id"] == tid, ["result", "reading"]] = ["阳性", 1.0]
    return df


def test_summary_states_the_numbers_of_the_hub(hub_engine):
    df = _rows()
    with hub_engine.begin() as conn:
        upsert(conn, "markets", pd.DataFrame({"market_id": ["M0", "M1", "M2"], "name": ["东门市场", "西门市场", "南门市场"],
                                              "district": ["荷塘区"] * 3}), ["name"])
        upsert(conn, "rapid_tests", df, ["result"])
    b = mb.weekly(7, "2026-03-08", eng=hub_engine)
    rows = hub.read("rapid_tests", eng=hub_engine)
    rows["ts"] = pd.to_datetime(rows["ts"])
    rows["sampled_at"] = pd.to_datetime(rows["sampled_at"])
    prep = fg.prepare(rows)
    now = fg.bulletin(fg.in_days(prep, "2026-03-02", "2026-03-08")).iloc[0]
    before = fg.bulletin(fg.in_days(prep, "2026-02-23", "2026-03-01")).iloc[0]
    first = b.lines[0]
    assert first.startswith("2026-03-02 至 2026-03-08全市抽检")
    assert f"抽检 {int(now['samples']):,} 批" in first and f"检测 {int(now['items']):,} 项次" in first
    assert f"阳性 {int(now['positive_items']):,} 项次" in first
    assert f"项次阳性率 {now['item_rate'] * 100:.2f}%（上周 {before['item_rate'] * 100:.2f}%）" in first
    d = (now["item_rate"] - before["item_rate"]) * 100
    assert f"阳性率{'上升' if d > 0 else '下降'} {abs(d):.2f} 个百分点" in first
    assert int(now["items"]) == int(before["items"]) and "较上周持平" in first  # 280 tests each week
    # banned substances: the number, where, and a decision
    assert int(now["banned_positive"]) == 2
    assert "检出禁用物质 2 项（东门市场猪肉、西门市场猪肉），较上周增加 2 项。" == b.lines[1]
    assert any(x.startswith("禁用物质阳性 2 项（东门市场猪肉、西门市场猪肉）") for x in b.decisions)
    assert len(b.banned) == 2 and set(b.banned["test_id"]) == {"K10000", "K12004"}
    # the tables are the period's
    assert int(b.by_market["items"].sum()) == int(now["items"])
    assert b.by_market.set_index("market_id").loc["M0", "name"] == "东门市场"


def test_an_empty_period_says_so(hub_engine):
    b = mb.weekly(7, "2026-03-08", eng=hub_engine)
    assert b.empty and b.lines == ["2026-03-02 至 2026-03-08 没有快检记录。"] and b.decisions == []


def test_the_notebook_is_a_bulletin_not_a_notebook():
    nb = json.loads((ROOT / "notebooks" / "market_bulletin.ipynb").read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in nb["cells"])
    assert not [c for c in nb["cells"] if c["cell_type"] == "markdown"]  # the one title is bt.heading's
    assert "workbench report run" not in text and text.count("bt.heading(") == 1
    assert "bt.summary(b.lines, decisions=b.decisions)" in text and "bt.notes()" in text
    assert nb["cells"][0]["metadata"].get("tags") == ["parameters"]
