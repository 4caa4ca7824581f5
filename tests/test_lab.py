"""`workbench lab`: the real JupyterLab in Chinese at notebooks/, behind a token; the analysts'
read-only SQL on both hubs (workbench.ui.lab)."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa

from workbench.ui import lab
from workbench.ui.server import free_port


@pytest.fixture(scope="module")
def running_lab(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lab")
    env_data = folder / "data"
    import os

    env = {**os.environ, "WORKBENCH_DATA_DIR": str(env_data), "WORKBENCH_DB_URL": f"sqlite:///{folder / 'city.db'}"}
    srv = lab.start("127.0.0.1", free_port(), env=env, log=folder / "jupyterlab.log")
    try:
        srv.wait_ready(timeout=240)
        yield srv
    finally:
        srv.stop()


def test_lab_in_chinese_at_notebooks(running_lab):
    # the default locale of the translation plugin is zh_CN (app settings overrides), the language pack is there
    plugin = json.loads(running_lab.get("/lab/api/settings/@jupyterlab/translation-extension:plugin"))
    assert plugin["schema"]["properties"]["locale"]["default"] == "zh_CN"
    packs = json.loads(running_lab.get("/lab/api/translations/"))["data"]
    assert "zh_CN" in packs
    # nothing fetched from the internet: no news, no update check
    note = json.loads(running_lab.get("/lab/api/settings/@jupyterlab/apputils-extension:notification"))
    assert note["schema"]["properties"]["fetchNews"]["default"] == "false"
    assert note["schema"]["properties"]["checkForUpdates"]["default"] is False
    # the file browser's root is notebooks/, with the 查询数据中台 notebook in it
    page = running_lab.get("/lab").decode("utf-8")
    cfg = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                               page, re.S).group(1))
    assert cfg["serverRoot"] == str(lab.ROOT)
    names = {c["name"] for c in json.loads(running_lab.get("/api/contents"))["content"]}
    assert "query_hub.ipynb" in names and "dashboards" not in names
    # the settings are the workbench's own (its data folder), not ~/.jupyter
    assert cfg["appSettingsDir"].startswith(running_lab.env["WORKBENCH_DATA_DIR"])
    assert cfg["userSettingsDir"].startswith(running_lab.env["WORKBENCH_DATA_DIR"])


def test_lab_draws_the_workbench_charts(running_lab):
    """The analysts' plotly charts (charts.plotly_bundle, our own mime type) have their renderer in
    the lab too: the workbench-charts labextension, served with plotly.js's cartesian bundle."""
    page = running_lab.get("/lab").decode("utf-8")
    cfg = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                               page, re.S).group(1))
    ext = {e["name"]: e for e in cfg["federated_extensions"]}
    assert ext["workbench-charts"]["mimeExtension"] == "./mimeExtension"
    entry = running_lab.get("/lab/extensions/workbench-charts/" + ext["workbench-charts"]["load"]).decode("utf-8")
    assert "application/vnd.workbench.plotly.v1+json" in entry
    assert len(running_lab.get("/lab/extensions/workbench-charts/static/plotly-cartesian-4.1.1.min.js")) > 1_000_000


def test_lab_needs_its_token(running_lab):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(running_lab.base_url + "/api/contents", timeout=10)
    assert err.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(running_lab.base_url + "/api/contents?token=" + "x" * 32, timeout=10)
    assert err.value.code == 403
    assert running_lab.url.endswith(f"/lab?token={running_lab.token}") and len(running_lab.token) >= 16


@pytest.mark.browser
def test_lab_menu_in_chinese(running_lab, chromium):
    page = chromium.new_page(viewport={"width": 1600, "height": 900})
    try:
        page.goto(running_lab.url, timeout=120_000)
        page.wait_for_selector("#jp-MainMenu .lm-MenuBar-itemLabel", timeout=120_000)
        labels = page.locator("#jp-MainMenu .lm-MenuBar-itemLabel").all_inner_texts()
        assert "文件" in labels and "编辑" in labels, labels
        assert "File" not in labels
    finally:
        page.close()


def test_lab_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(lab.LabError, match="本机地址"):
        lab.start("0.0.0.0", free_port())
    with pytest.raises(lab.LabError, match="不存在"):
        lab.start("127.0.0.1", free_port(), root=tmp_path / "nowhere")
    with pytest.raises(lab.LabError, match="令牌"):
        lab.start("127.0.0.1", free_port(), token="short")


def test_lab_checks_the_hub_user(sqlite_hub, tmp_path):
    from workbench import users

    users.create("fenxi", "pass-word-1234", role="analyst", name="分析员", by="测试", eng=sqlite_hub)
    with pytest.raises(lab.LabError, match="用户名或密码不正确"):
        lab.start("127.0.0.1", free_port(), user="fenxi", password="wrong-password")
    with pytest.raises(lab.LabError, match="没有启用的用户"):
        lab.start("127.0.0.1", free_port(), user="nobody")


def test_sql_reads_and_never_writes(hub_engine):
    eng = hub_engine
    got = lab.sql("SELECT :a + 1 AS n", {"a": 41}, eng=eng)
    assert got["n"].tolist() == [42]
    empty = lab.sql("SELECT district, count(*) AS n FROM city_events WHERE ts >= :since GROUP BY district",
                    {"since": "2026-01-01"}, eng=eng)
    assert list(empty.columns) == ["district", "n"] and empty.empty
    for bad in ("DELETE FROM city_events", "SELECT 1; DELETE FROM cases", "UPDATE cases SET status = 'x'"):
        with pytest.raises(lab.LabError, match="只能执行一条查询语句"):
            lab.sql(bad, eng=eng)
    # a write hidden in a query is refused by the database itself (read-only transaction / query_only)
    with pytest.raises(lab.LabError, match="查询未能执行"):
        lab.sql("WITH gone AS (DELETE FROM cases RETURNING case_id) SELECT count(*) FROM gone", eng=eng)
    with pytest.raises(lab.LabError, match="受保护"):
        lab.sql("SELECT * FROM personal_data", eng=eng)
    with pytest.raises(lab.LabError, match="受保护"):
        lab.sql("SELECT username, password_hash FROM users", eng=eng)
    with pytest.raises(lab.LabError, match="查询未能执行"):
        lab.sql("SELECT * FROM cases WHERE case_id = :cid", eng=eng)
    # the connection is writable again for the hub's other users
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE TABLE lab_probe (a INTEGER)"))
        conn.execute(sa.text("INSERT INTO lab_probe VALUES (1)"))
    assert lab.sql("SELECT count(*) AS n FROM lab_probe", eng=eng)["n"].tolist() == [1]


def test_personal_columns_masked_for_analysts(hub_engine):
    got = lab.sql("SELECT '王小明' AS owner, '13812345678' AS phone, '欧阳娜娜' AS reporter_name, "
                  "'430202199001011234' AS reporter_id_no, '金山生鲜市场' AS name", eng=hub_engine)
    row = got.iloc[0]
    assert (row["owner"], row["phone"], row["reporter_name"], row["reporter_id_no"], row["name"]) == (
        "王**", "138****5678", "欧***", "430202********1234", "金山生鲜市场")
    with pytest.raises(lab.LabError, match="没有数据集"):
        lab.load("no_such_dataset")
