"""Time to first render: from starting `workbench serve` to the first dashboard drawn in a browser.

Each run starts `workbench serve` on a free port in a fresh process (Python start, hub
migration check, Voilà, preheated kernels), waits for it to print the dashboard URLs as a
person would, opens the first dashboard in headless Chromium and stops the clock when the
page's last widget is visible. It then opens the page again (a preheated kernel is ready:
what every later visitor sees). Prints each run and the medians.

The hub is a seeded sample city built once in a temp folder (`--days`), or `--db URL`.

    .venv/bin/python benchmarks/serve_first_render.py [--runs 5] [--days 90] [--db URL] [--preheat 1]
"""
from __future__ import annotations

import argparse
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


def serve_cmd(port: int, preheat: int) -> list[str]:
    script = Path(sys.executable).with_name("workbench")
    if script.exists():
        return [str(script), "serve", "--port", str(port), "--preheat", str(preheat)]
    code = f"from workbench.ui.server import serve_command; serve_command(port={port}, preheat={preheat})"
    return [sys.executable, "-c", code]


def build_city(days: int, seed: int, folder: Path) -> dict[str, str]:
    env = {"WORKBENCH_DB_URL": f"sqlite:///{folder / 'city.db'}", "WORKBENCH_DATA_DIR": str(folder / "data")}
    os.environ.update(env)
    from workbench.store import hub
    from workbench.synth import synth_city

    t = time.perf_counter()
    synth_city(days=days, seed=seed, out_dir=folder / "synth", progress=False)
    rows = int(hub.dataset_status()["rows"].sum())
    hub.dispose()
    print(f"sample city: {days} days, {rows:,} rows ({time.perf_counter() - t:.0f} s to build)", flush=True)
    return env


BENCH_USER, BENCH_PASSWORD = "bench-visitor", "bench-pass-1234"


def bench_user(db_url: str) -> None:
    """The benchmarks' visitor: a leader account in the hub (made once)."""
    from workbench import users
    from workbench.store import hub

    eng = hub.engine(db_url)
    if users.principal(BENCH_USER, eng, active_only=False) is None:
        users.create(BENCH_USER, BENCH_PASSWORD, role="leader", by="benchmark", eng=eng)


def signed_in_page(browser, env: dict[str, str], url: str):
    """A new page (its own context) signed in as a leader account of the hub: every page needs a
    signed-in user; the sign-in (argon2, about a second) is done before the clock of a render starts."""
    from urllib.parse import urlsplit

    from workbench.ui.browser import sign_in

    bench_user(env["WORKBENCH_DB_URL"])
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    sign_in(page, base, BENCH_USER, BENCH_PASSWORD, next_url=base + "/workbench/health")
    return page


def one_run(browser, env: dict[str, str], timeout: float, preheat: int) -> dict[str, float]:
    from workbench.ui.browser import render
    from workbench.ui.server import free_port

    port = free_port()
    lines: queue.Queue[str] = queue.Queue()
    t0 = time.perf_counter()
    proc = subprocess.Popen(serve_cmd(port, preheat), env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                            start_new_session=True)
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        url = None
        while url is None:  # the first dashboard URL `workbench serve` prints
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                raise RuntimeError("workbench serve printed no URL") from None
            if "/voila/render/" in line:
                url = line.split()[-1]
        ready = time.perf_counter() - t0
        page = signed_in_page(browser, env, url)
        first = render(page, url, timeout=timeout)
        rendered = time.perf_counter() - t0
        if first.errors:
            raise RuntimeError(f"{url}: {first.errors}")
        page.close()
        time.sleep(5)  # the pool refills (fill_delay) and the new kernel runs the imports
        page = signed_in_page(browser, env, url)
        again = render(page, url, timeout=timeout)
        page.close()
        return {"ready": ready, "first": rendered, "page": first.seconds, "again": again.seconds}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--days", type=int, default=90, help="days of the sample city (default 90)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--db", help="an existing hub's URL instead of a new sample city")
    ap.add_argument("--preheat", type=int, default=1, help="preheated kernels per dashboard (0: none)")
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args()

    from workbench.ui.browser import chromium

    with tempfile.TemporaryDirectory(prefix="wb-bench-serve-") as tmp:
        if args.db:
            env = {"WORKBENCH_DB_URL": args.db}
        else:
            env = build_city(args.days, args.seed, Path(tmp))
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}; workbench serve --preheat {args.preheat}", flush=True)
        results = []
        with chromium() as browser:
            for i in range(args.runs):
                r = one_run(browser, env, args.timeout, args.preheat)
                results.append(r)
                print(f"run {i + 1}: URLs printed {r['ready']:.2f} s, first dashboard rendered {r['first']:.2f} s "
                      f"after start (page itself {r['page']:.2f} s); next visit {r['again']:.2f} s", flush=True)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"median of {len(results)}: serve → URLs {med['ready']:.2f} s, serve → first dashboard rendered "
          f"{med['first']:.2f} s, a later visit {med['again']:.2f} s")


if __name__ == "__main__":
    main()
