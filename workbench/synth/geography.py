"""Zhuzhou's districts, streets (街道/镇) and grids (网格).

Districts, their codes and centroids are the reference geography's (workbench.geo, DOMAIN.md);
this module adds what only the sample city needs. Street names are real Zhuzhou streets and
towns where known; codes are their pinyin initials, which make grid ids like HT-YT-003.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench import geo
from workbench.synth.names import person_names


@dataclass(frozen=True)
class District:
    name: str
    code: str
    streets: tuple[tuple[str, str], ...]  # (name, code)
    roads: tuple[str, ...]

    @property
    def ref(self) -> geo.District:
        return geo.district(self.name)

    @property
    def lat(self) -> float:
        return self.ref.lat

    @property
    def lon(self) -> float:
        return self.ref.lon

    @property
    def urban(self) -> bool:
        return self.ref.urban

    @property
    def adcode(self) -> str:
        return self.ref.adcode


DISTRICTS: tuple[District, ...] = (
    District("荷塘区", "HT", (
        ("月塘街道", "YT"), ("桂花街道", "GH"), ("茨菇塘街道", "CGT"), ("宋家桥街道", "SJQ"),
        ("金山街道", "JS"), ("明照街道", "MZ"), ("仙庾镇", "XY")),
        ("新华东路", "红旗北路", "茨菇塘路", "金钩山路", "新塘路", "荷塘大道", "戴家岭路", "桂花路")),
    District("芦淞区", "LS", (
        ("建设街道", "JS"), ("建宁街道", "JN"), ("贺家土街道", "HJT"), ("庆云街道", "QY"),
        ("龙泉街道", "LQ"), ("枫溪街道", "FX"), ("白关镇", "BG")),
        ("建设中路", "人民路", "车站路", "庆云路", "贺家土路", "芦淞路", "董家塅路", "建宁路")),
    District("石峰区", "SF", (
        ("清水塘街道", "QST"), ("响石岭街道", "XSL"), ("田心街道", "TX"), ("铜塘湾街道", "TTW"),
        ("井龙街道", "JL"), ("龙头铺街道", "LTP")),
        ("田心大道", "响石路", "清石路", "铜霞路", "北环路", "时代路", "红旗北路", "清水塘路")),
    District("天元区", "TY", (
        ("嵩山路街道", "SSL"), ("泰山路街道", "TSL"), ("栗雨街道", "LY"), ("马家河街道", "MJH"),
        ("群丰镇", "QF"), ("雷打石镇", "LDS"), ("三门镇", "SM")),
        ("泰山路", "嵩山路", "长江南路", "黄河南路", "珠江北路", "天台路", "栗雨路", "湘芸路")),
    District("渌口区", "LK", (
        ("渌口镇", "LK"), ("南洲镇", "NZ"), ("龙潭镇", "LT"), ("淦田镇", "GT"),
        ("龙船镇", "LC"), ("朱亭镇", "ZT")),
        ("渌湘大道", "向阳路", "东湖路", "滨江路", "南洲路")),
    District("醴陵市", "LL", (
        ("来龙门街道", "LLM"), ("阳三石街道", "YSS"), ("西山街道", "XS"), ("仙岳山街道", "XYS"),
        ("浦口镇", "PK"), ("白兔潭镇", "BTT"), ("王仙镇", "WX"), ("东富镇", "DF")),
        ("瓷城大道", "西山路", "仙岳山路", "解放路", "南桥路", "陶瓷路")),
    District("攸县", "YX", (
        ("联星街道", "LX"), ("江桥街道", "JQ"), ("网岭镇", "WL"), ("皇图岭镇", "HTL"),
        ("酒埠江镇", "JBJ"), ("鸾山镇", "LS")),
        ("攸州路", "联星路", "建设路", "文化路", "东正街")),
    District("茶陵县", "CL", (
        ("云阳街道", "YY"), ("思聪街道", "SC"), ("洣江街道", "MJ"), ("腰潞镇", "YL"),
        ("严塘镇", "YT"), ("虎踞镇", "HJ")),
        ("洣江大道", "云阳路", "犀城大道", "思聪路", "紫微路")),
    District("炎陵县", "YL", (
        ("霞阳镇", "XY"), ("沔渡镇", "MD"), ("十都镇", "SD"), ("水口镇", "SK"),
        ("鹿原镇", "LY"), ("中村瑶族乡", "ZC")),
        ("炎帝大道", "神农大道", "霞阳路", "鹿原路")),
)
DISTRICT_BY_NAME = {d.name: d for d in DISTRICTS}


def _jitter(rng: np.random.Generator, sd: float) -> float:
    """A normal offset, cut at two standard deviations (streets stay inside the district)."""
    return float(np.clip(rng.normal(0, sd), -2 * sd, 2 * sd))


def _inside(district: str, lat: float, lon: float, toward: tuple[float, float]) -> tuple[float, float]:
    """(lat, lon) moved toward `toward` (lat, lon, inside the district) until it lies inside the
    district's real boundary (the random draw is kept, only a point outside is pulled in)."""
    code = geo.district(district).adcode
    for t in np.linspace(1.0, 0.0, 11):
        la, lo = toward[0] + (lat - toward[0]) * t, toward[1] + (lon - toward[1]) * t
        if geo.contains(code, [lo], [la])[0]:
            return round(float(la), 5), round(float(lo), 5)
    return round(float(toward[0]), 5), round(float(toward[1]), 5)


def build_streets(rng: np.random.Generator) -> pd.DataFrame:
    """One row per street: its district, codes and centre."""
    rows = []
    for d in DISTRICTS:
        spread = 0.025 if d.urban else 0.12
        lon0, lat0 = geo.label_point(d.name)   # inside the district: where a stray street is pulled
        for name, code in d.streets:
            town = name.endswith(("镇", "乡"))
            s = spread * (1.8 if town and d.urban else 1.0)
            lat, lon = _inside(d.name, round(d.lat + _jitter(rng, s), 5), round(d.lon + _jitter(rng, s), 5),
                               (lat0, lon0))
            rows.append({
                "district": d.name, "district_code": d.code, "street": name, "street_code": code,
                "urban": d.urban and not town, "lat": lat, "lon": lon,
            })
    return pd.DataFrame(rows)


def build_grids(rng: np.random.Generator, streets: pd.DataFrame) -> pd.DataFrame:
    """The grids (网格): a grid worker and a population each, centred near the street."""
    rows = []
    for st in streets.itertuples(index=False):
        n = int(rng.integers(10, 19) if st.urban else rng.integers(5, 11))
        spread = 0.006 if st.urban else 0.03
        for k in range(1, n + 1):
            pop = int(rng.integers(2500, 6500) if st.urban else rng.integers(900, 3200))
            lat = round(st.lat + _jitter(rng, spread), 5)
            lon = round(st.lon + _jitter(rng, spread), 5)
            lat, lon = _inside(st.district, lat, lon, (st.lat, st.lon))
            rows.append({
                "grid_id": f"{st.district_code}-{st.street_code}-{k:03d}",
                "district": st.district, "street": st.street, "lat": lat, "lon": lon,
                "population": pop,
            })
    grids = pd.DataFrame(rows)
    grids.insert(5, "worker", person_names(rng, len(grids), unique=True))
    return grids
