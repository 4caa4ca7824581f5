"""Sign-in for the dashboards: the server side of "who is acting" (runs in the Voilà process).

`workbench serve` runs `CityVoila`: Voilà 0.5 with the Jupyter-native hooks filled in —

- `WorkbenchIdentityProvider` (`identity_provider_class`): a Chinese sign-in page at /login
  (form POST, xsrf-checked as jupyter_server does), passwords checked by `workbench.users.sign_in`
  (argon2, lockout), the session token in a signed cookie (HttpOnly, SameSite=Strict, Secure over
  TLS); `get_user` → `users.session_user(token)`; /logout ends the session. In *proxy* mode
  (single sign-on behind oauth2-proxy or JupyterHub's proxy) the user name is read from a header
  (X-Forwarded-User) only when the request's peer is the trusted proxy (one host) AND it carries
  the proxy's shared secret (X-Workbench-Proxy-Secret, --proxy-secret-file), and must be an
  active hub user. Sign-ins run in a small thread pool (argon2 off the event loop), limited per
  address; /logout shuts the user's page kernels down.
- `WorkbenchAuthorizer` (`authorizer_class`): signed-in active users only; a kernel only to the
  user whose page started or took it (`OWNERS`).
- The page handler signs the user into the request (`access.sign`, header X-Workbench-User,
  handed to the kernel by Voilà's `http_header_envs`); a client's own X-Workbench-User is
  replaced. It caps the kernels a user holds (`kernels_per_user`).
- The Host header is checked (DNS rebinding): loopback names, the address served on and
  `allow_hosts` only, 403 otherwise.
- Evidence images served by the application: /workbench/evidence/<violation_id>[/original].

Every page, API and kernel websocket needs a signed-in user (jupyter_server's `prepare`):
anonymous pages go to /login, APIs get 403. Voilà's static assets stay public.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import quote

from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.auth.login import LoginFormHandler
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop
from traitlets import Bool, Integer, List, Unicode

from workbench import access
from workbench.ui.request import QUERY_KEY_PARAM, query_key
from workbench.ui.server import KERNELS_PER_USER, LOOPBACK_NAMES, PROXY_SECRET_HEADER, loopback

COOKIE = "workbench-session"
PROXY_HEADER = "X-Forwarded-User"
SIGN_IN_PER_MINUTE = 10     # failed sign-in tries per remote address a minute
HSTS = "max-age=31536000"
RECLAIM_IDLE = 30.0        # seconds: a user's kernel without a browser this long may make room
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
BRAND = "城市数智中心"
ERROR_TEMPLATES = Path(__file__).parent / "jupyter" / "server"   # jupyter_server's error pages, in Chinese


# ---------------------------------------------------------------------- users and kernels

@dataclass
class WorkbenchUser(User):
    """jupyter_server's User with the hub's Principal."""

    principal: access.Principal | None = None


def _user(p: access.Principal) -> WorkbenchUser:
    return WorkbenchUser(username=p.username, name=p.name or p.username, display_name=p.describe,
                         principal=p)


def principal_of(handler) -> access.Principal | None:
    user = getattr(handler, "current_user", None)
    return getattr(user, "principal", None)


class KernelOwners:
    """Which user each page kernel belongs to (the server process's memory; kernels die with it)."""

    def __init__(self):
        self.owner: dict[str, str] = {}
        self.pending: dict[str, int] = {}     # pages being opened, whose kernel is not known yet

    def record(self, kernel_id: str, username: str) -> None:
        self.owner[kernel_id] = username

    def forget(self, kernel_id: str) -> None:
        self.owner.pop(kernel_id, None)

    def of(self, kernel_id: str | None) -> str | None:
        return self.owner.get(kernel_id or "")

    def held(self, username: str, km) -> list[str]:
        """The live kernels of `username` (forgetting those that are gone)."""
        alive = set(km.list_kernel_ids())
        for k in [k for k in self.owner if k not in alive]:
            self.owner.pop(k, None)
        return [k for k, u in self.owner.items() if u == username]


OWNERS = KernelOwners()
HUB_DOWN_GRACE = 15 * 60.0      # seconds a session the hub confirmed stands while the hub is unreachable
_VERIFIED: dict[str, tuple] = {}


def _connections(km, kernel_id: str) -> int:
    return int(getattr(km, "_kernel_connections", {}).get(kernel_id, 0) or 0)


def _idle_seconds(km, kernel_id: str) -> float:
    import datetime as dt

    try:
        last = km.get_kernel(kernel_id).last_activity
        return (dt.datetime.now(dt.timezone.utc) - last).total_seconds()
    except Exception:  # noqa: BLE001 - a kernel shutting down: not idle
        return 0.0


# ---------------------------------------------------------------------- addresses and hosts

def _ip(text: str | None):
    try:
        return ipaddress.ip_address((text or "").strip("[]").split("%")[0])
    except ValueError:
        return None


def peer_in(address: str | None, networks) -> bool:
    ip = _ip(address)
    if ip is None:
        return False
    for n in networks:
        try:
            if ip in ipaddress.ip_network(n, strict=False):
                return True
        except ValueError:
            continue
    return False


def host_allowed(host: str | None, allowed: set[str]) -> bool:
    """Whether a request's Host (name or address, port removed) may be served: loopback names and
    addresses, and the names/addresses in `allowed` (lower case)."""
    if not host:
        return False
    name = host.strip().lower()
    m = re.match(r"^\[(.+)\](:\d+)?$", name)       # [::1]:8866
    if m:
        name = m.group(1)
    elif name.count(":") == 1:                     # name:8866
        name = name.split(":", 1)[0]
    name = name.rstrip(".")
    ip = _ip(name)
    if ip is not None:
        return loopback(name) or str(ip) in allowed
    return loopback(name) or name in allowed


def from_proxy(handler, proxies, proxy_secret: str) -> bool:
    """Whether a request comes from the trusted proxy: its peer is one of the proxy addresses AND it
    carries the proxy's shared secret (an address alone, on loopback, would trust every local account)."""
    if not proxy_secret or not peer_in(handler.request.remote_ip, proxies):
        return False
    sent = handler.request.headers.get(PROXY_SECRET_HEADER) or ""
    return hmac.compare_digest(sent.encode("utf-8", "replace"), proxy_secret.encode("utf-8"))


def forwarded_https(handler) -> bool:
    """Whether the browser's connection is HTTPS: TLS here, or X-Forwarded-Proto: https from a
    configured --trusted-proxy (password mode too: an HTTPS reverse proxy in front), or --behind-https."""
    if handler.request.protocol == "https" or handler.settings.get("workbench_behind_https"):
        return True
    proxies = handler.settings.get("workbench_trusted_proxies") or ()
    return (peer_in(handler.request.remote_ip, proxies)
            and handler.request.headers.get("X-Forwarded-Proto", "").strip().lower() == "https")


def client_address(handler) -> str:
    """The browser's address: the peer, or behind a configured --trusted-proxy the address it names
    (X-Real-IP, else the last X-Forwarded-For entry)."""
    peer = handler.request.remote_ip or "?"
    if peer_in(peer, handler.settings.get("workbench_trusted_proxies") or ()):
        named = (handler.request.headers.get("X-Real-IP")
                 or (handler.request.headers.get("X-Forwarded-For") or "").split(",")[-1]).strip()
        if _ip(named) is not None:
            return named
    return peer


class StrictTransport:
    """A tornado output transform: Strict-Transport-Security on every answer over HTTPS."""

    def __init__(self, request):
        self.https = request.protocol == "https"

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        if self.https:
            headers["Strict-Transport-Security"] = HSTS
        return status_code, headers, chunk

    def transform_chunk(self, chunk, finishing):
        return chunk


class SignInBucket:
    """Sign-in tries per remote address: a token bucket of failures (`per_minute`, refilled evenly)
    checked before any hashing; only a failed try takes a token, so many people signing in at
    once through one proxy or NAT address are not held up. At most 2 × `per_minute` tries of one
    address are in flight at once (a burst cannot queue unbounded hashing)."""

    def __init__(self, per_minute: int = SIGN_IN_PER_MINUTE):
        self.per_minute = max(1, int(per_minute))
        self.tokens: dict[str, tuple[float, float]] = {}
        self.inflight: dict[str, int] = {}
        self.lock = threading.Lock()

    def _level(self, address: str, now: float) -> float:
        level, then = self.tokens.get(address, (float(self.per_minute), now))
        return min(float(self.per_minute), level + (now - then) * self.per_minute / 60.0)

    def take(self, address: str) -> bool:
        """Whether `address` may try now (then `done` must follow)."""
        now = time.monotonic()
        with self.lock:
            if len(self.tokens) > 10000:
                self.tokens.clear()
            level = self._level(address, now)
            self.tokens[address] = (level, now)
            if level < 1.0 or self.inflight.get(address, 0) >= 2 * self.per_minute:
                return False
            self.inflight[address] = self.inflight.get(address, 0) + 1
            return True

    def done(self, address: str, failed: bool) -> None:
        now = time.monotonic()
        with self.lock:
            n = self.inflight.get(address, 1) - 1
            if n > 0:
                self.inflight[address] = n
            else:
                self.inflight.pop(address, None)
            if failed:
                self.tokens[address] = (max(0.0, self._level(address, now) - 1.0), now)


SIGN_INS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sign-in")   # argon2 off the IOLoop, 2 at once


# ---------------------------------------------------------------------- pages (Chinese)

PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title} · {brand}</title>
<link rel="icon" href="data:;base64,=">
<style>
body{{margin:0;font-family:"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",sans-serif;
 background:#f4f6f9;color:#1f2d3d}}
.wb-box{{max-width:380px;margin:12vh auto;background:#fff;border:1px solid #e3e6ea;border-radius:10px;
 padding:28px 32px;box-shadow:0 2px 10px rgba(0,0,0,.05)}}
h1{{font-size:20px;margin:0 0 4px}} .wb-sub{{color:#6b7785;font-size:13px;margin-bottom:18px}}
label{{display:block;font-size:14px;margin:12px 0 4px}}
input[type=text],input[type=password]{{width:100%;box-sizing:border-box;padding:9px 10px;font-size:15px;
 border:1px solid #c8ced6;border-radius:6px}}
button{{margin-top:18px;width:100%;padding:10px;font-size:16px;background:#1f6feb;color:#fff;border:0;
 border-radius:6px;cursor:pointer}}
.wb-msg{{background:#fdecea;color:#b42318;border-radius:6px;padding:8px 10px;font-size:14px;margin-bottom:8px}}
.wb-note{{color:#6b7785;font-size:13px;margin-top:16px;line-height:1.6}}
</style></head><body><div class="wb-box">{body}</div></body></html>"""


def page(title: str, body: str) -> str:
    return PAGE.format(title=escape(title), brand=BRAND, body=body)


def message_page(title: str, text: str, link: tuple[str, str] | None = None) -> str:
    more = f'<p class="wb-note"><a href="{escape(link[0])}">{escape(link[1])}</a></p>' if link else ""
    return page(title, f'<h1>{escape(title)}</h1><p class="wb-msg wb-refused">{escape(text)}</p>{more}')


class ChineseErrors:
    """Refusals and errors as a Chinese page (HTML handlers) or JSON (API handlers)."""

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        text = ""
        if isinstance(exc, web.HTTPError) and exc.log_message:
            try:
                text = exc.log_message % exc.args
            except (TypeError, ValueError):
                text = exc.log_message
        text = text or {400: "请求有误", 403: "没有权限访问该页面", 404: "页面不存在", 429: "请求过多"}.get(status_code, "服务器出错")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(message_page(f"无法访问（{status_code}）", text, ("/", "返回首页")))


# ---------------------------------------------------------------------- identity provider

class WorkbenchIdentityProvider(IdentityProvider):
    """Who is signed in: the hub's session (password mode) or a trusted proxy's header (proxy mode)."""

    mode = Unicode("password", config=True, help="password（内置登录）或 proxy（单点登录反向代理）")
    trusted_proxies = List(Unicode(), config=True, help="可信的反向代理地址（单个主机）")
    user_header = Unicode(PROXY_HEADER, config=True, help="proxy 模式下携带用户名的请求头")
    proxy_secret = Unicode("", help="proxy 模式：代理在 X-Workbench-Proxy-Secret 请求头中带来的共享密钥")

    @property
    def auth_enabled(self) -> bool:
        return True

    @property
    def login_available(self) -> bool:
        return True

    def get_handlers(self):
        return [(r"/login", WorkbenchLoginHandler), (r"/logout", WorkbenchLogoutHandler)]

    def validate_security(self, app, ssl_options=None) -> None:   # the CLI warns in Chinese
        return None

    # -- the session cookie
    @staticmethod
    def secure(handler) -> bool:
        if handler.request.protocol == "https":
            return True
        return forwarded_https(handler)

    def set_session_cookie(self, handler, token: str) -> None:
        handler.set_secure_cookie(COOKIE, token, expires_days=None, httponly=True, samesite="Strict",
                                  secure=self.secure(handler), path=handler.base_url)

    def session_token(self, handler) -> str | None:
        raw = handler.get_secure_cookie(COOKIE, max_age_days=1)
        return raw.decode("ascii", "replace") if raw else None

    def clear_session_cookie(self, handler) -> None:
        handler.clear_cookie(COOKIE, path=handler.base_url)

    # -- who is it
    def get_user(self, handler):
        from workbench import users

        key = None
        try:
            if self.mode == "proxy":
                if not from_proxy(handler, self.trusted_proxies, self.proxy_secret):
                    return None
                name = (handler.request.headers.get(self.user_header) or "").strip()
                if not name:
                    return None
                key = "proxy:" + name
                who = users.principal(name)
            else:
                token = self.session_token(handler)
                if not token:
                    return None
                key = users.token_hash(token)
                who = users.session_user(token)
        except Exception as exc:  # noqa: BLE001 - the hub unreachable: a session it confirmed lately stands
            seen = _VERIFIED.get(key) if key else None
            if seen and time.monotonic() - seen[1] < HUB_DOWN_GRACE:
                return _user(seen[0])
            self.log.warning("sign-in check failed: %s", exc)
            return None
        if who is None:
            _VERIFIED.pop(key, None)
            return None
        if len(_VERIFIED) > 10000:
            _VERIFIED.clear()
        _VERIFIED[key] = (who, time.monotonic())
        return _user(who)


class WorkbenchLoginHandler(ChineseErrors, LoginFormHandler):
    """GET: the sign-in form; POST: check the password (users.sign_in), set the cookie, go on."""

    def _render(self, message=None, username: str = ""):
        ip = self.identity_provider
        if getattr(ip, "mode", "password") == "proxy":
            self.set_status(403)
            self.finish(message_page("请通过单点登录访问",
                                     "本服务由单位的统一身份认证（单点登录）保护，请从单位的统一登录入口访问。"))
            return
        nxt = self.get_argument("next", default=self.base_url)
        msg = f'<div class="wb-msg wb-login-error">{escape(message)}</div>' if message else ""
        body = (f'<h1>{BRAND}</h1><div class="wb-sub">请登录后查看各部门看板</div>{msg}'
                f'<form method="post" action="{escape(url_path_join(self.base_url, "login"))}?next={quote(nxt, safe="/")}">'
                f'{self.xsrf_form_html()}'
                '<label for="username">用户名</label>'
                f'<input type="text" id="username" name="username" autocomplete="username" value="{escape(username)}" required autofocus>'
                '<label for="password">密码</label>'
                '<input type="password" id="password" name="password" autocomplete="current-password" required>'
                '<button type="submit" id="login_submit">登录</button></form>'
                '<p class="wb-note">账号由系统管理员分配（workbench users add）。连续输错 5 次密码，账号将锁定 15 分钟。</p>')
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(page("登录", body))

    @allow_unauthenticated
    def get(self):
        if self.current_user:
            self._redirect_safe(self.get_argument("next", default=self.base_url))
        else:
            self._render()

    @allow_unauthenticated
    async def post(self):
        from workbench import users

        if getattr(self.identity_provider, "mode", "password") == "proxy":
            return self._render()
        username = self.get_argument("username", default="").strip()
        password = self.get_argument("password", default="")
        address = client_address(self)
        bucket = self.settings.get("workbench_sign_ins")
        if bucket is not None and not bucket.take(address):
            self.set_status(429)
            self.set_header("Retry-After", "60")
            return self._render("登录尝试过于频繁，请一分钟后再试", username)
        result = None
        try:   # argon2 (~0.1–1 s of CPU) in a thread: the pages and kernels of everyone else go on
            result = await IOLoop.current().run_in_executor(
                SIGN_INS, functools.partial(users.sign_in, username, password, address=address))
        except Exception as exc:  # noqa: BLE001 - hub unreachable
            self.log.warning("sign-in failed: %s", exc)
            self.set_status(503)
            return self._render("数据中台暂时无法连接，暂时无法登录，请稍后刷新再试", username)
        finally:
            if bucket is not None:
                bucket.done(address, failed=result is not None and result.principal is None)
        if result.principal is None:
            self.set_status(401)
            return self._render(result.problem or "用户名或密码不正确", username)
        self.identity_provider.set_session_cookie(self, result.token)
        self.log.info("[workbench] %s signed in from %s", username, self.request.remote_ip)
        self._redirect_safe(self.get_argument("next", default=self.base_url))


class WorkbenchLogoutHandler(ChineseErrors, JupyterHandler):
    @allow_unauthenticated
    async def get(self):
        from workbench import users

        ip = self.identity_provider
        if getattr(ip, "mode", "password") == "proxy":
            self.finish(message_page("退出登录", "本服务使用单位的单点登录：请在统一登录系统中退出。"))
            return
        who = principal_of(self)
        token = ip.session_token(self)
        if token:
            _VERIFIED.pop(users.token_hash(token), None)
            try:
                users.sign_out(token)
            except Exception as exc:  # noqa: BLE001
                self.log.warning("sign-out failed: %s", exc)
        if who is not None:   # the user's open pages end with the session: their kernels act no more
            await shut_down_kernels_of(who.username, self.settings["kernel_manager"], self.log)
        ip.clear_session_cookie(self)
        self.set_header("Cache-Control", "no-store")
        self.finish(page("已退出", '<h1>已退出登录</h1><p class="wb-note wb-logged-out">会话已结束。'
                                   f'<a href="{escape(url_path_join(self.base_url, "login"))}">重新登录</a></p>'))


async def shut_down_kernels_of(username: str, km, log=None, why: str = "signed out") -> list[str]:
    """Shut down every page kernel `username` holds (sign-out, a disabled user); returns their ids."""
    gone = OWNERS.held(username, km)
    for k in gone:
        OWNERS.forget(k)
        if log is not None:
            log.info("[workbench] %s %s: their kernel %s is shut down", username, why, k)
        try:
            await km.shutdown_kernel(k)
        except Exception:  # noqa: BLE001 - already gone
            pass
    return gone


async def sweep_inactive_users(km, log=None) -> None:
    """Shut down the page kernels of users the hub no longer has active (disabled or removed by an
    admin, e.g. `workbench users set NAME --inactive` in another process): their open pages end.
    While the hub is unreachable nobody is shut down."""
    from workbench import users

    names = sorted(set(OWNERS.owner.values()))
    if not names:
        return
    try:
        gone = await IOLoop.current().run_in_executor(
            SIGN_INS, lambda: [n for n in names if users.principal(n) is None])
    except Exception:  # noqa: BLE001 - hub unreachable: keep everyone's pages
        return
    for name in gone:
        await shut_down_kernels_of(name, km, log, why="is no longer an active user")


# ---------------------------------------------------------------------- authorizer

class WorkbenchAuthorizer(Authorizer):
    """Signed-in active hub users; a kernel only to the user whose page started or took it."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        who = getattr(user, "principal", None)
        if who is None:
            raise web.HTTPError(403, "请先登录")
        if resource == "kernels":
            kernel_id = (handler.path_kwargs or {}).get("kernel_id") or getattr(handler, "kernel_id", None) \
                or (handler.path_args[0] if handler.path_args else None)
            owner = OWNERS.of(kernel_id)
            if owner != who.username:
                raise web.HTTPError(403, "该看板页面的内核不属于您（%s），不能连接或操作。", who.username)
        return True


# ---------------------------------------------------------------------- the page and its kernel

class _Recording:
    """The kernel manager as a page handler sees it: the kernel a page starts or takes is the user's."""

    def __init__(self, km, username: str):
        self._km, self._user, self._counted = km, username, False

    def __getattr__(self, name):
        return getattr(self._km, name)

    def _own(self, kernel_id: str) -> None:
        OWNERS.record(kernel_id, self._user)
        if not self._counted:
            self._counted = True
            OWNERS.pending[self._user] = max(0, OWNERS.pending.get(self._user, 1) - 1)

    async def get_rendered_notebook(self, *args, **kwargs):
        task, cache, kernel_id = await self._km.get_rendered_notebook(*args, **kwargs)
        self._own(kernel_id)
        return task, cache, kernel_id

    async def start_kernel(self, *args, **kwargs):
        from jupyter_core.utils import ensure_async

        kernel_id = await ensure_async(self._km.start_kernel(*args, **kwargs))
        self._own(kernel_id)
        return kernel_id


def render_handler(base):
    """Voilà's page handler with the signed-in user: cap, identity header, kernel owner."""

    class WorkbenchRenderHandler(ChineseErrors, base):
        _recording = None

        @property
        def kernel_manager(self):
            return self._recording or self.settings["kernel_manager"]

        async def _make_room(self, username: str, cap: int) -> int:
            """Shut down the user's kernels whose page is gone (no browser attached, idle a while:
            a closed or crashed tab), then say how many the user still holds."""
            km = self.settings["kernel_manager"]
            for k in OWNERS.held(username, km):
                if _connections(km, k) == 0 and _idle_seconds(km, k) >= RECLAIM_IDLE:
                    self.log.info("[workbench] %s opens a page: their kernel %s without a browser is shut down", username, k)
                    OWNERS.forget(k)
                    try:
                        await km.shutdown_kernel(k)
                    except Exception:  # noqa: BLE001 - already gone
                        pass
            return len(OWNERS.held(username, km))

        @web.authenticated
        async def get(self, path=None):
            who = principal_of(self)
            if who is None:
                raise web.HTTPError(403, "请先登录")
            cap = int(self.settings.get("workbench_kernels_per_user", KERNELS_PER_USER))
            held = await self._make_room(who.username, cap)
            if held + OWNERS.pending.get(who.username, 0) >= cap:
                self.set_status(429)
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.finish(message_page(
                    "打开的看板页面过多",
                    f"您已打开 {held} 个看板页面（每人最多 {cap} 个）。请先关闭其他看板页面，再刷新本页。",
                    (self.request.uri, "重新打开本页")))
                return
            self.xsrf_token  # noqa: B018 - sets the _xsrf cookie Voilà's beforeunload shutdown sends back
            # the kernel learns its user from the server only
            self.request.headers[access.USER_HEADER] = access.sign(who.username)
            OWNERS.pending[who.username] = OWNERS.pending.get(who.username, 0) + 1
            self._recording = _Recording(self.settings["kernel_manager"], who.username)
            try:
                await base.get.__wrapped__(self, path)   # (base.get is @web.authenticated, checked above)
            finally:
                if not self._recording._counted:
                    OWNERS.pending[who.username] = max(0, OWNERS.pending.get(who.username, 1) - 1)

    return WorkbenchRenderHandler


def shutdown_handler(base):
    class WorkbenchShutdownHandler(base):
        """Voilà's beforeunload shutdown, for the kernel's owner only."""

        @web.authenticated
        async def post(self, kernel_id):
            who = principal_of(self)
            if who is None or OWNERS.of(kernel_id) != who.username:
                raise web.HTTPError(403, "该看板页面的内核不属于您，不能关闭。")
            OWNERS.forget(kernel_id)
            await base.post.__wrapped__(self, kernel_id)

    return WorkbenchShutdownHandler


class HealthHandler(web.RequestHandler):
    """GET /workbench/health: the server answers (no sign-in, no data)."""

    def get(self):
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("ok")


class NotFoundHandler(web.RequestHandler):
    """Any other path on our host (instead of falling through to the Host check's page)."""

    def prepare(self):
        self.set_status(404)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(message_page("页面不存在", f"没有这个页面：{self.request.path}", ("/", "返回首页")))


class ForeignHostHandler(web.RequestHandler):
    """Any request whose Host is not ours (DNS rebinding)."""

    def prepare(self):
        host = self.request.host or ""
        self.set_status(403)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(message_page(
            "拒绝访问", f"主机名“{host}”不在本服务允许的访问地址中（防止 DNS 重绑定攻击）。"
            "如需通过该名称访问，请由管理员以 workbench serve --allow-host 名称 启动服务。"))


# ---------------------------------------------------------------------- evidence

def _evidence_row(violation_id: str):
    import sqlalchemy as sa

    from workbench.store import hub
    from workbench.store.schema import DATASETS

    v = DATASETS["canteen_violations"].table
    c = DATASETS["canteens"].table
    eng = hub.engine()
    with eng.connect() as conn:
        row = conn.execute(sa.select(v.c.violation_id, v.c.camera_id, v.c.ts, v.c.canteen_id, v.c.district)
                           .where(v.c.violation_id == violation_id)).mappings().first()
        if row is None:
            return None, eng
        row = dict(row)
        if not row.get("district") and row.get("canteen_id"):
            d = conn.execute(sa.select(c.c.district).where(c.c.canteen_id == row["canteen_id"])).first()
            row["district"] = d[0] if d else None
    return row, eng


def evidence_file(row: dict, original: bool) -> Path | None:
    """The snapshot file of a violation row, found by the canteen evidence store's own rule
    (`workbench.canteen.evidence.find_snapshot`: the path the watcher writes for the row's id,
    camera and time — never a stored or requested path —, a plain file whose real path lies inside
    the evidence root). The canteen page shows an image only when the same function finds it.
    (Imported when a snapshot is asked for: it brings OpenCV into the server process.)"""
    from workbench.canteen.evidence import find_snapshot

    vid = str(row.get("violation_id") or "")
    if not SAFE_ID.match(vid):
        return None
    return find_snapshot(vid, row.get("camera_id"), row.get("ts"), original=original)


class EvidenceHandler(ChineseErrors, JupyterHandler):
    """GET /workbench/evidence/<violation_id>[/original]: a kitchen snapshot for a signed-in user who
    may read the canteen's district; the unblurred frame for the reviewer role only, audited."""

    @web.authenticated
    def get(self, violation_id: str, original: str | None = None):
        from workbench import audit

        who = principal_of(self)
        if who is None:
            raise web.HTTPError(403, "请先登录")
        if not SAFE_ID.match(violation_id or ""):
            raise web.HTTPError(404, "没有该违规记录")
        row, eng = _evidence_row(violation_id)
        if row is None or not who.may_read_district(row.get("district")):
            raise web.HTTPError(404, "没有该违规记录")      # out of scope reads as unknown: no district told
        clean = bool(original)
        reason = (self.get_argument("reason", "") or "").strip()
        if clean and not who.may_review_evidence:
            raise web.HTTPError(403, "未打码的原始抓拍图仅限抓拍复核员查看（儿童可能出现在画面中），%s不能查看。",
                                who.role_label)
        if clean and len(reason) < 2:
            raise web.HTTPError(400, "查看未打码原图须说明原因（至少 2 个字），原因将记入审计日志。")
        path = evidence_file(row, clean)
        if path is None:
            raise web.HTTPError(404, "该违规没有抓拍图（可能已按保存期限删除）")
        if clean:
            audit.record(eng, "evidence.view", who, subject=violation_id, canteen_id=row.get("canteen_id"),
                         district=row.get("district"), reason=reason[:200], address=client_address(self))
        self.set_header("Content-Type", "image/jpeg")
        self.set_header("Cache-Control", "private, no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(path.read_bytes())


# ---------------------------------------------------------------------- the application

def cookie_secret() -> bytes:
    """The cookie-signing key, derived from the hub's secret (sessions survive a restart)."""
    return hmac.new(access.secret(), b"workbench-cookie", hashlib.sha256).digest()


def _voila_app():
    from tornado.web import RedirectHandler
    from voila.app import Voila
    from voila.request_info_handler import RequestInfoSocketHandler
    from voila.shutdown_kernel_handler import VoilaShutdownKernelHandler
    from voila.static_file_handler import AllowListFileHandler, TemplateStaticFileHandler
    from voila.tornado.handler import TornadoVoilaHandler

    from workbench.ui import server

    class WaitingKernels(RequestInfoSocketHandler):
        """Voilà's request-info socket (kernels only: loopback or the served address), saying when a
        preheated kernel is ready for a page."""

        def get(self, kernel_id: str = "", *args, **kwargs):
            own = self.settings.get("workbench_own_addresses") or ()
            ip = _ip(self.request.remote_ip)
            if ip is None or not (loopback(str(ip)) or str(ip) in own):
                raise web.HTTPError(403)
            # the kernel's own key (HMAC of its id with the hub's secret, workbench.ui.request.query_key)
            key = self.get_query_argument(QUERY_KEY_PARAM, "")
            if not kernel_id or not hmac.compare_digest(key.encode("ascii", "replace"),
                                                        query_key(kernel_id).encode("ascii")):
                raise web.HTTPError(403)
            if kernel_id in RequestInfoSocketHandler._waiters:     # one connection per kernel
                raise web.HTTPError(409)
            return super().get(kernel_id, *args, **kwargs)

        def open(self, kernel_id: str) -> None:
            RequestInfoSocketHandler._waiters[kernel_id] = self
            payload = RequestInfoSocketHandler._cache.pop(kernel_id, None)   # delivered once, then dropped
            if payload is not None:
                self.write_message(payload)
            print(server.WAITING.format(kernel_id), flush=True)

        def on_close(self) -> None:
            for k, waiter in list(RequestInfoSocketHandler._waiters.items()):
                if waiter is self:
                    RequestInfoSocketHandler._waiters.pop(k, None)

    class SignedInFiles(AllowListFileHandler):
        """Voilà's /voila/files (files beside the dashboards) for signed-in users only."""

        async def prepare(self):
            user = self.settings["identity_provider"].get_user(self)
            if hasattr(user, "__await__"):
                user = await user
            if getattr(user, "principal", None) is None:
                raise web.HTTPError(403)

    class TemplateFiles(TemplateStaticFileHandler):
        """Voilà's template assets (/voila/templates/<name>/static/<file>); any other path, a folder
        among them, is a clean 404 (Voilà's own handler fails on it with a 500)."""

        def get(self, path, include_body=True):
            parts = os.path.normpath(path or "").split(os.sep)
            if len(parts) < 3 or parts[1] != "static" or ".." in parts or not parts[2]:
                raise web.HTTPError(404)
            return super().get(path, include_body)

        def write_error(self, status_code: int, **kwargs) -> None:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(message_page("页面不存在", "没有这个文件", ("/", "返回首页")))

    class CityVoila(Voila):
        """Voilà with sign-in, kernel owners and caps, the Host check, TLS, and the city overview as
        the front page (/ → /voila/render/overview.ipynb)."""

        auth = Unicode("password", config=True, help="password | proxy")
        trusted_proxies = List(Unicode(), config=True)
        proxy_secret_file = Unicode("", config=True, help="proxy: the shared secret's file (0600)")
        behind_https = Bool(False, config=True, help="an HTTPS reverse proxy in front: the cookie is Secure")
        sign_in_per_minute = Integer(SIGN_IN_PER_MINUTE, config=True)
        user_check_interval = Integer(30, config=True, help="seconds between checks that page owners are still active")
        user_header = Unicode(PROXY_HEADER, config=True)
        kernels_per_user = Integer(KERNELS_PER_USER, config=True)
        allow_hosts = List(Unicode(), config=True)
        certfile = Unicode("", config=True)
        keyfile = Unicode("", config=True)

        def initialize(self, argv=None):
            super().initialize(argv)
            headers = list(self.voila_configuration.http_header_envs)
            if access.USER_HEADER not in headers:
                self.voila_configuration.http_header_envs = headers + [access.USER_HEADER]
            self.identity_provider_class = WorkbenchIdentityProvider
            self.authorizer_class = WorkbenchAuthorizer
            self.cookie_secret = cookie_secret()

        def init_settings(self):
            settings = super().init_settings()
            ip = self.identity_provider
            ip.mode = self.auth
            ip.trusted_proxies = list(self.trusted_proxies)
            ip.user_header = self.user_header or PROXY_HEADER
            if self.auth == "proxy":
                problem = server.proxy_problem(tuple(self.trusted_proxies), self.proxy_secret_file)
                if problem:
                    raise SystemExit(problem)
                ip.proxy_secret = server.read_proxy_secret(self.proxy_secret_file)
            own = {str(a) for a in (_ip(self.ip),) if a is not None and not a.is_unspecified}
            allowed = {h.strip().lower().strip("[]") for h in self.allow_hosts if h.strip()} | own
            import jinja2   # jupyter_server's error pages in Chinese (workbench/ui/jupyter/server)

            server_env = settings["jinja2_env"]
            server_env.loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(ERROR_TEMPLATES)), server_env.loader])
            settings.update(
                allow_remote_access=False, local_hostnames=sorted(set(LOOPBACK_NAMES) | allowed),
                xsrf_cookies=True, workbench_allowed_hosts=allowed, workbench_own_addresses=own,
                workbench_kernels_per_user=max(1, int(self.kernels_per_user)),
                workbench_trusted_proxies=list(self.trusted_proxies), workbench_behind_https=bool(self.behind_https),
                workbench_sign_ins=SignInBucket(self.sign_in_per_minute),
            )
            return settings

        def init_handlers(self):
            handlers = []
            for h in super().init_handlers():
                if len(h) > 1 and h[1] is RequestInfoSocketHandler:
                    h = (h[0], WaitingKernels, *h[2:])
                elif len(h) > 1 and h[1] is TornadoVoilaHandler:
                    h = (h[0], render_handler(TornadoVoilaHandler), *h[2:])
                elif len(h) > 1 and h[1] is TemplateStaticFileHandler:
                    h = (h[0], TemplateFiles, *h[2:])
                elif len(h) > 1 and h[1] is AllowListFileHandler:
                    h = (h[0], SignedInFiles, *h[2:])
                elif len(h) > 1 and h[1] is VoilaShutdownKernelHandler:
                    h = (h[0], shutdown_handler(VoilaShutdownKernelHandler), *h[2:])
                handlers.append(h)
            ours = [
                (url_path_join(self.server_url, r"/workbench/health"), HealthHandler),
                (url_path_join(self.server_url, r"/workbench/evidence/([^/]+)(?:/(original))?"), EvidenceHandler),
            ]
            if not self.notebook_path and (Path(self.root_dir) / server.FRONT_PAGE).is_file():
                front = url_path_join(self.server_url, "voila", "render", server.FRONT_PAGE)
                ours.append((url_path_join(self.server_url, "/?"), RedirectHandler, {"url": front, "permanent": False}))
            return ours + handlers + [(r".*", NotFoundHandler)]

        def start(self):
            import tornado.web

            self.connection_dir = tempfile.mkdtemp(prefix="voila_", dir=self.connection_dir_root)
            settings = self.init_settings()
            self.app = tornado.web.Application(**settings)
            self.app.settings.update(self.tornado_settings)
            self.app.settings.update(allow_remote_access=False)   # whatever tornado_settings say
            allowed = settings["workbench_allowed_hosts"]
            # every handler behind the Host check; any other Host gets the Chinese 403
            self.app.add_handlers(_HostPattern(allowed), self.init_handlers())
            self.app.add_handlers(r".*$", [(r".*", ForeignHostHandler)])
            self.app.add_transform(StrictTransport)
            from tornado.ioloop import PeriodicCallback

            km, log = self.kernel_manager, self.log
            PeriodicCallback(lambda: IOLoop.current().add_callback(sweep_inactive_users, km, log),
                             max(1, int(self.user_check_interval)) * 1000).start()
            if self.certfile:
                import functools
                import ssl

                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(self.certfile, self.keyfile or None)
                self.app.listen = functools.partial(self.app.listen, ssl_options=ctx)
            self.listen()

        def _url(self, ip):
            return "%s://%s:%i%s" % ("https" if self.certfile else "http", ip, self.port, self.base_url)

    return CityVoila


class _HostPattern:
    """The host "pattern" of Application.add_handlers (tornado calls its .match(host_name)):
    `host_allowed` on the request's host name."""

    def __init__(self, allowed):
        self.allowed = allowed

    def match(self, host_name: str) -> bool:
        return host_allowed(host_name, self.allowed)


def main(argv=None) -> None:
    """Run the workbench's Voilà (workbench.ui.server starts it in a child process)."""
    os.umask(0o077)   # what the server and its kernels write (hub file, evidence, reports) is private
    _voila_app().launch_instance(argv)


__all__ = ["WorkbenchIdentityProvider", "WorkbenchAuthorizer", "WorkbenchUser", "OWNERS", "KernelOwners",
           "host_allowed", "peer_in", "evidence_file", "EvidenceHandler", "COOKIE", "KERNELS_PER_USER", "main"]
