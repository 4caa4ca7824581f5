"""Many users: concurrent signed-in users one machine serves with several Voilà processes behind a front.

    .venv/bin/python benchmarks/serve_users.py [--procs 2] [--users 4,8,16] [--visits 2] [--preheat 2]
        [--hub sqlite:///…] [--days 14] [--front nginx|client]

--procs Voilà processes (`workbench.ui.server.start`, sign-in on, as `workbench serve` runs them) share
one hub and one data folder, hence the sessions (user_sessions in the hub) and the secret the
session cookie is signed with: any process accepts a cookie another one set. A front spreads the
users over them and keeps each user on one process (a kernel lives in the process that started it,
and its websocket must reach that process):
- `nginx` (Debian's nginx, when installed): the configuration of docs/scale.md, `hash` on the
  session cookie, websockets upgraded; the users talk to nginx only;
- `client`: no front; each simulated user is given a process by the same rule (hash of its name).

Each step: --users simulated users at once (threads, a barrier), each signed in (POST /login), then
--visits visits to 城市运行总览 (dashboards/overview.ipynb): what the browser does over HTTP and a
websocket — GET the page (the server runs the dashboard in a kernel, a preheated one when the pool
has one), connect to the kernel's channels and wait for the kernel's first message (the widget
manager is live), then leave like Voilà's `beforeunload` (POST /voila/api/shutdown/<kernel>).
Time to first render: the page's GET until the websocket's first message. Errors: HTTP status ≠
200, a websocket that fails, a refusal (HTTP 429: a user's kernel cap). Prints per step the
median and 95th percentile, visits/minute and errors, then a table for the README.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
PASSWORD = "users-pass-1234"

NGINX_CONF = """
worker_processes 2;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    # the session cookie picks the process: a user's page and its kernel's websocket meet there
    map $http_cookie $wb_session {{
        default "";
        "~workbench-session=(?<s>[^;]+)" $s;
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        "" close;
    }}
    upstream voila {{
        hash $wb_session consistent;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://voila;
            proxy_http_version 1.1;
            proxy_set_header Host $host:$server_port;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
            proxy_buffering off;
        }}
    }}
}}
"""


def pick(name: str, n: int) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % n


def start_nginx(ports: list[int], port: int, run: Path) -> subprocess.Popen:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in ports)
    conf = run / "nginx.conf"
    conf.write_text(NGINX_CONF.format(run=run, servers=servers, port=port), encoding="utf-8")
    return subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)


def sign_in(base: str, username: str):
    import requests

    s = requests.Session()
    s.get(base + "/login", timeout=120)
    r = s.post(base + "/login", data={"username": username, "password": PASSWORD, "_xsrf": s.cookies.get("_xsrf")},
               allow_redirects=False, timeout=120)
    if r.status_code != 302:
        raise RuntimeError(f"sign-in of {username}: HTTP {r.status_code}")
    return s


def visit(s, base: str, page: str) -> tuple[float | None, str | None]:
    """One visit: (seconds to first render, problem)."""
    import websocket

    t0 = time.perf_counter()
    try:
        r = s.get(base + page, timeout=600)
    except Exception as exc:  # noqa: BLE001 - counted as an error
        return None, f"HTTP {type(exc).__name__}"
    m = re.search(r'"kernelId": "([0-9a-f-]{36})"', r.text)
    if r.status_code != 200 or not m:
        return None, f"HTTP {r.status_code}"
    kid = m.group(1)
    cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
    host = base.split("//", 1)[1]
    try:
        ws = websocket.create_connection(f"ws://{host}/api/kernels/{kid}/channels?session_id={uuid.uuid4().hex}",
                                         cookie=cookie, timeout=120)
        ws.send('{"header": {"msg_id": "%s", "username": "", "session": "%s", "msg_type": "kernel_info_request", '
                '"version": "5.3", "date": ""}, "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell", '
                '"buffers": []}' % (uuid.uuid4().hex, uuid.uuid4().hex))
        ws.recv()
        took = time.perf_counter() - t0
        ws.close()
    except Exception as exc:  # noqa: BLE001
        return None, f"websocket {type(exc).__name__}"
    try:
        s.post(base + f"/voila/api/shutdown/{kid}", data={"_xsrf": s.cookies.get("_xsrf", "")}, timeout=120)
    except Exception:  # noqa: BLE001 - the page is gone either way; culling ends the kernel
        pass
    return took, None


def step(n: int, args, bases: list[str], front: str | None, page: str) -> dict:
    names = [f"visitor{i + 1}" for i in range(n)]
    barrier = threading.Barrier(n)
    times: list[float] = []
    problems: list[str] = []
    lock = threading.Lock()

    def user(name: str):
        base = front or bases[pick(name, len(bases))]
        try:
            s = sign_in(base, name)
        except Exception as exc:  # noqa: BLE001
            with lock:
                problems.append(f"sign-in {type(exc).__name__}")
            barrier.abort()
            return
        try:
            barrier.wait(300)
        except threading.BrokenBarrierError:
            pass
        for _ in range(args.visits):
            took, problem = visit(s, base, page)
            with lock:
                if took is not None:
                    times.append(took)
                if problem:
                    problems.append(problem)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(nm,)) for nm in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    q = statistics.quantiles(times, n=20, method="inclusive") if len(times) >= 2 else times * 19
    return {"users": n, "visits": len(times) + len(problems), "ok": len(times),
            "median_s": statistics.median(times) if times else float("nan"),
            "p95_s": q[18] if times else float("nan"), "max_s": max(times) if times else float("nan"),
            "per_min": len(times) / wall * 60, "errors": len(problems), "problems": sorted(set(problems))[:4],
            "wall_s": wall}


def main(argv=None) -> int:
    from overview_bench import machine
    from serve_visits import hub_env

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--users", default="4,8,16")
    ap.add_argument("--visits", type=int, default=2, help="visits per user per step")
    ap.add_argument("--preheat", type=int, default=2, help="preheated kernels per process")
    ap.add_argument("--days", type=int, default=14, help="days of the sample city when no hub is given")
    ap.add_argument("--hub", help="WORKBENCH_DB_URL (visitor users are added to it)")
    ap.add_argument("--data-dir")
    ap.add_argument("--front", choices=["nginx", "client"], default="nginx" if shutil.which("nginx") else "client")
    args = ap.parse_args(argv)
    print("machine:", machine(), flush=True)
    env = {**os.environ, **hub_env(args)}
    from workbench import users
    from workbench.store import hub
    from workbench.ui import server

    folder = Path(tempfile.mkdtemp(prefix="serve-users-dash-"))
    shutil.copy(server.DASHBOARDS / server.FRONT_PAGE, folder / server.FRONT_PAGE)
    page = f"/voila/render/{server.FRONT_PAGE}"
    steps = [int(x) for x in args.users.split(",")]
    eng = hub.engine(server.hub_env(env)["WORKBENCH_DB_URL"])
    for i in range(max(steps)):
        if users.principal(f"visitor{i + 1}", eng, active_only=False) is None:
            users.create(f"visitor{i + 1}", PASSWORD, role="leader", by="serve_users", eng=eng)
    hub.dispose()
    servers, nginx, run = [], None, Path(tempfile.mkdtemp(prefix="serve-users-front-"))
    try:
        for _ in range(args.procs):
            servers.append(server.start(port=server.free_port(), env=env, folder=folder, preheat=args.preheat,
                                        migrate=not servers))
        t = time.perf_counter()
        for srv in servers:
            srv.wait_ready(timeout=600)
        print(f"{args.procs} Voilà processes up, {args.preheat} preheated kernel(s) each, "
              f"in {time.perf_counter() - t:.0f} s", flush=True)
        front = None
        if args.front == "nginx":
            port = server.free_port()
            nginx = start_nginx([s.port for s in servers], port, run)
            front = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    import requests

                    requests.get(front + "/login", timeout=2)
                    break
                except Exception:  # noqa: BLE001
                    time.sleep(0.1)
        print(f"front: {args.front}" + (f" at {front}" if front else " (each user given a process by its name)"),
              flush=True)
        results = []
        for n in steps:
            time.sleep(10)   # the pools refill between steps
            r = step(n, args, [s.base_url for s in servers], front, page)
            results.append(r)
            print(f"{n:3d} users: {r['ok']}/{r['visits']} visits, first render median {r['median_s']:.1f} s, "
                  f"p95 {r['p95_s']:.1f} s, max {r['max_s']:.1f} s, {r['per_min']:.0f} visits/min, "
                  f"errors {r['errors']} {r['problems']}", flush=True)
        print("\n| 同时在线用户 | 访问 | 首屏中位数 | 首屏 p95 | 每分钟访问 | 错误 |\n|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(f"| {r['users']} | {r['visits']} | {r['median_s']:.1f} s | {r['p95_s']:.1f} s | {r['per_min']:.0f} | "
                  f"{r['errors']} |")
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        for srv in servers:
            srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
