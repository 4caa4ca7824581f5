"""Shared fixtures: a real hub on SQLite and, where reachable, on PostgreSQL."""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from workbench.store import hub

PG_URL = os.environ.get("WORKBENCH_TEST_PG_URL")


def _pg_unreachable() -> str | None:
    if not PG_URL:
        return "WORKBENCH_TEST_PG_URL is not set"
    try:
        eng = sa.create_engine(PG_URL)
        with eng.connect():
            pass
        eng.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means: no PostgreSQL here
        return f"PostgreSQL at WORKBENCH_TEST_PG_URL unreachable: {type(exc).__name__}"
    return None


@pytest.fixture(scope="session")
def pg_skip_reason():
    return _pg_unreachable()


@pytest.fixture
def pg_url(pg_skip_reason):
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if pg_skip_reason:
        pytest.skip(pg_skip_reason)
    schema = f"wb_test_{uuid.uuid4().hex[:10]}"
    url = hub.pg_schema_url(PG_URL, schema)
    yield url
    hub.dispose(url)
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def hub_engine(request, tmp_path, monkeypatch):
    """A migrated, empty hub on each backend; WORKBENCH_* point at it and at tmp_path."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'city.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    monkeypatch.setenv("WORKBENCH_DB_URL", url)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    eng = hub.engine(url)
    yield eng
    hub.dispose(url)


@pytest.fixture
def sqlite_hub(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'city.db'}"
    monkeypatch.setenv("WORKBENCH_DB_URL", url)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    eng = hub.engine(url)
    yield eng
    hub.dispose(url)



@pytest.fixture(scope="module")
def chromium():
    """Headless Debian Chromium through Playwright (workbench.ui.browser), one per test module."""
    pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra: pip install -e .[test]")
    from workbench.ui.browser import chromium as launch

    with launch() as browser:
        yield browser


@contextlib.contextmanager
def _voila(env: dict, name: str, **kw):
    """Voilà on a free port with the hub of `env` (WORKBENCH_* variables), its log in
    tests/output/voila-NAME.log; yields the server once its kernels are preheated, stops it after.
    `kw` goes to workbench.ui.server.start (folder, preheat, migrate …)."""
    from workbench.ui import server

    out = Path(__file__).parent / "output"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"voila-{name}.log", "w", encoding="utf-8") as log:
        srv = server.start(port=server.free_port(), env={**os.environ, **env}, show_tracebacks=True, log=log, **kw)
        try:
            srv.wait_ready(timeout=180)
            yield srv
        finally:
            srv.stop()


@pytest.fixture(scope="session")
def voila():
    """`with voila(env, "name", **start_kw) as srv:` — the dashboards served for a browser test."""
    return _voila
