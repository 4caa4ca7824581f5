"""Surveillance statistics against R's `surveillance` package (values in tests/results/,
written by tests/results/market_surveillance_reference.R), and their behaviour on series
with and without a real change."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.market import surveillance as sv

RESULTS = Path(__file__).with_name("results")


def _ears_input() -> pd.DataFrame:
    df = pd.read_csv(RESULTS / "market_ears_input.csv")
    return df.pivot(index="day", columns="unit", values="observed")


REF_EARS = pd.read_csv(RESULTS / "market_ears_reference.csv")
EARS_CASES = sorted({tuple(r) for r in REF_EARS[["method", "baseline", "alpha", "min_sigma"]].itertuples(index=False)})


@pytest.mark.parametrize("method,baseline,alpha,min_sigma", EARS_CASES)
def test_ears_matches_r_earsC(method, baseline, alpha, min_sigma):
    obs = _ears_input()
    ref = REF_EARS[(REF_EARS.method == method) & (REF_EARS.baseline == baseline) & (REF_EARS.alpha == alpha)
                   & (REF_EARS.min_sigma == min_sigma)]
    default_alpha = 0.025 if method == "C3" else 0.001
    res = sv.ears(obs, method, baseline, None if alpha == default_alpha else alpha, min_sigma)
    assert res["alpha"] == pytest.approx(alpha)
    for unit, r in ref.groupby("unit"):
        days = r["day"].to_numpy()
        ub = res["upperbound"].loc[days, unit].to_numpy()
        want = r["upperbound"].to_numpy(float)
        # R's NA (0/0 in C3 when the reference window does not vary) is our NaN
        np.testing.assert_array_equal(np.isnan(ub), np.isnan(want), err_msg=f"{method} {unit}")
        np.testing.assert_allclose(ub[~np.isnan(ub)], want[~np.isnan(want)], rtol=1e-10, err_msg=f"{method} {unit}")
        want_alarm = r["alarm"].fillna(0).astype(bool).to_numpy()  # NA alarm: not an alarm
        got = res["alarm"].loc[days, unit].to_numpy()
        assert (got == want_alarm).all(), f"{method} {unit}: alarms differ on days {days[got != want_alarm]}"
        # days before the first judged one are not judged
        assert np.isnan(res["upperbound"][unit].to_numpy()[: days.min() - 1]).all()
    assert ref["alarm"].fillna(0).sum() > 0, "the reference should hold alarms to compare"


REF_CUSUM = pd.read_csv(RESULTS / "market_cusum_reference.csv")


@pytest.mark.parametrize("h,odds_ratio", sorted({tuple(r) for r in REF_CUSUM[["h", "odds_ratio"]].itertuples(index=False)}))
def test_binomial_cusum_matches_r_categoricalCUSUM(h, odds_ratio):
    inp = pd.read_csv(RESULTS / "market_cusum_input.csv")
    n = inp.pivot(index="week", columns="unit", values="n")
    x = inp.pivot(index="week", columns="unit", values="x")
    p0 = inp.pivot(index="week", columns="unit", values="p0")
    res = sv.cusum(n, x, p0, odds_ratio, h)
    ref = REF_CUSUM[(REF_CUSUM.h == h) & (REF_CUSUM.odds_ratio == odds_ratio)]
    for unit, r in ref.groupby("unit"):
        np.testing.assert_allclose(res["s"][unit].to_numpy(), r["s"].to_numpy(), rtol=1e-9, atol=1e-12)
        assert (res["alarm"][unit].to_numpy() == r["alarm"].astype(bool).to_numpy()).all(), unit
    rising = ref[ref.unit == "rising"]
    assert rising.loc[rising.week > 60, "alarm"].sum() > 0  # the planted rise is found


def test_p_chart_limits_follow_the_number_of_tests_and_hold_the_level():
    rng = np.random.default_rng(5)
    n = pd.DataFrame(rng.poisson(40, (2000, 20)))
    x = pd.DataFrame(rng.binomial(n, 0.03))
    res = sv.p_chart(n, x, 0.03)
    # wider classical limits where fewer tests were done
    ucl, nn = res["ucl"].to_numpy().ravel(), n.to_numpy().ravel()
    assert ucl[nn == nn.min()].min() > ucl[nn == nn.max()].max()
    share = res["alarm"].to_numpy().mean()
    assert share <= sv.Z_3SIGMA_ONE_SIDED * 1.2  # probability limits: at most the nominal level
    big = sv.p_chart(n, pd.DataFrame(rng.binomial(n, 0.12)), 0.03)
    assert big["alarm"].to_numpy().mean() > 0.2  # a fourfold rate: a Shewhart chart catches it often, not always


def test_ewma_and_cusum_quiet_without_change_and_alarm_after_one():
    rng = np.random.default_rng(11)
    W = 300
    n = pd.DataFrame(rng.poisson(50, (W, 30)))
    p = np.full((W, 30), 0.03)
    p[200:, :10] = 0.09
    x = pd.DataFrame(rng.binomial(n, p))
    for res in (sv.ewma(n, x, 0.03), sv.cusum(n, x, 0.03)):
        a = res["alarm"].to_numpy()
        assert a[:200].mean() < 0.01  # quiet before the change
        assert a[200:, :10].any(axis=0).all()  # every changed unit alarms after it
        assert a[200:, 10:].mean() < 0.01


def test_reference_rate_follows_the_city_season_but_not_a_market_rise():
    rng = np.random.default_rng(2)
    W, U = 60, 12
    season = 0.03 * (1 + 0.5 * np.sin(2 * np.pi * np.arange(W) / 52))[:, None]
    p = np.repeat(season, U, axis=1)
    p[40:, 0] *= 4
    n = pd.DataFrame(rng.poisson(60, (W, U)))
    x = pd.DataFrame(rng.binomial(n, p))
    ref = sv.reference_rate(n, x, periods=13, shrink=200)
    res = sv.cusum(n, x, ref)
    assert res["alarm"].iloc[40:, 0].any()
    assert res["alarm"].iloc[:, 1:].to_numpy().mean() < 0.02
    # the reference rises with the season for everyone
    assert ref.iloc[10:16].mean().mean() > ref.iloc[36:42].mean().mean()


def test_funnel_flags_only_the_market_outside():
    b = pd.DataFrame({"market_id": ["A", "B", "C"], "items": [1000, 1000, 50], "positive_items": [20, 60, 3]})
    f = sv.funnel(b, 0.02)
    assert f.set_index("market_id")["side"].to_dict() == {"A": "", "B": "high", "C": ""}
    curve = sv.funnel_curve(0.02, 1000)
    assert (curve["hi_0.998"] >= curve["hi_0.95"]).all()


def test_episodes_merge_alarms_close_together():
    idx = pd.date_range("2026-01-05", periods=12, freq="7D")
    a = pd.DataFrame({"M1": [0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]}, index=idx).astype(bool)
    ep = sv.episodes(a, gap=2)
    assert ep["alarms"].tolist() == [2, 1]
    assert ep["first"].tolist() == [idx[1], idx[9]]


def test_trend_model_finds_the_commodity_effect():
    rng = np.random.default_rng(3)
    n = 20000
    days = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    com = rng.choice(["韭菜", "黄瓜"], n)
    p = np.where(com == "韭菜", 0.06, 0.015)
    prep = pd.DataFrame({"day": days, "commodity": com, "market_id": rng.choice(["M1", "M2"], n),
                         "positive": rng.random(n) < p})
    res, tab = sv.trend_model(prep)
    assert res is not None
    row = tab.set_index("term").loc["C(commodity)[T.黄瓜]"]  # against 韭菜, the first in sort order
    assert row["lo"] < (0.015 / 0.985) / (0.06 / 0.94) < row["hi"]
    assert "years" in tab["term"].tolist()
