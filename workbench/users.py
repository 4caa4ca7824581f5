"""Users of the hub, their passwords and their sessions (`workbench users …`).

Users, their role, department and district live in the hub (`users`). Passwords are hashed
with argon2id (argon2-cffi); five wrong passwords in a row lock the account for 15 minutes.
A session is a random token in the browser's cookie; the hub keeps only its sha256, when it
expires (8 hours, extended while it is used, never past 24 hours from sign-in) and whether it
was ended. Every change of a user is written to the audit log with who made it.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from workbench import audit, clock, geo
from workbench.access import ROLES, Principal
from workbench.errors import WorkbenchError
from workbench.store.schema import user_sessions, users

SESSION_IDLE = pd.Timedelta(hours=8)     # a session unused this long has expired
SESSION_MAX = pd.Timedelta(hours=24)     # and none outlives a day, used or not
MAX_FAILED = 5
LOCK_FOR = pd.Timedelta(minutes=15)
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
_CACHE_SECONDS = 5.0


class UserError(WorkbenchError):
    """A user operation that cannot be done; `problem` says why in Chinese."""


_dummy: list[str] = []


def _DUMMY_HASH() -> str:  # noqa: N802 - a constant made once
    if not _dummy:
        _dummy.append(hash_password(secrets.token_hex(8)))
    return _dummy[0]


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def _check_password(stored: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    try:
        return _hasher().verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _eng(eng: Engine | None) -> Engine:
    from workbench.store import hub

    return eng or hub.engine()


def validate(username: str | None = None, role: str | None = None, district: str | None = None,
              password: str | None = None) -> str | None:
    if username is not None and not _NAME.match(username):
        raise UserError(f"用户名“{username}”不合规：2–64 个字母、数字或 _ . @ -")
    if role is not None and role not in ROLES:
        raise UserError(f"没有角色“{role}”；角色有：" + "、".join(f"{k}（{v}）" for k, v in ROLES.items()))
    if password is not None and len(password) < MIN_PASSWORD:
        raise UserError(f"密码至少 {MIN_PASSWORD} 位")
    if district:
        d = geo.find(district)
        if d is None:
            raise UserError(f"株洲市没有区县“{district}”；区县有：{'、'.join(geo.NAMES)}")
        return d.name
    return district


def create(username: str, password: str, *, role: str, name: str | None = None, department: str | None = None,
           district: str | None = None, by=None, eng: Engine | None = None) -> Principal:
    """A new user; UserError when the name is taken or a field is not valid."""
    district = validate(username, role, district, password)
    if role == "district" and not district:
        raise UserError("区县人员必须指定所属区县（--district）")
    if role in ("staff", "reviewer") and not department:
        raise UserError("部门人员必须指定所属部门（--department）")
    eng = _eng(eng)
    now = clock.now().to_pydatetime()
    with eng.begin() as conn:
        if conn.execute(sa.select(users.c.username).where(users.c.username == username)).first():
            raise UserError(f"用户 {username} 已存在")
        conn.execute(users.insert().values(
            username=username, display_name=name or username, role=role, department=department or None,
            district=district or None, password_hash=hash_password(password), active=True,
            created_at=now, updated_at=now))
        audit.record(conn, "user.create", by or "命令行", subject=username, role=role,
                     department=department, district=district)
    _forget(username)
    return principal(username, eng)


def update(username: str, *, role: str | None = None, name: str | None = None, department: str | None = ...,
           district: str | None = ..., active: bool | None = None, by=None, eng: Engine | None = None) -> Principal | None:
    """Change a user's role, name, department, district or active flag (audited)."""
    validate(role=role)
    values: dict = {}
    if role is not None:
        values["role"] = role
    if name is not None:
        values["display_name"] = name
    if department is not ...:
        values["department"] = department or None
    if district is not ...:
        values["district"] = validate(district=district) or None
    if active is not None:
        values["active"] = bool(active)
    eng = _eng(eng)
    with eng.begin() as conn:
        row = conn.execute(sa.select(users).where(users.c.username == username)).mappings().first()
        if row is None:
            raise UserError(f"没有用户 {username}")
        if not values:
            return principal(username, eng)
        values["updated_at"] = clock.now().to_pydatetime()
        conn.execute(users.update().where(users.c.username == username).values(**values))
        if active is False:   # a disabled user's sessions end now
            conn.execute(user_sessions.update().where(user_sessions.c.username == username,
                                                      user_sessions.c.revoked_at.is_(None))
                         .values(revoked_at=values["updated_at"]))
        before = {k: row[k] for k in values if k in row and k != "updated_at"}
        audit.record(conn, "user.disable" if active is False else "user.update", by or "命令行", subject=username,
                     before=before, after={k: v for k, v in values.items() if k != "updated_at"})
    _forget(username)
    return principal(username, eng, active_only=False)


def set_password(username: str, password: str, *, by=None, eng: Engine | None = None) -> None:
    validate(password=password)
    eng = _eng(eng)
    now = clock.now().to_pydatetime()
    with eng.begin() as conn:
        n = conn.execute(users.update().where(users.c.username == username).values(
            password_hash=hash_password(password), failed_logins=0, locked_until=None, updated_at=now)).rowcount
        if not n:
            raise UserError(f"没有用户 {username}")
        conn.execute(user_sessions.update().where(user_sessions.c.username == username,
                                                  user_sessions.c.revoked_at.is_(None)).values(revoked_at=now))
        audit.record(conn, "user.password", by or "命令行", subject=username)
    _forget(username)


def frame(eng: Engine | None = None) -> pd.DataFrame:
    """Every user (no password hashes)."""
    from workbench.store import hub

    cols = [c for c in users.c if c.name != "password_hash"]
    df = hub.query(sa.select(*cols).order_by(users.c.username), eng=_eng(eng))
    if df.empty:
        df = pd.DataFrame(columns=[c.name for c in cols])
    df["role_label"] = df["role"].map(ROLES).fillna(df["role"])
    return df


def count(eng: Engine | None = None) -> int:
    with _eng(eng).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() or 0)


# ------------------------------------------------------------------ principals (cached)

_cache: dict[tuple, tuple[float, Principal | None]] = {}
_cache_lock = threading.Lock()


def _forget(username: str | None = None) -> None:
    with _cache_lock:
        for key in [k for k in _cache if username is None or k[1] == username]:
            _cache.pop(key, None)


def principal(username: str | None, eng: Engine | None = None, *, active_only: bool = True) -> Principal | None:
    """The Principal of an active user (None if there is none); cached a few seconds."""
    if not username:
        return None
    eng = _eng(eng)
    key = (str(eng.url), username, active_only)
    with _cache_lock:
        hit = _cache.get(key)
        if hit and time.monotonic() - hit[0] < _CACHE_SECONDS:
            return hit[1]
    with eng.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.username == username)).mappings().first()
    who = None
    if row is not None and (row["active"] or not active_only):
        who = Principal(row["username"], row["display_name"], row["role"], row["department"], row["district"])
    with _cache_lock:
        _cache[key] = (time.monotonic(), who)
    return who


# ------------------------------------------------------------------ signing in

@dataclass
class SignIn:
    principal: Principal | None
    token: str | None = None         # the cookie's value (only its hash is stored)
    problem: str | None = None       # why not, in Chinese


def sign_in(username: str, password: str, *, address: str | None = None, eng: Engine | None = None) -> SignIn:
    """Check a password and open a session. The same message for an unknown user and a wrong
    password (no probing for names); a locked account says until when."""
    eng = _eng(eng)
    now = clock.now()
    # one answer for an unknown name, a wrong password and a locked account, after one argon2
    # verification each (the same time): nothing tells which names exist
    wrong = SignIn(None, problem=f"用户名或密码不正确（连续输错 {MAX_FAILED} 次将锁定 {int(LOCK_FOR.total_seconds() // 60)} 分钟）")
    name = (username or "")[:64]
    with eng.begin() as conn:
        row = conn.execute(sa.select(users).where(users.c.username == name)).mappings().first()
        if row is None or not row["active"]:
            _check_password(_DUMMY_HASH(), password or "")
            if row is not None:   # a disabled account's tries are recorded; unknown names are not (no log flooding)
                audit.record(conn, "login.failed", "匿名", subject=name, address=address, why="disabled")
            return wrong
        good = _check_password(row["password_hash"], password or "")
        if row["locked_until"] is not None and pd.Timestamp(row["locked_until"]) > now:
            return wrong
        if not good:
            failed = int(row["failed_logins"] or 0) + 1
            values = {"failed_logins": failed}
            if failed >= MAX_FAILED:
                values.update(failed_logins=0, locked_until=(now + LOCK_FOR).to_pydatetime())
            conn.execute(users.update().where(users.c.username == name).values(**values))
            audit.record(conn, "login.failed", "匿名", subject=name, address=address, failed=failed,
                         locked=failed >= MAX_FAILED)
            return wrong
        token = secrets.token_urlsafe(32)
        conn.execute(users.update().where(users.c.username == username).values(failed_logins=0, locked_until=None))
        conn.execute(user_sessions.insert().values(
            token_hash=token_hash(token), username=username, created_at=now.to_pydatetime(),
            last_seen=now.to_pydatetime(), expires_at=(now + SESSION_IDLE).to_pydatetime(), address=(address or "")[:64]))
        who = Principal(row["username"], row["display_name"], row["role"], row["department"], row["district"])
        audit.record(conn, "login", who, subject=username, address=address)
    return SignIn(who, token)


def token_hash(token: str) -> str:
    """What the hub keeps of a session token (sha256 hex)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def session_user(token: str | None, eng: Engine | None = None, *, touch: bool = True) -> Principal | None:
    """The principal of a live session (None when unknown, ended or expired). Using a session
    extends it (idle limit), never past SESSION_MAX from sign-in."""
    if not token:
        return None
    eng = _eng(eng)
    now = clock.now()
    h = token_hash(token)
    with eng.connect() as conn:
        s = conn.execute(sa.select(user_sessions).where(user_sessions.c.token_hash == h)).mappings().first()
    if s is None or s["revoked_at"] is not None or pd.Timestamp(s["expires_at"]) <= now:
        return None
    who = principal(s["username"], eng)
    if who is None:
        return None
    if touch and now - pd.Timestamp(s["last_seen"]) > pd.Timedelta(minutes=1):
        expires = min(now + SESSION_IDLE, pd.Timestamp(s["created_at"]) + SESSION_MAX)
        with eng.begin() as conn:
            conn.execute(user_sessions.update().where(user_sessions.c.token_hash == h).values(
                last_seen=now.to_pydatetime(), expires_at=expires.to_pydatetime()))
    return who


def sign_out(token: str | None, eng: Engine | None = None) -> None:
    if not token:
        return
    eng = _eng(eng)
    now = clock.now().to_pydatetime()
    with eng.begin() as conn:
        s = conn.execute(sa.select(user_sessions.c.username).where(user_sessions.c.token_hash == token_hash(token))).first()
        conn.execute(user_sessions.update().where(user_sessions.c.token_hash == token_hash(token),
                                                  user_sessions.c.revoked_at.is_(None)).values(revoked_at=now))
        if s is not None:
            audit.record(conn, "logout", s[0], subject=s[0])


def purge_sessions(eng: Engine | None = None) -> int:
    """Forget sessions that ended or expired more than a day ago."""
    cut = (clock.now() - pd.Timedelta(days=1)).to_pydatetime()
    with _eng(eng).begin() as conn:
        return conn.execute(user_sessions.delete().where(user_sessions.c.expires_at < cut)).rowcount


__all__ = ["UserError", "validate", "create", "update", "set_password", "frame", "count", "principal", "SignIn", "sign_in",
           "session_user", "sign_out", "purge_sessions", "hash_password", "token_hash", "SESSION_IDLE", "SESSION_MAX"]
