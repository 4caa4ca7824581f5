"""Every dashboard (dashboards/*.ipynb) in a real browser: Voilà started by workbench.ui.server,
each page opened in headless Chromium, no error output or traceback, the expected Chinese
text present, and a full-page screenshot in tests/output/screenshots/ for people to look at.

Two hubs: the sample city of the root conftest (workbench.synth, loaded through ingest) and an
empty one ("暂无数据", no traceback).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from workbench import config
from workbench.ui import server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = config.ROOT
OUTPUT = ROOT / "tests" / "output"
SCREENSHOTS = OUTPUT / "screenshots"
DASHBOARDS = server.dashboards()
VIEWPORT = {"width": 1440, "height": 900}
RENDER_TIMEOUT = 180  # seconds; a cold CI machine imports pandas, matplotlib, fonts

# Text each dashboard must show with sample data (besides its title).
EXPECTED = {
    "hub": ["数据中台", "数据集概况", "数据规模与趋势", "最近接入文件", "隔离区", "农贸市场快检", "北京时间"],
    "safety": ["隐患整改状态", "网格风险", "气象预警与联动巡查", "逾期未整改"],
    "events": ["调度台", "事件热点地图", "超期未办结", "各部门按期办结率", "办结时长", "事件规律"],
    "market": ["通报数据", "项次阳性率", "每日阳性率", "各市场与全市比较", "预警告警", "数据真实性核查", "阳性率异常偏低",
               "阳性处置跟踪", "隔离区（快检数据）", "检测时间早于采样时间", "百分比读数超过 100%",
               "未登记的农贸市场", "检测结果与检测值、判定限值不符"],
    "overview": ["城市运行总览", "数据截至", "城市运行关键指标", "区县分布", "各部门办理考核", "最新告警与联动案件",
                 "按期结案数 ÷（应结案数 − 缓办数）", "各部门看板"],
    "canteen": ["最新违规", "食堂合规排名", "合规得分", "单个食堂", "未销案案件", "整改状态",
                "屡犯食堂", "全部区县", "全部违规类型"],
}
EXPECTED_EMPTY = {
    "hub": ["数据中台暂无数据", "暂无接入记录", "隔离区为空"],
    "safety": ["城市安全暂无数据", "暂无隐患记录"],
    "events": ["城市事件暂无数据", "调度台", "暂无在办事件"],
    "market": ["农贸市场快检暂无数据", "隔离区没有快检记录"],
    "overview": ["城市运行总览暂无数据", "统计期内没有案件", "暂无告警"],
    "canteen": ["明厨亮灶暂无数据", "暂无违规记录", "暂无食堂数据"],
}


def _hub_vars(folder: Path) -> dict[str, str]:
    return {"WORKBENCH_DB_URL": f"sqlite:///{folder / 'city.db'}", "WORKBENCH_DATA_DIR": str(folder / "data")}


@pytest.fixture(scope="module")
def sample_city_hub(request):
    """The session's sample city (root conftest: workbench.synth through ingest)."""
    try:
        import workbench.synth  # noqa: F401
    except ImportError as exc:  # the generator is missing: say so instead of erroring
        pytest.skip(f"workbench.synth is not importable: {exc}")
    env = request.getfixturevalue("sample_city_env")
    return {k: env[k] for k in ("WORKBENCH_DB_URL", "WORKBENCH_DATA_DIR")}


@pytest.fixture(scope="module")
def empty_hub(tmp_path_factory):
    return _hub_vars(tmp_path_factory.mktemp("empty_hub"))


@pytest.fixture(scope="module")
def sample_server(sample_city_hub, voila):
    with voila(sample_city_hub, "sample") as srv:
        yield srv


@pytest.fixture(scope="module")
def empty_server(empty_hub, voila):
    with voila(empty_hub, "empty") as srv:
        yield srv


def _open(chromium, srv, notebook: Path, screenshot: str, query: str = ""):
    from workbench.ui.browser import render

    page = chromium.new_page(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")
    result = render(page, srv.url(notebook.name) + query, timeout=RENDER_TIMEOUT)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / screenshot), full_page=True)
    problems = result.errors + result.console_errors
    assert not problems, f"{notebook.name} 页面有错误：\n" + "\n".join(problems) + \
        f"\n--- Voilà log ---\n{srv.log()[-3000:]}"
    return page, result


def test_dashboards_found():
    assert DASHBOARDS, "no dashboards/*.ipynb"
    assert "hub" in {p.stem for p in DASHBOARDS}


@pytest.mark.parametrize("notebook", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_renders_sample_city(chromium, sample_server, notebook):
    page, result = _open(chromium, sample_server, notebook, f"{notebook.stem}.png")
    try:
        title = server.dashboard_title(notebook)
        assert page.title() == title
        for text in [title, *EXPECTED.get(notebook.stem, [])]:
            assert text in result.text, f"{notebook.name}: 页面上没有“{text}”"
        assert "暂无数据" not in result.text.split("数据集概况")[0], "sample city shows as empty"
    finally:
        page.close()


@pytest.mark.parametrize("notebook", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_renders_empty_hub(chromium, empty_server, notebook):
    page, result = _open(chromium, empty_server, notebook, f"{notebook.stem}-empty.png")
    try:
        assert "暂无" in result.text, f"{notebook.name}: an empty hub should say 暂无数据"
        for text in [server.dashboard_title(notebook), *EXPECTED_EMPTY.get(notebook.stem, [])]:
            assert text in result.text, f"{notebook.name}: 页面上没有“{text}”"
    finally:
        page.close()


def test_hub_quarantine_explorer(chromium, sample_server):
    """Pick a dataset in 隔离区 and see its quarantined rows (file, line, reason)."""
    from workbench.ui.browser import check

    hub_nb = next(p for p in DASHBOARDS if p.stem == "hub")
    page, _ = _open(chromium, sample_server, hub_nb, "hub-quarantine.png")
    try:
        explorer = page.locator(".wb-quarantine")
        dataset_select = explorer.locator("select").first
        options = dataset_select.locator("option").all_inner_texts()
        assert options[0] == "全部数据集" and len(options) > 1, options
        dataset_select.select_option(index=1)
        # With one dataset picked, the rows table drops its 数据集 column.
        page.wait_for_function(
            """() => { const h = document.querySelector('.wb-quarantine table.wb-table thead');
                       return h && !h.innerText.includes('数据集'); }""",
            timeout=30_000,
        )
        table_text = explorer.locator("table.wb-table").inner_text()
        for column in ("文件名", "行号", "隔离原因", "原始内容"):
            assert column in table_text
        assert explorer.locator("table.wb-table tbody tr").count() >= 1
        reason_select = explorer.locator("select").nth(1)
        assert reason_select.locator("option").first.inner_text() == "全部原因"
        reason_select.select_option(index=1)
        page.wait_for_timeout(1500)
        assert explorer.locator("table.wb-table tbody tr").count() >= 1
        assert not check(page)
        page.screenshot(path=str(SCREENSHOTS / "hub-quarantine.png"), full_page=True)
    finally:
        page.close()


def test_hub_link_preselects_dataset(chromium, sample_server):
    """hub.ipynb?dataset=<name> opens the quarantine explorer on that dataset."""
    from workbench.store import hub
    from workbench.ui.labels import dataset_label

    url = sample_server.env["WORKBENCH_DB_URL"]
    name = hub.quarantine_reasons(eng=hub.engine(url))["dataset"].iloc[0]
    hub.dispose(url)
    hub_nb = next(p for p in DASHBOARDS if p.stem == "hub")
    page, _ = _open(chromium, sample_server, hub_nb, "hub-link.png", query=f"?dataset={name}")
    try:
        selected = page.locator(".wb-quarantine select").first.evaluate("s => s.options[s.selectedIndex].text")
        assert selected.startswith(dataset_label(name)), selected
    finally:
        page.close()


def test_served_widget_front_end_rerenders_after_restore(chromium, sample_server):
    """The widget front end the pages load keeps Voilà's restore-then-rerender: jupyterlab-manager
    5.0.16 (ipywidgets 8.1.9) makes get_model wait at most 2 s for a model and then fail for good
    (ipywidgets PR #4033); a browser busy for 2 s while a page loaded (plotly's charts on a loaded
    machine) then showed "Error displaying widget: model not found" for the widgets after the
    charts — in about two visits of three to the hub page, measured with the script described in
    pyproject.toml's pin. The served version is read from the server, as the browser gets it."""
    import json
    import urllib.request

    url = sample_server.base_url.rstrip("/") + "/voila/labextensions/@jupyter-widgets/jupyterlab-manager/package.json"
    with urllib.request.urlopen(url, timeout=30) as r:
        version = json.load(r)["version"]
    major, minor, patch = (int(x) for x in version.split(".")[:3])
    assert (major, minor) == (5, 0) and patch <= 15, (
        f"jupyterlab-manager {version}: its get_model gives up after 2 s, widgets go missing under Voilà")
    hub_nb = next(p for p in DASHBOARDS if p.stem == "hub")
    page, result = _open(chromium, sample_server, hub_nb, "hub.png")
    try:
        assert "model not found" not in result.text
    finally:
        page.close()
