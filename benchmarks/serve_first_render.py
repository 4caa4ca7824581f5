"""First visit of every dashboard: `workbench serve` on a year of the sample city, each page opened
in headless Chromium by a signed-in visitor, the clock from navigation to the page's last widget
drawn and every interactive chart drawn (browser.CHARTS_DRAWN: plotly.js loads on a page's first
chart, after the widgets show) (the 城市运行总览 front door and the five department pages: 数据中台, 明厨亮灶, 农贸市场快检,
城市事件, 城市安全).

A sample city of `--days` days (default 365, seed 7) is built once with `workbench synth` into a
temp WORKBENCH_DATA_DIR (or `--city FOLDER` reuses one built before: FOLDER/city.db and
FOLDER/data; or `--db URL`). One `workbench serve` (preheated kernels, as deployed) serves all
pages. A visit is timed only on a kernel that has just finished preheating: the page is opened
once untimed (that takes its kernel), the server's log is watched for the replacement kernel
to say it waits for its request, and then the page is opened in a fresh browser context
(nothing cached) and timed `--settle` seconds later (default 5: the visit before has left, its
kernel shut down as Voilà's beforeunload asks) — what a visitor sees on a ready, quiet server, and
independent of how long the other pages took (a preheated kernel waits for its visitor without a time limit:
workbench/ui/request.py). Per page: each visit's seconds and the median; goal < 3 s.

`--profile` adds what the kernel spends the time on, page by page: the dashboard's code cells
run in this process (the operator as the user) under cProfile, split into the part a preheated
kernel runs before the request (imports, warm-up) and the part on the visitor's clock, with the
functions that take the most of the latter.

    .venv/bin/python benchmarks/serve_first_render.py [--days 365] [--seed 7] [--runs 3]
        [--city FOLDER | --db URL] [--pages overview,market] [--preheat 1] [--profile]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAGES = ("overview", "hub", "canteen", "market", "events", "safety")
GOAL = 3.0


def machine() -> str:
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average {load:.1f}"


def workbench_cmd(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("workbench")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "workbench.cli", *args]


def serve_cmd(port: int, preheat: int) -> list[str]:
    return workbench_cmd("serve", "--port", str(port), "--preheat", str(preheat))


def city_env(folder: Path) -> dict[str, str]:
    return {"WORKBENCH_DB_URL": f"sqlite:///{folder / 'city.db'}", "WORKBENCH_DATA_DIR": str(folder / "data")}


def build_city(days: int, seed: int, folder: Path) -> dict[str, str]:
    """`workbench synth --days … --seed …` into `folder` (its own hub and data folder)."""
    env = city_env(folder)
    t = time.perf_counter()
    subprocess.run(workbench_cmd("synth", "--days", str(days), "--seed", str(seed), "--out", str(folder / "synth")),
                   env={**os.environ, **env}, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"sample city: {days} days, seed {seed} ({time.perf_counter() - t:.0f} s to build)", flush=True)
    return env


BENCH_USER, BENCH_PASSWORD = "bench-visitor", "bench-pass-1234"


def bench_user(db_url: str) -> None:
    """The benchmarks' visitor: a leader account in the hub (made once)."""
    from workbench import users
    from workbench.store import hub

    eng = hub.engine(db_url)
    if users.principal(BENCH_USER, eng, active_only=False) is None:
        users.create(BENCH_USER, BENCH_PASSWORD, role="leader", by="benchmark", eng=eng)


def signed_in_page(browser, base: str):
    """A new page in its own context (nothing cached), signed in before the clock starts."""
    from workbench.ui.browser import sign_in

    context = browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN")
    page = context.new_page()
    sign_in(page, base, BENCH_USER, BENCH_PASSWORD, next_url=base + "/workbench/health")
    return page


class ServerLog:
    """The lines `workbench serve` prints (Voilà's log among them), kept as they come."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.queue: queue.Queue[str] = queue.Queue()
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            with self.lock:
                self.lines.append(line)
            self.queue.put(line)

    def mark(self) -> int:
        with self.lock:
            return len(self.lines)

    def wait_for(self, pattern: str, since: int, timeout: float):
        """The first match of `pattern` (a regex) in the lines from `since` on, waiting up to `timeout` s."""
        import re

        rx = re.compile(pattern)
        end = time.perf_counter() + timeout
        i = since
        while time.perf_counter() < end:
            with self.lock:
                new = self.lines[i:]
            for k, line in enumerate(new):
                m = rx.search(line)
                if m:
                    return m, i + k + 1
            i += len(new)
            time.sleep(0.2)
        raise RuntimeError(f"the server did not log {pattern!r} within {timeout:.0f} s")


def start_server(env: dict[str, str], preheat: int, timeout: float):
    from workbench.ui.server import free_port

    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(serve_cmd(port, preheat), env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
                            start_new_session=True)
    log = ServerLog(proc.stdout)
    lines = log.queue
    url = None
    while url is None:  # `workbench serve` prints the URLs once its kernels are preheated
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            stop_server(proc)
            raise RuntimeError("workbench serve printed no URL") from None
        if "/voila/render/" in line:
            url = line.split()[-1]
    base = url.split("/voila/")[0]
    print(f"workbench serve --preheat {preheat}: URLs printed {time.perf_counter() - t0:.1f} s after start",
          flush=True)
    return proc, base, log


def stop_server(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def visit(browser, base: str, page_name: str, timeout: float, check: bool = True) -> float:
    from workbench.ui.browser import leave, render

    page = signed_in_page(browser, base)
    try:
        r = render(page, f"{base}/voila/render/{page_name}.ipynb", timeout=timeout)
        if check and r.errors:
            raise RuntimeError(f"{page_name}: {r.errors[:3]}")
        return r.seconds
    finally:
        leave(page)  # as a visitor closing the tab: the kernel is shut down, its timers with it


def fresh_visit(browser, base: str, log: ServerLog, page_name: str, timeout: float, settle: float = 0) -> float:
    """Take the page's waiting kernel with an untimed visit, wait until its replacement has
    preheated (the server logs that it waits for its request) and `settle` seconds more (the
    visit before has left: its kernel shut down, the browser's context closed), then time a visit."""
    import re

    mark = log.mark()
    visit(browser, base, page_name, min(timeout, 90), check=False)
    m, at = log.wait_for(rf"Using pre-heated kernel: \S+ for {re.escape(page_name)}\.ipynb", mark, 30)
    m, at = log.wait_for(r"Kernel started: (\S+)", at, 60)
    log.wait_for(rf"preheated kernel {re.escape(m.group(1))} waits for its request", at, timeout)
    time.sleep(settle)
    return visit(browser, base, page_name, timeout)


def profile_page(name: str, top: int = 12) -> dict:
    """The dashboard's code cells in this process under cProfile: seconds before the request
    (what a preheated kernel has done already) and after, and the heaviest functions after."""
    import cProfile
    import io
    import pstats

    from IPython.display import display  # noqa: F401 - the cells call display()

    nb = json.loads((ROOT / "dashboards" / f"{name}.ipynb").read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    ns: dict = {"display": lambda *a, **k: None, "__name__": "__main__"}
    before = after = 0.0
    prof = cProfile.Profile()
    waited = False
    for src in cells:
        if not waited and "query_params(" in src:
            waited = True
        t = time.perf_counter()
        if waited:
            prof.enable()
        exec(compile(src, f"<{name}>", "exec"), ns)  # noqa: S102 - our own dashboards
        if waited:
            prof.disable()
        dt = time.perf_counter() - t
        if waited:
            after += dt
        else:
            before += dt
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    rows = []
    for (file, line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        if "/workbench/" in file and "/site-packages/" not in file:
            rows.append((ct, f"{Path(file).relative_to(ROOT) if str(ROOT) in file else file}:{line} {func}"))
    rows.sort(reverse=True)
    return {"before": before, "after": after, "top": rows[:top]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="visits of each page")
    ap.add_argument("--days", type=int, default=365, help="days of the sample city (default 365)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--city", help="a folder a sample city was built into before (city.db, data/)")
    ap.add_argument("--db", help="an existing hub's URL instead of a sample city")
    ap.add_argument("--pages", default=",".join(PAGES))
    ap.add_argument("--preheat", type=int, default=1, help="preheated kernels per dashboard (0: none)")
    ap.add_argument("--pause", type=float, default=0, help="seconds between rounds")
    ap.add_argument("--settle", type=float, default=5,
                    help="seconds between the replacement kernel's preheat and the timed visit (a quiet server)")
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--profile", action="store_true", help="also profile each page's cells in this process")
    ap.add_argument("--profile-only", action="store_true", help="only the profile (no server, no browser)")
    args = ap.parse_args()
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]

    from workbench.ui.browser import chromium

    with tempfile.TemporaryDirectory(prefix="wb-bench-serve-") as tmp:
        if args.db:
            env = {"WORKBENCH_DB_URL": args.db, "WORKBENCH_DATA_DIR": str(Path(tmp) / "data")}
        elif args.city:
            env = city_env(Path(args.city).resolve())
        else:
            env = build_city(args.days, args.seed, Path(tmp))
        os.environ.update(env)
        bench_user(env["WORKBENCH_DB_URL"])
        print(f"machine: {machine()}", flush=True)
        if args.profile_only:
            args.runs, args.profile = 0, True
        times: dict[str, list[float]] = {p: [] for p in pages}
        if args.runs:
            proc, base, log = start_server(env, args.preheat, args.timeout)
            try:
                with chromium() as browser:
                    for i in range(args.runs):
                        if i:
                            time.sleep(args.pause)
                        for p in pages:
                            times[p].append(fresh_visit(browser, base, log, p, args.timeout, args.settle) if args.preheat
                                            else visit(browser, base, p, args.timeout))
                        print(f"round {i + 1}: " + ", ".join(f"{p} {times[p][-1]:.2f} s" for p in pages), flush=True)
            finally:
                stop_server(proc)
            report(times, pages, args.runs)
        if args.profile:
            print("\nkernel time per page (cells in this process; before = a preheated kernel's share; the first "
                  "page's 'before' carries the imports every page shares):", flush=True)
            for p in pages:
                r = profile_page(p)
                print(f"\n{p}: before the request {r['before']:.2f} s, on the visitor's clock {r['after']:.2f} s",
                      flush=True)
                for ct, where in r["top"]:
                    print(f"  {ct:7.3f} s  {where}")


def report(times: dict[str, list[float]], pages: list[str], runs: int) -> None:
    print(f"\nfirst visit (navigation → last widget and every chart drawn), {runs} visit(s) per page, machine: {machine()}")
    print("| page | visits (s) | median (s) | < 3 s |")
    print("|---|---|---:|---|")
    for p in pages:
        med = statistics.median(times[p])
        print(f"| {p} | {', '.join(f'{t:.2f}' for t in times[p])} | {med:.2f} | {'yes' if med < GOAL else 'NO'} |")


if __name__ == "__main__":
    main()
