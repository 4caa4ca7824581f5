"""Kernels and memory after 50 dashboard visits: the old serving settings against the new ones
(issue 13: "a kernel only after sign-in, a cap per user, idle kernels culled — memory after 50
visits stays flat").

    .venv/bin/python benchmarks/serve_visits.py [--visits 50] [--users 5] [--days 14] [--hub sqlite:///…]

One run, the same hub and dashboard (城市运行总览, dashboards/overview.ipynb alone in a folder,
so each server keeps one preheated kernel) for each setting:

- old: Voilà as `workbench serve` ran it before sign-in (no sign-in, idle kernels culled after
  an hour, no cap), each visit anonymous;
- new, tabs closed: `workbench serve` now (sign-in, 6 kernels per user, idle culling after 5 min,
  the kernel owner's shutdown on page close), each visit by one of --users signed-in users;
- new, tabs abandoned: the same, but no visitor closes the tab the polite way (a crashed browser, a
  laptop lid closed): the shutdown request never comes.

A visit is what the browser does, over plain HTTP and a websocket: GET the page (the server runs
the dashboard in its kernel), connect to the kernel's channels as the widget manager does, then
leave — close the socket and, like Voilà's `beforeunload`, POST /voila/api/shutdown/<kernel>
with the `_xsrf` cookie (unless the tab is abandoned). After the visits: the kernels alive and the
resident memory (RSS) of Voilà and all its kernels together. Prints the figures and the machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))   # overview_bench: machine(), its year of the city
PASSWORD = "visit-pass-1234"
MIN_AVAILABLE = 3 * 2**30     # stop a setting's visits before the machine runs out of memory


def tree(pid: int):
    import psutil

    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def measure(pid: int) -> tuple[int, float]:
    """(kernels alive, GiB resident in Voilà and its kernels)."""
    import psutil

    kernels, rss = 0, 0
    for p in tree(pid):
        try:
            rss += p.memory_info().rss
            if "ipykernel" in " ".join(p.cmdline()):
                kernels += 1
        except psutil.NoSuchProcess:
            continue
    return kernels, rss / 2**30


def old_server(folder: Path, env: dict, port: int):
    """Voilà with the settings `workbench serve` had before issue 13."""
    from workbench.ui import server
    from workbench.ui.theme import TEMPLATE

    cmd = [sys.executable, "-m", "voila", str(folder), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
           "--Voila.port_retries=0", f"--template={TEMPLATE}", "--theme=light", "--VoilaExporter.language_code=zh",
           "--MappingKernelManager.cull_idle_timeout=3600", "--MappingKernelManager.cull_interval=300",
           "--preheat_kernel=True", "--pool_size=1", f"--VoilaKernelManager.fill_delay={server.FILL_DELAY}"]
    return subprocess.Popen(cmd, env=env, cwd=str(folder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def wait_up(base: str, path: str, timeout: float = 180) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(base + path, timeout=2, allow_redirects=False).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{base} did not answer")


def visit(session, base: str, page: str, close: bool) -> str | None:
    import websocket

    r = session.get(base + page, timeout=600)
    m = re.search(r'"kernelId": "([0-9a-f-]{36})"', r.text)
    if r.status_code != 200 or not m:
        return f"HTTP {r.status_code}"
    kid = m.group(1)
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    try:
        ws = websocket.create_connection(f"ws{base[4:]}/api/kernels/{kid}/channels?session_id={uuid.uuid4().hex}",
                                         cookie=cookie, timeout=30)
        time.sleep(0.3)
        ws.close()
    except Exception as exc:  # noqa: BLE001 - reported, the visit goes on
        return f"websocket {type(exc).__name__}"
    if close:
        session.post(base + f"/voila/api/shutdown/{kid}", data={"_xsrf": session.cookies.get("_xsrf", "")}, timeout=60)
    return None


def run_setting(name: str, args, folder: Path, env: dict) -> dict:
    import psutil
    import requests

    from workbench import users
    from workbench.store import hub
    from workbench.ui import server

    port = server.free_port()
    base = f"http://127.0.0.1:{port}"
    page = "/voila/render/overview.ipynb"
    if name == "old":
        proc = old_server(folder, server.hub_env(env), port)
        pid = proc.pid
        wait_up(base, "/voila/tree")
        sessions = [requests.Session() for _ in range(args.users)]
        stop = proc
    else:
        srv = server.start(port=port, env=env, folder=folder, preheat=1)
        srv.wait_ready(timeout=240)
        pid, stop = srv.process.pid, srv
        sessions = []
        eng = hub.engine(srv.env["WORKBENCH_DB_URL"])
        for i in range(args.users):
            if users.principal(f"visitor{i + 1}", eng, active_only=False) is None:
                users.create(f"visitor{i + 1}", PASSWORD, role="leader", by="serve_visits", eng=eng)
            s = requests.Session()
            s.get(base + "/login", timeout=30)
            s.post(base + "/login", data={"username": f"visitor{i + 1}", "password": PASSWORD,
                                          "_xsrf": s.cookies.get("_xsrf")}, allow_redirects=False, timeout=30)
            sessions.append(s)
    time.sleep(5)   # the pool's kernel has preheated
    k0, m0 = measure(pid)
    if os.environ.get("SERVE_VISITS_DEBUG"):
        for p in tree(pid):
            print("   ", p.pid, " ".join(p.cmdline())[:160], flush=True)
    close = name != "new, tabs abandoned"
    problems, done, t0 = [], 0, time.perf_counter()
    try:
        for i in range(args.visits):
            if psutil.virtual_memory().available < MIN_AVAILABLE:
                problems.append(f"stopped after {done} visits: under {MIN_AVAILABLE / 2**30:.0f} GiB available")
                break
            p = visit(sessions[i % len(sessions)], base, page, close)
            if p:
                problems.append(p)
            done += 1
        time.sleep(3)   # shutdowns finish
        k1, m1 = measure(pid)
    finally:
        if name == "old":
            try:
                os.killpg(stop.pid, 15)
                stop.wait(30)
            except Exception:  # noqa: BLE001
                os.killpg(stop.pid, 9)
        else:
            stop.stop()
    return {"setting": name, "visits": done, "seconds": time.perf_counter() - t0, "kernels_before": k0,
            "gib_before": m0, "kernels_after": k1, "gib_after": m1, "refused": sum(p.startswith("HTTP 429") for p in problems),
            "problems": problems}


def hub_env(args) -> dict:
    if args.hub:
        return {"WORKBENCH_DB_URL": args.hub, "WORKBENCH_DATA_DIR": args.data_dir or str(ROOT / "data")}
    from overview_bench import YEAR

    root = Path(tempfile.mkdtemp(prefix="serve-visits-"))
    src = YEAR / "city.db"
    if src.exists():   # the overview benchmark's year of the city: a copy (visitors are added to it)
        shutil.copy(src, root / "city.db")
    else:
        from workbench.store import hub
        from workbench.synth import synth_city

        print(f"making {args.days} days of the sample city in {root} …", flush=True)
        os.environ.update({"WORKBENCH_DB_URL": f"sqlite:///{root / 'city.db'}", "WORKBENCH_DATA_DIR": str(root / "data")})
        synth_city(days=args.days, seed=7, end=dt.date.today() - dt.timedelta(days=1), out_dir=root / "synth",
                   progress=False)
        hub.dispose(os.environ["WORKBENCH_DB_URL"])
    return {"WORKBENCH_DB_URL": f"sqlite:///{root / 'city.db'}", "WORKBENCH_DATA_DIR": str(root / "data")}


def main(argv=None) -> int:
    from overview_bench import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visits", type=int, default=50)
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--days", type=int, default=14, help="days of the sample city when no hub is given")
    ap.add_argument("--hub", help="WORKBENCH_DB_URL (visitor users are added to it)")
    ap.add_argument("--data-dir")
    ap.add_argument("--only", choices=["old", "new", "abandoned"], action="append")
    args = ap.parse_args(argv)
    print("machine:", machine(), flush=True)
    env = hub_env(args)
    from workbench.ui import server

    folder = Path(tempfile.mkdtemp(prefix="serve-visits-dash-"))
    shutil.copy(server.DASHBOARDS / server.FRONT_PAGE, folder / server.FRONT_PAGE)
    names = {"old": "old", "new": "new, tabs closed", "abandoned": "new, tabs abandoned"}
    results = []
    for key in args.only or ["old", "new", "abandoned"]:
        r = run_setting(names[key], args, folder, {**os.environ, **env})
        results.append(r)
        print(f"{r['setting']:22s} {r['visits']} visits in {r['seconds']:.0f} s by {args.users} users: "
              f"kernels {r['kernels_before']} → {r['kernels_after']}, Voilà + kernels RSS "
              f"{r['gib_before']:.2f} → {r['gib_after']:.2f} GiB"
              + (f"; refused (cap) {r['refused']}" if r["refused"] else "")
              + (f"; {len(r['problems'])} problems: {sorted(set(r['problems']))[:3]}" if r["problems"] else ""),
              flush=True)
    print("\n| setting | visits | kernels alive after | RSS Voilà + kernels after |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['setting']} | {r['visits']} | {r['kernels_after']} | {r['gib_after']:.2f} GiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
