"""Charts with Chinese labels: matplotlib figures rendered to PNG in an ipywidgets Image.

The figures use matplotlib's object API (no pyplot state, nothing shown by accident), and
the workbench chart style (`theme.chart_rc`) is applied while a figure is built and drawn,
so Chinese text renders with the CJK font instead of boxes.
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


def warm_up() -> None:
    """Draw a tiny Chinese chart once, so matplotlib and the CJK font are loaded before a
    page is requested (preheated kernels run this ahead of time)."""
    with chart_style():
        fig, ax = new_figure(1.2, 0.8)
        ax.bar(["数据"], [1])
        set_title(fig, "预热")
        fig.savefig(io.BytesIO(), format="png", dpi=30)


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


__all__ = ["chart_style", "new_figure", "set_title", "warm_up", "png", "chart", "bar_chart", "line_chart"]
