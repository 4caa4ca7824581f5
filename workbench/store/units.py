"""Units of measured values: how files write them, and converting them to the hub's.

Each numeric field of a dataset declares the unit it is stored in (schema.Field.unit); a file
declares its own in a column header (气温(℉), 降水量（mm）, wind_speed [mph]) or in a profile
(`units: {temperature: ℉}`). Values are converted on the way in and the summary says so.

The conversions are affine (value × factor + offset) between a handful of units per quantity;
a table of them is clearer here than a unit library, whose parser would still need the Chinese
spellings below (摄氏度, 毫米, 米/秒 …) and whose import would cost every ingest a second.

A column whose values are implausible in the unit it claims and plausible in another of the
same quantity (a US station's temperatures in ℉ taken as ℃) is recognised by `suggest`: the
ingest stops with one message naming the unit, instead of condemning thousands of values.
Plausible ranges are configuration (plausible.yaml beside this file, or a profile's
`plausible:`), not one city's climate built into the code.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml


@dataclass(frozen=True)
class Unit:
    name: str          # canonical spelling, as shown: ℃, ℉, mm, inch, m/s, km/h, mph, kn, %, fraction
    quantity: str      # temperature | length | speed | ratio | mass_ratio
    factor: float      # value in the quantity's base unit = value × factor + offset
    offset: float = 0.0
    label: str = ""    # Chinese name


UNITS: tuple[Unit, ...] = (
    Unit("℃", "temperature", 1.0, 0.0, "摄氏度"),
    Unit("℉", "temperature", 5 / 9, -32 * 5 / 9, "华氏度"),
    Unit("K", "temperature", 1.0, -273.15, "开尔文"),
    Unit("mm", "length", 1.0, 0.0, "毫米"),
    Unit("cm", "length", 10.0, 0.0, "厘米"),
    Unit("inch", "length", 25.4, 0.0, "英寸"),
    Unit("m/s", "speed", 1.0, 0.0, "米/秒"),
    Unit("km/h", "speed", 1 / 3.6, 0.0, "千米/小时"),
    Unit("mph", "speed", 0.44704, 0.0, "英里/小时"),
    Unit("kn", "speed", 0.514444, 0.0, "节"),
    Unit("%", "ratio", 1.0, 0.0, "百分比"),
    Unit("fraction", "ratio", 100.0, 0.0, "小数（0–1）"),
    Unit("mg/kg", "mass_ratio", 1.0, 0.0, "毫克/千克"),
    Unit("μg/kg", "mass_ratio", 0.001, 0.0, "微克/千克"),
    Unit("g/kg", "mass_ratio", 1000.0, 0.0, "克/千克"),
)
BY_NAME = {u.name: u for u in UNITS}

_SPELLINGS = {
    "℃": ("℃", "°c", "c", "degc", "deg c", "celsius", "摄氏度", "摄氏", "度"),
    "℉": ("℉", "°f", "f", "degf", "deg f", "fahrenheit", "华氏度", "华氏"),
    "K": ("k", "kelvin", "开尔文"),
    "mm": ("mm", "毫米", "millimeter", "millimetre", "millimeters", "millimetres"),
    "cm": ("cm", "厘米", "centimeter", "centimetre"),
    "inch": ("in", "inch", "inches", "英寸", '"'),
    "m/s": ("m/s", "ms-1", "m s-1", "m·s-1", "mps", "米/秒", "米每秒", "m/秒"),
    "km/h": ("km/h", "kmh", "kph", "km/hr", "公里/小时", "千米/小时", "公里每小时", "千米每小时"),
    "mph": ("mph", "mi/h", "miles per hour", "英里/小时", "英里每小时"),
    "kn": ("kn", "kt", "kts", "knot", "knots", "节"),
    "%": ("%", "percent", "pct", "百分比", "百分数"),
    "fraction": ("fraction", "ratio", "小数", "比例"),
    "mg/kg": ("mg/kg", "毫克/千克", "毫克每千克", "ppm"),
    "μg/kg": ("μg/kg", "ug/kg", "µg/kg", "微克/千克", "ppb"),
    "g/kg": ("g/kg", "克/千克"),
}
def _key(text: str) -> str:
    s = unicodedata.normalize("NFKC", str(text)).strip().lower().replace("º", "°")
    return re.sub(r"\s+", " ", s)


_LOOKUP = {_key(s): name for name, spellings in _SPELLINGS.items() for s in spellings}


class UnitError(ValueError):
    """A unit the hub cannot read, or one of another quantity than the field's."""


def parse(text) -> Unit | None:
    """The unit a header or profile writes (℉, °F, 华氏度, mph, 毫米 …); None when unknown."""
    if text is None:
        return None
    name = _LOOKUP.get(_key(text))
    if name is None:
        # NFKC turns ℃/℉ into °C/°F; a second look without the degree sign
        name = _LOOKUP.get(_key(text).replace("°", ""))
    return BY_NAME.get(name) if name else None


def of_field(unit_name: str | None) -> Unit | None:
    return BY_NAME.get(unit_name) if unit_name else None


def convert(values: pd.Series, source: Unit, target: Unit) -> pd.Series:
    """Values in `source` expressed in `target` (same quantity)."""
    if source.quantity != target.quantity:
        raise UnitError(f"单位 {source.name} 与 {target.name} 不是同一种量")
    if source == target:
        return values
    base = values * source.factor + source.offset
    return (base - target.offset) / target.factor


def alternatives(target: Unit) -> list[Unit]:
    return [u for u in UNITS if u.quantity == target.quantity and u != target]


# --------------------------------------------------------------------------- plausibility

_PLAUSIBLE_FILE = Path(__file__).with_name("plausible.yaml")


@lru_cache(maxsize=1)
def _plausible_config() -> dict:
    return yaml.safe_load(_PLAUSIBLE_FILE.read_text(encoding="utf-8")) or {}


def plausible_range(dataset: str, field: str, override: dict | None = None) -> tuple[float, float] | None:
    """The range a field's values are plausible in (its stored unit): a profile's `plausible:`
    first, then plausible.yaml (the city's configuration). Twelve monthly [low, high] pairs
    count by their envelope (the unit check looks at a whole file, not at one month)."""
    rng = override[field] if override and field in override else (_plausible_config().get(dataset) or {}).get(field)
    if not rng:
        return None
    if len(rng) == 12 and all(isinstance(r, (list, tuple)) for r in rng):   # monthly pairs: their envelope
        return float(min(r[0] for r in rng)), float(max(r[1] for r in rng))
    return float(rng[0]), float(rng[1])


def share_outside(values: pd.Series, rng: tuple[float, float]) -> float:
    v = values.dropna()
    if v.empty:
        return 0.0
    return float(((v < rng[0]) | (v > rng[1])).mean())


def suggest(values_in_file_unit: pd.Series, file_unit: Unit, target: Unit, rng: tuple[float, float],
            *, min_values: int = 10, bad_share: float = 0.2, good_share: float = 0.02) -> Unit | None:
    """Another unit the values are plausible in, when they are not in `file_unit`; else None."""
    v = pd.to_numeric(values_in_file_unit, errors="coerce").dropna()
    if len(v) < min_values:
        return None
    if share_outside(convert(v, file_unit, target), rng) <= bad_share:
        return None
    best, best_share = None, good_share
    for alt in [target, *alternatives(target)]:
        if alt == file_unit:
            continue
        share = share_outside(convert(v, alt, target), rng)
        if share <= best_share:
            best, best_share = alt, share
    return best
