"""Every dashboard at 1280, 1600 and 1920 px in a real Chromium on a real Voilà (the sample city,
signed in): no two boxes on the page overlap, no text is clipped (cut by an overflow-hidden box,
an ellipsis, a box that needs a horizontal scroll bar), nothing extends past the window or past
its card. One Voilà server and one browser for all pages and widths: each page is opened at
1280 px and widened (a person resizing the window), checked at each width.

The same server serves a small page with `maps.district_map` and `charts.interactive_line`: the
plotly map renders offline (plotly.js from our own server through the workbench-charts
labextension, no request leaves the server), names the districts, shows a district's value on
hover, and its mode bar speaks Chinese.

The boxes: visible leaves — elements with their own text, cards, tables (one box each), images,
charts (one box each), form controls. Pairs where one contains the other are not compared.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from workbench.ui import server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (1280, 1600, 1920)
HEIGHT = 900
PAGES = ("overview", "hub", "canteen", "market", "events", "safety")
RENDER_TIMEOUT = 240
OUTPUT = Path(__file__).parent / "output" / "layout"

# Pages whose own fix is pending (none now): expected to
# fail until it lands; remove the entry then.
KNOWN = {}

MAPS_PAGE = "zz_maps_check.ipynb"
MAPS_CODE = '''
from workbench import ui
from workbench.ui import maps, charts, layout
import pandas as pd
ui.setup()
values = pd.Series({"荷塘区": 12, "芦淞区": 30, "石峰区": 8, "天元区": 17, "渌口区": 5, "醴陵市": 21,
                    "攸县": 9, "茶陵县": 4, "炎陵县": 2})
points = pd.DataFrame({"lat": [27.86, 27.66], "lon": [113.20, 113.49], "label": ["月塘街道 HT-03 网格", "来龙门街道"],
                       "size": [5, 2], "tone": ["bad", "warn"], "group": ["超期", "在办"]})
daily = pd.DataFrame({"事件": [3, 5, 2, 8]}, index=pd.date_range("2026-01-01", periods=4))
layout.stack([layout.header("地图检查"), maps.district_map(values, title="各区县在办案件", unit="件", points=points),
              charts.interactive_line(daily, title="每日事件数", unit="件"), layout.footer()])
'''

# The checks, in the page. Returns a list of problems (strings).
PROBE = r"""
() => {
  const root = document.querySelector('#rendered_cells') || document.body;
  const W = document.documentElement.clientWidth;
  const problems = [];
  const ATOMIC = 'table, img, svg, canvas, .js-plotly-plot, .wb-plotly, select, input, textarea, button, .widget-dropdown, .widget-text, .widget-datepicker';
  const CARDS = '.wb-card, .wb-chart, .wb-table-wrap, .wb-empty, .wb-header';
  const visible = (el) => {
    const s = getComputedStyle(el);
    if (s.display === 'none' || s.visibility === 'hidden' || parseFloat(s.opacity) === 0) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0.5 && r.height > 0.5;
  };
  const hiddenByAncestor = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.display === 'none' || s.visibility === 'hidden') return true;
      if (a.tagName === 'DETAILS' && !a.open && el.closest('summary') === null) return true;
    }
    return false;
  };
  const name = (el) => {
    let n = el.tagName.toLowerCase();
    const cls = (typeof el.className === 'string' ? el.className : '').split(/\s+/).filter(c => c.startsWith('wb-') || c.startsWith('widget-')).slice(0, 2);
    if (cls.length) n += '.' + cls.join('.');
    const t = (el.innerText || el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 40);
    return t ? `${n}「${t}」` : n;
  };
  // what shows of a box: its rect cut by every ancestor that clips or scrolls (a long table in its scroll box)
  const clipped = (el) => (r) => {
    let left = r.left, top = r.top, right = r.right, bottom = r.bottom;
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.overflowX !== 'visible' || s.overflowY !== 'visible') {
        const c = a.getBoundingClientRect();
        if (s.overflowX !== 'visible') { left = Math.max(left, c.left); right = Math.min(right, c.right); }
        if (s.overflowY !== 'visible') { top = Math.max(top, c.top); bottom = Math.min(bottom, c.bottom); }
      }
    }
    return {left, top, right, bottom, width: Math.max(0, right - left), height: Math.max(0, bottom - top)};
  };
  const ownText = (el) => Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
  // leaves: not inside an atomic element
  const leaves = [];
  for (const el of root.querySelectorAll('*')) {
    // a chart is one box: plotly stacks several svg layers inside its div
    const plot = el.closest('.js-plotly-plot');
    if (plot && plot !== el) continue;
    if (el.closest('table, svg, select') && !el.matches('table, svg, select')) continue;
    if (el.matches('svg') && el.parentElement.closest('svg')) continue;
    const isLeaf = el.matches(ATOMIC) || el.matches(CARDS) || ownText(el);
    if (!isLeaf || !visible(el) || hiddenByAncestor(el)) continue;
    if (el.closest('.modebar-container, .hoverlayer')) continue;
    const inline = getComputedStyle(el).display === 'inline';
    const rects = (inline ? Array.from(el.getClientRects()) : [el.getBoundingClientRect()]).map(clipped(el));
    leaves.push({el, rects: rects.filter(r => r.width > 0.5 && r.height > 0.5)});
  }
  // 1. overlaps between boxes where neither contains the other
  const items = [];
  leaves.forEach((l, i) => l.rects.forEach(r => items.push({i, r})));
  items.sort((a, b) => a.r.top - b.r.top);
  const seen = new Set();
  for (let a = 0; a < items.length; a++) {
    const A = items[a];
    for (let b = a + 1; b < items.length && items[b].r.top < A.r.bottom - 1.5; b++) {
      const B = items[b];
      if (A.i === B.i) continue;
      const ea = leaves[A.i].el, eb = leaves[B.i].el;
      if (ea.contains(eb) || eb.contains(ea)) continue;
      const dx = Math.min(A.r.right, B.r.right) - Math.max(A.r.left, B.r.left);
      const dy = Math.min(A.r.bottom, B.r.bottom) - Math.max(A.r.top, B.r.top);
      if (dx > 1.5 && dy > 1.5) {
        const key = A.i < B.i ? `${A.i}-${B.i}` : `${B.i}-${A.i}`;
        if (seen.has(key)) continue;
        seen.add(key);
        problems.push(`overlap ${Math.round(dx)}×${Math.round(dy)} px: ${name(ea)} / ${name(eb)}`);
      }
    }
  }
  // 2. clipped text: an overflow-hidden box narrower than its content, an ellipsis, a box that scrolls sideways
  for (const el of root.querySelectorAll('*')) {
    if (el.closest('.js-plotly-plot, svg, select')) continue;
    if (!visible(el) || hiddenByAncestor(el)) continue;
    const s = getComputedStyle(el);
    if (!(el.innerText || '').trim()) continue;
    if (el.matches('input, select, textarea')) continue;
    const over = el.scrollWidth - el.clientWidth, overY = el.scrollHeight - el.clientHeight;
    if (over > 1 && ['hidden', 'clip'].includes(s.overflowX)) {
      problems.push(`clipped ${over} px (overflow hidden${s.textOverflow === 'ellipsis' ? ', ellipsis' : ''}): ${name(el)}`);
    } else if (over > 1 && ['auto', 'scroll'].includes(s.overflowX)) {
      problems.push(`needs a horizontal scroll bar (${over} px): ${name(el)}`);
    }
    if (overY > 2 && ['hidden', 'clip'].includes(s.overflowY) && s.overflowX !== 'visible' && el.clientHeight > 0
        && s.whiteSpace !== 'nowrap' && !el.matches('.jp-OutputArea-child, .jp-OutputArea, .lm-Widget.lm-Panel')) {
      problems.push(`clipped ${overY} px at the bottom: ${name(el)}`);
    }
  }
  // 3. past the window, past the card
  for (const {el, rects} of leaves) {
    for (const r of rects) {
      if (r.right > W + 1) { problems.push(`past the window by ${Math.round(r.right - W)} px: ${name(el)}`); break; }
      if (r.left < -1) { problems.push(`left of the window by ${Math.round(-r.left)} px: ${name(el)}`); break; }
    }
    const card = el.parentElement && el.parentElement.closest(CARDS);
    if (card && card !== el && rects.length) {
      const c = card.getBoundingClientRect();
      const r = el.getBoundingClientRect();
      const cs = getComputedStyle(card);
      if (cs.overflowX === 'visible' && (r.right > c.right + 1 || r.left < c.left - 1)) {
        problems.push(`past its card by ${Math.round(Math.max(r.right - c.right, c.left - r.left))} px: ${name(el)} in ${name(card)}`);
      }
    }
  }
  if (document.documentElement.scrollWidth > W + 1) problems.push(`the page scrolls sideways (${document.documentElement.scrollWidth} > ${W})`);
  return problems;
}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_city_env, voila):
    """The six dashboards and the maps page, served once for the whole module."""
    folder = tmp_path_factory.mktemp("layout-dashboards")
    for p in server.dashboards():
        shutil.copy(p, folder / p.name)
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "maps", "metadata": {}, "outputs": [],
                     "source": MAPS_CODE}],
          "metadata": {"title": "地图检查", "kernelspec": {"name": "python3", "display_name": "Python 3",
                                                          "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (folder / MAPS_PAGE).write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    env = {k: sample_city_env[k] for k in ("WORKBENCH_DB_URL", "WORKBENCH_DATA_DIR")}
    # no preheated kernels: each page starts its kernel on request (pages here are checked minutes
    # apart on a busy machine; layout, not speed, is under test — benchmarks/serve_first_render.py times it)
    with voila(env, "layout", folder=folder, preheat=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def tab(chromium):
    context = chromium.new_context(viewport={"width": WIDTHS[0], "height": HEIGHT}, locale="zh-CN")
    p = context.new_page()
    yield p
    context.close()


def _problems(page) -> list[str]:
    return page.evaluate(PROBE)


def _shoot(page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("name", PAGES)
def test_dashboard_has_no_overlap_or_clipping_from_1280_to_1920(name, served, tab, request):
    from workbench.ui import browser

    if name in KNOWN:
        request.applymarker(pytest.mark.xfail(reason=KNOWN[name], strict=False))
    tab.set_viewport_size({"width": WIDTHS[0], "height": HEIGHT})
    r = browser.render(tab, server.dashboard_url(served.base_url, f"{name}.ipynb"), timeout=RENDER_TIMEOUT)
    assert r.ok, r.errors
    found = {}
    for width in WIDTHS:
        tab.set_viewport_size({"width": width, "height": HEIGHT})
        tab.wait_for_timeout(600)   # reflow; plotly charts follow their column
        _shoot(tab, f"{name}-{width}")
        problems = _problems(tab)
        if problems:
            found[width] = problems
    assert not found, "\n".join(f"{name} @ {w}px: {p}" for w, ps in found.items() for p in ps[:25])


def test_the_plotly_map_renders_offline_with_names_and_hover(served, tab):
    from urllib.parse import urlsplit

    from workbench.ui import browser

    requests: list[str] = []
    tab.on("request", lambda req: requests.append(req.url))
    tab.set_viewport_size({"width": 1600, "height": HEIGHT})
    r = browser.render(tab, server.dashboard_url(served.base_url, MAPS_PAGE), timeout=RENDER_TIMEOUT)
    assert r.ok, r.errors
    tab.wait_for_selector(".wb-map .js-plotly-plot .main-svg", timeout=60_000)
    origin = urlsplit(served.base_url).netloc
    outside = [u for u in requests if urlsplit(u).scheme in ("http", "https", "ws", "wss")
               and urlsplit(u).netloc != origin]
    assert not outside, outside                                        # nothing from a CDN
    # plotly.js's cartesian bundle from our server (workbench-charts), not jupyterlab-plotly's whole one
    assert any("/labextensions/workbench-charts/static/plotly-cartesian" in u for u in requests), requests
    assert not any("/labextensions/jupyterlab-plotly/" in u for u in requests)
    plot = tab.query_selector(".wb-map .js-plotly-plot")
    box = plot.bounding_box()
    assert box["height"] >= 500 and box["width"] >= 600
    text = plot.inner_text()
    for district in ("荷塘区", "芦淞区", "醴陵市", "攸县", "茶陵县", "炎陵县", "渌口区"):
        assert district in text
    assert "月塘街道 HT-03 网格" in text
    # hover a district's name: its value in a tooltip
    label = tab.locator(".wb-map .js-plotly-plot .textpoint", has_text="攸县").first
    lb = label.bounding_box()
    tab.mouse.move(lb["x"] + lb["width"] / 2, lb["y"] + lb["height"] / 2)
    tab.wait_for_selector(".wb-map .hoverlayer .hovertext", timeout=10_000)
    assert "在办案件：9 件" in tab.eval_on_selector(".wb-map .hoverlayer", "e => e.textContent")
    # zoom and pan in the mode bar, in Chinese
    tab.mouse.move(box["x"] + 20, box["y"] + 20)
    assert tab.query_selector('.wb-map .modebar-btn[data-title="放大"]') is not None
    _shoot(tab, "maps-1600")
    assert not _problems(tab)
