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


TEST_PASSWORD = "test-pass-1234"   # the password of every user the voila fixture creates
TEST_KERNELS_PER_USER = 64         # the voila fixture's cap (unless a test passes security=)


def make_user(env: dict, username: str, role: str = "leader", *, department: str | None = None,
              district: str | None = None, name: str | None = None, password: str = TEST_PASSWORD):
    """A hub user in the hub of `env` (WORKBENCH_DB_URL), created once (the same name again keeps
    it and sets its role, department, district and password). Returns its Principal."""
    from workbench import users
    from workbench.ui.server import hub_env

    eng = hub.engine(hub_env({**os.environ, **env})["WORKBENCH_DB_URL"])
    if users.principal(username, eng, active_only=False) is None:
        return users.create(username, password, role=role, name=name or username, department=department,
                            district=district, by="测试", eng=eng)
    users.update(username, role=role, department=department, district=district, active=True, by="测试", eng=eng)
    users.set_password(username, password, by="测试", eng=eng)
    return users.principal(username, eng)


@pytest.fixture(scope="session")
def hub_user():
    """`hub_user(env, "zhang", "staff", department="市场监管局")`: a user to sign in as (TEST_PASSWORD)."""
    return make_user


@contextlib.contextmanager
def _voila(env: dict, name: str, *, user: str | None = "tester", role: str = "leader",
           department: str | None = None, district: str | None = None, **kw):
    """Voilà on a free port with the hub of `env` (WORKBENCH_* variables), its log in
    tests/output/voila-NAME.log; yields the server once its kernels are preheated, stops it after.

    Sign-in is on, as in production: the hub gets the user `user` (role `role`, …; password
    TEST_PASSWORD), `srv.user`/`srv.password` name it, and workbench.ui.browser.render signs in
    as it when a page lands on /login (browser.remember). `user=None`: no user, no automatic
    sign-in. `kw` goes to workbench.ui.server.start (folder, preheat, migrate, security …)."""
    from workbench.ui import browser, server

    # browser tests leave their pages open (each holds its kernel): the per-user cap is tested in
    # tests/test_signin.py, not here
    kw.setdefault("security", server.Security(kernels_per_user=TEST_KERNELS_PER_USER))
    out = Path(__file__).parent / "output"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"voila-{name}.log", "w", encoding="utf-8") as log:
        srv = server.start(port=server.free_port(), env={**os.environ, **env}, show_tracebacks=True, log=log, **kw)
        srv.user, srv.password = None, TEST_PASSWORD
        try:
            if user:
                try:
                    make_user(srv.env, user, role, department=department, district=district)
                    srv.user = user
                    browser.remember(srv.base_url, user, TEST_PASSWORD)
                except Exception:  # noqa: BLE001 - a hub that cannot be reached: nobody can sign in
                    if kw.get("migrate", True):
                        raise
            srv.wait_ready(timeout=180)
            yield srv
        finally:
            browser.remember(srv.base_url, None)
            srv.stop()


@pytest.fixture(scope="session")
def voila():
    """`with voila(env, "name", **start_kw) as srv:` — the dashboards served for a browser test,
    signed in as srv.user (see _voila)."""
    return _voila
