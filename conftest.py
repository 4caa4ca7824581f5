"""Root fixtures, shared by tests/ and by nbval over notebooks/: a small sample city."""
from __future__ import annotations

import os

import pytest

from workbench.store import hub


SAMPLE_CITY = {"days": 21, "seed": 3, "end": "2026-01-20"}  # a short city that holds a January cold wave


def build_sample_city(root) -> dict[str, str]:
    """A small sample city under `root`; returns the WORKBENCH_* variables that point at it."""
    import datetime as dt
    from pathlib import Path

    from workbench.synth import synth_city

    root = Path(root)
    env = {"WORKBENCH_DB_URL": f"sqlite:///{root / 'city.db'}", "WORKBENCH_DATA_DIR": str(root / "data"),
           "WORKBENCH_REPORTS_OUT": str(root / "reports")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        synth_city(days=SAMPLE_CITY["days"], seed=SAMPLE_CITY["seed"],
                   end=dt.date.fromisoformat(SAMPLE_CITY["end"]), progress=False)
    finally:
        hub.dispose(env["WORKBENCH_DB_URL"])
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return env


@pytest.fixture(scope="session")
def sample_city_env(tmp_path_factory):
    """WORKBENCH_* variables of a sample city built once per test session."""
    return build_sample_city(tmp_path_factory.mktemp("sample-city"))


@pytest.fixture
def sample_city(sample_city_env, monkeypatch):
    """The session's sample city as the configured hub of this test."""
    for k, v in sample_city_env.items():
        monkeypatch.setenv(k, v)
    yield sample_city_env
    hub.dispose(sample_city_env["WORKBENCH_DB_URL"])


def pytest_configure(config):
    """Tests never touch the user's hub (data/city.db): by default they see an empty one in a temp folder."""
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="wb-tests-"))
    os.environ["WORKBENCH_DB_URL"] = f"sqlite:///{root / 'city.db'}"
    os.environ["WORKBENCH_DATA_DIR"] = str(root / "data")
    os.environ["WORKBENCH_REPORTS_OUT"] = str(root / "reports")


def pytest_collection_modifyitems(session, config, items):
    """nbval's kernels inherit our environment: point them at a sample city before they start."""
    if any(item.nodeid.endswith(".ipynb") or ".ipynb::" in item.nodeid for item in items):
        import tempfile
        from pathlib import Path

        os.environ.update(build_sample_city(Path(tempfile.mkdtemp(prefix="nbval-city-"))))
