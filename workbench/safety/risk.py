"""Risk by grid (网格风险): an explainable score from the hazard ledger and recent incidents.

The score of a grid is a sum of points, each factor in its own column, so a screen can say
why a grid ranks high. Points per open hazard (state as of `as_of`, see ledger.py):

| column          | factor (screen label) | rule (default weights)                                           |
|-----------------|-----------------------|------------------------------------------------------------------|
| pts_general     | 一般隐患              | 2 per open 一般 hazard                                           |
| pts_major       | 重大隐患              | 8 per open 重大 hazard                                           |
| pts_age         | 隐患时长              | 1 per 30 days a hazard has stayed open, at most 3 per hazard     |
| pts_overdue     | 逾期未整改            | 3 per overdue hazard + 0.1 per day overdue (at most 3 more)      |
| pts_site_type   | 场所类型加权          | (factor − 1) × the hazard's points above, factor by site type:   |
|                 |                       | 养老院 1.5, 自建房 1.5, 城中村 1.2, 燃气 1.2, others 1.0          |
| pts_incidents   | 近期突发事件          | 0.5 per 突发事件 city event in the grid in the last 90 days,     |
|                 |                       | 1 when it was 紧急; inspection tasks (source 预警联动) excluded   |

A hazard left open outweighs an incident that happened and was handled: one open 一般
hazard (2) counts as much as two urgent incidents.

score = the sum of the six columns (rounded to 0.1). Bands: ≥ 15 高风险, ≥ 8 较高风险,
≥ 3 一般风险, > 0 低风险, 0 无风险. The weights are `RiskWeights` (change them by passing
another instance) and `SITE_TYPE_FACTOR`; `weights_table()` prints them in Chinese.

`grid_risk` is pure (DataFrames in, DataFrame out); `load_risk_inputs` reads the hub.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.safety import ledger as lg

# Site types whose hazards weigh more: people who cannot leave quickly, or structures at risk.
SITE_TYPE_FACTOR: dict[str, float] = {"养老院": 1.5, "自建房": 1.5, "城中村": 1.2, "燃气": 1.2}
VULNERABLE_SITES = ("养老院", "自建房")
INCIDENT_GROUPS = ("突发事件",)
TASK_SOURCE = "预警联动"  # city events that are inspection tasks spawned by warnings, not incidents

FACTORS: tuple[tuple[str, str], ...] = (  # column, screen label; the order of the table above
    ("pts_general", "一般隐患"),
    ("pts_major", "重大隐患"),
    ("pts_age", "隐患时长"),
    ("pts_overdue", "逾期未整改"),
    ("pts_site_type", "场所类型加权"),
    ("pts_incidents", "近期突发事件"),
)
FACTOR_COLUMNS = tuple(c for c, _ in FACTORS)
FACTOR_LABELS = dict(FACTORS)
BANDS = ((15.0, "高风险"), (8.0, "较高风险"), (3.0, "一般风险"), (0.0, "低风险"))  # score > 0 (≥ for the others)
NO_RISK = "无风险"


@dataclass(frozen=True)
class RiskWeights:
    general: float = 2.0            # per open 一般 hazard
    major: float = 8.0              # per open 重大 hazard
    age_per_30_days: float = 1.0    # per 30 days open, per hazard ...
    age_cap: float = 3.0            # ... at most this much per hazard
    overdue: float = 3.0            # per overdue hazard ...
    overdue_per_day: float = 0.1    # ... plus this per day overdue ...
    overdue_day_cap: float = 3.0    # ... at most this much more
    site_type_factor: dict = field(default_factory=lambda: dict(SITE_TYPE_FACTOR))
    incident: float = 0.5           # per 突发事件 in the window
    incident_urgent: float = 1.0    # per 紧急 突发事件 in the window
    incident_days: int = 90         # the window, days before as_of
    incident_groups: tuple = INCIDENT_GROUPS


WEIGHTS = RiskWeights()


@dataclass
class RiskInputs:
    grids: pd.DataFrame
    sites: pd.DataFrame
    hazards: pd.DataFrame
    events: pd.DataFrame
    as_of: pd.Timestamp


def weights_table(weights: RiskWeights = WEIGHTS) -> pd.DataFrame:
    """The scoring rules in Chinese (因素, 计分规则) for screens and reports."""
    w = weights
    factors = "，".join(f"{k} ×{v:g}" for k, v in w.site_type_factor.items())
    groups = "、".join(w.incident_groups)
    rules = {
        "pts_general": f"每项未整改的一般隐患 {w.general:g} 分",
        "pts_major": f"每项未整改的重大隐患 {w.major:g} 分",
        "pts_age": f"隐患每未整改 30 天加 {w.age_per_30_days:g} 分，每项最多 {w.age_cap:g} 分",
        "pts_overdue": f"每项逾期隐患 {w.overdue:g} 分，另按逾期天数每天加 {w.overdue_per_day:g} 分，最多 {w.overdue_day_cap:g} 分",
        "pts_site_type": f"按场所类型放大上述隐患分（{factors}，其余 ×1），加出的部分",
        "pts_incidents": f"近 {w.incident_days} 天网格内的{groups}类城市事件，每起 {w.incident:g} 分，紧急的 {w.incident_urgent:g} 分"
                         f"（预警联动派出的巡查任务不计）",
    }
    return pd.DataFrame({"factor": [FACTOR_LABELS[c] for c in FACTOR_COLUMNS],
                         "rule": [rules[c] for c in FACTOR_COLUMNS]})


def band(score: float) -> str:
    if not score or score <= 0:
        return NO_RISK
    for floor, name in BANDS:
        if score >= floor and floor > 0:
            return name
    return BANDS[-1][1]


# ------------------------------------------------------------------ the score

def hazard_points(states: pd.DataFrame, weights: RiskWeights = WEIGHTS) -> pd.DataFrame:
    """Open hazards (from `ledger.hazard_states(..., sites)`) with their points per factor."""
    w = weights
    op = states[states["open"]].copy() if len(states) else states.assign(open=pd.Series(dtype=bool))
    major = (op["level"] == "重大").to_numpy()
    op["pts_general"] = np.where(major, 0.0, w.general)
    op["pts_major"] = np.where(major, w.major, 0.0)
    op["pts_age"] = np.minimum(op["age_days"].astype(float).fillna(0) / 30.0 * w.age_per_30_days, w.age_cap)
    days = op["days_overdue"].astype(float).fillna(0)
    op["pts_overdue"] = np.where(op["overdue"].astype(bool), w.overdue + np.minimum(days * w.overdue_per_day,
                                                                                      w.overdue_day_cap), 0.0)
    stype = op["site_type"] if "site_type" in op else pd.Series(None, index=op.index, dtype=object)
    factor = stype.map(w.site_type_factor).astype(float).fillna(1.0)
    own = op["pts_general"] + op["pts_major"] + op["pts_age"] + op["pts_overdue"]
    op["pts_site_type"] = (factor - 1.0) * own
    op["vulnerable"] = stype.isin(VULNERABLE_SITES).to_numpy()
    op["weighted_type"] = stype.where(factor > 1.0)
    return op


def incident_points(events: pd.DataFrame, as_of, weights: RiskWeights = WEIGHTS) -> pd.DataFrame:
    """突发事件 city events in the `incident_days` before `as_of`, one row each with pts_incidents:
    those placed in a grid, and those placed only to their street (by their address: a hotline
    work order without coordinates), which `grid_risk` shares among the street's grids."""
    w = weights
    as_of = pd.Timestamp(as_of)
    cols = ["event_id", "ts", "grid_id", "district", "street", "lat", "lon", "event_group", "event_class",
            "urgency", "source"]
    ev = pd.DataFrame(columns=cols) if events is None else events.copy()
    for c in cols:
        if c not in ev:
            ev[c] = None
    ev["ts"] = pd.to_datetime(ev["ts"], errors="coerce")
    keep = (ev["event_group"].isin(w.incident_groups) & (ev["source"].astype("string").fillna("") != TASK_SOURCE)
            & (ev["ts"] > as_of - pd.Timedelta(days=w.incident_days)) & (ev["ts"] <= as_of)
            & (ev["grid_id"].notna() | ev["street"].notna()))
    ev = ev[keep.fillna(False).astype(bool)].copy()
    ev["pts_incidents"] = np.where(ev["urgency"] == "紧急", w.incident_urgent, w.incident)
    return ev


def grid_risk(grids: pd.DataFrame, sites: pd.DataFrame, hazards: pd.DataFrame, events: pd.DataFrame,
              as_of, weights: RiskWeights = WEIGHTS) -> pd.DataFrame:
    """One row per grid, highest score first.

    Columns: rank, grid_id, district, street, lat, lon, population, score, band, top_factor,
    the six factor columns (FACTOR_COLUMNS, summing to score), the counts behind them
    (open_general, open_major, overdue, vulnerable_open, incidents), weighted_types (the site
    types that raised its points, '、'-joined), and `reasons`, a
    Chinese sentence naming each contributing factor with its points.
    Every grid of `grids` is listed (score 0 when nothing counts); grids named only by a
    site or an event are added with the coordinates of what is there. An event placed only to
    its street (no grid, no coordinates: placed by its address) adds its points to the street's
    grids in equal shares and is counted in `incidents_by_street` of each; one placed only to
    its district is in no grid's score (it is not guessed into one).
    """
    as_of = pd.Timestamp(as_of)
    states = lg.hazard_states(hazards, as_of, sites)
    hp = hazard_points(states, weights)
    ip = incident_points(events, as_of, weights)
    # placed only to their street: no grid and no coordinates (an event with coordinates but no
    # grid is not spread over a street it may not be in)
    street_ip = ip[ip["grid_id"].isna() & ~(ip["lat"].notna() & ip["lon"].notna())] if len(ip) else ip
    ip = ip[ip["grid_id"].notna()] if len(ip) else ip

    g = pd.DataFrame(columns=["grid_id", "district", "street", "lat", "lon", "population"]) if grids is None \
        else grids.copy()
    for c in ("district", "street", "lat", "lon", "population"):
        if c not in g:
            g[c] = None
    g = g[["grid_id", "district", "street", "lat", "lon", "population"]].drop_duplicates("grid_id")
    extra = []
    for frame in (hp, ip):
        if len(frame) and "grid_id" in frame:
            f = frame[frame["grid_id"].notna() & ~frame["grid_id"].isin(g["grid_id"])]
            if len(f):
                cols = [c for c in ("grid_id", "district", "street", "lat", "lon") if c in f]
                extra.append(f[cols].assign(lat=pd.to_numeric(f.get("lat"), errors="coerce"),
                                            lon=pd.to_numeric(f.get("lon"), errors="coerce")))
    if extra:
        e = pd.concat(extra).groupby("grid_id").agg(
            district=("district", "first"), street=("street", "first"), lat=("lat", "mean"), lon=("lon", "mean"))
        g = pd.concat([g, e.reset_index().assign(population=None)], ignore_index=True)
    out = g.set_index("grid_id")
    out["lat"] = pd.to_numeric(out["lat"], errors="coerce")
    out["lon"] = pd.to_numeric(out["lon"], errors="coerce")

    placed = hp[hp["grid_id"].notna()] if len(hp) else hp
    if len(placed):
        per = placed.assign(_g=placed["level"] != "重大", _m=placed["level"] == "重大").groupby("grid_id").agg(
            pts_general=("pts_general", "sum"), pts_major=("pts_major", "sum"), pts_age=("pts_age", "sum"),
            pts_overdue=("pts_overdue", "sum"), pts_site_type=("pts_site_type", "sum"),
            open_general=("_g", "sum"), open_major=("_m", "sum"), overdue=("overdue", "sum"),
            vulnerable_open=("vulnerable", "sum"),
            weighted_types=("weighted_type", lambda s: "、".join(dict.fromkeys(s.dropna()))))
        out = out.join(per)
    if len(ip):
        out = out.join(ip.groupby("grid_id").agg(pts_incidents=("pts_incidents", "sum"),
                                                 incidents=("event_id", "count")))
    if len(street_ip):
        streets = out.reset_index()[["grid_id", "district", "street"]].dropna(subset=["street"])
        spread = street_ip.drop(columns=["grid_id"]).merge(streets, on=["district", "street"])
        if len(spread):
            spread["pts_incidents"] = spread["pts_incidents"] / spread.groupby("event_id")["grid_id"].transform("count")
            shared = spread.groupby("grid_id").agg(pts_street=("pts_incidents", "sum"),
                                                   incidents_by_street=("event_id", "count"))
            out = out.join(shared)
            out["pts_incidents"] = (pd.to_numeric(out.get("pts_incidents"), errors="coerce").fillna(0.0)
                                    + out["pts_street"].fillna(0.0))
            out = out.drop(columns=["pts_street"])
    for c in FACTOR_COLUMNS:
        out[c] = pd.to_numeric(out[c], errors="coerce").fillna(0.0).astype(float) if c in out else 0.0
    for c in ("open_general", "open_major", "overdue", "vulnerable_open", "incidents", "incidents_by_street"):
        out[c] = pd.to_numeric(out[c], errors="coerce").fillna(0).astype(int) if c in out else 0
    out["score"] = out[list(FACTOR_COLUMNS)].sum(axis=1).round(1)
    out["band"] = out["score"].map(band)
    top = out[list(FACTOR_COLUMNS)].idxmax(axis=1) if len(out) else pd.Series(dtype=object)
    out["top_factor"] = np.where(out["score"] > 0, top.map(FACTOR_LABELS), "")
    if "weighted_types" not in out:
        out["weighted_types"] = ""
    out["weighted_types"] = out["weighted_types"].fillna("")
    out["reasons"] = [explain(r) for r in out.itertuples()]
    out = out.reset_index().rename(columns={"index": "grid_id"})
    out = out.sort_values(["score", "pts_major", "pts_overdue", "grid_id"], ascending=[False, False, False, True],
                          kind="stable").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    cols = ["rank", "grid_id", "district", "street", "lat", "lon", "population", "score", "band", "top_factor",
            *FACTOR_COLUMNS, "open_general", "open_major", "overdue", "vulnerable_open", "incidents",
            "incidents_by_street", "weighted_types", "reasons"]
    return out[cols]


def explain(row) -> str:
    """Why a grid scores what it does, in Chinese: each non-zero factor with its count and points."""
    parts = []
    if row.pts_general:
        parts.append(f"未整改一般隐患 {row.open_general} 项 +{row.pts_general:.1f}")
    if row.pts_major:
        parts.append(f"未整改重大隐患 {row.open_major} 项 +{row.pts_major:.1f}")
    if row.pts_age:
        parts.append(f"隐患时长 +{row.pts_age:.1f}")
    if row.pts_overdue:
        parts.append(f"逾期 {row.overdue} 项 +{row.pts_overdue:.1f}")
    if row.pts_site_type:
        kinds = getattr(row, "weighted_types", "") or "重点场所"
        parts.append(f"{kinds}加权 +{row.pts_site_type:.1f}")
    if row.pts_incidents:
        street = getattr(row, "incidents_by_street", 0)
        also = f"（另有按地址定位到所在街道的 {street} 起，分摊计入）" if street else ""
        parts.append(f"近期突发事件 {row.incidents} 起{also} +{row.pts_incidents:.1f}")
    return "；".join(parts)


def top_grids(risk: pd.DataFrame, n: int = 10, district: str | None = None) -> pd.DataFrame:
    """The `n` highest-scoring grids (score > 0), optionally of one district, re-ranked."""
    r = risk if not district else risk[risk["district"] == district]
    r = r[r["score"] > 0].head(n).copy()
    r["rank"] = np.arange(1, len(r) + 1)
    return r.reset_index(drop=True)


def district_risk(risk: pd.DataFrame) -> pd.DataFrame:
    """Per district: grids, grids at risk (score > 0), high-risk grids (高风险/较高风险), the summed
    score and each factor's share of it; highest total first."""
    cols = ["district", "grids", "grids_at_risk", "grids_high", "score", *FACTOR_COLUMNS]
    if risk.empty:
        return pd.DataFrame(columns=cols)
    r = risk.assign(_at=risk["score"] > 0, _hi=risk["band"].isin(["高风险", "较高风险"]))
    out = r.groupby("district").agg(grids=("grid_id", "count"), grids_at_risk=("_at", "sum"),
                                    grids_high=("_hi", "sum"), score=("score", "sum"),
                                    **{c: (c, "sum") for c in FACTOR_COLUMNS}).reset_index()
    return out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)[cols]


def headline(risk: pd.DataFrame, district: str | None = None) -> str:
    """The risk in plain words, for the face of a page or report: how many grids are high risk,
    which one ranks first and why (its biggest factor), which district holds the most."""
    r = risk if not district else risk[risk["district"] == district]
    if r is None or r.empty or not (r["score"] > 0).any():
        return f"{district or '全市'}各网格目前没有未整改隐患，也没有近期突发事件，暂无需要优先排查的网格。"
    high = int(r["band"].isin(["高风险", "较高风险"]).sum())
    top = top_grids(r, 1).iloc[0]
    main = max(FACTOR_COLUMNS, key=lambda c: float(top[c] or 0))
    street = top["street"] if isinstance(top.get("street"), str) and top.get("street") else ""
    lead = (f"{district or '全市'}有 {high} 个网格风险较高，需优先排查；" if high
            else f"{district or '全市'}没有较高风险的网格；")
    text = (f"{lead}风险最高的是{top['district']}{street} {top['grid_id']} 网格（{top['band']}），"
            f"主要因为{FACTOR_LABELS[main]}。")
    if not district:
        d = district_risk(r)
        if len(d):
            text += f"风险合计最高的区县是{d['district'].iloc[0]}。"
    return text


# ------------------------------------------------------------------ loading (the hub)

def load_risk_inputs(as_of=None, eng=None, weights: RiskWeights = WEIGHTS,
                     ledger: lg.Ledger | None = None, district: str | None = None) -> RiskInputs:
    """Grids, sites, hazards and the city events of the incident window from the hub.

    `as_of` (naive UTC) defaults to the moment the data describes (`ledger.data_as_of`).
    `district`: one district's grids and events only (a district user's scope; pass its
    ledger too), filtered in the hub's queries.
    """
    import sqlalchemy as sa

    from workbench.store import hub
    from workbench.store.schema import DATASETS

    where = {"district": district} if district else None
    ledger = ledger or lg.load_ledger(eng, district)
    if as_of is None:
        t = DATASETS["city_events"].table
        stmt = sa.select(sa.func.max(t.c.ts).label("ts"))
        latest = hub.query(stmt.where(t.c.district == district) if district else stmt, eng=eng)
        as_of = lg.data_as_of(ledger, latest)
    as_of = pd.Timestamp(as_of)
    events = hub.read("city_events", since=as_of - pd.Timedelta(days=weights.incident_days),
                      until=as_of + pd.Timedelta(seconds=1), eng=eng, where=where,
                      columns=["event_id", "ts", "source", "event_group", "event_class", "district", "street",
                               "grid_id", "lat", "lon", "urgency"])
    return RiskInputs(grids=hub.read("grids", where=where, eng=eng), sites=ledger.sites, hazards=ledger.hazards,
                      events=events, as_of=as_of)


def grid_risk_from(inputs: RiskInputs, weights: RiskWeights = WEIGHTS) -> pd.DataFrame:
    return grid_risk(inputs.grids, inputs.sites, inputs.hazards, inputs.events, inputs.as_of, weights)


__all__ = ["SITE_TYPE_FACTOR", "VULNERABLE_SITES", "INCIDENT_GROUPS", "TASK_SOURCE", "FACTORS", "FACTOR_COLUMNS",
           "FACTOR_LABELS", "BANDS", "NO_RISK", "headline", "RiskWeights", "WEIGHTS", "RiskInputs", "weights_table", "band",
           "hazard_points", "incident_points", "grid_risk", "explain", "top_grids", "district_risk",
           "load_risk_inputs", "grid_risk_from"]
