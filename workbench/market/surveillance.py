"""Surveillance of positive rates: p-charts, EWMA, binomial CUSUM, EARS C1/C2/C3, the funnel
plot of markets against the city, and a binomial GLM for the trend.

Everything works on regular series: a frame of tests `n` and a frame of positives `x`
(rows: days or weeks, columns: units such as markets), built by `series()`. Each method
returns frames of the same shape. The definitions match R's `surveillance` package where
it has the method (EARS: `earsC`; CUSUM: `categoricalCUSUM` with a binomial density), and
tests/results/ holds R's values for the same series (tests/test_market_surveillance.py).
Exact parameters: docs/market.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from workbench.market.catalog import PESTICIDE

Z_3SIGMA_ONE_SIDED = 0.00134989803163  # P(Z > 3): the nominal false-alarm share of a 3σ upper limit


@dataclass(frozen=True)
class Rules:
    """The documented numbers (docs/market.md)."""

    item: str | None = PESTICIDE   # market surveillance runs on this test item (None: all items)
    freq: str = "W"                # W: weeks starting Monday (Beijing days); D: days
    baseline_weeks: int = 26       # each market's offset from the city: its first weeks (at most half the series)
    shrink_tests: float = 200.0    # pseudo-tests at the city rate added to a market's baseline
    p_alpha: float = Z_3SIGMA_ONE_SIDED  # p-chart probability limit (exact binomial upper tail)
    ewma_lambda: float = 0.2
    ewma_L: float = 3.0
    cusum_or: float = 2.0          # the shift CUSUM looks for: the odds of a positive doubled
    cusum_h: float = 4.0
    ears_baseline: int = 7
    ears_alpha: dict = field(default_factory=lambda: {"C1": 0.001, "C2": 0.001, "C3": 0.025})  # earsC defaults
    ears_min_sigma: float = 0.0
    funnel_levels: tuple = (0.95, 0.998)
    reference_smooth: int = 3      # weeks of the other markets' rate behind each week's reference
    episode_gap: int = 4           # alarms closer than this many periods are one episode (one alert)


# ------------------------------------------------------------------ series

def period_start(day: pd.Series, freq: str) -> pd.Series:
    if freq == "D":
        return day
    return day - pd.to_timedelta(day.dt.day_of_week, unit="D")


def series(prep: pd.DataFrame, unit: str | None, freq: str = "W", start=None, end=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tests `n` and positives `x` per period (rows, contiguous, zeros filled) and unit
    (columns; one column 全市 when unit is None)."""
    if prep.empty:
        empty = pd.DataFrame(dtype="int64")
        return empty, empty.copy()
    t = period_start(prep["day"], freq)
    u = prep[unit] if unit else pd.Series("全市", index=prep.index)
    g = pd.DataFrame({"t": t, "u": u, "pos": prep["positive"].astype("int64")}).groupby(["t", "u"], observed=True)["pos"]
    n = g.size().unstack(fill_value=0)
    x = g.sum().unstack(fill_value=0)
    if n.empty:
        empty = pd.DataFrame(dtype="int64")
        return empty, empty.copy()
    step = "D" if freq == "D" else "7D"
    first = pd.Timestamp(start) if start is not None else n.index.min()
    last = pd.Timestamp(end) if end is not None else n.index.max()
    if freq != "D":
        first, last = first - pd.Timedelta(days=first.day_of_week), last - pd.Timedelta(days=last.day_of_week)
    idx = pd.date_range(first, last, freq=step)
    return n.reindex(idx, fill_value=0).astype("int64"), x.reindex(idx, fill_value=0).astype("int64")


def _logit(p):
    return np.log(p / (1 - p))


def reference_rate(n: pd.DataFrame, x: pd.DataFrame, periods: int = 13, shrink: float = 200.0,
                   smooth: int = 3) -> pd.DataFrame:
    """Each unit's expected (in-control) rate per period, following the city's season:
    the other units' rate over the last `smooth` periods (leave-one-out, trailing), moved by
    the unit's own log-odds offset from them in its first `periods` periods (shrunk towards
    no offset with `shrink` pseudo-tests). A market whose rate rises against the rest of the
    city departs from it; a city-wide season does not."""
    N, X = n.to_numpy(float), x.to_numpy(float)
    tot_n, tot_x = N.sum(axis=1, keepdims=True), X.sum(axis=1, keepdims=True)
    loo_n = pd.DataFrame(tot_n - N).rolling(smooth, min_periods=1).sum().to_numpy()
    loo_x = pd.DataFrame(tot_x - X).rolling(smooth, min_periods=1).sum().to_numpy()
    overall = float(tot_x.sum() / tot_n.sum()) if tot_n.sum() else 0.02
    overall = min(max(overall, 1e-3), 0.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        city = np.where(loo_n > 0, (loo_x + 1 * overall) / (loo_n + 1), overall)  # one pseudo-test: never 0
    city = np.clip(city, 1e-4, 0.5)
    k = max(1, min(periods, len(n) // 2 or 1))
    xb = X[:k].sum(axis=0)
    expected = (city[:k] * N[:k]).sum(axis=0)  # what the unit would have found at the others' rate
    ratio = (xb + shrink * overall) / (expected + shrink * overall)  # shrunk observed / expected
    offset = np.log(np.clip(ratio, 0.05, 20))
    p0 = 1 / (1 + np.exp(-(_logit(city) + offset[None, :])))
    return pd.DataFrame(np.clip(p0, 1e-4, 0.5), index=n.index, columns=n.columns)


def _p0_frame(p0, like: pd.DataFrame) -> np.ndarray:
    if isinstance(p0, pd.DataFrame):
        return p0.reindex(index=like.index, columns=like.columns).to_numpy(float)
    if isinstance(p0, pd.Series):
        return np.broadcast_to(p0.reindex(like.columns).to_numpy(float)[None, :], like.shape)
    return np.broadcast_to(np.asarray(p0, float), like.shape)


# ------------------------------------------------------------------ control charts

def p_chart(n: pd.DataFrame, x: pd.DataFrame, p0, alpha: float = Z_3SIGMA_ONE_SIDED) -> dict:
    """Shewhart p-chart with limits that follow each period's number of tests.

    `ucl`/`lcl`: the classical p0 ± 3·sqrt(p0(1−p0)/n) (drawn); `limit`: the exact binomial
    probability limit, the smallest count k with P(X ≥ k | n, p0) ≤ alpha; an alarm is
    x ≥ limit, so with no real change an alarm's probability is at most alpha."""
    P0 = _p0_frame(p0, n)
    N = n.to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(N > 0, x.to_numpy(float) / N, np.nan)
        sd = np.sqrt(P0 * (1 - P0) / N)
    limit = stats.binom.isf(alpha, N, P0) + 1  # P(X > isf) <= alpha  ->  alarm at X >= isf + 1
    alarm = (N > 0) & (x.to_numpy() >= limit)
    mk = lambda a: pd.DataFrame(a, index=n.index, columns=n.columns)  # noqa: E731
    return {"p": mk(p), "center": mk(P0.copy()), "ucl": mk(np.where(N > 0, P0 + 3 * sd, np.nan)),
            "lcl": mk(np.where(N > 0, np.clip(P0 - 3 * sd, 0, None), np.nan)),
            "limit": mk(limit), "alarm": mk(alarm)}


def ewma(n: pd.DataFrame, x: pd.DataFrame, p0, lam: float = 0.2, L: float = 3.0) -> dict:
    """EWMA of the excess positive rate e_t = p_t − p0_t: z_t = λ·e_t + (1−λ)·z_{t−1}, z_0 = 0;
    periods without tests carry z on. Its exact variance with varying n:
    v_t = λ²·p0_t(1−p0_t)/n_t + (1−λ)²·v_{t−1}; alarm when z_t > L·sqrt(v_t)."""
    P0 = _p0_frame(p0, n)
    N = n.to_numpy(float)
    X = x.to_numpy(float)
    T, U = N.shape
    z = np.empty((T, U))
    v = np.empty((T, U))
    zt, vt = np.zeros(U), np.zeros(U)
    for t in range(T):
        has = N[t] > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            et = np.where(has, X[t] / N[t] - P0[t], 0.0)
            var = np.where(has, P0[t] * (1 - P0[t]) / N[t], 0.0)
        zt = np.where(has, lam * et + (1 - lam) * zt, zt)
        vt = np.where(has, lam * lam * var + (1 - lam) ** 2 * vt, vt)
        z[t], v[t] = zt, vt
    ucl = L * np.sqrt(v)
    mk = lambda a: pd.DataFrame(a, index=n.index, columns=n.columns)  # noqa: E731
    return {"z": mk(z), "ucl": mk(ucl), "alarm": mk((z > ucl) & (N > 0))}


def cusum(n: pd.DataFrame, x: pd.DataFrame, p0, odds_ratio: float = 2.0, h: float = 4.0) -> dict:
    """Binomial log-likelihood-ratio CUSUM (R: surveillance::categoricalCUSUM with a binomial
    density): S_t = max(0, S_{t−1} + x_t·log(p1/p0) + (n_t − x_t)·log((1−p1)/(1−p0))), where
    p1 has `odds_ratio` times the odds of p0; alarm when S_t > h, after which S restarts at 0."""
    P0 = _p0_frame(p0, n)
    P1 = odds_ratio * P0 / (1 - P0 + odds_ratio * P0)
    N = n.to_numpy(float)
    X = x.to_numpy(float)
    llr = X * np.log(P1 / P0) + (N - X) * np.log((1 - P1) / (1 - P0))
    S = np.empty_like(llr)
    A = np.zeros(llr.shape, dtype=bool)
    s = np.zeros(llr.shape[1])
    for t in range(llr.shape[0]):
        s = np.maximum(0.0, s + llr[t])
        S[t] = s
        A[t] = s > h
        s = np.where(A[t], 0.0, s)
    mk = lambda a: pd.DataFrame(a, index=n.index, columns=n.columns)  # noqa: E731
    return {"s": mk(S), "h": h, "p1": mk(P1.copy()), "alarm": mk(A)}


def ears(counts: pd.DataFrame, method: str = "C1", baseline: int = 7, alpha: float | None = None,
         min_sigma: float = 0.0) -> dict:
    """EARS C1/C2/C3 exactly as R's surveillance::earsC (version 1.20): reference windows of
    `baseline` periods, lag 0 (C1) or 2 (C2, C3); upper bound mean + z_{1−α}·max(sd, minSigma);
    C3 sums the two previous C2 exceedances. Periods before the first judged one are NaN.
    Default α as earsC: 0.001 for C1 and C2, 0.025 for C3."""
    if method not in ("C1", "C2", "C3"):
        raise ValueError("method must be C1, C2 or C3")
    if alpha is None:
        alpha = 0.025 if method == "C3" else 0.001
    z = stats.norm.ppf(1 - alpha)
    Y = counts.to_numpy(float)
    T = Y.shape[0]
    ub = np.full(Y.shape, np.nan)
    lag = 0 if method == "C1" else 2

    def ref_stats(t0: int):
        """mean and sd of the reference windows for t = t0..T-1."""
        win = np.lib.stride_tricks.sliding_window_view(Y, baseline, axis=0)  # (T-b+1, U, b)
        # the window ending at t - lag - 1 starts at t - lag - baseline
        idx = np.arange(t0, T) - lag - baseline
        w = win[idx]
        return w.mean(axis=2), np.maximum(w.std(axis=2, ddof=1), min_sigma)

    first = baseline + lag + (2 if method == "C3" else 0)
    if T > first:
        if method in ("C1", "C2"):
            m, sd = ref_stats(first)
            ub[first:] = m + z * sd
        else:
            m2, sd2 = ref_stats(first - 2)
            with np.errstate(invalid="ignore", divide="ignore"):
                c2 = (Y[first - 2:] - m2) / sd2
                part = np.maximum(0, c2[:-2] - 1) + np.maximum(0, c2[1:-1] - 1)
                u = Y[first:] + sd2[2:] * (z - part)
            ub[first:] = np.where(np.isnan(u), np.nan, np.maximum(0, u))
    with np.errstate(invalid="ignore"):
        alarm = Y > ub  # NaN bound (R: NA) is no alarm
    mk = lambda a: pd.DataFrame(a, index=counts.index, columns=counts.columns)  # noqa: E731
    return {"upperbound": mk(ub), "alarm": mk(alarm), "alpha": alpha, "first": first}


# ------------------------------------------------------------------ funnel plot

def funnel(b: pd.DataFrame, p: float, levels=(0.95, 0.998), n_col: str = "items", x_col: str = "positive_items") -> pd.DataFrame:
    """Each unit's rate against the city rate `p`, with exact binomial funnel limits
    (two-sided `levels`) at its own number of tests; `outside` is the widest level it leaves
    (0 if none), `side` high/low."""
    out = b.copy()
    n = out[n_col].to_numpy(float)
    x = out[x_col].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rate"] = x / n
    out["outside"] = 0.0
    out["side"] = ""
    for lv in levels:
        a = (1 - lv) / 2
        hi = stats.binom.isf(a, n, p) / np.where(n > 0, n, np.nan)
        lo = stats.binom.ppf(a, n, p) / np.where(n > 0, n, np.nan)
        out[f"hi_{lv:g}"], out[f"lo_{lv:g}"] = hi, lo
        high, low = out["rate"] > hi, out["rate"] < lo
        out.loc[high | low, "outside"] = lv
        out.loc[high, "side"] = "high"
        out.loc[low, "side"] = "low"
    return out


def funnel_curve(p: float, n_max: float, levels=(0.95, 0.998), points: int = 120) -> pd.DataFrame:
    """The funnel's limits over n = 1 … n_max, for drawing."""
    n = np.unique(np.round(np.geomspace(1, max(2.0, n_max * 1.05), points)))
    out = pd.DataFrame({"n": n})
    for lv in levels:
        a = (1 - lv) / 2
        out[f"hi_{lv:g}"] = stats.binom.isf(a, n, p) / n
        out[f"lo_{lv:g}"] = stats.binom.ppf(a, n, p) / n
    return out


# ------------------------------------------------------------------ trend model

def trend_model(prep: pd.DataFrame, min_tests: int = 30):
    """Binomial GLM (statsmodels) of the positive rate on commodity, market, season (annual
    harmonic of the day of year) and a linear trend in years, fitted on counts per commodity
    × market × quarter (Beijing days; the design stays small for a million records; season
    and trend use each cell's mean day).
    Commodities and markets with fewer than `min_tests` tests are left out. Returns
    (result, table of odds ratios with 95 % intervals), or (None, empty table) when there is
    too little data."""
    import statsmodels.api as sm

    cols = ["term", "odds_ratio", "lo", "hi", "p_value"]
    if prep.empty or prep["positive"].sum() == 0:
        return None, pd.DataFrame(columns=cols)
    month = prep["day"].dt.to_period("Q").dt.start_time
    g = pd.DataFrame({"commodity": prep["commodity"].astype(object), "market": prep["market_id"].astype(object),
                      "month": month, "pos": prep["positive"].astype("int64")})
    agg = g.groupby(["commodity", "market", "month"], observed=True)["pos"].agg(["sum", "size"]).reset_index()
    # too few tests, or never positive (separated: its odds ratio is 0, not estimable): left out
    for col in ("commodity", "market"):
        tot = agg.groupby(col)[["size", "sum"]].transform("sum")
        agg = agg[(tot["size"] >= min_tests) & (tot["sum"] > 0)]
    if agg.empty or agg["sum"].sum() == 0:
        return None, pd.DataFrame(columns=cols)
    # the mean day of each cell's tests, for season and trend
    mid = g.assign(d=prep["day"]).groupby(["commodity", "market", "month"], observed=True)["d"].mean()
    day = mid.reindex(pd.MultiIndex.from_frame(agg[["commodity", "market", "month"]])).to_numpy()
    day = pd.DatetimeIndex(day)
    doy = day.day_of_year.to_numpy()
    agg = agg.assign(season_sin=np.sin(2 * np.pi * doy / 365.25), season_cos=np.cos(2 * np.pi * doy / 365.25),
                     years=(day - day.min()).days.to_numpy() / 365.25, neg=agg["size"] - agg["sum"])
    # the design by hand (treatment coding, first level in sort order as reference, as patsy
    # would): a formula would cost more than the fit on a million records
    parts = [pd.DataFrame({"Intercept": np.ones(len(agg))}, index=agg.index)]
    for col in ("commodity", "market"):
        if agg[col].nunique() > 1:
            d = pd.get_dummies(agg[col], prefix=f"C({col})", prefix_sep="[T.", dtype=float).iloc[:, 1:]
            parts.append(d.rename(columns=lambda c: c + "]"))
    span = day.max() - day.min()
    if span >= pd.Timedelta(days=60):
        parts.append(agg[["years"]])
    if span >= pd.Timedelta(days=300):
        parts.append(agg[["season_sin", "season_cos"]])
    X = pd.concat(parts, axis=1).astype(float)
    y = np.column_stack([agg["sum"].to_numpy(float), agg["neg"].to_numpy(float)])
    p_bar = y[:, 0].sum() / y.sum()
    start = np.zeros(X.shape[1])
    start[0] = np.log(p_bar / (1 - p_bar))
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence is checked below, not printed on a dashboard
            res = sm.GLM(y, X, family=sm.families.Binomial()).fit(start_params=start, method="newton", maxiter=50)
    except Exception:  # noqa: BLE001 - separation or a singular design: say "no model", not crash
        return None, pd.DataFrame(columns=cols)
    if not res.mle_retvals.get("converged", True):
        return None, pd.DataFrame(columns=cols)
    ci = res.conf_int()
    with np.errstate(over="ignore"):  # a commodity never positive: its odds ratio is 0 with an open interval
        tab = pd.DataFrame({"term": res.params.index, "odds_ratio": np.exp(res.params.to_numpy()),
                            "lo": np.exp(ci[0].to_numpy()), "hi": np.exp(ci[1].to_numpy()),
                            "p_value": res.pvalues.to_numpy()})
    return res, tab


# ------------------------------------------------------------------ alarms to episodes

def episodes(alarm: pd.DataFrame, gap: int = 2) -> pd.DataFrame:
    """Runs of alarms per unit (alarms at most `gap` periods apart are one episode)."""
    rows = []
    A = alarm.to_numpy(dtype=bool)
    idx = alarm.index
    for j, unit in enumerate(alarm.columns):
        t = np.flatnonzero(A[:, j])
        if not len(t):
            continue
        breaks = np.flatnonzero(np.diff(t) > gap)
        starts = np.r_[t[0], t[breaks + 1]]
        ends = np.r_[t[breaks], t[-1]]
        for s, e in zip(starts, ends):
            rows.append({"unit": unit, "first": idx[s], "last": idx[e],
                         "alarms": int(A[s:e + 1, j].sum())})
    return pd.DataFrame(rows, columns=["unit", "first", "last", "alarms"])
