"""One implausible value is set aside, not its row (issue 15: a 1048 mph wind condemned the whole
weather row). Through the one ingest path, on SQLite and PostgreSQL: the value goes to quarantine
with its reason and the row as the file had it, the hub holds the row with that field empty.
(The real nycflights13 row is in test_safety_realweather.py.)"""
from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from workbench.store import hub, ingest

BROKEN = ("站号,观测时间,气温,风速(m/s),降水量(mm),相对湿度\n"
          "A1,2026-01-10 08:00,5.0,2.0,0.0,80\n"          # line 2: good
          "A1,2026-01-10 09:00,999.9,3.0,0.5,85\n"        # line 3: a sensor fault in the temperature
          "A1,2026-01-10 10:00,6.0,468.7,-3,90\n"         # line 4: wind and precipitation out of their limits
          "A1,2026-01-10 11:00,abc,500,0,90\n"            # line 5: a temperature that is no number: the row
          "A1,2026-01-10 12:00,7,2,0,150\n")              # line 6: humidity past 100 %


def _quarantine(eng) -> pd.DataFrame:
    with eng.connect() as conn:
        rows = conn.execute(sa.text("SELECT line, reason, detail, row_json FROM quarantine "
                                    "WHERE dataset = 'weather' ORDER BY line")).all()
    return pd.DataFrame(rows, columns=["line", "reason", "detail", "row_json"])


def test_a_broken_file_sets_the_values_aside_and_loads_their_rows(hub_engine, tmp_path):
    f = tmp_path / "自动站.csv"
    f.write_text(BROKEN, encoding="utf-8")
    s = ingest.ingest_file("weather", f, hub_engine)
    assert (s.rows_read, s.loaded, s.quarantined, s.set_aside) == (5, 4, 1, 3)
    assert "另有 3 行的不合理数值已单独隔离" in s.line()
    w = hub.read("weather", eng=hub_engine).assign(ts=lambda x: pd.to_datetime(x.ts)).set_index("ts").sort_index()
    assert len(w) == 4   # 08:00 (UTC 00:00), 09:00, 10:00, 12:00 Beijing
    at = {h: w.loc[pd.Timestamp(f"2026-01-10 {h:02d}:00")] for h in (0, 1, 2, 4)}
    assert pd.isna(at[1].temperature) and at[1].wind_speed == 3.0 and at[1].precipitation == 0.5 and at[1].humidity == 85
    assert pd.isna(at[2].wind_speed) and pd.isna(at[2].precipitation) and at[2].temperature == 6.0 and at[2].humidity == 90
    assert pd.isna(at[4].humidity) and at[4].temperature == 7.0
    assert at[0].temperature == 5.0 and at[0].wind_speed == 2.0
    q = _quarantine(hub_engine)
    assert q.line.tolist() == [3, 4, 5, 6]
    reasons = dict(zip(q.line, q.reason))
    note = ingest.SET_ASIDE_NOTE
    assert reasons[3] == f"气温(°C)超出上限 70{note}"
    assert reasons[4] == f"降水量(mm)小于下限 0{note}; 风速(m/s)超出上限 120{note}"
    assert reasons[6] == f"相对湿度(%)超出上限 100{note}"
    # the row that cannot load keeps every reason, none of them "set aside"
    assert reasons[5] == "气温(°C)不是数字; 风速(m/s)超出上限 120" and note not in reasons[5]
    raw = {line: json.loads(j) for line, j in zip(q.line, q.row_json)}
    assert raw[3]["气温"] == "999.9" and raw[4]["风速(m/s)"] == "468.7" and raw[4]["降水量(mm)"] == "-3"
    assert raw[3]["站号"] == "A1" and raw[3]["观测时间"] == "2026-01-10 09:00"   # the row as the file had it
    assert dict(zip(q.line, q.detail))[3] == "气温(°C): 999.9"
    # the same file again adds nothing, in the hub or in quarantine
    again = ingest.ingest_file("weather", f, hub_engine)
    assert again.skipped and len(_quarantine(hub_engine)) == 4 and len(hub.read("weather", eng=hub_engine)) == 4


def test_preview_shows_the_set_aside_values_and_writes_nothing(hub_engine, tmp_path):
    f = tmp_path / "自动站.csv"
    f.write_text(BROKEN, encoding="utf-8")
    s = ingest.ingest_file("weather", f, hub_engine, preview=True)
    assert (s.loaded, s.quarantined, s.set_aside) == (4, 1, 3)
    assert [r["行号"] for r in s.preview.quarantine_sample] == [5, 3, 4, 6]
    assert hub.read("weather", eng=hub_engine).empty and _quarantine(hub_engine).empty


def test_a_caller_that_cannot_set_values_aside_gets_the_row_reason():
    """ingest.validate (the 3-value API other intakes use) keeps the old rule: the row is refused."""
    from workbench.store.schema import DATASETS

    frame = pd.DataFrame({"station_id": ["A1", "A1"], "ts": ["2026-01-10 08:00", "2026-01-10 09:00"],
                          "temperature": ["5", "999.9"]})
    values, reasons, _ = ingest.validate(DATASETS["weather"], frame)
    assert reasons.tolist() == ["", f"气温(°C)超出上限 70{ingest.SET_ASIDE_NOTE}"]
    values, reasons, _, aside, _ = ingest.check_values(DATASETS["weather"], frame)
    assert reasons.tolist() == ["", ""] and aside.iloc[1].startswith("气温(°C)超出上限 70")
    assert pd.isna(values.temperature.iloc[1]) and values.temperature.iloc[0] == 5.0
