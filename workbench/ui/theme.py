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


__all__ = ["COLORS", "PALETTE", "CJK_FONTS", "TEMPLATE", "JUPYTER_DIR", "css", "style", "cjk_font",
           "chart_rc", "use_chart_style"]
