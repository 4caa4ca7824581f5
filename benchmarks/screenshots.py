"""Screenshots of every dashboard for the README: docs/screenshots/<page>.png.

Serves the demo city with `workbench serve` on a free loopback port (as a person would), signs
in with a demo account (`workbench users demo`, data/demo-accounts.txt) through the Chinese
sign-in form (workbench.ui.browser.sign_in), opens each dashboard in headless Chromium at
1600 px wide, waits until its last cell has run, and saves the page (at most `--max-height`
px of it) as a PNG, reduced to a palette of 256 colours and, if still needed, scaled down until
it is under `--max-kb` (400 KB).

The hub: `--data-dir` of a demo city already made (`make demo` fills data/), else a sample city
of `--days` days (seed 7) built in a temp folder with the steps `make demo` runs (warnings,
market analysis, linkage).

    .venv/bin/python benchmarks/screenshots.py [--data-dir data] [--days 60] [--user demo-leader]
"""
from __future__ import annotations

import argparse
import io
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
WIDTH, HEIGHT = 1600, 1000


def workbench(*args: str, env: dict) -> str:
    script = Path(sys.executable).with_name("workbench")
    cmd = [str(script), *args] if script.exists() else [sys.executable, "-m", "workbench.cli", *args]
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"workbench {' '.join(args)}: {res.stderr[-2000:]}")
    return res.stdout


def demo_city(days: int, seed: int, folder: Path) -> dict[str, str]:
    """A sample city with what `make demo` adds to it (warnings, market analysis, linkage)."""
    env = {**os.environ, "WORKBENCH_DB_URL": f"sqlite:///{folder / 'city.db'}",
           "WORKBENCH_DATA_DIR": str(folder / "data")}
    t = time.perf_counter()
    workbench("synth", "--days", str(days), "--seed", str(seed), "--if-empty", env=env)
    workbench("safety", "warn", env=env)
    workbench("market", "analyse", "--no-progress", env=env)
    workbench("linkage", "run", env=env)
    print(f"demo city: {days} days, seed {seed} ({time.perf_counter() - t:.0f} s)", flush=True)
    return env


def demo_password(env: dict, user: str) -> str:
    """The demo account's password (made by `workbench users demo`, kept in demo-accounts.txt)."""
    workbench("users", "demo", env=env)
    path = Path(env["WORKBENCH_DATA_DIR"]) / "demo-accounts.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if not line.startswith("#") and len(parts) >= 2 and parts[0] == user:
            return parts[1]
    raise RuntimeError(f"{path} has no account {user}")


def serve(env: dict, port: int, timeout: float) -> tuple[subprocess.Popen, dict[str, str]]:
    """`workbench serve` on 127.0.0.1:port; returns the process and {page: url} once it is up."""
    script = Path(sys.executable).with_name("workbench")
    cmd = [str(script), "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", errors="replace", start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    urls: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if "/voila/render/" in line:
            url = line.split()[-1]
            urls[Path(url.split("?")[0]).stem] = url
        if "Ctrl-C" in line:
            return proc, urls
    stop(proc)
    raise RuntimeError("workbench serve did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def small_png(png: bytes, max_kb: int) -> tuple[bytes, tuple[int, int]]:
    """The screenshot as a 256-colour PNG, scaled down (by 10 % steps) until it is under max_kb."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    scale = 1.0
    while True:
        im = img if scale == 1.0 else img.resize((round(img.width * scale), round(img.height * scale)),
                                                 Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, format="PNG", optimize=True)
        if buf.tell() <= max_kb * 1024 or scale < 0.3:
            return buf.getvalue(), im.size
        scale *= 0.9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, help="a demo city's data folder (city.db inside); default: build one")
    ap.add_argument("--days", type=int, default=60, help="days of the sample city built when no --data-dir (default 60)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--user", default="demo-leader", help="the demo account to sign in as (default demo-leader)")
    ap.add_argument("--pages", nargs="*", help="only these dashboards (file names without .ipynb)")
    ap.add_argument("--max-kb", type=int, default=400)
    ap.add_argument("--max-height", type=int, default=2400, help="px of the page kept from its top (default 2400)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--tries", type=int, default=2, help="opens of a page that shows an error before giving up")
    args = ap.parse_args()

    from workbench.ui.browser import chromium, remember, render, sign_in
    from workbench.ui.server import free_port

    tmp = None
    if args.data_dir:
        data = args.data_dir.resolve()
        env = {**os.environ, "WORKBENCH_DATA_DIR": str(data),
               "WORKBENCH_DB_URL": os.environ.get("WORKBENCH_DB_URL") or f"sqlite:///{data / 'city.db'}"}
    else:
        tmp = tempfile.TemporaryDirectory(prefix="wb-shots-")
        env = demo_city(args.days, args.seed, Path(tmp.name))
    password = demo_password(env, args.user)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc, urls = serve(env, free_port(), args.timeout)
    print(f"workbench serve up in {time.perf_counter() - t0:.0f} s: {', '.join(urls)}", flush=True)
    failed = []
    try:
        with chromium() as browser:
            ctx = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, locale="zh-CN")
            page = ctx.new_page()
            base = urls[next(iter(urls))].split("/voila/")[0]
            sign_in(page, base, args.user, password, next_url=base + "/workbench/health")
            remember(base, args.user, password)   # a page sent back to /login signs in again by itself
            for name, url in urls.items():
                if args.pages and name not in args.pages:
                    continue
                for attempt in range(args.tries):   # a busy machine: a kernel may miss its request once
                    shot = render(page, url, timeout=args.timeout)
                    if not shot.errors:
                        break
                    print(f"  {name} (try {attempt + 1}): {shot.errors[:3]}", flush=True)
                else:
                    failed.append(name)
                page.wait_for_timeout(1500)   # plotly figures and late widgets draw
                full = page.evaluate("document.documentElement.scrollHeight")
                height = min(int(full), args.max_height)
                png = page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
                small, size = small_png(png, args.max_kb)
                path = args.out / f"{name}.png"
                path.write_bytes(small)
                print(f"  {name}: {shot.seconds:.1f} s to render, page {full} px tall, "
                      f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
                      f"{size[0]}×{size[1]} {len(small) / 1024:.0f} KB", flush=True)
            ctx.close()
    finally:
        stop(proc)
        if tmp is not None:
            tmp.cleanup()
    if failed:
        sys.exit(f"pages with errors: {', '.join(failed)}")


if __name__ == "__main__":
    main()
