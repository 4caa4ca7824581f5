"""Bulletin figures (通报数据): sample batches, test items, positives and positive rates.

A sample batch (样品批次) is one sample taken from one stall: the records that share market,
stall, commodity and sampling time (a record without a sampling time is its own batch). A
batch is positive when any of its test items is. Rates carry Wilson 95 % intervals.
Banned substances (β-agonists, malachite green, nitrofurans) are counted apart, as the
bureau's bulletins report them. Periods are whole Beijing days.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench import clock
from workbench.market.catalog import BANNED

# the groupings a bulletin may ask for -> the column of rapid_tests
GROUPS = {"market": "market_id", "commodity": "commodity", "category": "category", "test_item": "test_item",
          "inspector": "inspector_id", "district": "district", "origin": "origin", "device": "device_id"}
COLUMNS = ["samples", "items", "positive_samples", "positive_items", "sample_rate", "sample_rate_lo",
           "sample_rate_hi", "item_rate", "item_rate_lo", "item_rate_hi", "banned_items", "banned_positive"]
LABELS = {"samples": "抽检批次", "items": "检测项次", "positive_samples": "阳性批次", "positive_items": "阳性项次",
          "sample_rate": "批次阳性率", "sample_rate_lo": "批次阳性率下限", "sample_rate_hi": "批次阳性率上限",
          "item_rate": "项次阳性率", "item_rate_lo": "项次阳性率下限", "item_rate_hi": "项次阳性率上限",
          "banned_items": "禁用物质检测项次", "banned_positive": "禁用物质阳性", "period": "统计期"}


def wilson(x, n, z: float = 1.959963984540054):
    """Wilson score interval for x successes of n (arrays); NaN where n == 0."""
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def prepare(tests: pd.DataFrame) -> pd.DataFrame:
    """The columns the analyses use, typed once: local day, positive flag, sample batch id."""
    df = tests
    out = pd.DataFrame(index=df.index)
    ts = pd.to_datetime(df["ts"])
    out["ts"] = ts
    out["day"] = local_day(ts)
    for c in ("test_id", "market_id", "stall_id", "district", "commodity", "category", "origin", "test_item",
              "inspector_id", "device_id"):
        out[c] = df[c] if c in df else None
    out["positive"] = (df["result"] == "阳性").to_numpy()
    out["banned"] = df["test_item"].isin(BANNED).to_numpy()
    sampled = pd.to_datetime(df["sampled_at"]) if "sampled_at" in df else pd.Series(pd.NaT, index=df.index)
    key = np.zeros(len(df), dtype=np.int64)
    for c in ("market_id", "stall_id", "commodity"):  # one integer per (market, stall, commodity)
        codes, uniq = pd.factorize(df[c]) if c in df else (np.zeros(len(df), dtype=np.int64), [None])
        key = key * (len(uniq) + 1) + (codes + 1)
    sample_time = np.where(sampled.notna().to_numpy(), sampled.to_numpy().astype("datetime64[ns]").astype(np.int64),
                           -1 - np.arange(len(df)))  # no sampling time: a batch of its own
    out["sample"] = pd.DataFrame({"k": key, "t": sample_time}).groupby(["k", "t"], sort=False).ngroup().to_numpy()
    return out


def local_day(ts: pd.Series) -> pd.Series:
    """Naive UTC → the Beijing calendar day (naive midnight)."""
    return clock.local_day(ts)


def bulletin(prep: pd.DataFrame, by: str | list[str] | None = None) -> pd.DataFrame:
    """Figures per group (`by`: keys of GROUPS, or columns); one row 'city' when None."""
    by = [by] if isinstance(by, str) else list(by or [])
    cols = [GROUPS.get(b, b) for b in by]
    df = prep
    if not cols:
        df = df.assign(_all="全市")
        cols = ["_all"]
    flags = pd.DataFrame({"pos": df["positive"].astype("int64"), "banned": df["banned"].astype("int64"),
                          "banned_pos": (df["positive"] & df["banned"]).astype("int64")}, index=df.index)
    keys = [df[c] for c in cols] + [df["sample"]]
    per_sample = flags.groupby(keys, sort=False, dropna=False, observed=True).agg(
        items=("pos", "size"), pos=("pos", "sum"), banned=("banned", "sum"), banned_pos=("banned_pos", "sum"))
    per_sample["pos_sample"] = (per_sample["pos"] > 0).astype("int64")
    levels = list(range(len(cols)))
    g = per_sample.groupby(level=levels, sort=True, dropna=False, observed=True)
    s = g.sum()
    out = pd.DataFrame({"samples": g.size(), "items": s["items"], "positive_samples": s["pos_sample"],
                        "positive_items": s["pos"], "banned_items": s["banned"], "banned_positive": s["banned_pos"]})
    out.index.names = cols
    return _rates(out).reset_index().rename(columns={"_all": "scope"})


def _rates(out: pd.DataFrame) -> pd.DataFrame:
    for c in ("samples", "items", "positive_samples", "positive_items", "banned_items", "banned_positive"):
        out[c] = out[c].astype("int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        out["sample_rate"] = out["positive_samples"] / out["samples"]
        out["item_rate"] = out["positive_items"] / out["items"]
    out["sample_rate_lo"], out["sample_rate_hi"] = wilson(out["positive_samples"], out["samples"])
    out["item_rate_lo"], out["item_rate_hi"] = wilson(out["positive_items"], out["items"])
    return out[COLUMNS]


@dataclass(frozen=True)
class BulletinPeriod:
    name: str  # 本期 | 本月累计 | 本年累计
    first_day: pd.Timestamp
    last_day: pd.Timestamp

    @property
    def text(self) -> str:
        return f"{self.first_day:%Y-%m-%d} 至 {self.last_day:%Y-%m-%d}"


def periods(start, end) -> list[BulletinPeriod]:
    """The bulletin's period [start, end] (Beijing days), month to date and year to date."""
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    return [BulletinPeriod("本期", start, end), BulletinPeriod("本月累计", end.replace(day=1), end),
            BulletinPeriod("本年累计", end.replace(month=1, day=1), end)]


def in_days(prep: pd.DataFrame, first_day, last_day) -> pd.DataFrame:
    return prep[(prep["day"] >= pd.Timestamp(first_day)) & (prep["day"] <= pd.Timestamp(last_day))]


def bulletin_periods(prep: pd.DataFrame, start, end, by=None) -> pd.DataFrame:
    """bulletin() for 本期, 本月累计 and 本年累计, stacked with a `period` column."""
    parts = []
    for p in periods(start, end):
        b = bulletin(in_days(prep, p.first_day, p.last_day), by)
        parts.append(b.assign(period=p.name))
    return pd.concat(parts, ignore_index=True)
