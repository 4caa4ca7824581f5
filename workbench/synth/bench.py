"""A large rapid-test CSV for ingest benchmarks, written in chunks (never all in memory)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from workbench.synth import markets as mk
from workbench.synth.files import labels
from workbench.synth.geography import build_grids, build_streets

CHUNK = 100_000
BASE = np.datetime64("2025-01-01T00:00", "m")


def write_rapid_tests_csv(path, rows: int, seed: int, encoding: str = "gbk") -> Path:
    """Stream `rows` rapid tests (Chinese headers, `encoding`) to `path`; returns the path.

    The tests spread over the year 2025 in time order across the city's 36 markets;
    the same (rows, seed) gives the same bytes. About 1 % are positive.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng([seed, 1])
    streets = build_streets(g)
    grids = build_grids(g, streets)
    world = mk.build_markets(np.random.default_rng([seed, 2]), streets, grids)
    markets, stalls = world.markets, world.stalls
    st_by_m = [stalls.index[stalls.market_id == m].to_numpy() for m in markets.market_id]
    st_first = np.array([a[0] for a in st_by_m])
    st_count = np.array([len(a) for a in st_by_m])
    ct = mk.COMMODITY_TABLE
    items = ct.item.to_numpy()
    is_pest_t = items == "NY"
    meta = {c: mk.ITEMS[c] for c in mk.ITEM_CODES}
    ins = world.inspectors.groupby("market_id").inspector.first().reindex(markets.market_id).to_numpy()
    headers = labels("rapid_tests")
    minutes_per_row = 365 * 24 * 60 / max(rows, 1)
    rng = np.random.default_rng([seed, 77])
    with open(path, "w", encoding=encoding, newline="") as f:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            i = np.arange(start, start + n)
            day = (BASE + (i * minutes_per_row).astype("timedelta64[m]")).astype("datetime64[D]")
            m = rng.integers(0, len(markets), n)
            stall = st_first[m] + rng.integers(0, 1 << 30, n) % st_count[m]
            com = rng.integers(0, len(ct), n)
            pest = is_pest_t[com]
            minute = rng.integers(6 * 60 + 15, 17 * 60, n)
            sampled = day.astype("datetime64[m]") + minute.astype("timedelta64[m]")
            ts = sampled + np.where(pest, rng.integers(10, 16, n), rng.integers(5, 11, n)).astype("timedelta64[m]")
            positive = rng.random(n) < np.where(pest, 0.03, 0.005)
            thr = ct.threshold.to_numpy()[com].astype(float)
            reading = np.where(pest, np.where(positive, rng.uniform(51, 92, n), rng.uniform(1, 45, n)),
                               np.where(thr == 1, positive.astype(float),
                                        thr * np.where(positive, rng.uniform(1.2, 3, n), rng.uniform(0, 0.8, n))))
            item = pd.Series(items[com])
            df = pd.DataFrame({
                "test_id": "BM" + pd.Series(i).astype(str).str.zfill(9),
                "ts": pd.Series(np.datetime_as_string(ts)).str.replace("T", " ", regex=False),
                "sampled_at": pd.Series(np.datetime_as_string(sampled)).str.replace("T", " ", regex=False),
                "market_id": markets.market_id.to_numpy()[m],
                "stall_id": stalls.stall_id.to_numpy()[stall],
                "vendor": stalls.vendor.to_numpy()[stall],
                "district": markets.district.to_numpy()[m],
                "commodity": ct.commodity.to_numpy()[com],
                "category": ct.category.to_numpy()[com],
                "origin": np.where(rng.random(n) < 0.55, "本地", "外地"),
                "test_item": item.map({c: v[0] for c, v in meta.items()}).to_numpy(),
                "method": item.map({c: v[1] for c, v in meta.items()}).to_numpy(),
                "reading": np.round(reading, 1),
                "unit": item.map({c: v[2] for c, v in meta.items()}).to_numpy(),
                "threshold": thr,
                "result": np.where(positive, "阳性", "阴性"),
                "reagent_batch": item + "2501" + pd.Series(1 + m % 3).astype(str).str.zfill(2),
                "reagent_expiry": "2025-12-31",
                "device_id": "KJY-" + pd.Series(markets.market_id.to_numpy()[m]).str[3:] + "-1",
                "inspector_id": ins[m],
                "source": "市场快检室",
            })
            df = df[[c for c in headers if c in df]].rename(columns=headers)
            df.to_csv(f, index=False, header=start == 0, lineterminator="\r\n")
    return path
