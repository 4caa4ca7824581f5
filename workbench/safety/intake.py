"""Weather files into the hub: the safety department's loader of `weather` (department.py).

The hub reads and checks the rows; this loader says what the file is before they are written.
A daily file (one record per station per local day: NOAA GHCN-Daily, a CMA daily summary)
must not be taken for hourly observations — 寒潮 would never fire on it and a day's snowfall
would be read as one hour's. So each chunk's records without a `resolution` are looked at
as the warnings look at them (`weather.split_resolution`): those recognised as daily are
stored as daily, and the file's summary says so in one line, with what the warnings can judge
on daily records. Records that say their resolution keep it; a daily file is also told.
"""
from __future__ import annotations

import pandas as pd

DAILY_NOTE = ("按日值资料接入：寒潮按日最低气温、暴雪按 24 小时降雪（或低温日的降水）判定；"
              "道路结冰需要逐时的路面温度与降水，日值资料无法判定")


class WeatherLoader:
    """Daily records recognised and labelled before they are written (`prepare`); the rows are
    written as any dataset's (`ingest.write_rows`: corrections keep the old values)."""

    def prepare(self, frame: pd.DataFrame, path, ctx=None) -> pd.DataFrame:
        from workbench.safety import weather as W
        from workbench.store import ingest

        if frame.empty or "ts" not in frame or "station_id" not in frame:
            return frame
        tz = getattr(ctx, "tz", None)
        res = (frame["resolution"].astype("string").str.strip().str.lower() if "resolution" in frame
               else pd.Series(pd.NA, index=frame.index, dtype="string"))
        said_daily = (res == "daily").fillna(False)
        todo = res.isna() | (res == "")
        if todo.any():
            look = pd.DataFrame({"station_id": frame["station_id"].astype("string").str.strip(),
                                 "ts": ingest.parse_local_times(frame["ts"], tz)[0]}, index=frame.index)
            for c in ("temperature_min", "temperature_max", "snowfall"):
                if c in frame:
                    look[c] = pd.to_numeric(frame[c].astype("string").str.strip(), errors="coerce")
            if "kind" in frame:
                look["kind"] = frame["kind"]
            look = look[todo & look["ts"].notna() & look["station_id"].notna()]
            if len(look):
                _, daily, notes = W.split_resolution(look, W.QualityRules(tz=tz) if tz else W.QualityRules())
                if len(daily):
                    frame = frame.copy()
                    frame.loc[daily.index, "resolution"] = "daily"
                    if ctx is not None:
                        for n in notes:
                            ctx.warn(f"识别为日值资料：{n}")
        labelled = "resolution" in frame and (frame["resolution"] == "daily").any()
        if ctx is not None and (said_daily.any() or labelled):
            ctx.warn(DAILY_NOTE)
        return frame

    def __call__(self, conn, ds, values: pd.DataFrame, *, present=None, file_sha256=None, corrections=None):
        from workbench.store import ingest

        return ingest.write_rows(conn, ds, values, present=present, file_sha256=file_sha256,
                                 corrections=corrections)


LOADER = WeatherLoader()
