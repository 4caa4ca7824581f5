"""The analysts' JupyterLab (`workbench lab`): in Simplified Chinese, opening in notebooks/.

JupyterLab is started with a settings folder of the workbench's own (`settings_dir()`, under the
data folder, never ~/.jupyter): its `overrides.json` makes 简体中文 (the language pack
jupyterlab-language-pack-zh-CN) the default locale and turns off the news and update checks
(nothing is fetched from the internet). A person's own choices (another language, a theme) are
kept in the user settings beside it.

Who may open it: JupyterLab runs code as the account that starts it, with the hub's files in
reach, so it listens on loopback only (another address needs `allow_remote=True`, e.g. behind
an SSH tunnel or a proxy of the site) and asks for a random token, printed with the address.
With `user=` the notebooks act as that hub user ($WORKBENCH_USER: workbench.access.current),
e.g. an analyst whose personal data is always masked; the user's password is checked first.

The read-only SQL of the 查询数据中台 notebook (`sql`) lives here too: the hub module runs it.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workbench import config
from workbench.errors import WorkbenchError

LOCALE = "zh_CN"
ROOT = Path(__file__).resolve().parents[2] / "notebooks"   # the analyst notebooks of the repository
# JupyterLab's defaults for the workbench (app settings overrides: a person's own settings win)
OVERRIDES = {
    "@jupyterlab/translation-extension:plugin": {"locale": LOCALE},
    # no news feed, no update check: nothing is fetched from the internet
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
}


class LabError(WorkbenchError):
    """JupyterLab cannot start as asked; `problem` says why in Chinese."""


def settings_dir() -> Path:
    """The workbench's JupyterLab folder (data/lab): app settings (overrides.json), user settings,
    workspaces."""
    return config.data_dir() / "lab"


def write_settings(folder: Path | None = None) -> Path:
    """Write overrides.json (zh_CN and no internet) into `folder`/app-settings; returns the folder."""
    folder = Path(folder or settings_dir())
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)   # the runtime folder holds the cookie secret
    app = folder / "app-settings"
    app.mkdir(exist_ok=True)
    path = app / "overrides.json"
    text = json.dumps(OVERRIDES, ensure_ascii=False, indent=2) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    (folder / "user-settings").mkdir(exist_ok=True)
    (folder / "workspaces").mkdir(exist_ok=True)
    return folder


def command(host: str, port: int, token: str, *, root: Path | None = None, folder: Path | None = None,
            open_browser: bool = False) -> list[str]:
    """The JupyterLab command line the workbench starts."""
    folder = Path(folder or settings_dir())
    return [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.ip={host}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={Path(root or ROOT).resolve()}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.open_browser={open_browser}",
        f"--LabApp.app_settings_dir={folder / 'app-settings'}",
        f"--LabApp.user_settings_dir={folder / 'user-settings'}",
        f"--LabApp.workspaces_dir={folder / 'workspaces'}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",   # no search of PyPI from the extension panel
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),   # containers run as root
    ]


@dataclass
class Lab:
    """A running JupyterLab child process."""

    process: subprocess.Popen
    host: str
    port: int
    token: str
    root: Path
    user: str | None = None
    log_path: Path | None = None
    env: dict = field(default_factory=dict, repr=False)

    @property
    def base_url(self) -> str:
        from workbench.ui.server import _url_host

        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def url(self) -> str:
        """The address to open (its token signs the browser in)."""
        return f"{self.base_url}/lab?token={self.token}"

    def get(self, path: str, timeout: float = 10) -> bytes:
        """GET `path` on the lab with the token (for checks and tests)."""
        req = urllib.request.Request(self.base_url + path, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabError(f"JupyterLab 已退出（退出码 {self.process.returncode}）：\n{self.log()[-3000:]}")
            try:
                self.get("/api/status", timeout=2)
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        raise LabError(f"JupyterLab 在 {timeout:.0f} 秒内没有响应：\n{self.log()[-3000:]}")

    def log(self) -> str:
        if self.log_path and self.log_path.is_file():
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        return ""

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.terminate()   # jupyter_server shuts its kernels down on SIGTERM
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _check_user(user: str, password: str | None) -> None:
    """The hub user the notebooks will act as exists, is active and (when a password is given)
    signs in; LabError in Chinese otherwise."""
    from workbench import users

    if password is not None:
        got = users.sign_in(user, password, address="workbench lab")
        if got.principal is None:
            raise LabError(got.problem or "用户名或密码不正确")
        users.sign_out(got.token)
    elif users.principal(user) is None:
        raise LabError(f"没有启用的用户 {user}")


def start(host: str = "127.0.0.1", port: int = 8888, *, root: Path | str | None = None, user: str | None = None,
          password: str | None = None, token: str | None = None, allow_remote: bool = False,
          open_browser: bool = False, env: dict | None = None, log: Path | str | None = None) -> Lab:
    """Start JupyterLab in a child process (not waiting for it: `Lab.wait_ready`)."""
    from workbench.ui.server import loopback

    if not loopback(host) and not allow_remote:
        raise LabError(f"JupyterLab 可以运行任意代码，只在本机地址（127.0.0.1）上提供；{host} 不是本机地址。"
                       "需要远程使用时请用 SSH 隧道，或明确允许远程访问（workbench lab --allow-remote）。")
    root = Path(root or ROOT).resolve()
    if not root.is_dir():
        raise LabError(f"笔记本文件夹不存在：{root}")
    if user:
        _check_user(user, password)
    token = token or secrets.token_urlsafe(24)
    if not re.fullmatch(r"[A-Za-z0-9_\-]{16,}", token):
        raise LabError("令牌至少 16 个字符，只能是字母、数字、- 和 _")
    # the notebooks read the same hub and data folder as this process (paths made absolute: they run in root)
    from workbench.ui.server import hub_env

    run_env = hub_env(dict(os.environ if env is None else env))
    folder = write_settings(Path(run_env["WORKBENCH_DATA_DIR"]) / "lab")
    run_env["JUPYTERLAB_SETTINGS_DIR"] = str(folder / "user-settings")
    run_env["JUPYTERLAB_WORKSPACES_DIR"] = str(folder / "workspaces")
    run_env["JUPYTER_RUNTIME_DIR"] = str(folder / "runtime")   # its cookie secret and kernel files, private
    if user:
        run_env["WORKBENCH_USER"] = user
    log_path = Path(log) if log else folder / "jupyterlab.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as sink:
        proc = subprocess.Popen(command(host, port, token, root=root, folder=folder, open_browser=open_browser),
                                env=run_env, cwd=str(root), stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    return Lab(proc, host, port, token, root, user, log_path, run_env)


def main(host: str = "127.0.0.1", port: int = 8888, *, root: Path | str | None = None, user: str | None = None,
         password: str | None = None, token: str | None = None, allow_remote: bool = False,
         open_browser: bool = False) -> int:
    """`workbench lab`: start JupyterLab in Chinese at notebooks/, print the address with its token,
    run until Ctrl-C; returns the exit code. LabError (Chinese) when it cannot start."""
    import signal
    import threading

    lab = start(host, port, root=root, user=user, password=password, token=token,
                allow_remote=allow_remote, open_browser=open_browser)

    def _terminate(_signum, _frame):   # a service manager's stop: JupyterLab and its kernels end too
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        lab.wait_ready()
        print(f"JupyterLab（简体中文）已启动，笔记本目录：{lab.root}")
        if user:
            print(f"笔记本以用户 {user} 的身份读取数据中台。")
        print(f"请在浏览器中打开：{lab.url}")
        print("（地址中的令牌即登录凭据，请勿外传。按 Ctrl-C 停止。）", flush=True)
        return lab.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        lab.stop()


# ---------------------------------------------------------------------- the analysts' SQL

# tables an analyst's SQL does not read: the originals of personal data, accounts, sessions, the audit log
PROTECTED_TABLES = ("personal_data", "users", "user_sessions", "audit_log")


def sql(text: str, params: dict | None = None, *, eng=None) -> pd.DataFrame:
    """A read-only query on the hub: one SELECT (or WITH … SELECT) with named parameters
    (`:district`), run through the hub module in a transaction that cannot write (SQLite:
    query_only; PostgreSQL: READ ONLY) and rolled back. The protected tables (originals of
    personal data, accounts, the audit log) are refused; personal columns are masked as on every screen (`masked`)."""
    import sqlalchemy as sa

    from workbench.store import hub

    body = (text or "").strip().rstrip(";").strip()
    bare = re.sub(r"'(?:[^']|'')*'", "''", re.sub(r"--[^\n]*|/\*.*?\*/", " ", body, flags=re.S))
    if not re.match(r"(?is)^\s*(select|with)\b", bare) or ";" in bare:
        raise LabError("只能执行一条查询语句（SELECT 或 WITH … SELECT）")
    hit = [t for t in PROTECTED_TABLES if re.search(rf"\b{t}\b", bare, re.I)]
    if hit:
        raise LabError(f"表 {'、'.join(hit)} 受保护（个人信息原文、账号、审计日志），分析查询不能读取")
    eng = eng or hub.engine()
    with eng.connect() as conn:
        if eng.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = ON")
        else:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        try:
            res = conn.execute(sa.text(body), params or {})
            frame = pd.DataFrame.from_records([tuple(r) for r in res.fetchall()], columns=list(res.keys()))
        except sa.exc.StatementError as exc:   # the database's own words (a typo, a missing parameter, a write)
            raise LabError(f"查询未能执行：{str(getattr(exc, 'orig', None) or exc).strip().splitlines()[0]}") from exc
        finally:
            conn.rollback()
            if eng.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = OFF")
    return masked(frame)


def masked(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` as an analyst sees it. The hub's records hold no personal data (a caller's name, phone
    and ID number are kept apart at ingest, numbers typed into texts masked); a hazard site's owner
    and phone are stored as registered and masked on screens (王*, 138****1234): so here too, for
    every column of those names (privacy.MASKS and owner, phone)."""
    from workbench import privacy

    if frame is None or frame.empty:
        return frame
    personal = {**privacy.MASKS, "owner": privacy.mask_name, "phone": privacy.mask_phone}
    cols = [c for c in frame.columns if c in personal]
    if not cols:
        return frame
    out = frame.copy()
    for col in cols:
        out[col] = out[col].map(personal[col])
    return out


def load(dataset: str, **kw) -> pd.DataFrame:
    """One dataset of the hub as a DataFrame (workbench.store.hub.read: since/until in UTC, where,
    columns, limit), masked as an analyst sees it."""
    from workbench.store import hub
    from workbench.store.schema import DATASETS

    if dataset not in DATASETS:
        raise LabError(f"没有数据集“{dataset}”。可用的数据集：{'、'.join(DATASETS)}")
    return masked(hub.read(dataset, **kw))


__all__ = ["LOCALE", "ROOT", "OVERRIDES", "LabError", "Lab", "settings_dir", "write_settings", "command",
           "start", "main", "sql", "masked", "load", "PROTECTED_TABLES"]
