"""城市运行总览 with a year of the sample city: first visit and refresh (goal: < 3 s and < 1 s).

    .venv/bin/python benchmarks/overview_bench.py [--hub sqlite:///…] [--days 365] [--runs 3]

The hub: --hub, else data/city.db when present, else benchmarks/out/year-city/city.db, made
once with `workbench synth --days N` (minutes). Measured:
- read: `workbench.cockpit.overview.load` alone (median of --runs);
- refresh: re-query + re-render of the page's widgets (`OverviewView.refresh`, median);
- first visit: Voilà up with its preheated kernel, then Chromium opens / (redirected to the
  overview) until the page has rendered (its footer shows);
- refresh in the browser: the 刷新 button clicked until the page shows the new read.
Prints the figures and the machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
YEAR = ROOT / "benchmarks" / "out" / "year-city"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = cpu
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} "
            f"{platform.release()}; load average {load[0]:.1f} at start")


def hub_url(args) -> str:
    if args.hub:
        return args.hub
    own = ROOT / "data" / "city.db"
    if own.exists():
        return f"sqlite:///{own}"
    db = YEAR / "city.db"
    if not db.exists():
        import datetime as dt

        from workbench.store import hub
        from workbench.synth import synth_city

        print(f"no hub yet: making {args.days} days of the sample city in {db} (minutes) …", flush=True)
        YEAR.mkdir(parents=True, exist_ok=True)
        os.environ.update({"WORKBENCH_DB_URL": f"sqlite:///{db}", "WORKBENCH_DATA_DIR": str(YEAR / "data")})
        t = time.perf_counter()
        synth_city(days=args.days, seed=7, end=dt.date.today() - dt.timedelta(days=1), out_dir=YEAR / "synth",
                   progress=False)
        hub.dispose(f"sqlite:///{db}")
        print(f"  made in {time.perf_counter() - t:.0f} s", flush=True)
    return f"sqlite:///{db}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hub", help="WORKBENCH_DB_URL of the hub to measure")
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--visits", type=int, default=3, help="first visits, each by a new visitor on a waiting kernel")
    args = ap.parse_args(argv)
    print("machine:", machine(), flush=True)
    url = hub_url(args)
    os.environ["WORKBENCH_DB_URL"] = url
    from workbench import cases
    from workbench.cockpit import overview as ov
    from workbench.store import hub
    from workbench.ui import overview_page, server

    eng = hub.engine(url)
    frame = cases.frame(eng)
    print(f"hub: {url}; {len(frame):,} cases of {frame['case_type'].nunique()} types, opened "
          f"{frame['opened'].min():%Y-%m-%d} … {frame['opened'].max():%Y-%m-%d}", flush=True)
    overview_page.prepare()
    reads = []
    for _ in range(args.runs):
        o = ov.load(eng=eng)
        reads.append(o.seconds)
    print(f"read (overview.load): median {statistics.median(reads):.2f} s over {args.runs} ({', '.join(f'{x:.2f}' for x in reads)});"
          f" period {o.filters.text}; {int(o.city().get('opened', 0)):,} cases opened in it", flush=True)
    view = overview_page.OverviewView({}, eng=eng, autostart=False)
    refreshes = []
    for _ in range(args.runs):
        t = time.perf_counter()
        assert view.refresh()
        refreshes.append(time.perf_counter() - t)
    print(f"refresh (re-query + re-render): median {statistics.median(refreshes):.2f} s (goal < 1 s)", flush=True)
    hub.dispose(url)
    if args.no_browser:
        return 0

    from workbench.ui.browser import chromium, render, sign_in

    folder = Path(tempfile.mkdtemp(prefix="overview-bench-"))
    shutil.copy(server.DASHBOARDS / server.FRONT_PAGE, folder / server.FRONT_PAGE)
    t0 = time.perf_counter()
    srv = server.start(port=server.free_port(), env={**os.environ, "WORKBENCH_DB_URL": url}, folder=folder, preheat=1)
    try:
        srv.wait_ready(timeout=300)
        up = time.perf_counter() - t0
        from serve_first_render import BENCH_PASSWORD, BENCH_USER, bench_user  # pages need a signed-in user

        bench_user(srv.env["WORKBENCH_DB_URL"])
        with chromium() as browser:
            visits = []
            for k in range(args.visits):  # each a new visitor (cold browser cache) on a kernel waiting for them
                if k:
                    held = len(srv.waiting)
                    deadline = time.monotonic() + 120
                    while len(srv.waiting) <= held and time.monotonic() < deadline:  # the pool refilled
                        time.sleep(0.2)
                    time.sleep(1.0)
                ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN",
                                          timezone_id="Asia/Shanghai")
                page = ctx.new_page()
                sign_in(page, srv.base_url, BENCH_USER, BENCH_PASSWORD, next_url=srv.base_url + "/workbench/health")
                first = render(page, srv.front_url(), timeout=180)
                visits.append(first.seconds)
                if first.errors:
                    print("page errors:", *first.errors, sep="\n  ")
            before = page.locator(".wb-ov-refreshed").inner_text()
            time.sleep(1.1)  # the refresh time is shown to the second
            t = time.perf_counter()
            page.locator(".wb-ov-refresh button, button.wb-ov-refresh").first.click()
            page.wait_for_function(
                "b => { const e = document.querySelector('.wb-ov-refreshed'); return e && e.innerText !== b; }",
                arg=before, timeout=60_000)
            clicked = time.perf_counter() - t
            out = ROOT / "benchmarks" / "out"
            out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out / "overview-year.png"), full_page=True)
        print(f"Voilà up with a preheated kernel: {up:.1f} s (once per server start)")
        print(f"first visit (/ → overview rendered in Chromium, a new visitor each): median "
              f"{statistics.median(visits):.2f} s over {len(visits)} ({', '.join(f'{v:.2f}' for v in visits)}) (goal < 3 s)")
        print(f"refresh in the browser (刷新 clicked → new read shown): {clicked:.2f} s (goal < 1 s)")
    finally:
        srv.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
