"""明厨亮灶 registers what it brings to the spine (workbench.registry)."""
from __future__ import annotations

from pathlib import Path

from workbench.registry import Department

HERE = Path(__file__).parent


def _load_violations(conn, ds, frame):
    """Ingest of canteen_violations: rows, their rectification cases, a reported 整改状态
    (cases.sync) and the alerts of critical ones (workbench.canteen.rectification)."""
    from workbench.canteen.rectification import load_violations

    return load_violations(conn, ds, frame)


DEPARTMENT = Department(
    name="canteen",
    label="明厨亮灶",
    agency="市场监管局",
    loaders={"canteen_violations": _load_violations},
    case_types=HERE / "case_types.yaml",
    alert_categories=("明厨亮灶严重违规", "摄像头离线"),
    cli="workbench.canteen.cli:canteen",
    dashboard="canteen.ipynb",
    linkage=HERE / "linkage.yaml",
    retention="workbench.canteen.evidence:sweep",   # kitchen evidence past its period (workbench retention)
)
