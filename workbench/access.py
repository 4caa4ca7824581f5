"""Who is acting, and what they may see and do (可信: sign-in and roles).

A *principal* is the identity a page, a report or a command acts as: a signed-in user of the
hub (`workbench.users`), or the system itself (a scheduled report, the camera watcher, ingest).
Screens never take an actor from a text box: the actor of every case step is the principal's
`actor` (display name and user name).

Roles (one per user; department and district are attributes of the user):

| role      | 中文       | reads                    | acts on cases                         | personal data      |
|-----------|------------|--------------------------|---------------------------------------|--------------------|
| leader    | 市领导     | everything               | none                                  | masked             |
| staff     | 部门人员   | everything               | its department's (owner or assigned)  | its department's   |
| district  | 区县人员   | its district's rows only | its district's (and department's)     | its district's     |
| analyst   | 数据分析员 | everything               | none                                  | masked, always     |
| reviewer  | 抓拍复核员 | everything               | as staff                              | as staff + unblurred evidence |
| admin     | 系统管理员 | everything + audit       | none (manages users, backups)         | masked             |

Row-level scope: a district user reads only rows of their district (`scope`), acts only on
cases of their district; a case without a district is outside every district's scope.
Unmasking personal data is allowed for the roles above, and only with a reason; each unmasked
read is written to the audit log (`workbench.audit`) by the code that reads the original.

In a Voilà kernel the principal comes from the server (workbench.ui.auth): the page request
carries the signed user name (`HTTP_X_WORKBENCH_USER`), verified here with the hub's secret.
On the command line it is a hub user named with `--user`/$WORKBENCH_USER, or the operator
(`cli:<login>`), who acts as the system does.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench import config
from workbench.errors import WorkbenchError

ROLES: dict[str, str] = {
    "leader": "市领导",
    "staff": "部门人员",
    "district": "区县人员",
    "analyst": "数据分析员",
    "reviewer": "抓拍复核员",
    "admin": "系统管理员",
}
ACTING_ROLES = frozenset({"staff", "district", "reviewer"})
UNMASKING_ROLES = frozenset({"staff", "district", "reviewer"})
USER_HEADER = "X-Workbench-User"                  # set by the server only; a client's is discarded
USER_ENV = "HTTP_X_WORKBENCH_USER"                # how Voilà hands that header to the kernel
TOKEN_TTL = 8 * 3600                              # a page's identity token: the session's idle limit


class AccessDenied(WorkbenchError):
    """An action the principal may not take; `problem` says why in Chinese."""


@dataclass(frozen=True)
class Principal:
    username: str
    name: str = ""
    role: str = "analyst"
    department: str | None = None   # an agency: 市场监管局, 应急管理局, 城市管理和综合执法局 …
    district: str | None = None     # a district of the city: 荷塘区 …
    system: bool = False            # the workbench itself (reports, watcher, ingest, the operator)

    @property
    def actor(self) -> str:
        """What history rows say did it: 张三（zhangsan）; the system's own name for the system."""
        if self.system:
            return self.name or self.username
        return f"{self.name}（{self.username}）" if self.name and self.name != self.username else self.username

    @property
    def role_label(self) -> str:
        return ROLES.get(self.role, self.role)

    @property
    def describe(self) -> str:
        """张三 · 部门人员 · 市场监管局 (what a page header shows)."""
        parts = [self.name or self.username, self.role_label]
        parts += [p for p in (self.department, self.district) if p]
        return " · ".join(parts)

    # ------------------------------------------------------------------ reading
    @property
    def sees_all(self) -> bool:
        return self.system or self.role != "district"

    def may_read_district(self, district) -> bool:
        return self.sees_all or (bool(self.district) and district == self.district)

    @property
    def may_read_audit(self) -> bool:
        return self.role == "admin"

    @property
    def may_manage(self) -> bool:
        """Users, roles, backups."""
        return self.role == "admin"

    @property
    def may_review_evidence(self) -> bool:
        """Unblurred kitchen frames (children may appear): the reviewing role only."""
        return self.role == "reviewer"

    def may_unmask(self, *, department: str | None = None, district: str | None = None,
                   owners: frozenset | set | tuple = ()) -> str | None:
        """None when this principal may read personal data of a record assigned to `department`,
        in `district`, of a dataset owned by `owners` (its agency and its case types' owners);
        else why not (Chinese). A record nobody is assigned to yet is its owners' alone."""
        if self.role not in UNMASKING_ROLES:
            return f"{self.role_label}不能查看个人信息原文（仅限经办部门、区县人员）"
        if self.role == "district":
            if not self.district or district != self.district:
                return f"该记录不属于{self.district or '您所在的区县'}"
            return None
        if not self.department:
            return f"账号 {self.username} 没有所属部门，不能查看个人信息原文"
        if self.department == department or self.department in set(owners):
            return None
        if department:
            return f"该记录由{department}经办，{self.department}不能查看其个人信息原文"
        return f"该记录尚未派往部门，只有{'、'.join(sorted(owners)) or '主管部门'}能查看其个人信息原文"

    # ------------------------------------------------------------------ acting
    def why_not_act(self, *, owner: str | None = None, department: str | None = None,
                    district: str | None = None, what: str = "办理该案件") -> str | None:
        """None when this principal may move a case owned by `owner` (the case type's
        department), assigned to `department`, in `district`; else why not (Chinese)."""
        if self.system:
            return None
        if self.role not in ACTING_ROLES:
            return f"{self.role_label}只能查看，不能{what}"
        if self.role == "district":
            if not self.district:
                return f"账号 {self.username} 没有所属区县，不能{what}"
            if district != self.district:
                return f"该案件属于{district or '未定区县'}，{self.district}人员不能{what}"
            if self.department and self.department not in (owner, department):
                return f"该案件由{department or owner}办理，{self.department}不能{what}"
            return None
        if not self.department:
            return f"账号 {self.username} 没有所属部门，不能{what}"
        if self.department not in (owner, department):
            return f"该案件由{department or owner}办理，{self.department}不能{what}"
        return None

    def require_act(self, **kw) -> None:
        why = self.why_not_act(**kw)
        if why:
            raise AccessDenied(why)


SYSTEM = Principal("system", "系统自动", role="admin", system=True)


def system(name: str = "系统自动") -> Principal:
    """The workbench acting by itself (a rule, a scheduled report, the camera watcher)."""
    return Principal("system", name, role="admin", system=True)


def operator() -> Principal:
    """Someone at the machine's shell (the CLI without --user): acts as the system, named."""
    import getpass

    try:
        login = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers)
        login = str(os.getuid()) if hasattr(os, "getuid") else "operator"
    return Principal(f"cli:{login}", f"命令行（{login}）", role="admin", system=True)


# ---------------------------------------------------------------------- row-level scope

def scope(frame: pd.DataFrame, who: Principal | None, column: str = "district") -> pd.DataFrame:
    """The rows of `frame` that `who` may read: all of them, or a district user's district only
    (rows without the column's value are outside every district)."""
    if who is None or who.sees_all or frame is None:
        return frame
    if column not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame[column] == who.district]


def district_filter(who: Principal | None) -> str | None:
    """The district a query must be limited to (None: no limit)."""
    return None if who is None or who.sees_all else (who.district or "\x00none")


# ---------------------------------------------------------------------- the page's identity

def secret_path() -> Path:
    return config.data_dir() / ".secret"


def secret() -> bytes:
    """The hub's signing secret (data/.secret, 0600), made on first use."""
    env = os.environ.get("WORKBENCH_SECRET")
    if env:
        return env.encode()
    path = secret_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        except FileExistsError:  # another process made it first
            pass
    try:
        if path.stat().st_mode & 0o077:   # copied in readable by others: make it the owner's alone
            os.chmod(path, 0o600)
        value = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        value = b""
    if len(value) < 16:
        raise AccessDenied(f"签名密钥文件 {path} 已损坏（应为 64 位十六进制），请删除后重启（已登录的页面需重新打开）")
    return value


def sign(username: str, ttl: float = TOKEN_TTL, *, now: float | None = None) -> str:
    """username|expiry|mac: what the server hands a page's kernel."""
    exp = int((now or time.time()) + ttl)
    msg = f"{username}|{exp}"
    mac = hmac.new(secret(), msg.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{msg}|{mac}"


def verify(token: str | None, *, now: float | None = None) -> str | None:
    """The user name of a valid, unexpired token; None otherwise."""
    if not token or token.count("|") < 2:
        return None
    msg, mac = token.rsplit("|", 1)
    username, exp = msg.rsplit("|", 1)
    good = hmac.new(secret(), msg.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(good, mac):
        return None
    try:
        if int(exp) < (now or time.time()):
            return None
    except ValueError:
        return None
    return username


def in_voila() -> bool:
    return bool(os.environ.get("VOILA_KERNEL_ID") or os.environ.get("VOILA_SERVER_URL"))


def current(eng=None) -> Principal | None:
    """Who the running page or command acts as.

    In a Voilà kernel: the signed-in user the server named (None when the token is missing,
    forged or expired: the page then shows nothing). Elsewhere (JupyterLab, papermill, tests):
    the hub user named by $WORKBENCH_USER, else the operator at the shell.
    """
    from workbench import users

    if in_voila():
        name = verify(os.environ.get(USER_ENV))
        return users.principal(name, eng) if name else None
    name = os.environ.get("WORKBENCH_USER")
    if name:
        who = users.principal(name, eng)
        if who is None:
            raise AccessDenied(f"没有启用的用户 {name}（WORKBENCH_USER）")
        return who
    return operator()


__all__ = ["ROLES", "ACTING_ROLES", "UNMASKING_ROLES", "AccessDenied", "Principal", "SYSTEM", "system",
           "operator", "scope", "district_filter", "secret", "sign", "verify", "in_voila", "current",
           "USER_HEADER", "USER_ENV"]
