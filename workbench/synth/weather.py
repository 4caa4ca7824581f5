"""Hourly weather, one automatic station per district, for Zhuzhou's climate.

Zhuzhou (humid subtropical): January mean about 5–6 °C, July about 29–30 °C, some
1,450 mm of rain a year, wettest March–June. Hourly mean wind stays below force 5
(< 8.0 m/s) except in the planted cold wave, so no cold-wave signal arises by chance.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.synth.calendar import CityCalendar
from workbench.synth.geography import DISTRICTS

RAIN_DAYS = np.array([14, 14, 18, 17, 17, 15, 10, 11, 8, 8, 9, 9], float)  # per month
RAIN_MM = np.array([75, 95, 150, 190, 210, 220, 130, 120, 70, 75, 75, 50], float)
DAYS_IN_MONTH = np.array([31, 28.25, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
OFFSET = {"荷塘区": 0.5, "芦淞区": 0.5, "石峰区": 0.3, "天元区": 0.4, "渌口区": 0.0,
          "醴陵市": 0.1, "攸县": 0.3, "茶陵县": 0.2, "炎陵县": -1.0}
SOURCE = "气象局自动站"


def stations() -> pd.DataFrame:
    return pd.DataFrame([{"station_id": f"QX-{d.code}", "district": d.name,
                          "lat": round(d.lat + 0.006, 4), "lon": round(d.lon - 0.004, 4)} for d in DISTRICTS])


def climate_mean(doy: np.ndarray) -> np.ndarray:
    """Climatological daily mean temperature (°C) by day of year."""
    return 17.8 - 12.2 * np.cos(2 * np.pi * (doy - 17) / 365.25)


def _diurnal(hour: np.ndarray) -> np.ndarray:
    """-1 at 06:00, +1 at 15:00, cosine in between."""
    h = hour.astype(float)
    rise = (h >= 6) & (h <= 15)
    return np.where(rise, -np.cos(np.pi * (h - 6) / 9), np.cos(np.pi * (((h - 15) % 24) / 15)))


def cold_wave_day(cal: CityCalendar, rng: np.random.Generator) -> tuple[pd.Timestamp, bool]:
    """The day the cold front passes: in January when the range allows, else the coldest
    part of the range. Returns (day, in_january)."""
    idx = np.arange(cal.n)
    ok = (idx >= min(3, cal.n - 1)) & (idx <= cal.n - 3)
    if not ok.any():
        ok = idx == cal.n // 2
    jan = ok & (cal.month == 1)
    if jan.any():
        cands = idx[jan]
        mid = cands[(cands >= cands.min() + 4) & (cands <= cands.max() - 4)]
        cands = mid if len(mid) else cands
        return cal.dates[int(rng.choice(cands))], True
    clim = climate_mean(cal.doy).astype(float)
    clim[~ok] = np.inf
    return cal.dates[int(np.argmin(clim))], False


# the planted front (all stations alike up to a small offset): hour -> value, day by day
_WARM = [14.2, 13.9, 13.7, 13.5, 13.4, 13.4, 13.3, 13.8, 15.0, 16.5, 17.8, 18.9, 19.7, 20.2,
         20.5, 20.4, 19.8, 18.9, 18.0, 17.2, 16.6, 16.1, 15.6, 15.2]
_FRONT = [15.0, 14.8, 14.6, 14.5, 14.4, 14.3, 14.3, 14.6, 14.9, 13.2, 11.4, 9.8, 8.5, 7.4,
          6.6, 5.9, 5.3, 4.8, 4.3, 3.9, 3.5, 3.2, 3.0, 2.8]
_AFTER = [2.7, 2.6, 2.5, 2.4, 2.35, 2.3, 2.3, 2.6, 3.2, 3.9, 4.6, 5.2, 5.7, 6.0,
          6.1, 6.0, 5.6, 5.0, 4.5, 4.2, 3.9, 3.7, 3.5, 3.3]
_RECOVER = [3.2, 3.1, 3.0, 2.9, 2.85, 2.8, 2.8, 3.3, 4.2, 5.3, 6.4, 7.3, 8.0, 8.4,
            8.5, 8.3, 7.7, 6.9, 6.3, 5.9, 5.5, 5.2, 5.0, 4.8]
_WIND_FRONT = [4.5, 4.6, 4.8, 5.0, 5.3, 5.8, 6.5, 8.2, 10.9, 11.6, 12.3, 12.9, 13.2, 12.8,
               12.1, 11.4, 10.9, 9.8, 9.1, 8.6, 8.3, 8.1, 7.6, 7.0]
_WIND_AFTER = [6.6, 6.2, 5.8, 5.5, 5.2, 5.0, 4.8, 4.7, 4.6, 4.4, 4.3, 4.1, 4.0, 3.8, 3.6, 3.4,
               3.2, 3.0, 2.8, 2.6, 2.5, 2.4, 2.3, 2.2]


def hourly_weather(rng: np.random.Generator, cal: CityCalendar) -> tuple[pd.DataFrame, dict]:
    """Hourly observations for all stations (naive local ts) and the cold-wave facts."""
    st = stations()
    ns = len(st)
    warm = 10
    dates = pd.date_range(pd.Timestamp(cal.start) - pd.Timedelta(days=warm), cal.end, freq="D")
    nd = len(dates)
    doy = dates.day_of_year.to_numpy()
    month = dates.month.to_numpy() - 1

    # daily synoptic anomaly, shared by the city
    a = np.zeros(nd)
    for i in range(1, nd):
        a[i] = 0.75 * a[i - 1] + rng.normal(0, 1.9)
    # rain days (Markov chain per month) and amounts
    pi = RAIN_DAYS / DAYS_IN_MONTH
    prr = np.minimum(0.85, pi + 0.3)
    prd = pi * (1 - prr) / (1 - pi)
    rain = np.zeros(nd, bool)
    u = rng.random(nd)
    for i in range(1, nd):
        rain[i] = u[i] < (prr[month[i]] if rain[i - 1] else prd[month[i]])
    mean_amt = RAIN_MM / RAIN_DAYS
    amt = rng.gamma(0.7, mean_amt[month] / 0.7) * rain

    hours = np.arange(24)
    shape = _diurnal(hours)
    ts = (dates.to_numpy().astype("datetime64[h]")[:, None] + hours.astype("timedelta64[h]")).ravel()
    nh = len(ts)
    hod = np.tile(hours, nd)
    clim_h = np.interp(np.arange(nh) / 24 - 0.5, np.arange(nd), climate_mean(doy) + a)
    summer = np.isin(month, [5, 6, 7, 8])
    frames = []
    for s in range(ns):
        part = rain & (rng.random(nd) < 0.85)
        damt = np.round(amt * np.exp(rng.normal(0, 0.45, nd)) * part, 1)
        precip = np.zeros((nd, 24))
        for i in np.flatnonzero(damt > 0):
            if summer[i] and rng.random() < 0.6:
                start, dur = int(rng.integers(13, 19)), int(rng.integers(1, 5))
            else:
                start, dur = int(rng.integers(0, 24)), int(rng.integers(3, 15))
            hh = (start + np.arange(dur)) % 24
            precip[i, hh] += damt[i] * rng.dirichlet(np.ones(dur))
        precip = np.round(precip, 1)
        wet_day = precip.sum(axis=1) > 1.0
        amp = np.where(wet_day, 1.8, 4.0) + 0.6 * np.sin(2 * np.pi * (doy - 100) / 365.25)
        day_noise = rng.normal(0, 0.5, nd) - np.where(wet_day & summer, 1.5, 0.0)
        temp = (clim_h + OFFSET[st.district[s]] + np.repeat(day_noise, 24)
                + (amp[:, None] * shape[None, :]).ravel() + rng.normal(0, 0.3, nh))
        raining = precip.ravel() > 0
        wind_day = rng.gamma(3.0, 0.7, nd)
        wind = np.clip(np.repeat(wind_day, 24) * (0.8 + 0.25 * (shape[hod] + 1)) + rng.normal(0, 0.4, nh), 0, 7.9)
        hum = 80 - 13 * shape[hod] + np.repeat(rng.normal(0, 5, nd), 24) + rng.normal(0, 2, nh)
        hum = np.where(raining, rng.uniform(90, 99, nh), hum)
        hum -= np.where(np.repeat(summer, 24), 4 * (shape[hod] + 1), 0)
        solar_peak = 9.0 - 5.0 * np.cos(2 * np.pi * (doy - 17) / 365.25)
        sun = np.clip(np.sin(np.pi * (hod - 7) / 11), 0, None) * (hod >= 7) * (hod <= 18)
        road = temp + np.repeat(solar_peak * np.where(wet_day, 0.3, 1.0), 24) * sun \
            - np.where(sun > 0, 0, 1.2)
        frames.append(dict(temp=temp, precip=precip.ravel(), wind=wind, hum=hum, road=road))

    # --- the planted cold wave
    day, in_jan = cold_wave_day(cal, rng)
    d0 = int((day - dates[0]).days)  # front day index in `dates`
    script = np.array(_WARM + _WARM + _WARM + _WARM + _FRONT + _AFTER + _RECOVER + _RECOVER)
    wind_s = np.array([3.0 + 0.5 * x for x in (shape + 1)] * 3 + [4.0 + 0.5 * x for x in (shape + 1)]
                      + _WIND_FRONT + _WIND_AFTER + [2.5 + 0.6 * x for x in (shape + 1)] * 2)
    first = (d0 - 4) * 24  # script starts three days before the front, one ramp day earlier
    weight = np.ones(len(script))
    weight[:24] = np.linspace(0, 1, 24)
    weight[-24:] = np.linspace(1, 0, 24)
    idx = np.arange(first, first + len(script))
    keep = (idx >= 0) & (idx < nh)
    front_hours = idx[(idx >= d0 * 24) & (idx < (d0 + 1) * 24)]
    rain_hours = front_hours[8:15]
    for s in range(ns):
        f = frames[s]
        off = rng.uniform(-0.3, 0.3)
        target = script + off + rng.normal(0, 0.08, len(script))
        f["temp"][idx[keep]] = (1 - weight[keep]) * f["temp"][idx[keep]] + weight[keep] * target[keep]
        w_target = np.clip(wind_s + rng.normal(0, 0.2, len(wind_s)), 0, None)
        f["wind"][idx[keep]] = (1 - weight[keep]) * f["wind"][idx[keep]] + weight[keep] * w_target[keep]
        f["precip"][front_hours] = 0.0
        f["precip"][rain_hours] = np.round(rng.uniform(0.4, 2.8, len(rain_hours)), 1)
        f["hum"][rain_hours] = rng.uniform(92, 98, len(rain_hours))
        after = np.arange((d0 + 1) * 24, (d0 + 3) * 24)
        after = after[after < nh]
        f["hum"][after] = rng.uniform(45, 70, len(after))
        f["precip"][after] = 0.0
        win = idx[keep]
        f["road"][win] = f["temp"][win] + np.where(np.isin(hod[win], np.arange(9, 17)), 2.0, -0.8)

    out = []
    for s in range(ns):
        f = frames[s]
        out.append(pd.DataFrame({
            "station_id": st.station_id[s], "ts": ts.astype("datetime64[s]"), "kind": "observed",
            "district": st.district[s], "lat": st.lat[s], "lon": st.lon[s],
            "temperature": np.round(f["temp"], 1), "precipitation": np.round(f["precip"], 1),
            "wind_speed": np.round(f["wind"], 1), "road_temperature": np.round(f["road"], 1),
            "humidity": np.round(np.clip(f["hum"], 25, 100)), "source": SOURCE,
        }))
    df = pd.concat(out, ignore_index=True)
    df = df[df.ts >= pd.Timestamp(cal.start)].reset_index(drop=True)
    df["issued_at"] = df.ts
    df = df[["station_id", "ts", "issued_at", "kind", "district", "lat", "lon", "temperature",
             "precipitation", "wind_speed", "road_temperature", "humidity", "source"]]
    facts = {"day": day, "in_january": in_jan}
    return df, facts


def daily_summary(weather: pd.DataFrame) -> pd.DataFrame:
    """Per district and local date: precipitation sum, min/max temperature, min road temp."""
    d = weather.assign(date=weather.ts.dt.normalize())
    return (d.groupby(["district", "date"], sort=True)
            .agg(precipitation=("precipitation", "sum"), tmin=("temperature", "min"),
                 tmax=("temperature", "max"), road_min=("road_temperature", "min"),
                 wind_max=("wind_speed", "max"))
            .reset_index())
