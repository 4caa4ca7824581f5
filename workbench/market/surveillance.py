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
from pathlib import Path

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
    P1, S, A = _cusum_run(n.to_numpy(float), x.to_numpy(float), P0, odds_ratio, h)
    mk = lambda a: pd.DataFrame(a, index=n.index, columns=n.columns)  # noqa: E731
    return {"s": mk(S), "h": h, "p1": mk(P1.copy()), "alarm": mk(A)}


def _cusum_run(N: np.ndarray, X: np.ndarray, P0: np.ndarray, odds_ratio: float, h, judged_from: int = 0):
    """The binomial LLR CUSUM recursion over periods (rows) of every column at once: (p1, S,
    alarms). `h`: one threshold or one per column; periods before `judged_from` never alarm;
    S restarts at 0 after an alarm."""
    P1 = odds_ratio * P0 / (1 - P0 + odds_ratio * P0)
    llr = X * np.log(P1 / P0) + (N - X) * np.log((1 - P1) / (1 - P0))
    S = np.empty_like(llr)
    A = np.zeros(llr.shape, dtype=bool)
    s = np.zeros(llr.shape[1])
    for t in range(llr.shape[0]):
        s = np.maximum(0.0, s + llr[t])
        S[t] = s
        A[t] = (s > h) & (t >= judged_from)
        s = np.where(A[t], 0.0, s)
    return P1, S, A


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


# ------------------------------------------------------------------ thresholds for a false-alarm budget

def _chain(p0: float, n: int, odds_ratio: float, h: float, resolution: float, max_states: int = 400):
    """I − Q of the CUSUM's Markov chain (states 0..H of a lattice of step δ) and δ. A week of
    n tests with k positives moves S by k·log(p1/p0) + (n−k)·log((1−p1)/(1−p0)), rounded to
    the lattice upwards (the chain's S is never below the true one, so its run length errs
    short: thresholds from it err high, towards fewer false alarms); δ is at most
    `resolution` and a tenth of a quiet week's fall, and no finer than h / max_states."""
    n = max(1, int(round(n)))
    p1 = odds_ratio * p0 / (1 - p0 + odds_ratio * p0)
    a, b = np.log(p1 / p0), -np.log((1 - p1) / (1 - p0))
    delta = max(min(resolution, n * b / 10), h / max_states)
    H = int(np.floor(h / delta + 1e-9))  # states 0..H; above H is an alarm
    k = np.arange(n + 1)
    pk = stats.binom.pmf(k, n, p0)
    keep = pk > 1e-14
    k, pk = k[keep], pk[keep]
    move = np.ceil((k * a - (n - k) * b) / delta - 1e-9).astype(int)  # up: S is never under-stated
    Q = np.zeros((H + 1, H + 1))
    s = np.arange(H + 1)
    for mv, pr in zip(move, pk):  # one shifted diagonal per number of positives in the week
        to = s + mv
        ok = to <= H
        Q[s[ok], np.maximum(to[ok], 0)] += pr
    return np.eye(H + 1) - Q, delta


def arl(p0: float, n: int, odds_ratio: float, h: float, resolution: float = 0.02) -> float:
    """In-control average run length in weeks of the binomial CUSUM (restart at 0, alarm at
    S > h) on weeks of `n` tests at rate `p0`, by the Markov chain of Brook & Evans (1972) on
    a lattice of step ≤ `resolution` (the log-likelihood ratios rounded to it)."""
    M, _ = _chain(p0, n, odds_ratio, h, resolution)
    return float(np.linalg.solve(M, np.ones(len(M)))[0])


def arl_curve(p0: float, n: int, odds_ratio: float, hs, resolution: float = 0.02) -> np.ndarray:
    """`arl` at every h of `hs` from one factorisation: the chain of a lower barrier is the
    leading block of the chain of a higher one, and with M = L·U (no pivoting: Mᵀ is
    diagonally dominant by columns) the run length from state 0 with barrier k is
    Σ_{i≤k} y_i·z_i, y = L⁻¹·1, z = U⁻ᵀ·e₀, both prefix-stable."""
    from scipy import linalg

    hs = np.asarray(hs, float)
    M, delta = _chain(p0, n, odds_ratio, float(hs.max()), resolution)
    lu, piv = linalg.lu_factor(M.T, check_finite=False)
    if not (piv == np.arange(len(piv))).all():  # pivoted after all: one solve per barrier
        return np.array([arl(p0, n, odds_ratio, h, resolution) for h in hs])
    # Mᵀ = L'·U' (L' unit lower)  →  M = U'ᵀ·L'ᵀ = L·U with L = U'ᵀ, U = L'ᵀ
    Lw = np.triu(lu).T
    Lp = np.tril(lu, -1) + np.eye(len(lu))
    y = linalg.solve_triangular(Lw, np.ones(len(lu)), lower=True, check_finite=False)
    e0 = np.zeros(len(lu))
    e0[0] = 1.0
    z = linalg.solve_triangular(Lp, e0, lower=True, unit_diagonal=True, check_finite=False)
    cum = np.cumsum(y * z)
    H = np.floor(hs / delta + 1e-9).astype(int)
    return cum[H]


# The in-control log ARL on a grid of (p0, weekly tests, h), per odds ratio: computed once by
# `arl_table` (benchmarks/market_power.py --table writes the shipped file), read at import,
# extended in memory for odds ratios it does not hold. Thresholds interpolate it.
P_GRID = 10 ** (np.arange(-21, -3) / 8)           # 0.0024 … 0.32, ~33 % apart
N_GRID = np.unique(np.round(10 ** (np.arange(0, 29) / 8)).astype(int))  # 1 … 3162 tests a week
H_GRID = np.array([1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7, 8, 9, 10, 12, 14])
TABLE_FILE = Path(__file__).with_name("cusum_arl.npz")
POWER_FILE = Path(__file__).with_name("scheme_power.json")  # benchmarks/market_power.py --json: the simulated power
_TABLES: dict = {}


def arl_table(odds_ratio: float, resolution: float = 0.02) -> np.ndarray:
    """log ARL (weeks) at every (P_GRID, N_GRID, H_GRID) point for one odds ratio."""
    out = np.empty((len(P_GRID), len(N_GRID), len(H_GRID)))
    for i, p in enumerate(P_GRID):
        for j, n in enumerate(N_GRID):
            v = arl_curve(float(p), int(n), odds_ratio, H_GRID, resolution)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[i, j] = np.where(np.isfinite(v) & (v > 0), np.log(np.abs(v)), np.nan)
            row = out[i, j]  # a singular chain (never alarms) or lattice noise: keep the curve rising
            row[np.isnan(row)] = np.nanmax(row) if np.isfinite(row).any() else 50.0
            out[i, j] = np.maximum.accumulate(row)
    return out


def _table(odds_ratio: float) -> np.ndarray:
    key = round(float(odds_ratio), 6)
    if key not in _TABLES:
        if TABLE_FILE.exists():
            with np.load(TABLE_FILE) as z:
                for name in z.files:
                    _TABLES.setdefault(round(float(name.removeprefix("or_")), 6), z[name])
        if key not in _TABLES:
            _TABLES[key] = arl_table(odds_ratio)
    return _TABLES[key]


def _interp_axis(grid: np.ndarray, v: float):
    lv = np.log(np.clip(v, grid[0], grid[-1]))
    lg = np.log(grid)
    j = int(np.clip(np.searchsorted(lg, lv) - 1, 0, len(grid) - 2))
    w = (lv - lg[j]) / (lg[j + 1] - lg[j])
    return j, float(np.clip(w, 0, 1))


def threshold(p0: float, n: float, odds_ratio: float, arl_weeks: float) -> float:
    """The h whose in-control ARL (weeks of ~`n` tests at ~`p0`, `arl`) is `arl_weeks`: the
    log-ARL table interpolated bilinearly in log p0 and log n, then inverted in h (linear
    between grid points; beyond h = 14 extrapolated)."""
    T = _table(odds_ratio)
    i, wi = _interp_axis(P_GRID, p0)
    j, wj = _interp_axis(N_GRID, max(n, 1.0))
    curve = ((1 - wi) * (1 - wj) * T[i, j] + wi * (1 - wj) * T[i + 1, j] + (1 - wi) * wj * T[i, j + 1]
             + wi * wj * T[i + 1, j + 1])
    curve = np.maximum.accumulate(curve)
    lt = np.log(max(arl_weeks, 1.0))
    if lt <= curve[0]:
        return float(H_GRID[0])
    if lt >= curve[-1]:
        slope = max((curve[-1] - curve[-4]) / (H_GRID[-1] - H_GRID[-4]), 0.5)
        return float(H_GRID[-1] + (lt - curve[-1]) / slope)
    k = int(np.searchsorted(curve, lt))
    c0, c1 = curve[k - 1], curve[k]
    w = (lt - c0) / (c1 - c0) if c1 > c0 else 1.0
    return float(H_GRID[k - 1] + w * (H_GRID[k] - H_GRID[k - 1]))


# ------------------------------------------------------------------ the scheme: market × item, market × commodity, city × commodity

@dataclass(frozen=True)
class Scheme:
    """How the false alarms are shared (docs/market.md, "The surveillance scheme").

    `budget`: false alarms a market may have per year with no real change, all its series
    together; shared as `share_item` (its series of all commodities), `share_commodity`
    (its commodity series, in proportion to their tests: every test carries the same
    false-alarm rate, so a big commodity gets a bigger share than a small one) and
    `share_city` (the city's commodity series, in proportion to their tests; the city's
    budget is share_city × budget × number of markets). Each series' h is set so its
    in-control ARL (Markov chain, `threshold`) spends exactly its share."""

    budget: float = 0.1                # false alarms per market-year, all levels (nominal: the
                                       # references are estimated, which about doubles it; measured
                                       # 0.15-0.17 by simulation, benchmarks/market_power.py)
    share_item: float = 0.2
    share_commodity: float = 0.6
    share_city: float = 0.2
    or_item: float = 2.0               # the odds ratio each level's CUSUM is tuned to
    or_commodity: float = 4.0
    or_city: float = 2.0
    min_weekly_tests: float = 1.0      # a commodity series needs this many tests a week on average
    prior_positives: float = 10.0      # pseudo-positives shrinking a market's own commodity offset
    smooth: int = 6                    # weeks of the other markets' rate behind each week's reference
    min_baseline_weeks: int = 8        # with a shorter baseline (under 16 weeks of data) nothing is judged


def _expit(v):
    return 1 / (1 + np.exp(-v))


def _offset(x_base, expected_base, prior):
    """log of a shrunk observed/expected ratio: (x + prior)/(E + prior)."""
    return np.log(np.clip((x_base + prior) / (expected_base + prior), 0.05, 20))


def commodity_reference(n: pd.DataFrame, x: pd.DataFrame, p_market: pd.DataFrame, baseline: int,
                        prior: float = 10.0) -> pd.DataFrame:
    """Expected rate per week of each (market, commodity) column of `n`/`x`: the market's own
    reference rate `p_market` (the city's season, the market's offset: `reference_rate`)
    moved by the commodity's log-odds ratio to the whole item (from every market's baseline
    weeks) and by the market's own difference in that commodity (its baseline, shrunk with
    `prior` pseudo-positives towards none). The season comes from the big pooled series, so
    the reference is steady even for a commodity with a few tests a week."""
    markets = n.columns.get_level_values(0)
    coms = n.columns.get_level_values(1)
    k = max(1, min(baseline, len(n) // 2 or 1))
    N, X = n.to_numpy(float), x.to_numpy(float)
    pm = p_market.reindex(columns=pd.Index(markets)).to_numpy(float)
    pm = np.where(np.isnan(pm), np.nanmean(pm) if np.isfinite(pm).any() else 0.02, pm)
    # the commodity's ratio to its markets' reference, all markets' baseline weeks
    e_base = (N[:k] * pm[:k]).sum(axis=0)
    x_base = X[:k].sum(axis=0)
    by_c = pd.DataFrame({"c": coms, "x": x_base, "e": e_base}).groupby("c")[["x", "e"]].sum()
    d_c = _offset(by_c["x"], by_c["e"], prior).reindex(coms).to_numpy()
    base = _logit(np.clip(pm, 1e-4, 0.5)) + d_c[None, :]
    e_mc = (N[:k] * _expit(base[:k])).sum(axis=0)
    own = _offset(x_base, e_mc, prior)
    p0 = _expit(base + own[None, :])
    return pd.DataFrame(np.clip(p0, 1e-4, 0.5), index=n.index, columns=n.columns)


def calibrated_cusum(n: pd.DataFrame, x: pd.DataFrame, p0: pd.DataFrame, odds_ratio: float,
                     alarms_per_year: pd.Series, judged_from: int = 0) -> dict:
    """The binomial CUSUM (`cusum`, R's categoricalCUSUM) of each column with its own h: the
    threshold that spends `alarms_per_year` (per column) false alarms a year in control.
    Weeks before `judged_from` (the baseline) never alarm. Returns cusum's frames plus `h`
    (a Series per column) and `z` = S/h (an alarm is z > 1)."""
    P0 = p0.reindex(index=n.index, columns=n.columns).to_numpy(float)
    N = n.to_numpy(float)
    k = max(judged_from, 0)
    mean_n = N[k:].mean(axis=0) if len(N) > k else N.mean(axis=0)
    mean_n = np.where(mean_n > 0, mean_n, N.mean(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(N > 0, N, 0)
        mean_p = np.where(w.sum(axis=0) > 0, (P0 * w).sum(axis=0) / w.sum(axis=0), np.nanmean(P0, axis=0))
    budget = alarms_per_year.reindex(n.columns).to_numpy(float)
    hs = np.array([threshold(p, m, odds_ratio, 52.18 / b) if (b > 0 and m > 0) else np.inf
                   for p, m, b in zip(mean_p, mean_n, budget)])
    P1, S, A = _cusum_run(N, x.to_numpy(float), P0, odds_ratio, hs, judged_from=k)
    mk = lambda a: pd.DataFrame(a, index=n.index, columns=n.columns)  # noqa: E731
    return {"s": mk(S), "h": pd.Series(hs, index=n.columns), "z": mk(S / hs[None, :]), "alarm": mk(A),
            "p1": mk(P1)}


@dataclass
class SchemeResult:
    """The three levels' series and CUSUMs, and the alarms resolved into alerts' episodes."""
    item: dict          # market × item: n, x, p0, cusum
    commodity: dict     # (market, commodity): n, x, p0, cusum
    city: dict          # commodity, city-wide: n, x, p0, cusum
    market_episodes: pd.DataFrame   # market, first, last, alarms, commodities (named), item (bool)
    city_episodes: pd.DataFrame     # commodity, first, last, alarms, markets (those also alarming)
    budget: dict                    # the false-alarm shares, for the 说明
    rules: "Scheme" = None          # the scheme's numbers

    @property
    def judging(self) -> bool:
        """Whether the series were long enough to be judged (a baseline of min_baseline_weeks)."""
        n = len(self.item["n"])
        return n // 2 >= (self.rules.min_baseline_weeks if self.rules else 8) if n else False


def _alarm_runs(flags: np.ndarray, gap: int):
    t = np.flatnonzero(flags)
    if not len(t):
        return []
    breaks = np.flatnonzero(np.diff(t) > gap)
    return list(zip(np.r_[t[0], t[breaks + 1]], np.r_[t[breaks], t[-1]]))


def _explained(t: int, m, spans, n_item, x_item, p_item, n_mc, x_mc, p_mc, weeks: int = 4,
               alpha: float = 0.01) -> bool:
    """Whether market m's item alarm in week t falls in a city-wide commodity episode and the
    market's other commodities are not above their expectation over the last `weeks` weeks
    (Poisson upper tail ≥ alpha): then the city-wide rise is the story, not the market."""
    coms = [c for c, lo, hi in spans if lo <= t <= hi and (m, c) in n_mc.columns]
    if not coms:
        return False
    w = slice(max(0, t - weeks + 1), t + 1)
    x = float(x_item[m].iloc[w].sum()) - sum(float(x_mc[(m, c)].iloc[w].sum()) for c in coms)
    e = float((p_item[m].iloc[w] * n_item[m].iloc[w]).sum()) - sum(
        float((p_mc[(m, c)].iloc[w] * n_mc[(m, c)].iloc[w]).sum()) for c in coms)
    return bool(stats.poisson.sf(x - 1, max(e, 1e-9)) >= alpha)


def scheme_from_counts(n_item: pd.DataFrame, x_item: pd.DataFrame, n_mc: pd.DataFrame, x_mc: pd.DataFrame,
                       rules: Rules = Rules(), scheme: Scheme = Scheme()) -> SchemeResult:
    """The scheme on weekly counts: `n_item`/`x_item` per market (columns), `n_mc`/`x_mc` per
    (market, commodity) (two-level columns). Used by the analysis and by the simulations of
    benchmarks/market_power.py alike."""
    idx = n_item.index
    markets = list(n_item.columns)
    M = max(1, len(markets))
    k = max(1, min(rules.baseline_weeks, len(idx) // 2 or 1))
    if k < scheme.min_baseline_weeks:  # too short to know what is usual: no alarms (the page says so)
        k = len(idx)
    p_item = reference_rate(n_item, x_item, rules.baseline_weeks, rules.shrink_tests, scheme.smooth)
    tests_year = n_item.iloc[k:].sum() if len(idx) > k else n_item.sum()
    # market × item
    item_budget = pd.Series(scheme.budget * scheme.share_item, index=n_item.columns)
    cs_item = calibrated_cusum(n_item, x_item, p_item, scheme.or_item, item_budget, k)
    # market × commodity: commodities with enough tests
    n_mc = n_mc.reindex(idx, fill_value=0)
    x_mc = x_mc.reindex(idx, fill_value=0)
    keep = n_mc.mean() >= scheme.min_weekly_tests
    n_mc, x_mc = n_mc.loc[:, keep], x_mc.loc[:, keep]
    p_mc = commodity_reference(n_mc, x_mc, p_item, rules.baseline_weeks, scheme.prior_positives)
    mk_of = n_mc.columns.get_level_values(0)
    own = (n_mc.iloc[k:].sum() if len(idx) > k else n_mc.sum())
    share = own.to_numpy(float) / np.maximum(tests_year.reindex(mk_of).to_numpy(float), 1)
    mc_budget = pd.Series(scheme.budget * scheme.share_commodity * share, index=n_mc.columns)
    cs_mc = calibrated_cusum(n_mc, x_mc, p_mc, scheme.or_commodity, mc_budget, k)
    # city × commodity: the sums over markets, expected = Σ markets' expected
    coms = n_mc.columns.get_level_values(1)
    n_c = n_mc.T.groupby(coms).sum().T
    x_c = x_mc.T.groupby(coms).sum().T
    e_c = (n_mc * p_mc).T.groupby(coms).sum().T
    with np.errstate(invalid="ignore", divide="ignore"):
        p_c = (e_c / n_c.where(n_c > 0)).ffill().bfill().fillna(0.02)
    c_tests = n_c.iloc[k:].sum() if len(idx) > k else n_c.sum()
    c_budget = scheme.budget * scheme.share_city * M * c_tests / max(float(c_tests.sum()), 1.0)
    cs_c = calibrated_cusum(n_c, x_c, p_c, scheme.or_city, c_budget, k)

    gap = rules.episode_gap
    A_mc = cs_mc["alarm"]
    # city-wide: an episode of the commodity's city series stands when it is not one market's
    # rise: the same series without the markets that alarmed on their own still alarms
    city_rows, absorbed, city_spans = [], set(), []
    for c in n_c.columns:
        for s, e in _alarm_runs(cs_c["alarm"][c].to_numpy(), gap):
            lo, hi = max(0, s - gap), e
            cols = [col for col in A_mc.columns if col[1] == c]
            alarming = [col for col in cols if A_mc[col].to_numpy()[lo:hi + gap + 1].any()]
            stands = True
            if alarming:
                rest = [col for col in cols if col not in alarming]
                if not rest:
                    stands = len(alarming) > 1
                else:
                    sub = calibrated_cusum(n_mc[rest].sum(axis=1).to_frame(c), x_mc[rest].sum(axis=1).to_frame(c),
                                           ((n_mc[rest] * p_mc[rest]).sum(axis=1)
                                            / n_mc[rest].sum(axis=1).where(lambda v: v > 0)).ffill().bfill()
                                           .fillna(0.02).to_frame(c),
                                           scheme.or_city, pd.Series({c: float(c_budget[c])}), k)
                    stands = bool(sub["alarm"][c].to_numpy()[lo:hi + 1].any())
            if not stands:
                continue
            last = e
            for col in alarming:  # the markets' own alarms of the commodity in this span are the city's
                for t in np.flatnonzero(A_mc[col].to_numpy()):
                    if lo <= t <= hi + gap:
                        absorbed.add((col, t))
            city_spans.append((c, lo, hi + gap))
            city_rows.append({"commodity": c, "first": idx[s], "last": idx[last],
                              "alarms": int(cs_c["alarm"][c].to_numpy()[s:e + 1].sum()),
                              "markets": sorted({col[0] for col in alarming})})
    city_ep = pd.DataFrame(city_rows, columns=["commodity", "first", "last", "alarms", "markets"])

    # per market: the item series' alarms and its commodities' (not the city's) are one story
    rows = []
    for m in markets:
        flags = cs_item["alarm"][m].to_numpy().copy() if m in cs_item["alarm"] else np.zeros(len(idx), bool)
        for t in np.flatnonzero(flags):  # an item alarm the city-wide rise of a commodity explains is the city's
            if _explained(t, m, city_spans, n_item, x_item, p_item, n_mc, x_mc, p_mc):
                flags[t] = False
        item_flags = flags.copy()
        mcols = [col for col in A_mc.columns if col[0] == m]
        com_flags = {}
        for col in mcols:
            f = A_mc[col].to_numpy().copy()
            for t in np.flatnonzero(f):
                if (col, t) in absorbed:
                    f[t] = False
            if f.any():
                com_flags[col[1]] = f
                flags |= f
        for s, e in _alarm_runs(flags, gap):
            named = []
            for c, f in com_flags.items():
                if f[s:e + 1].any():
                    named.append((float(cs_mc["z"][(m, c)].to_numpy()[s:e + 1].max()), c))
            named = [c for _, c in sorted(named, reverse=True)]
            rows.append({"market": m, "first": idx[s], "last": idx[e], "alarms": int(flags[s:e + 1].sum()),
                         "commodities": named, "item": bool(item_flags[s:e + 1].any())})
    mk_ep = pd.DataFrame(rows, columns=["market", "first", "last", "alarms", "commodities", "item"])
    budget = {"per_market_year": scheme.budget, "item": scheme.budget * scheme.share_item,
              "commodity": scheme.budget * scheme.share_commodity,
              "city_per_year": scheme.budget * scheme.share_city * M, "markets": M}
    return SchemeResult({"n": n_item, "x": x_item, "p0": p_item, "cusum": cs_item},
                        {"n": n_mc, "x": x_mc, "p0": p_mc, "cusum": cs_mc},
                        {"n": n_c, "x": x_c, "p0": p_c, "cusum": cs_c}, mk_ep, city_ep, budget, scheme)


def power() -> dict | None:
    """The scheme's simulated power and false alarms (benchmarks/market_power.py), or None."""
    import json

    try:
        return json.loads(POWER_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def commodity_series(prep: pd.DataFrame, freq: str = "W", start=None, end=None):
    """Weekly tests and positives per (market, commodity)."""
    if prep.empty:
        e = pd.DataFrame(dtype="int64")
        return e, e.copy()
    key = prep["market_id"].astype(str) + "\x1f" + prep["commodity"].astype(str)
    n, x = series(prep.assign(_mc=key), "_mc", freq, start, end)
    cols = pd.MultiIndex.from_tuples([tuple(c.split("\x1f", 1)) for c in n.columns], names=["market", "commodity"])
    n.columns, x.columns = cols, cols
    return n, x


def scheme(prep: pd.DataFrame, rules: Rules = Rules(), sch: Scheme = Scheme()) -> SchemeResult | None:
    """The scheme on prepared records (figures.prepare) of the watched item."""
    sel = prep if rules.item is None else prep[prep["test_item"] == rules.item]
    n, x = series(sel, "market_id", rules.freq)
    if n.empty:
        return None
    n_mc, x_mc = commodity_series(sel, rules.freq, n.index.min(), n.index.max())
    return scheme_from_counts(n, x, n_mc, x_mc, rules, sch)
