"""`workbench serve`: the departments' dashboards (dashboards/*.ipynb) in Voilà on 127.0.0.1,
with the city overview (城市运行总览, dashboards/overview.ipynb) as the front page: / opens it.

Voilà runs in a child process with preheated kernels: for every dashboard it keeps
`preheat` kernels that have already run the dashboard's imports and wait, in
`ui.query_params()`, for a browser to open the page; the data is then read fresh from the
hub. Kernels get the hub's settings (WORKBENCH_DB_URL, WORKBENCH_DATA_DIR, made absolute,
since a kernel runs in dashboards/) and the workbench's Voilà template (`city`).

Every page needs a signed-in user (workbench.ui.auth: the hub's accounts, or a trusted
single-sign-on proxy); a page's kernel belongs to its user, who holds at most
`kernels_per_user` of them; kernels idle for `cull_idle` seconds without a browser are shut
down. Loopback by default; another address only with a loud warning when there is no TLS, and
only the Host names allowed (DNS rebinding).

    start(port=0) -> VoilaServer      # non-blocking: tests, benchmarks
    serve(port=8866) -> exit code      # blocking: the CLI
"""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable

from workbench import config
from workbench.ui.theme import JUPYTER_DIR, TEMPLATE

DASHBOARDS = config.ROOT / "dashboards"
FRONT_PAGE = "overview.ipynb"  # 城市运行总览: what / opens on (instead of Voilà's file list)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8866
FILL_DELAY = 10.0           # seconds before a used preheated kernel is replaced: its start (imports,
                            # a warm-up read) would otherwise take the CPU from the page being drawn
CULL_IDLE = 300             # shut a page's kernel down five minutes after its browser left
CULL_INTERVAL = 60
KERNELS_PER_USER = 6        # page kernels one user may hold at once (every dashboard open at once)
_POOL_FILLED = re.compile(r"Kernel pool of (.+?) is filled with")
# Voilà logs a pool as filled when its kernels have *started*; a kernel is preheated only when
# it has run the dashboard's imports and waits for its request (ui.query_params), which the
# server logs (voila_main) when the kernel connects to /voila/query/<kernel id>.
WAITING = "[workbench] preheated kernel {} waits for its request"
_WAITING = re.compile(r"\[workbench\] preheated kernel (\S+) waits for its request")


# ------------------------------------------------------------------ what is served

def dashboards(folder: Path | str | None = None) -> list[Path]:
    """The dashboard notebooks, sorted by file name (checkpoints left out)."""
    folder = Path(folder or DASHBOARDS)
    return sorted(p for p in folder.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def dashboard_title(path: Path) -> str:
    """The Chinese title of a dashboard: its notebook metadata `title`, else the file name."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        meta = {}
    return meta.get("title") or Path(path).stem


def waits_for_request(path: Path) -> bool:
    """Whether a dashboard waits for its request (ui.query_params / ui.wait_for_request) in a
    preheated kernel; one that does not runs to its end when preheated."""
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return False
    code = "".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    return "query_params(" in code or "wait_for_request(" in code


def dashboard_url(base_url: str, path: Path | str) -> str:
    return f"{base_url.rstrip('/')}/voila/render/{Path(path).name}"


def dashboard_urls(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                   folder: Path | str | None = None) -> dict[str, str]:
    """Title → URL of every dashboard."""
    base = f"http://{_url_host(host)}:{port}"
    return {dashboard_title(p): dashboard_url(base, p) for p in dashboards(folder)}


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else (f"[{host}]" if ":" in host else host)


# ------------------------------------------------------------------ environment

def hub_env(base: dict | None = None) -> dict[str, str]:
    """The environment for Voilà and its kernels: the hub's settings made absolute, the
    workbench importable, and the `city` template on JUPYTER_PATH."""
    env = dict(os.environ if base is None else base)
    data_dir = Path(env.get("WORKBENCH_DATA_DIR") or config.ROOT / "data").expanduser().resolve()
    url = env.get("WORKBENCH_DB_URL") or f"sqlite:///{data_dir / 'city.db'}"
    env["WORKBENCH_DATA_DIR"] = str(data_dir)
    env["WORKBENCH_DB_URL"] = _absolute_sqlite(url)
    env["JUPYTER_PATH"] = os.pathsep.join([str(JUPYTER_DIR)] + [p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p])
    env["PYTHONPATH"] = os.pathsep.join([str(config.ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _absolute_sqlite(url: str) -> str:
    """sqlite:///data/city.db → sqlite:////abs/path/data/city.db (kernels run in dashboards/)."""
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.database.startswith("file:"):
        return url
    if Path(u.database).is_absolute():
        return url
    return u.set(database=str(Path(u.database).resolve())).render_as_string(hide_password=False)


def migrate_hub(env: dict | None = None) -> None:
    """Bring the hub's schema up to date once, before any kernel opens it (kernels start together)."""
    env = hub_env() if env is None else env
    from workbench.store import hub

    hub.engine(env["WORKBENCH_DB_URL"])
    hub.dispose(env["WORKBENCH_DB_URL"])


# ------------------------------------------------------------------ the Voilà process

@dataclass
class Security:
    """How `workbench serve` signs users in and whom it serves (workbench.ui.auth)."""

    auth: str = "password"                      # password (the hub's accounts) | proxy (single sign-on)
    trusted_proxies: tuple[str, ...] = ()       # the reverse proxy's address (one host each): in proxy mode
                                                # its user header, in both modes its X-Forwarded-Proto
    user_header: str = "X-Forwarded-User"
    proxy_secret_file: str | None = None        # proxy mode: the shared secret (0600) the proxy sends
    behind_https: bool = False                  # an HTTPS reverse proxy in front: the cookie is Secure
    kernels_per_user: int = KERNELS_PER_USER
    allow_hosts: tuple[str, ...] = ()           # Host names served besides loopback and the bound address
    certfile: str | None = None                 # TLS
    keyfile: str | None = None
    cull_idle: int = CULL_IDLE
    user_check: int = 30                        # seconds: the kernels of a user disabled meanwhile are shut down

    def args(self) -> list[str]:
        out = [f"--CityVoila.auth={self.auth}", f"--CityVoila.kernels_per_user={int(self.kernels_per_user)}",
               f"--CityVoila.user_header={self.user_header}",
               f"--MappingKernelManager.cull_idle_timeout={int(self.cull_idle)}",
               f"--MappingKernelManager.cull_interval={min(CULL_INTERVAL, max(5, int(self.cull_idle) // 2))}",
               "--MappingKernelManager.cull_connected=False",
               f"--CityVoila.user_check_interval={max(1, int(self.user_check))}"]
        out += [f"--CityVoila.trusted_proxies={p}" for p in self.trusted_proxies]
        if self.proxy_secret_file:
            out += [f"--CityVoila.proxy_secret_file={Path(self.proxy_secret_file).resolve()}"]
        if self.behind_https:
            out += ["--CityVoila.behind_https=True"]
        out += [f"--CityVoila.allow_hosts={h}" for h in self.allow_hosts]
        if self.certfile:
            out += [f"--CityVoila.certfile={Path(self.certfile).resolve()}"]
            if self.keyfile:
                out += [f"--CityVoila.keyfile={Path(self.keyfile).resolve()}"]
        return out

    @property
    def tls(self) -> bool:
        return bool(self.certfile)


def voila_command(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, preheat: int = 1,
                  folder: Path | str | None = None, show_tracebacks: bool = False,
                  fill_delay: float = FILL_DELAY, extra_args: Iterable[str] = (),
                  security: Security | None = None) -> list[str]:
    """The command line that runs the workbench's Voilà (workbench.ui.auth.CityVoila) on the
    dashboards folder; an option in `extra_args` replaces the same option set here."""
    security = security or Security()
    args = [
        sys.executable, "-c", "from workbench.ui.auth import main; main()",
        str(Path(folder or DASHBOARDS).resolve()),
        "--no-browser",
        f"--port={port}",
        f"--Voila.ip={host}",
        "--Voila.port_retries=0",          # the port asked for, or a clear failure
        f"--template={TEMPLATE if (JUPYTER_DIR / 'voila' / 'templates' / TEMPLATE).is_dir() else 'lab'}",
        "--theme=light",
        "--VoilaExporter.language_code=zh",
        # jupyterlab-plotly loads all of plotly.js (4.7 MB) on every page: our charts are drawn by
        # workbench-charts (workbench/ui/jupyter/labextensions), which loads 1.5 MB on the first chart
        "--VoilaConfiguration.extension_denylist=jupyterlab-plotly",
        f"--show_tracebacks={bool(show_tracebacks)}",
        *security.args(),
    ]
    if preheat > 0:
        args += ["--preheat_kernel=True", f"--pool_size={int(preheat)}",
                 f"--VoilaKernelManager.fill_delay={fill_delay}"]
    extra = list(extra_args)
    overridden = {_option_name(a) for a in extra if a.startswith("--")}
    multi = {"--CityVoila.trusted_proxies", "--CityVoila.allow_hosts"}   # list options: repeats add up
    return [a for a in args if _option_name(a) not in overridden or _option_name(a) in multi] + extra


def voila_main(argv: list[str] | None = None) -> None:
    """The workbench's Voilà (sign-in, kernel owners, Host check; / opens the city overview)."""
    from workbench.ui.auth import main

    main(argv)


def _option_name(arg: str) -> str:
    return arg.split("=", 1)[0] if arg.startswith("--") else arg


def port_free(host: str, port: int) -> bool:
    """Whether the server can listen on host:port now: a test bind made as the server's own
    (Tornado binds with SO_REUSEADDR), so a port whose last connections are still in TIME_WAIT
    after a stop (about a minute) is free, and one another process listens on is not."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        if os.name != "nt":   # on Windows SO_REUSEADDR would let two listeners share the port
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port nobody listens on now (for tests and benchmarks)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class VoilaServer:
    """A running Voilà child process, its log, and the dashboards it serves."""

    process: subprocess.Popen
    host: str
    port: int
    folder: Path
    preheat: int
    env: dict = field(default_factory=dict, repr=False)
    tls: bool = False  # the environment Voilà and kernels run with
    sink: IO | None = None
    log_tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=400))
    filled: set = field(default_factory=set)
    waiting: set = field(default_factory=set)    # kernels that have been preheated up to their request
    _reader: threading.Thread | None = None
    _stopping: bool = False

    def __post_init__(self):
        self._reader = threading.Thread(target=self._read, name="voila-log", daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.log_tail.append(line)
            m = _POOL_FILLED.search(line)
            if m:
                self.filled.add(m.group(1))
            w = _WAITING.search(line)
            if w:
                self.waiting.add(w.group(1))
            if self.sink is not None and not self._stopping:  # kernels' shutdown noise stays in log()
                try:
                    self.sink.write(line)
                    self.sink.flush()
                except (OSError, ValueError):
                    pass

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{_url_host(self.host)}:{self.port}"

    def urls(self) -> dict[str, str]:
        """Title → URL of every dashboard."""
        return {dashboard_title(p): dashboard_url(self.base_url, p) for p in dashboards(self.folder)}

    def url(self, notebook: str) -> str:
        """The URL of one dashboard by file name (`hub.ipynb` or `hub`)."""
        name = notebook if notebook.endswith(".ipynb") else f"{notebook}.ipynb"
        return dashboard_url(self.base_url, name)

    def log(self) -> str:
        return "".join(self.log_tail)

    def front_url(self) -> str:
        """The front page (/ redirects to the city overview when there is one)."""
        return self.base_url + "/"

    def listening(self) -> bool:
        import ssl

        ctx = ssl._create_unverified_context() if self.tls else None  # our own server on this machine
        try:  # not /: that opens the overview and would take a preheated kernel
            with urllib.request.urlopen(self.base_url + "/workbench/health", timeout=2, context=ctx) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def preheated(self) -> bool:
        """Every dashboard has its pool of kernels started and run up to the request (or
        preheating is off): a page opened now only reads the hub."""
        if self.preheat <= 0:
            return True
        boards = dashboards(self.folder)
        waits = sum(1 for p in boards if waits_for_request(p))
        return len(self.filled) >= len(boards) and len(self.waiting) >= waits * self.preheat

    def wait_ready(self, timeout: float = 120, preheated: bool = True) -> bool:
        """Wait until Voilà answers (and, by default, its kernel pools are filled).

        Raises RuntimeError if Voilà exits or does not answer in time; returns whether the
        pools were filled in time (the pages work either way, just slower the first time).
        """
        deadline = time.monotonic() + timeout
        up = False
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Voilà 已退出（退出码 {self.process.returncode}）：\n{self.log()[-4000:]}")
            up = up or self.listening()
            if up and (not preheated or self.preheated()):
                return True
            time.sleep(0.2)
        if not up:
            raise RuntimeError(f"Voilà 在 {timeout:.0f} 秒内没有响应：\n{self.log()[-4000:]}")
        return False

    def stop(self, timeout: float = 20) -> int:
        """Stop Voilà and its kernels (SIGTERM, then SIGKILL to its process group)."""
        self._stopping = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    self.process.kill()
                self.process.wait(5)
        if self._reader is not None:
            self._reader.join(2)
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, preheat: int = 1,
          folder: Path | str | None = None, env: dict | None = None, show_tracebacks: bool = False,
          fill_delay: float = FILL_DELAY, extra_args: Iterable[str] = (), log: IO | None = None,
          migrate: bool = True, security: Security | None = None) -> VoilaServer:
    """Start Voilà on the dashboards in a child process and return at once.

    `env` (default: this process's) is completed by `hub_env` (Voilà and its kernels share
    WORKBENCH_DATA_DIR, hence the secret that signs a page's user); `log` receives Voilà's output
    (default: discarded, the last lines are kept in `server.log()`).
    """
    security = security or Security()
    env = hub_env(env)
    env.pop(access_env(), None)            # a page's user comes from its request, never from here
    if host not in ("", "0.0.0.0", "::"):
        env["VOILA_APP_IP"] = host         # a preheated kernel asks the server for its request here
    if security.tls:
        env["VOILA_WS_PROTOCOL"] = "wss"
    if migrate:
        migrate_hub(env)
    folder = Path(folder or DASHBOARDS).resolve()
    cmd = voila_command(host, port, preheat=preheat, folder=folder, show_tracebacks=show_tracebacks,
                        fill_delay=fill_delay, extra_args=extra_args, security=security)
    proc = subprocess.Popen(cmd, env=env, cwd=str(folder), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                            bufsize=1, start_new_session=True)
    return VoilaServer(process=proc, host=host, port=port, folder=folder, preheat=preheat, env=env, sink=log,
                       tls=security.tls)


def access_env() -> str:
    from workbench.access import USER_ENV

    return USER_ENV


LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def loopback(host: str | None) -> bool:
    """Whether a host name or address (IPv6 bracketed or not, a zone dropped) is this machine's
    loopback: the one check of the server (serving, Host header, request-info socket)."""
    import ipaddress

    name = (host or "").strip().lower().rstrip(".")
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def exposure_warnings(host: str, security: Security) -> list[str]:
    """What `workbench serve` says, loudly, before serving on another address than loopback."""
    out = []
    if loopback(host):
        return out
    where = "所有网络地址" if host in ("", "0.0.0.0", "::") else f"地址 {host}"
    if not security.tls:
        out.append(f"警告：看板服务将在{where}上以明文 HTTP 提供！密码、会话和个人信息会以明文在网络上传输。"
                   "请用 --certfile/--keyfile 启用 TLS，或只监听 127.0.0.1 并由 HTTPS 反向代理对外（见 docs/security.md）。")
    if security.auth == "proxy":
        out.append("提示：单点登录（proxy）模式只相信来自 --trusted-proxy 地址的用户名请求头；"
                   "请确保其他机器无法绕过代理直接访问本端口。")
    if not security.allow_hosts:
        out.append("提示：只接受 Host 为本机回环名称或监听地址的请求；通过域名访问需加 --allow-host 域名。")
    return out


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, open_browser: bool = False, preheat: int = 1,
          extra_args: Iterable[str] = (), *, folder: Path | str | None = None,
          show_tracebacks: bool = False, security: Security | None = None) -> int:
    """Run the dashboards until Ctrl-C (or SIGTERM); print each dashboard's URL. Returns the exit code."""
    security = security or Security()
    problem = check_security(host, security)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    for line in exposure_warnings(host, security):
        print("!" * 70 + "\n" + line + "\n" + "!" * 70, file=sys.stderr, flush=True)
    if not dashboards(folder):
        print(f"没有找到看板：{Path(folder or DASHBOARDS)} 下没有 .ipynb 文件", file=sys.stderr)
        return 1
    if not port_free(host, port):
        print(f"端口 {port} 已被占用，请用 --port 指定其他端口。", file=sys.stderr)
        return 1
    try:
        server = start(host, port, preheat=preheat, folder=folder, show_tracebacks=show_tracebacks,
                       extra_args=extra_args, log=sys.stderr, security=security)
    except Exception as exc:  # the hub could not be opened or migrated
        print(f"无法打开数据中台：{exc}", file=sys.stderr)
        return 1

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        print("正在启动看板服务（预热内核）…", flush=True)
        try:
            warm = server.wait_ready(timeout=180)
        except RuntimeError as exc:
            print(f"看板服务启动失败：{exc}", file=sys.stderr)
            server.stop()
            return 1
        urls = server.urls()
        print(f"看板服务已启动：{server.base_url}/" + ("" if warm else "（内核仍在预热，首次打开会稍慢）"), flush=True)
        front = (Path(folder or DASHBOARDS) / FRONT_PAGE).is_file()
        if front:
            print(f"  首页（城市运行总览）\t{server.front_url()}", flush=True)
        for title, url in urls.items():
            print(f"  {title}\t{url}", flush=True)
        if security.auth == "proxy":
            print(f"  登录：单点登录（用户名取自可信代理 {'、'.join(security.trusted_proxies)} 的 {security.user_header} 请求头）", flush=True)
        else:
            print(f"  登录：{server.base_url}/login（账号：workbench users add / workbench users demo）", flush=True)
        print("按 Ctrl-C 停止。", flush=True)
        if open_browser and urls:
            import webbrowser

            webbrowser.open(server.front_url() if front else next(iter(urls.values())))
        return server.process.wait()
    except KeyboardInterrupt:
        print("\n正在停止看板服务…", flush=True)
        server.stop()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server.process.poll() is None:
            server.stop()


def check_security(host: str, security: Security) -> str | None:
    """Why the options cannot be served (Chinese), or None."""
    if security.auth not in ("password", "proxy"):
        return f"未知的登录方式“{security.auth}”：可选 password（内置登录）或 proxy（单点登录）"
    if security.auth == "proxy":
        problem = proxy_problem(security.trusted_proxies, security.proxy_secret_file)
        if problem:
            return problem
    elif security.trusted_proxies:
        problem = proxy_problem(security.trusted_proxies, None, secret_needed=False)
        if problem:
            return problem
    if security.keyfile and not security.certfile:
        return "--keyfile 需要与 --certfile 一起使用"
    for f in (security.certfile, security.keyfile):
        if f and not Path(f).is_file():
            return f"找不到证书文件：{f}"
    if security.kernels_per_user < 1:
        return "--kernels-per-user 至少为 1"
    return None


PROXY_SECRET_HEADER = "X-Workbench-Proxy-Secret"


def proxy_problem(proxies, secret_file, secret_needed: bool = True) -> str | None:
    """Why the trusted proxies (one host each) or the proxy's shared-secret file cannot be used, or None."""
    import ipaddress
    import stat

    if not proxies:
        return "单点登录（--auth proxy）需要 --trusted-proxy 指定反向代理的地址"
    for p in proxies:
        try:
            net = ipaddress.ip_network(p, strict=False)
        except ValueError:
            return f"--trusted-proxy “{p}” 不是 IP 地址"
        if net.prefixlen != net.max_prefixlen:
            return (f"--trusted-proxy “{p}” 是一个网段（{net.num_addresses} 个地址）：只能填写反向代理本身的单个地址，"
                    "否则网段内任何主机都可冒充任意用户")
    if not secret_needed:
        return None
    if not secret_file:
        return (f"单点登录（--auth proxy）需要 --proxy-secret-file：反向代理在 {PROXY_SECRET_HEADER} 请求头中携带的共享密钥"
                "（只凭来源地址，本机任何账号的进程都能冒充任意用户）")
    path = Path(secret_file)
    try:
        st = path.stat()
    except OSError:
        return f"找不到代理共享密钥文件：{secret_file}"
    if not stat.S_ISREG(st.st_mode):
        return f"代理共享密钥文件不是普通文件：{secret_file}"
    if st.st_mode & 0o077:
        return f"代理共享密钥文件 {secret_file} 的权限过宽（{stat.S_IMODE(st.st_mode):o}）：请执行 chmod 600 {secret_file}"
    if len(read_proxy_secret(secret_file)) < 16:
        return f"代理共享密钥文件 {secret_file} 中的密钥太短（至少 16 个字符，例如 openssl rand -hex 32 生成）"
    return None


def read_proxy_secret(secret_file: str) -> str:
    try:
        return Path(secret_file).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def serve_command(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, open_browser: bool = False,
                  preheat: int = 1, security: Security | None = None) -> None:
    """The body of `workbench serve`; exits with serve()'s code. Wire it with click:

        @main.command()
        @click.option("--host", default="127.0.0.1", show_default=True, help="监听地址")
        @click.option("--port", default=8866, show_default=True, type=int, help="端口")
        @click.option("--open/--no-open", "open_browser", default=False, help="启动后打开浏览器")
        @click.option("--preheat", default=1, show_default=True, type=int, help="每个看板预热的内核数（0 关闭）")
        def serve(host, port, open_browser, preheat):
            '''启动各部门看板（Voilà）。'''
            from workbench.ui.server import serve_command
            serve_command(host, port, open_browser, preheat)
    """
    raise SystemExit(serve(host, port, open_browser=open_browser, preheat=preheat, security=security))


if __name__ == "__main__":  # python -m workbench.ui.server [port]
    serve_command(port=int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PORT)


__all__ = ["DASHBOARDS", "FRONT_PAGE", "voila_main", "waits_for_request", "DEFAULT_HOST", "DEFAULT_PORT", "VoilaServer", "dashboards", "dashboard_title",
           "dashboard_url", "dashboard_urls", "hub_env", "migrate_hub", "voila_command", "port_free",
           "free_port", "start", "serve", "serve_command", "Security", "check_security", "exposure_warnings",
           "CULL_IDLE", "KERNELS_PER_USER", "loopback", "proxy_problem", "PROXY_SECRET_HEADER"]
