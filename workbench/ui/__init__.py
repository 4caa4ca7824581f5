"""Shared dashboard pieces: theme, labels, KPI cards, Chinese tables, charts, page layout.

Thin by design: no database access except through workbench.store.hub, no analysis logic.
Everything a person reads is Simplified Chinese; times are shown in Beijing time.

    from workbench import ui
    ui.setup()                      # CSS (outside the Voilà template) + chart style
    params = ui.query_params()      # a preheated Voilà kernel waits here for the request
    ui.header("数据中台", "……", updated=ui.utc_now())
"""
from __future__ import annotations

from workbench.ui.cards import KPI, kpi_card, kpi_html, kpi_row
from workbench.ui.charts import bar_chart, chart, chart_style, line_chart, new_figure, png
from workbench.ui.labels import (DEPARTMENTS, column_label, dataset_department, dataset_label,
                                 dataset_options, department_label, value_label)
from workbench.ui.layout import (Gate, empty, error, footer, grid, guarded, header, html, lock, note, open_page,
                                 read_only_reason, refused_html, section, stack, unavailable)
from workbench.ui.request import query_params, wait_for_request
from workbench.ui.tables import (Html, age_text, badge, empty_html, format_bytes, format_date, format_number,
                                 format_time, percent, table, table_html, to_local, utc_now)
from workbench.ui.theme import COLORS, PALETTE, css, style, use_chart_style


def setup(warm: bool = True):
    """Call first in a dashboard: the chart style for matplotlib, matplotlib and the CJK font
    loaded ahead of time (`warm`), and the CSS as an output (needed where the page is not
    served with the `city` Voilà template; harmless where it is)."""
    import ipywidgets  # noqa: F401  (loaded before the request in preheated kernels)

    from workbench.ui.charts import warm_up

    use_chart_style()
    if warm:
        warm_up()
    return style()


__all__ = [
    "setup", "KPI", "kpi_card", "kpi_html", "kpi_row", "bar_chart", "chart", "chart_style", "line_chart",
    "new_figure", "png", "DEPARTMENTS", "column_label", "dataset_department", "dataset_label",
    "dataset_options", "department_label", "value_label", "empty", "error", "footer", "grid", "header", "html",
    "note", "section", "stack", "Gate", "guarded", "lock", "open_page", "read_only_reason", "refused_html",
    "unavailable", "query_params", "wait_for_request", "Html", "age_text", "badge",
    "empty_html", "format_bytes", "format_date", "format_number", "format_time", "percent", "table",
    "table_html", "to_local", "utc_now", "COLORS", "PALETTE", "css", "style", "use_chart_style",
]
