"""Where the workbench keeps its files, and which hub it talks to."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TZ = "Asia/Shanghai"


def data_dir() -> Path:
    """The data folder: $WORKBENCH_DATA_DIR, else data/ in the project."""
    return Path(os.environ.get("WORKBENCH_DATA_DIR") or ROOT / "data")


def db_url() -> str:
    """The hub's URL: $WORKBENCH_DB_URL, else the embedded SQLite file data/city.db."""
    return os.environ.get("WORKBENCH_DB_URL") or f"sqlite:///{data_dir() / 'city.db'}"


def reports_out_dir() -> Path:
    """Where rendered reports go: $WORKBENCH_REPORTS_OUT, else reports/out/."""
    return Path(os.environ.get("WORKBENCH_REPORTS_OUT") or ROOT / "reports" / "out")
