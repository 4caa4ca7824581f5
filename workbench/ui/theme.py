"""The workbench's look: colours, the page CSS, and a matplotlib style that shows Chinese.

The CSS lives in one file, the Voilà template's `static/city.css`: the `city` template
links it in the page head, and `style()` inlines it for notebooks opened elsewhere
(JupyterLab, nbconvert), so a dashboard looks the same either way.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

# Voilà template folder, added to JUPYTER_PATH by workbench.ui.server.
JUPYTER_DIR = Path(__file__).with_name("jupyter")
TEMPLATE = "city"
CSS_FILE = JUPYTER_DIR / "voila" / "templates" / TEMPLATE / "static" / "city.css"

COLORS = {
    "primary": "#1d5fa8",
    "primary_dark": "#123f73",
    "accent": "#16a3a3",
    "ok": "#2e9d5b",
    "warn": "#d98a00",
    "bad": "#d1372c",
    "muted": "#7a8594",
    "text": "#1f2937",
    "grid": "#e3e8ef",
    "bg": "#f3f5f9",
}
# Series colours for charts, in order (blue first: the city's colour).
PALETTE = ("#1d5fa8", "#16a3a3", "#f0a030", "#7b61c9", "#d1372c", "#2e9d5b", "#5a8fd6", "#b4835a",
           "#e36fa6", "#7a8594")

# Chinese fonts, best first; matplotlib falls back glyph by glyph along this list.
CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC", "SimHei")


@lru_cache(maxsize=1)
def css() -> str:
    """The page CSS, as text."""
    return CSS_FILE.read_text(encoding="utf-8")


def style():
    """An HTML object that applies the workbench CSS where the `city` template is not used.

    Display it once at the top of a notebook; under the `city` template it is harmless.
    """
    from IPython.display import HTML

    return HTML(f"<style>{css()}</style>")


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The first Chinese font matplotlib can find, or None (charts would show boxes)."""
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in have), None)


def chart_rc() -> dict:
    """matplotlib rcParams of the workbench chart style."""
    families = [f for f in CJK_FONTS if f != cjk_font()]
    families = ([cjk_font()] if cjk_font() else []) + families + ["DejaVu Sans"]
    return {
        "font.family": "sans-serif",
        "font.sans-serif": families,
        "axes.unicode_minus": False,  # CJK fonts lack U+2212; use '-'
        "font.size": 10.5,
        "axes.titlesize": 12.5,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "axes.titlepad": 10,
        "axes.labelsize": 10.5,
        "axes.labelcolor": COLORS["text"],
        "axes.edgecolor": "#c5ccd6",
        "axes.linewidth": 0.8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "axes.axisbelow": True,
        "axes.prop_cycle": __import__("cycler").cycler(color=list(PALETTE)),
        "grid.color": COLORS["grid"],
        "grid.linewidth": 0.8,
        "xtick.color": "#4b5563",
        "ytick.color": "#4b5563",
        "legend.frameon": False,
        "legend.fontsize": 9.5,
        "figure.facecolor": "white",
        "figure.dpi": 100,
        "savefig.dpi": 144,
        "savefig.bbox": "tight",
        "savefig.facecolor": "white",
    }


def use_chart_style() -> None:
    """Apply the workbench chart style to matplotlib globally (analyst notebooks)."""
    import matplotlib

    matplotlib.rcParams.update(chart_rc())


# ------------------------------------------------------------------ interactive charts (plotly)

# Tones of the KPI cards and badges as colours (points on maps, series that mean good/bad).
TONE_COLORS = {"": COLORS["primary"], "info": COLORS["primary"], "ok": COLORS["ok"], "warn": COLORS["warn"],
               "bad": COLORS["bad"], "muted": "#9aa5b4"}
# One blue scale for counts on maps (light = few), the overview's shades.
SEQUENTIAL = ("#eef3fa", "#cfe0f3", "#9ec2e6", "#5a8fd6", "#1d5fa8", "#123f73")
PLOTLY_FONT = ", ".join(f'"{f}"' for f in CJK_FONTS) + ", sans-serif"

# plotly.js's own words (mode bar, dates) in Chinese, passed with each figure (config.locales),
# so nothing has to be registered or fetched.
PLOTLY_LOCALE = {
    "dictionary": {
        "Zoom": "缩放", "Pan": "平移", "Zoom in": "放大", "Zoom out": "缩小", "Autoscale": "自动缩放",
        "Reset axes": "复位", "Reset view": "复位", "Download plot as a png": "下载为图片",
        "Download plot": "下载为图片", "Box Select": "框选", "Lasso Select": "套索选择",
        "Toggle Spike Lines": "显示/隐藏参考线", "Show closest data on hover": "悬停显示最近的数据",
        "Compare data on hover": "悬停比较数据", "Produced with Plotly.js": "由 Plotly.js 绘制",
        "Double-click to zoom back out": "双击恢复", "Click to enter Colorscale title": "",
        "Click to enter Plot title": "", "Click to enter X axis title": "", "Click to enter Y axis title": "",
        "trace": "系列",
    },
    "format": {
        "days": ["星期日", "星期一", "星期二", "星期三", "星期四", "星期五", "星期六"],
        "shortDays": ["周日", "周一", "周二", "周三", "周四", "周五", "周六"],
        "months": [f"{m}月" for m in range(1, 13)],
        "shortMonths": [f"{m}月" for m in range(1, 13)],
        "date": "%Y-%m-%d", "year": "%Y年", "month": "%Y年%-m月", "dayMonth": "%-m月%-d日",
        "dayMonthYear": "%Y年%-m月%-d日",
        "decimal": ".", "thousands": ",", "grouping": [3], "currency": ["¥", ""],
    },
}


def plotly_config(**extra) -> dict:
    """plotly.js config for the workbench: Chinese words, the mode bar without select tools and
    the plotly logo, the chart following its column's width."""
    config = {"locale": "zh-CN", "locales": {"zh-CN": PLOTLY_LOCALE}, "displaylogo": False,
              "responsive": False, "scrollZoom": False,
              "modeBarButtonsToRemove": ["select2d", "lasso2d", "toggleSpikelines", "hoverClosestCartesian",
                                         "hoverCompareCartesian"],
              "toImageButtonOptions": {"format": "png", "scale": 2}}
    config.update(extra)
    return config


def plotly_layout(**extra) -> dict:
    """Layout defaults of a workbench chart (fonts that show Chinese, the city's colours, white)."""
    out = {
        "font": {"family": PLOTLY_FONT, "size": 13, "color": COLORS["text"]},
        "title": {"x": 0.01, "xanchor": "left", "font": {"size": 15, "color": COLORS["text"]}},
        "colorway": list(PALETTE),
        "paper_bgcolor": "white", "plot_bgcolor": "white",
        "margin": {"l": 56, "r": 20, "t": 48, "b": 44},
        "hoverlabel": {"font": {"family": PLOTLY_FONT, "size": 13}, "align": "left"},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        "xaxis": {"gridcolor": COLORS["grid"], "linecolor": "#c5ccd6", "zeroline": False},
        "yaxis": {"gridcolor": COLORS["grid"], "linecolor": "#c5ccd6", "zeroline": False, "rangemode": "tozero"},
        "separators": ".,",
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


__all__ = ["COLORS", "PALETTE", "CJK_FONTS", "TEMPLATE", "JUPYTER_DIR", "css", "style", "cjk_font",
           "chart_rc", "use_chart_style", "TONE_COLORS", "SEQUENTIAL", "PLOTLY_FONT", "PLOTLY_LOCALE",
           "plotly_config", "plotly_layout"]
