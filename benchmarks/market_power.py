"""Power of the market surveillance scheme, simulated (docs/market.md, "Power").

Weekly counts of a city of markets are simulated (synthetic: no real data), and the scheme
of workbench.market.surveillance (scheme_from_counts: market × item, market × commodity and
city × commodity CUSUMs with thresholds from the false-alarm budget) runs on them exactly as
the analysis runs it on records:

1. weeks from onset to the first alarm naming the market and the commodity, against the
   relative risk (2×, 3×, 5×) and the commodity's share of the market's pesticide tests
   (1/12, 1/6, 1/3);
2. false alarms per market-year on quiet series (no change), counted as alarm weeks of any
   series and as alerts (episodes), with the city-wide commodity alarms counted in.

The city: `--markets` markets (default 6, as the half-year export of issue 16), each with
`--tests` pesticide tests a week (default 110: 26k tests in half a year, two thirds of them
pesticide), market factors exp(N(0, 0.3)), a summer season (±25 %), 12 commodities with
base rates 1–6 %; the rising commodity's base rate is 3.5 %. 52 weeks: the first 26 are
the baseline, the rise starts in week 31.

    .venv/bin/python benchmarks/market_power.py [--reps 200] [--markets 6] [--chart docs/market_power.png]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.market import surveillance as sv  # noqa: E402

WEEKS, ONSET = 52, 30
BASE_RATES = np.array([0.06, 0.045, 0.04, 0.035, 0.03, 0.03, 0.05, 0.03, 0.02, 0.015, 0.02, 0.01])
TARGET = 3  # the rising commodity (base 3.5 %)


def simulate(rng, markets: int, tests: float, share: float | None, rr: float, rise_market: int = 0):
    """Weekly (n, x) per market and per (market, commodity); the rise (rr) in TARGET at
    `rise_market` from week ONSET; share: TARGET's share of each market's tests (None: the
    default weights)."""
    C = len(BASE_RATES)
    w = np.array([3, 3, 3, 2, 2, 2, 2, 2, 1.5, 1.5, 1.5, 1], float)
    if share is not None:
        rest = np.delete(w, TARGET)
        w = np.insert(rest / rest.sum() * (1 - share), TARGET, share)
    w = w / w.sum()
    weeks = pd.date_range("2025-01-06", periods=WEEKS, freq="7D")
    season = 1 + 0.25 * np.sin(2 * np.pi * (np.arange(WEEKS) - 15) / 52)
    mfac = np.exp(rng.normal(0, 0.3, markets))
    n_mc = rng.poisson(tests * w[None, None, :] * np.ones((WEEKS, markets, 1)))
    p = BASE_RATES[None, None, :] * season[:, None, None] * mfac[None, :, None]
    if rr != 1:
        p[ONSET:, rise_market, TARGET] *= rr
    x_mc = rng.binomial(n_mc, np.clip(p, 0, 0.95))
    cols = pd.MultiIndex.from_product([[f"M{m}" for m in range(markets)], [f"C{c}" for c in range(C)]],
                                      names=["market", "commodity"])
    n2 = pd.DataFrame(n_mc.reshape(WEEKS, -1), index=weeks, columns=cols)
    x2 = pd.DataFrame(x_mc.reshape(WEEKS, -1), index=weeks, columns=cols)
    n1 = n2.T.groupby(level=0).sum().T
    x1 = x2.T.groupby(level=0).sum().T
    return n1, x1, n2, x2


def first_alarm(res: sv.SchemeResult, market: str, commodity: str):
    """Weeks from onset to the first alarm naming the market (delay, 1 = the onset week's own
    data) and whether that alert names the commodity."""
    ep = res.market_episodes
    idx = res.item["n"].index
    mine = ep[(ep["market"] == market) & (ep["last"] >= idx[ONSET])]
    cs = res.commodity["cusum"]["alarm"]
    col = (market, commodity)
    t_c = np.flatnonzero(cs[col].to_numpy()[ONSET:]) if col in cs else np.array([])
    t_i = np.flatnonzero(res.item["cusum"]["alarm"][market].to_numpy()[ONSET:])
    cands = [int(t[0]) for t in (t_c, t_i) if len(t)]
    if not cands or mine.empty:
        return None, False
    return min(cands) + 1, len(t_c) > 0


def false_alarms(res: sv.SchemeResult, markets: int):
    """Alarm weeks and alerts (episodes) after the baseline, per market-year (city series
    counted in)."""
    k = 26
    years = (WEEKS - k) / 52.18 * markets
    weeks = (res.item["cusum"]["alarm"].to_numpy()[k:].sum() + res.commodity["cusum"]["alarm"].to_numpy()[k:].sum()
             + res.city["cusum"]["alarm"].to_numpy()[k:].sum())
    alerts = len(res.market_episodes) + len(res.city_episodes)
    return weeks / years, alerts / years


def run(reps: int, markets: int, tests: float, scheme: sv.Scheme, seed: int = 16):
    rng = np.random.default_rng(seed)
    rows = []
    for share in (1 / 12, 1 / 6, 1 / 3):
        for rr in (2.0, 3.0, 5.0):
            for r in range(reps):
                n1, x1, n2, x2 = simulate(rng, markets, tests, share, rr)
                res = sv.scheme_from_counts(n1, x1, n2, x2, scheme=scheme)
                d, named = first_alarm(res, "M0", f"C{TARGET}")
                rows.append({"share": share, "rr": rr, "delay": d, "named": named})
    power = pd.DataFrame(rows)
    quiet = []
    for r in range(reps):
        n1, x1, n2, x2 = simulate(rng, markets, tests, None, 1.0)
        res = sv.scheme_from_counts(n1, x1, n2, x2, scheme=scheme)
        quiet.append(false_alarms(res, markets))
    q = np.array(quiet)
    return power, {"alarm_weeks_per_market_year": float(q[:, 0].mean()),
                   "alerts_per_market_year": float(q[:, 1].mean()), "quiet_runs": reps}


def summarise(power: pd.DataFrame) -> pd.DataFrame:
    def f(g):
        d = g["delay"].to_numpy(float)
        found = ~np.isnan(d)
        return pd.Series({"median_weeks": float(np.nanmedian(np.where(found, d, np.inf))) if found.mean() >= 0.5 else np.inf,
                          "found_3w": float((d <= 3).mean()), "found_6w": float((d <= 6).mean()),
                          "found_22w": float(found.mean()), "named": float(g["named"].mean())})
    return power.groupby(["share", "rr"]).apply(f).reset_index()


def chart(summary: pd.DataFrame, fa: dict, path: Path):
    from workbench.ui import charts

    with charts.chart_style():
        fig, ax = charts.new_figure(9.6, 3.8)
        labels = {1 / 12: "占 1/12", 1 / 6: "占 1/6", 1 / 3: "占 1/3"}
        from workbench.ui import theme

        for i, (share, g) in enumerate(summary.groupby("share")):
            col = theme.PALETTE[i % len(theme.PALETTE)]
            ax.plot(g["rr"], g["found_3w"] * 100, marker="o", color=col, label=f"{labels.get(share, share)}：3 周内发现")
            ax.plot(g["rr"], g["found_6w"] * 100, marker=".", ls="--", lw=1, color=col, label=f"{labels.get(share, share)}：6 周内")
        ax.set_xticks([2, 3, 5], ["2 倍", "3 倍", "5 倍"])
        ax.set_xlabel("某市场某样品阳性率上升倍数（相对风险）；图例：该样品占市场农药残留检测的比例")
        ax.set_ylabel("发现的比例（%）")
        ax.set_ylim(0, 102)
        ax.legend(fontsize=8, ncol=2, loc="upper left")
        charts.set_title(fig, f"监测方案的检出力（模拟）：无变化时每市场每年误报 {fa['alerts_per_market_year']:.2f} 次")
        fig.savefig(path, dpi=100)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--markets", type=int, default=6)
    ap.add_argument("--tests", type=float, default=110)
    ap.add_argument("--or-commodity", type=float, default=sv.Scheme.or_commodity)
    ap.add_argument("--budget", type=float, default=sv.Scheme.budget, help="nominal false alarms per market-year")
    ap.add_argument("--chart", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--table", action="store_true",
                    help="compute the in-control ARL table the thresholds read (workbench/market/cusum_arl.npz) and stop")
    a = ap.parse_args(argv)
    if a.table:
        t0 = time.time()
        tabs = {f"or_{o:g}": sv.arl_table(o) for o in sorted({sv.Scheme.or_item, sv.Scheme.or_commodity, sv.Scheme.or_city})}
        np.savez_compressed(sv.TABLE_FILE, **tabs)
        print(f"{sv.TABLE_FILE}: {', '.join(tabs)} ({time.time() - t0:.0f} s)")
        return
    scheme = sv.Scheme(or_commodity=a.or_commodity, budget=a.budget)
    t0 = time.time()
    power, fa = run(a.reps, a.markets, a.tests, scheme)
    summ = summarise(power)
    pd.set_option("display.width", 160)
    print(f"{a.markets} markets × {a.tests:g} pesticide tests a week, {a.reps} runs per cell, scheme {scheme}")
    print(summ.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(json.dumps(fa))
    print(f"{time.time() - t0:.1f} s")
    if a.chart:
        chart(summ, fa, a.chart)
    if a.json:
        a.json.write_text(json.dumps({"summary": summ.to_dict("records"), "false_alarms": fa, "reps": a.reps,
                                      "markets": a.markets, "tests": a.tests}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
