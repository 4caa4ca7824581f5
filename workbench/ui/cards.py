"""KPI cards: one number, a title and a note, as ipywidgets HTML."""
from __future__ import annotations

from dataclasses import dataclass

from workbench.ui.tables import DASH, esc, format_number

TONES = ("", "ok", "warn", "bad", "muted")


@dataclass(frozen=True)
class KPI:
    title: str
    value: object
    unit: str = ""
    note: str = ""
    tone: str = ""  # '' | ok | warn | bad | muted


def kpi_html(title: str, value, *, unit: str = "", note: str = "", tone: str = "") -> str:
    """One card as HTML; numbers get thousands separators, None shows as —."""
    if tone not in TONES:
        raise ValueError(f"tone must be one of {TONES}, not {tone!r}")
    text = DASH if value is None else (value if isinstance(value, str) else format_number(value))
    unit_html = f'<span class="wb-card-unit">{esc(unit)}</span>' if unit and value is not None else ""
    note_html = f'<div class="wb-card-note" title="{esc(note)}">{esc(note)}</div>' if note else ""
    cls = f"wb-card wb-{tone}" if tone else "wb-card"
    return (f'<div class="{cls}"><div class="wb-card-title">{esc(title)}</div>'
            f'<div class="wb-card-value">{esc(text)}{unit_html}</div>{note_html}</div>')


def kpi_card(title: str, value, *, unit: str = "", note: str = "", tone: str = ""):
    """One KPI card widget."""
    import ipywidgets as widgets

    w = widgets.HTML(kpi_html(title, value, unit=unit, note=note, tone=tone))
    w.add_class("wb-card-widget")
    return w


def kpi_row(cards):
    """Cards side by side, wrapping on narrow screens; accepts widgets or KPI records."""
    import ipywidgets as widgets

    items = [kpi_card(c.title, c.value, unit=c.unit, note=c.note, tone=c.tone) if isinstance(c, KPI) else c
             for c in cards]
    box = widgets.Box(items, layout=widgets.Layout(width="100%"))
    box.add_class("wb-cards")
    return box


__all__ = ["KPI", "kpi_html", "kpi_card", "kpi_row"]
