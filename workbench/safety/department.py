"""城市安全 registers what it brings to the spine (workbench.registry)."""
from __future__ import annotations

from pathlib import Path

from workbench.registry import Department

HERE = Path(__file__).parent


def _load_hazards(conn, ds, frame):
    """Ingest of hazards: the rows, then each hazard's rectification case opened and moved by
    its own dates (workbench.safety.hazards)."""
    from workbench.safety.hazards import load_hazards

    return load_hazards(conn, ds, frame)


class _Weather:
    """Loader of weather files (workbench.safety.intake): daily records recognised and labelled."""

    def prepare(self, frame, path, ctx=None):
        from workbench.safety.intake import LOADER

        return LOADER.prepare(frame, path, ctx)

    def __call__(self, conn, ds, values, *, present=None, file_sha256=None, corrections=None):
        from workbench.safety.intake import LOADER

        return LOADER(conn, ds, values, present=present, file_sha256=file_sha256, corrections=corrections)


def _cold_weather_tasks(conn, alert_rows):
    """Linkage resolver: inspection-task case rows (with `steps`) for cold-weather warnings."""
    from workbench.safety.tasks import cold_weather_tasks

    return cold_weather_tasks(conn, alert_rows)


DEPARTMENT = Department(
    name="safety",
    label="城市安全",
    agency="应急管理局",
    loaders={"hazards": _load_hazards, "weather": _Weather()},
    case_types=HERE / "case_types.yaml",
    alert_categories=("寒潮", "道路结冰", "暴雪", "重大隐患逾期"),
    cli="workbench.safety.cli:safety",
    dashboard="safety.ipynb",
    linkage=HERE / "linkage.yaml",
    analyse="workbench.safety.warnings:run_engine",
    resolvers={"cold_weather_tasks": _cold_weather_tasks},
)
