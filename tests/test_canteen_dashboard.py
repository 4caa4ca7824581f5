"""The 明厨亮灶 dashboard in a real browser: a violation the camera pipeline wrote shows with
its snapshot, and changing its case status on the page writes the change (and its history)
to the hub."""
from __future__ import annotations

import datetime as dt

import cv2
import numpy as np
import pandas as pd
import pytest

from workbench import cases, config
from workbench.canteen.rectification import load_violations
from workbench.store import hub
from workbench.store.ingest import insert_new
from workbench.store.schema import DATASETS
from workbench.ui import server

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NOTEBOOK = config.ROOT / "dashboards" / "canteen.ipynb"


@pytest.fixture(scope="module")
def canteen_hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("canteen-dash")
    env = {"WORKBENCH_DB_URL": f"sqlite:///{root / 'city.db'}", "WORKBENCH_DATA_DIR": str(root / "data")}
    eng = hub.engine(env["WORKBENCH_DB_URL"])
    snap = "evidence/ST-HT-001-C1/2026-11-26/AI20261126100002-ST-HT-001-C1-HAT.jpg"
    (root / "data" / snap).parent.mkdir(parents=True)
    img = np.full((360, 640, 3), 200, np.uint8)
    cv2.rectangle(img, (100, 80), (220, 330), (40, 40, 220), 3)
    cv2.imwrite(str(root / "data" / snap), img)
    with eng.begin() as conn:
        insert_new(conn, DATASETS["canteens"], pd.DataFrame([{
            "canteen_id": "ST-HT-001", "name": "月塘小学食堂", "school_type": "小学", "district": "荷塘区",
            "staff_hours": "06:30-13:30,15:30-17:30"}]))
        insert_new(conn, DATASETS["cameras"], pd.DataFrame([{"camera_id": "ST-HT-001-C1", "canteen_id": "ST-HT-001"}]))
        load_violations(conn, DATASETS["canteen_violations"], pd.DataFrame([{
            "violation_id": "AI20261126100002-ST-HT-001-C1-HAT", "ts": dt.datetime(2026, 11, 26, 2, 0, 2),
            "ts_end": dt.datetime(2026, 11, 26, 2, 1, 0), "camera_id": "ST-HT-001-C1", "canteen_id": "ST-HT-001",
            "district": "荷塘区", "violation_class": "未戴厨师帽", "severity": "warning", "score": 0.82,
            "snapshot": snap, "source": "明厨亮灶AI"}]))  # opens its rectification case
    hub.dispose(env["WORKBENCH_DB_URL"])
    return env


def test_case_status_changed_on_the_page_is_written_to_the_hub(canteen_hub, tmp_path):
    pytest.importorskip("playwright.sync_api")
    import os

    from workbench.ui.browser import chromium, render

    log = open(tmp_path / "voila.log", "w", encoding="utf-8")
    srv = server.start(port=server.free_port(), env={**os.environ, **canteen_hub}, show_tracebacks=True, log=log)
    try:
        srv.wait_ready(timeout=180)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1440, "height": 900}, locale="zh-CN")
            result = render(page, srv.url(NOTEBOOK.name), timeout=180)
            assert not result.errors + result.console_errors, result.errors + result.console_errors
            assert "月塘小学食堂" in result.text and "未戴厨师帽" in result.text
            assert page.locator(".wb-cv-feed img.wb-cv-img").count() == 1  # the snapshot is shown
            editor = page.locator(".wb-cv-editor")
            editor.locator("input[type=text]").first.fill("荷塘区市场监管局")
            editor.locator("button", has_text="提交").click()
            page.wait_for_function("() => document.body.innerText.includes('已保存')", timeout=30_000)
            assert "待处理 → 已通知（荷塘区市场监管局）" in page.locator(".wb-cv-editor").inner_text()
    finally:
        srv.stop()
        log.close()
    eng = hub.engine(canteen_hub["WORKBENCH_DB_URL"])
    try:
        assert hub.read("cases", eng=eng).iloc[0]["status"] == "已通知"
        h = cases.history("AI20261126100002-ST-HT-001-C1-HAT", eng=eng)
        assert list(h["status"]) == ["待处理", "已通知"] and h.iloc[-1]["actor"] == "荷塘区市场监管局"
    finally:
        hub.dispose(canteen_hub["WORKBENCH_DB_URL"])
