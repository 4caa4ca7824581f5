"""Charts with Chinese labels, two kinds:

- still charts: matplotlib figures rendered to PNG in an ipywidgets Image (`chart(fig)`,
  `bar_chart`, `line_chart`). The figures use matplotlib's object API (no pyplot state,
  nothing shown by accident), and the workbench chart style (`theme.chart_rc`) is applied
  while a figure is built and drawn, so Chinese text renders with the CJK font.
- charts people explore: plotly figures with values on hover, zoom and pan, offline
  (`interactive(fig)`, `interactive_line`, `interactive_bars`). The figure travels as a mime
  bundle of our own type (`PLOTLY_MIME`) inside an ipywidgets Output; Voilà and JupyterLab render
  it with the workbench-charts labextension (workbench/ui/jupyter/labextensions: a renderer
  that loads plotly.js's cartesian bundle, 1.5 MB, from our own server on the first chart of a
  page; jupyterlab-plotly loads the whole 4.7 MB of plotly.js at the start of every page, chart
  or not, and Voilà runs with it denied). Only the traces of that bundle can be drawn
  (`TRACES`; `plotly_bundle` refuses another). Chinese fonts, colours and plotly's own words in
  Chinese come from `theme.plotly_layout` / `theme.plotly_config`.

        charts.interactive_line(daily, title="每日事件数", unit="件")    # a DataFrame, one line per column
        charts.interactive(charts.line_figure(daily, title=…))           # a plotly Figure to change first
        charts.interactive_bars(counts, title="各区县阳性批次", unit="批次")
"""
from __future__ import annotations

import io
from contextlib import contextmanager

import pandas as pd

from workbench.ui import theme
from workbench.ui.tables import format_number


@contextmanager
def chart_style():
    """matplotlib's rcParams set to the workbench style for the duration of the block."""
    import matplotlib

    with matplotlib.rc_context(theme.chart_rc()):
        yield


def new_figure(width: float = 6.4, height: float = 3.6):
    """A bare Figure and its axes (call inside `chart_style()`, or use the helpers below)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    return fig, ax


def set_title(fig, text: str) -> None:
    """A chart title at the figure's top left (not above the axes, which long labels push right)."""
    if text:
        fig.suptitle(text, x=0.01, ha="left", fontsize=12.5, fontweight="bold",  # y unset: layout makes room
                     color=theme.COLORS["text"])


def png(fig) -> bytes:
    """The figure as PNG bytes, drawn with the workbench style."""
    buf = io.BytesIO()
    with chart_style():
        fig.savefig(buf, format="png")
    return buf.getvalue()


def chart(fig):
    """A figure as an ipywidgets Image that scales to its column."""
    import ipywidgets as widgets

    w = widgets.Image(value=png(fig), format="png", layout=widgets.Layout(width="100%", height="auto"))
    w.add_class("wb-chart")
    return w


def warm_up(interactive: bool = True) -> None:
    """Draw a tiny Chinese chart once, so matplotlib and the CJK font are loaded before a
    page is requested (preheated kernels run this ahead of time, through ui.setup); and
    (`interactive`) import plotly and build one chart's and one map's JSON."""
    with chart_style():
        fig, ax = new_figure(1.2, 0.8)
        ax.bar(["数据"], [1])
        set_title(fig, "预热")
        fig.savefig(io.BytesIO(), format="png", dpi=30)
    if interactive:
        from workbench.ui import maps

        warm_up_interactive()
        maps.warm_up()


def bar_chart(values: pd.Series, *, title: str = "", xlabel: str = "", color: str | None = None,
              horizontal: bool = True, width: float = 6.4, height: float | None = None,
              labels: bool = True):
    """Bars of a labelled Series (index: Chinese category names), largest on top."""
    values = values.dropna()
    with chart_style():
        if height is None:
            height = max(2.4, 0.34 * len(values) + 1.2) if horizontal else 3.6
        fig, ax = new_figure(width, height)
        color = color or theme.COLORS["primary"]
        if horizontal:
            values = values.iloc[::-1]  # matplotlib draws the first bar at the bottom
            bars = ax.barh([str(i) for i in values.index], values.to_numpy(), color=color, height=0.62)
            ax.grid(axis="y", visible=False)
            ax.set_xlabel(xlabel)
            ax.margins(x=0.12)
        else:
            bars = ax.bar([str(i) for i in values.index], values.to_numpy(), color=color, width=0.62)
            ax.grid(axis="x", visible=False)
            ax.set_ylabel(xlabel)
            ax.margins(y=0.12)
        if labels and len(values):
            ax.bar_label(bars, labels=[format_number(v) for v in values.to_numpy()], padding=3,
                         fontsize=9, color=theme.COLORS["text"])
        set_title(fig, title)
    return fig


def line_chart(frame: pd.DataFrame, *, title: str = "", ylabel: str = "", width: float = 6.4,
               height: float = 3.6, date_format: str = "%m-%d", max_series: int = 8):
    """One line per column over a date index; columns beyond `max_series` are summed as 其他."""
    from matplotlib.dates import AutoDateLocator, DateFormatter, DayLocator

    if frame.shape[1] > max_series:
        keep = frame.sum().sort_values(ascending=False).index[: max_series - 1]
        frame = frame[keep].assign(其他=frame.drop(columns=keep).sum(axis=1))
    with chart_style():
        fig, ax = new_figure(width, height)
        for col in frame.columns:
            ax.plot(frame.index, frame[col].to_numpy(), label=str(col), linewidth=1.8, marker="o",
                    markersize=2.5)
        set_title(fig, title)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        if isinstance(frame.index, pd.DatetimeIndex):
            span = (frame.index.max() - frame.index.min()).days if len(frame.index) else 0
            # a week or so: one tick a day (AutoDateLocator finds no interval for some short spans and warns)
            ax.xaxis.set_major_locator(DayLocator() if span <= 8 else AutoDateLocator(maxticks=8))
            if span == 0 and len(frame.index):   # one day: a day either side, not matplotlib's years
                ax.set_xlim(frame.index[0] - pd.Timedelta(days=1), frame.index[0] + pd.Timedelta(days=1))
            ax.xaxis.set_major_formatter(DateFormatter(date_format))
        if frame.shape[1] > 1:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)
        elif frame.shape[1] == 1:
            ax.fill_between(frame.index, frame.iloc[:, 0].to_numpy(), alpha=0.12)
    return fig


# ------------------------------------------------------------------ interactive (plotly, offline)

PLOTLY_MIME = "application/vnd.workbench.plotly.v1+json"   # drawn by the workbench-charts labextension
# the trace types of plotly.js's cartesian bundle, what workbench-charts loads
TRACES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour", "image",
                    "pie", "scatter", "scatterternary", "violin"})


def plotly_bundle(fig, config: dict | None = None) -> dict:
    """The figure (a plotly Figure, or a {data, layout} spec of dicts) as a Jupyter mime bundle
    {PLOTLY_MIME: {data, layout, config}} of plain JSON (numpy and dates converted by plotly's own
    encoder). ValueError for a trace the cartesian bundle cannot draw (`TRACES`)."""
    import json

    if isinstance(fig, dict):
        from plotly.utils import PlotlyJSONEncoder

        spec = json.loads(json.dumps({"data": fig.get("data", []), "layout": fig.get("layout", {})},
                                     cls=PlotlyJSONEncoder))
    else:
        import plotly.io as pio

        spec = json.loads(pio.to_json(fig, validate=False))
    other = sorted({t.get("type") or "scatter" for t in spec.get("data", [])} - TRACES)
    if other:
        raise ValueError(f"工作台的交互图只能画 {', '.join(sorted(TRACES))}，不能画 {', '.join(other)}"
                         "（plotly.js 的 cartesian 包，workbench-charts 插件）")
    spec["config"] = theme.plotly_config(**(config or {}))
    title = ((spec.get("layout") or {}).get("title") or {})
    title = title.get("text") if isinstance(title, dict) else title
    # where workbench-charts is not installed (a plain JupyterLab, nbconvert): a line saying so
    fallback = f"交互图{f'“{title}”' if title else ''}：请在工作台的看板或 `workbench lab` 中查看"
    return {PLOTLY_MIME: spec, "text/plain": fallback}


def set_figure(widget, fig, config: dict | None = None) -> None:
    """Show `fig` in an `interactive` widget in place of what it showed (a refresh from any thread:
    the Output's outputs are set, not captured)."""
    widget.outputs = ({"output_type": "display_data", "data": plotly_bundle(fig, config), "metadata": {}},)


def interactive(fig, *, config: dict | None = None, height: int | None = None):
    """A plotly figure as a widget: values on hover, zoom (drag a box; double-click restores), pan,
    download as PNG; its column's width. Rendered by the workbench-charts labextension, offline."""
    import ipywidgets as widgets

    if isinstance(fig, dict):
        h = height or fig.setdefault("layout", {}).get("height") or 420
        fig["layout"]["height"] = h
    else:
        h = height or fig.layout.height or 420
        fig.update_layout(height=h)
    w = widgets.Output(layout=widgets.Layout(width="100%", min_height=f"{int(h)}px"))
    w.add_class("wb-chart")
    w.add_class("wb-plotly")
    set_figure(w, fig, config)
    return w


def spec(*, title: str = "", height: int = 420, **layout) -> dict:
    """An empty figure spec ({data, layout} of plain dicts) in the workbench style (Chinese fonts,
    the city's colours). Specs skip plotly's validation (a tenth of a second a trace under load);
    `figure` wraps one in a plotly Figure."""
    lay = theme.plotly_layout(height=height, **layout)
    if title:
        lay["title"] = {**lay["title"], "text": _esc_plotly(title)}
    else:
        lay["margin"] = {**lay["margin"], "t": 28}
    return {"data": [], "layout": lay}


def figure(*, title: str = "", height: int = 420, **layout):
    """An empty plotly Figure in the workbench style."""
    import plotly.graph_objects as go

    return go.Figure(spec(title=title, height=height, **layout))


def _list(values) -> list:
    if isinstance(values, pd.DatetimeIndex) or (isinstance(values, pd.Series) and
                                                pd.api.types.is_datetime64_any_dtype(values)):
        text = pd.DatetimeIndex(values).strftime("%Y-%m-%d %H:%M:%S")
        return [None if isinstance(v, float) else v for v in text]
    return [None if v is None or (isinstance(v, float) and v != v) else v
            for v in (values.tolist() if hasattr(values, "tolist") else list(values))]


def line_spec(frame: pd.DataFrame, *, title: str = "", unit: str = "", ylabel: str = "", height: int = 400,
              date_format: str = "%Y-%m-%d", max_series: int = 8, markers: bool | None = None) -> dict:
    """One line per column over the index (dates or numbers); hover shows every series' value at
    that date with its unit; columns beyond `max_series` are summed as 其他."""
    if frame.shape[1] > max_series:
        keep = frame.sum().sort_values(ascending=False).index[: max_series - 1]
        frame = frame[keep].assign(其他=frame.drop(columns=keep).sum(axis=1))
    fig = spec(title=title, height=height, hovermode="x unified", yaxis={"title": {"text": ylabel or unit}},
               showlegend=frame.shape[1] > 1)
    dates = isinstance(frame.index, pd.DatetimeIndex)
    markers = len(frame) <= 60 if markers is None else markers
    suffix = f" {unit}" if unit else ""
    x = _list(frame.index)
    for col in frame.columns:
        fig["data"].append({"type": "scatter", "x": x, "y": _list(frame[col]), "name": str(col),
                            "mode": "lines+markers" if markers else "lines", "line": {"width": 2},
                            "marker": {"size": 5},
                            "hovertemplate": f"%{{y:,}}{suffix}<extra>{_esc_plotly(col)}</extra>"})
    if dates:
        fig["layout"]["xaxis"] = {**fig["layout"]["xaxis"], "type": "date", "tickformat": "%m-%d",
                                  "hoverformat": date_format}
    return fig


def bar_spec(values: pd.Series, *, title: str = "", unit: str = "", horizontal: bool = True,
             color: str | None = None, height: int | None = None, top: int | None = None) -> dict:
    """Bars of a labelled Series (index: Chinese names), largest first (on top), the value written
    on each bar and on hover with its unit."""
    values = values.dropna()
    if top:
        values = values.sort_values(ascending=False).head(top)
    names = [str(i) for i in values.index]
    text = [format_number(v) for v in values.to_numpy()]
    suffix = f" {unit}" if unit else ""
    if height is None:
        height = max(240, 28 * len(values) + 90) if horizontal else 400
    fig = spec(title=title, height=height)
    lay = fig["layout"]
    bar = {"type": "bar", "text": text, "textposition": "outside", "cliponaxis": False,
           "marker": {"color": color or theme.COLORS["primary"]},
           "hovertemplate": f"%{{{'y' if horizontal else 'x'}}}：%{{{'x' if horizontal else 'y'}:,}}{suffix}<extra></extra>"}
    if horizontal:
        fig["data"].append({**bar, "x": _list(values), "y": names, "orientation": "h"})
        lay["yaxis"] = {**lay["yaxis"], "autorange": "reversed", "gridcolor": "rgba(0,0,0,0)", "automargin": True}
        lay["yaxis"].pop("rangemode", None)
        lay["xaxis"] = {**lay["xaxis"], "title": {"text": unit}, "rangemode": "tozero"}
    else:
        fig["data"].append({**bar, "x": names, "y": _list(values)})
        lay["yaxis"] = {**lay["yaxis"], "title": {"text": unit}}
    return fig


def line_figure(frame: pd.DataFrame, **kw):
    """`line_spec` as a plotly Figure."""
    import plotly.graph_objects as go

    return go.Figure(line_spec(frame, **kw))


def bar_figure(values: pd.Series, **kw):
    """`bar_spec` as a plotly Figure."""
    import plotly.graph_objects as go

    return go.Figure(bar_spec(values, **kw))


def interactive_line(frame: pd.DataFrame, **kw):
    """`line_spec` as an `interactive` widget."""
    return interactive(line_spec(frame, **kw))


def interactive_bars(values: pd.Series, **kw):
    """`bar_spec` as an `interactive` widget."""
    return interactive(bar_spec(values, **kw))


def _esc_plotly(text) -> str:
    """Text for a hovertemplate: its <…> and %{…} taken literally."""
    from workbench.ui.tables import esc

    return esc(str(text)).replace("%{", "%\u200b{")


def warm_up_interactive() -> None:
    """Import plotly and build one figure's JSON (preheated kernels, ahead of the request)."""
    import plotly.graph_objects  # noqa: F401 - the import, ahead of the request

    plotly_bundle(bar_spec(pd.Series({"预热": 1}), title="预热"))


__all__ = ["chart_style", "new_figure", "set_title", "warm_up", "png", "chart", "bar_chart", "line_chart",
           "PLOTLY_MIME", "TRACES", "plotly_bundle", "set_figure", "interactive", "spec", "figure", "line_spec", "bar_spec",
           "line_figure", "bar_figure",
           "interactive_line", "interactive_bars", "warm_up_interactive"]
