"""The 明厨亮灶 dashboard in a real browser, signed in: a violation the camera pipeline wrote
shows with its snapshot (served by the application, by the violation's id), changing its case
status on the page writes the change (and its history) to the hub as the signed-in staff user,
and an analyst sees the case controls disabled with the reason."""
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


def test_a_staff_user_moves_the_case_under_their_name_and_an_analyst_sees_it_locked(
        canteen_hub, voila, chromium, hub_user):
    from workbench.ui.browser import render, sign_in

    with voila(canteen_hub, "canteen-case", user="zhangsan", role="staff", department="市场监管局") as srv:
        page = chromium.new_page(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        result = render(page, srv.url(NOTEBOOK.name), timeout=180)
        assert not result.errors + result.console_errors, result.errors + result.console_errors
        assert "月塘小学食堂" in result.text and "未戴厨师帽" in result.text
        assert "当前用户：zhangsan · 部门人员 · 市场监管局" in result.text
        img = page.locator(".wb-cv-feed img.wb-cv-img")
        assert img.count() == 1 and img.get_attribute("src").endswith(
            "/workbench/evidence/AI20261126100002-ST-HT-001-C1-HAT")   # by id, not the stored path
        page.wait_for_function("() => { const i = document.querySelector('.wb-cv-feed img.wb-cv-img');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
        assert page.locator(".wb-cv-original").count() == 0   # the unblurred frame: the reviewer's only
        editor = page.locator(".wb-cv-editor")
        assert "操作人" not in editor.inner_text()              # no actor box: the identity acts
        editor.locator("button", has_text="提交").click()
        page.wait_for_function("() => document.body.innerText.includes('已保存')", timeout=30_000)
        assert "待处理 → 已通知（zhangsan）" in page.locator(".wb-cv-editor").inner_text()
        page.close()

        hub_user(canteen_hub, "zhao", "analyst", name="赵分析")
        ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1440, "height": 900})
        try:
            page = ctx.new_page()
            sign_in(page, srv.base_url, "zhao", srv.password, next_url=srv.url(NOTEBOOK.name))
            result = render(page, srv.url(NOTEBOOK.name), timeout=180)
            assert not result.errors + result.console_errors, result.errors + result.console_errors
            editor = page.locator(".wb-cv-editor")
            assert "数据分析员只能查看，不能办理整改案件" in editor.inner_text()
            assert editor.locator("button", has_text="提交").is_disabled()
            # the admins' view on the hub page: refused to the analyst …
            result = render(page, srv.url("hub.ipynb"), timeout=180)
            assert not result.errors + result.console_errors, result.errors + result.console_errors
            assert "仅限系统管理员查看；当前用户为数据分析员" in result.text and "案件流转" not in result.text
        finally:
            ctx.close()
        # … and the admin reads the step in the audit log, named
        hub_user(canteen_hub, "root1", "admin", name="管理员")
        ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1440, "height": 900})
        try:
            page = ctx.new_page()
            sign_in(page, srv.base_url, "root1", srv.password, next_url=srv.url("hub.ipynb"))
            result = render(page, srv.url("hub.ipynb"), timeout=180)
            assert not result.errors + result.console_errors, result.errors + result.console_errors
            admin = page.locator(".wb-admin").inner_text()
            assert "审计日志" in admin and "案件流转" in admin and "zhangsan" in admin
            assert "AI20261126100002-ST-HT-001-C1-HAT" in admin and "用户与角色" in admin and "数据分析员" in admin
        finally:
            ctx.close()
    eng = hub.engine(canteen_hub["WORKBENCH_DB_URL"])
    try:
        assert hub.read("cases", eng=eng).iloc[0]["status"] == "已通知"
        h = cases.history("AI20261126100002-ST-HT-001-C1-HAT", eng=eng)
        assert list(h["status"]) == ["待处理", "已通知"] and h.iloc[-1]["actor"] == "zhangsan"
        from workbench import audit

        assert audit.frame(eng, action="case.step").iloc[0]["actor"] == "zhangsan"
    finally:
        hub.dispose(canteen_hub["WORKBENCH_DB_URL"])


@pytest.fixture(scope="module")
def sample_city(tmp_path_factory):
    """Two weeks of the seeded sample city (ending yesterday) with its snapshots, and the health
    of a real camera node written by the cluster's own writer."""
    import os

    from canteen_nodes import real_node_health
    from workbench.synth import synth_city

    root = tmp_path_factory.mktemp("canteen-city")
    env = {"WORKBENCH_DB_URL": f"sqlite:///{root / 'city.db'}", "WORKBENCH_DATA_DIR": str(root / "data")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        eng = hub.engine(env["WORKBENCH_DB_URL"])
        res = synth_city(days=14, seed=7, out_dir=root / "synth", eng=eng, progress=False)
        assert res.rows["canteen_violations"] > 8   # and their snapshots (write_city: write_snapshots)
        _, node = real_node_health(root / "clip", write=False)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    hub.dispose(env["WORKBENCH_DB_URL"])
    return {"env": env, "node": node, "root": root}


def test_the_sample_citys_feed_shows_its_snapshots_and_the_cluster_section(sample_city, voila, chromium):
    """Signed in, the feed's images of the sample city load (naturalWidth > 0, served by id with
    faces blurred); a violation whose file is then deleted says 文件缺失 after 刷新; the cluster
    section shows the node's cameras, frames/s, lag and last frame."""
    import os

    from workbench.canteen import cluster
    from workbench.canteen.evidence import find_snapshot
    from workbench.ui.browser import render

    env = sample_city["env"]
    with voila(env, "canteen-city") as srv:
        # the coordinator's writer, with the node's real status, just before the visit (a 60 s round)
        saved = os.environ.get("WORKBENCH_DATA_DIR")
        os.environ["WORKBENCH_DATA_DIR"] = env["WORKBENCH_DATA_DIR"]
        try:
            cams, status, names = sample_city["node"]
            cluster.write_health(cluster.health_report(cams, status, node_names=names, poll_s=60))
        finally:
            os.environ.pop("WORKBENCH_DATA_DIR") if saved is None else os.environ.__setitem__("WORKBENCH_DATA_DIR", saved)
        page = chromium.new_page(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
        result = render(page, srv.url(NOTEBOOK.name), timeout=240)
        assert not result.errors + result.console_errors, result.errors + result.console_errors
        feed = page.locator(".wb-cv-feed").first
        cards = feed.locator(".wb-cv-card")
        imgs = feed.locator("img.wb-cv-img")
        assert cards.count() == 8 and imgs.count() == 8, feed.inner_text()
        assert "无抓拍图" not in feed.inner_text()
        page.wait_for_function(
            "() => { const a = [...document.querySelectorAll('.wb-cv-feed img.wb-cv-img')];"
            " return a.length == 8 && a.every(i => i.complete && i.naturalWidth > 0); }", timeout=60_000)
        assert page.evaluate("() => [...document.querySelectorAll('.wb-cv-feed img.wb-cv-img')]"
                             ".every(i => i.naturalWidth == 640 && i.naturalHeight == 360)")
        # the cluster's health
        text = page.locator(".wb-cl-live").inner_text()
        assert "集群运行中：1 个工作节点，摄像头 1 路" in text, text
        assert "127.0.0.1:61001" in text and "K0" in text and "运行中" in text and "帧/秒" in text
        assert "最后一帧" in text and "最大延迟" in text

        # a snapshot file gone: its card says so, marked, after 刷新
        first = cards.first.inner_text()
        vid = next(line for line in first.splitlines() if line.startswith("MC"))
        eng = hub.engine(env["WORKBENCH_DB_URL"])
        try:
            row = hub.read("canteen_violations", where={"violation_id": vid}, eng=eng).iloc[0]
        finally:
            hub.dispose(env["WORKBENCH_DB_URL"])
        os.environ["WORKBENCH_DATA_DIR"] = env["WORKBENCH_DATA_DIR"]
        try:
            path = find_snapshot(vid, row["camera_id"], row["ts"])
        finally:
            os.environ.pop("WORKBENCH_DATA_DIR") if saved is None else os.environ.__setitem__("WORKBENCH_DATA_DIR", saved)
        assert path is not None
        path.unlink()
        page.locator(".wb-controls button", has_text="刷新").click()
        page.wait_for_function("() => document.querySelector('.wb-cv-feed').innerText.includes('文件缺失')",
                               timeout=60_000)
        missing = page.locator(".wb-cv-card", has_text=vid)
        assert "无抓拍图：文件缺失" in missing.inner_text() and missing.locator(".wb-cv-missing").count() == 1
        assert page.locator(".wb-cv-feed img.wb-cv-img").count() == 7
        page.close()
