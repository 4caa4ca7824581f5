"""Sign-in for the dashboards (issue 13: who is acting), against a real Voilà on 127.0.0.1 and,
where a browser matters, real Chromium: the login page, the page's user coming from the server
only, the Host check, kernels per user and kernel owners, sessions ending, single sign-on
behind a trusted proxy, and the evidence images served by the application."""
from __future__ import annotations

import asyncio
import re
import threading
import uuid
from pathlib import Path

import pytest
import requests

from conftest import TEST_PASSWORD, _voila, make_user

WHOAMI = """from workbench.ui.request import query_params
query_params()
from IPython.display import HTML, display
from workbench.ui.identity import who, banner
p = who()
display(HTML(banner(p)))
display(HTML('<div class="wb-whoami">' + ('无' if p is None else p.username + '|' + p.role) + '</div>'))
display(HTML('<div class="wb-footer">完</div>'))
"""
BANNER = re.compile(r'wb-whoami\\?"(?:>|\\u003e)([^<\\]*)')   # in the page's output JSON: \u003e for >
TIMEOUT = 60


def _folder(tmp_path_factory) -> Path:
    import nbformat

    folder = tmp_path_factory.mktemp("signin-dash")
    nb = nbformat.v4.new_notebook()
    nb.metadata["title"] = "我是谁"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(WHOAMI)]
    nbformat.write(nb, str(folder / "whoami.ipynb"))
    return folder


def _env(root: Path) -> dict:
    return {"WORKBENCH_DB_URL": f"sqlite:///{root / 'city.db'}", "WORKBENCH_DATA_DIR": str(root / "data")}


@pytest.fixture(scope="module")
def signin_server(tmp_path_factory):
    from workbench.ui.server import Security

    root = tmp_path_factory.mktemp("signin-hub")
    with _voila(_env(root), "signin", folder=_folder(tmp_path_factory), preheat=1,
                security=Security(kernels_per_user=2, trusted_proxies=(PROXY_IP,), user_check=2)) as srv:
        yield srv


class _From(requests.adapters.HTTPAdapter):
    """requests from another loopback source address (another client, or the reverse proxy)."""

    def __init__(self, address: str, **kw):
        self.address = address
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        kw["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kw)


def client_from(address: str) -> requests.Session:
    s = requests.Session()
    s.mount("http://", _From(address))
    return s


def session(srv, username: str, password: str = TEST_PASSWORD) -> requests.Session:
    """A signed-in HTTP client (the form: GET /login for the xsrf cookie, POST the password)."""
    s = requests.Session()
    s.get(srv.base_url + "/login", timeout=TIMEOUT)
    r = s.post(srv.base_url + "/login", data={"username": username, "password": password,
                                              "_xsrf": s.cookies.get("_xsrf")}, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302, r.text[-500:]
    return s


def whoami(resp) -> str | None:
    m = BANNER.search(resp.text)
    return m.group(1) if m else None


def kernel_id(resp) -> str:
    return re.search(r'"kernelId": "([0-9a-f-]{36})"', resp.text).group(1)


def page_url(srv) -> str:
    return srv.url("whoami")


# ------------------------------------------------------------------ signing in

def test_anonymous_visitors_get_the_login_page_and_apis_refuse(signin_server):
    srv = signin_server
    r = requests.get(page_url(srv), allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=")
    r = requests.get(page_url(srv), timeout=TIMEOUT)   # followed: the Chinese form
    assert r.status_code == 200 and "用户名" in r.text and "密码" in r.text and 'name="_xsrf"' in r.text
    (Path(srv.folder) / "map.png").write_bytes(b"\x89PNG")
    for api in (f"/api/kernels/{uuid.uuid4()}", "/voila/api/contents/", "/workbench/evidence/V1", "/voila/tree",
                "/voila/files/map.png", "/"):
        assert requests.get(srv.base_url + api, allow_redirects=False, timeout=TIMEOUT).status_code in (302, 403), api
    r = requests.get(srv.base_url + f"/api/kernels/{uuid.uuid4()}", timeout=TIMEOUT)
    assert r.status_code == 403
    # Voilà's static assets stay public; the health check says only "ok"
    assert requests.get(srv.base_url + "/voila/static/city.css", timeout=TIMEOUT).status_code == 200
    assert requests.get(srv.base_url + "/workbench/health", timeout=TIMEOUT).text == "ok"
    assert session(srv, srv.user).get(srv.base_url + "/voila/files/map.png", timeout=TIMEOUT).status_code == 200
    r = requests.post(srv.base_url + f"/voila/api/shutdown/{uuid.uuid4()}", timeout=TIMEOUT)
    assert r.status_code == 403
    # a login without the form's xsrf token is refused
    r = requests.post(srv.base_url + "/login", data={"username": srv.user, "password": TEST_PASSWORD},
                      allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 403 and "workbench-session" not in r.headers.get("Set-Cookie", "")


def test_wrong_password_says_so_and_right_one_sets_a_strict_cookie(signin_server):
    srv = signin_server
    s = requests.Session()
    s.get(srv.base_url + "/login", timeout=TIMEOUT)
    r = s.post(srv.base_url + "/login", data={"username": srv.user, "password": "not-it", "_xsrf": s.cookies["_xsrf"]},
               timeout=TIMEOUT)
    assert r.status_code == 401 and "用户名或密码不正确" in r.text
    r = s.post(srv.base_url + "/login?next=/voila/render/whoami.ipynb",
               data={"username": srv.user, "password": TEST_PASSWORD, "_xsrf": s.cookies["_xsrf"]},
               allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302 and r.headers["Location"] == "/voila/render/whoami.ipynb"
    cookie = r.headers["Set-Cookie"]
    assert "workbench-session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie                  # plain HTTP on loopback; Secure over TLS
    # an open redirect is not followed
    r = s.post(srv.base_url + "/login?next=https://evil.example/",
               data={"username": srv.user, "password": TEST_PASSWORD, "_xsrf": s.cookies["_xsrf"]},
               allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302 and "evil" not in r.headers["Location"]
    # behind an HTTPS reverse proxy (a configured --trusted-proxy saying X-Forwarded-Proto: https) the
    # cookie is Secure; the same header from anyone else is not believed
    for source, secure in ((PROXY_IP, True), ("127.0.0.1", False)):
        c = client_from(source)
        c.get(srv.base_url + "/login", timeout=TIMEOUT)
        r = c.post(srv.base_url + "/login", data={"username": srv.user, "password": TEST_PASSWORD,
                                                  "_xsrf": c.cookies["_xsrf"]},
                   headers={"X-Forwarded-Proto": "https"}, allow_redirects=False, timeout=TIMEOUT)
        assert r.status_code == 302 and ("Secure" in r.headers["Set-Cookie"]) is secure, source
    assert "Strict-Transport-Security" not in r.headers     # plain HTTP here; over TLS see the TLS test


def test_sign_in_tries_are_limited_per_address_before_any_hashing(signin_server):
    """10 failed tries a minute from one address; the 11th is 429 (even with the right password),
    while another address signs in as usual."""
    srv = signin_server
    c = client_from("127.0.0.4")
    c.get(srv.base_url + "/login", timeout=TIMEOUT)
    for i in range(10):
        r = c.post(srv.base_url + "/login", data={"username": f"nobody-{i}", "password": "x", "_xsrf": c.cookies["_xsrf"]},
                   timeout=TIMEOUT)
        assert r.status_code == 401, (i, r.text[-300:])
    r = c.post(srv.base_url + "/login", data={"username": srv.user, "password": TEST_PASSWORD, "_xsrf": c.cookies["_xsrf"]},
               allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 429 and "登录尝试过于频繁" in r.text and "workbench-session" not in r.headers.get("Set-Cookie", "")
    assert session(srv, srv.user).get(srv.base_url + "/voila/tree", allow_redirects=False, timeout=TIMEOUT).status_code == 200
    # many people signing in at once through one address (a proxy, a NAT) are not held up:
    # only failures take from the address's budget
    codes = []

    def one():
        c = client_from("127.0.0.6")
        c.get(srv.base_url + "/login", timeout=TIMEOUT)
        codes.append(c.post(srv.base_url + "/login", data={"username": srv.user, "password": TEST_PASSWORD,
                                                           "_xsrf": c.cookies["_xsrf"]},
                            allow_redirects=False, timeout=120).status_code)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert codes == [302] * 12, codes


def test_the_page_knows_its_user_from_the_server_only(signin_server):
    """A client's own X-Workbench-User — a user name, or a token signed with another secret — is
    replaced by the server's: on a preheated kernel and on a freshly started one alike."""
    from workbench import access

    srv = signin_server
    make_user(srv.env, "forger", "analyst")
    s = session(srv, "forger")
    forged = [f"admin|{2**40}|{'0' * 64}", "admin"]
    seen = []
    for value in forged:   # the first page takes the preheated kernel, the second starts one
        r = s.get(page_url(srv), headers={access.USER_HEADER: value}, timeout=120)
        assert r.status_code == 200, r.text[-800:]
        seen.append(whoami(r))
        s.post(srv.base_url + f"/voila/api/shutdown/{kernel_id(r)}", data={"_xsrf": s.cookies["_xsrf"]}, timeout=TIMEOUT)
    assert seen == ["forger|analyst", "forger|analyst"], srv.log()[-3000:]


@pytest.mark.browser
def test_sign_in_in_chromium_shows_the_user_and_closing_the_page_ends_its_kernel(signin_server, chromium):
    from workbench.ui.browser import SignInFailed, render, sign_in

    srv = signin_server
    make_user(srv.env, "zhang", "staff", department="市场监管局", name="张三")
    ctx = chromium.new_context(locale="zh-CN")
    try:
        page = ctx.new_page()
        page.goto(page_url(srv))
        assert "/login" in page.url and page.is_visible("#username")
        with pytest.raises(SignInFailed, match="用户名或密码不正确"):
            sign_in(page, srv.base_url, "zhang", "wrong-password")
        sign_in(page, srv.base_url, "zhang", TEST_PASSWORD, next_url=page_url(srv))
        result = render(page, page_url(srv), timeout=120)
        assert result.ok, result.errors
        assert "当前用户：张三 · 部门人员 · 市场监管局" in result.text and "退出登录" in result.text
        assert not [c for c in result.console_errors if "403" in c], result.console_errors
        kid = page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
        page.close(run_before_unload=True)   # Voilà's beforeunload asks the server to shut the kernel down
        page2 = ctx.new_page()
        page2.wait_for_timeout(1500)
        assert f"Kernel shutdown: {kid}" in srv.log(), srv.log()[-2000:]
        page2.close()
    finally:
        ctx.close()


def test_logout_and_expired_sessions_send_back_to_login(signin_server):
    from workbench.store import hub
    from workbench.store.schema import user_sessions

    srv = signin_server
    make_user(srv.env, "li", "leader")
    s = session(srv, "li")
    assert s.get(srv.base_url + "/voila/tree", allow_redirects=False, timeout=TIMEOUT).status_code == 200
    page = s.get(page_url(srv), timeout=120)
    kid = kernel_id(page)
    r = s.get(srv.base_url + "/logout", timeout=TIMEOUT)
    assert "已退出登录" in r.text
    # the user's open page ends with the session: its kernel is shut down
    _log_says(srv, f"their kernel {kid} is shut down", f"Kernel shutdown: {kid}")
    again = session(srv, "li")
    assert again.get(srv.base_url + f"/api/kernels/{kid}", timeout=TIMEOUT).status_code in (403, 404)
    again.get(srv.base_url + "/logout", timeout=TIMEOUT)
    assert s.get(srv.base_url + "/voila/tree", allow_redirects=False, timeout=TIMEOUT).status_code == 302
    # an expired session
    s = session(srv, "li")
    eng = hub.engine(srv.env["WORKBENCH_DB_URL"])
    with eng.begin() as conn:
        conn.execute(user_sessions.update().where(user_sessions.c.username == "li", user_sessions.c.revoked_at.is_(None))
                     .values(expires_at=_past()))
    assert s.get(srv.base_url + "/voila/tree", allow_redirects=False, timeout=TIMEOUT).status_code == 302
    # a disabled user's session ends at once, and the open pages of the user with it (their kernels)
    from workbench import users

    s = session(srv, "li")
    kid = kernel_id(s.get(page_url(srv), timeout=120))
    users.update("li", active=False, eng=eng)
    import time

    time.sleep(5.2)   # the server's principal cache (users._CACHE_SECONDS)
    assert s.get(srv.base_url + "/voila/tree", allow_redirects=False, timeout=TIMEOUT).status_code == 302
    _log_says(srv, f"li is no longer an active user: their kernel {kid} is shut down", f"Kernel shutdown: {kid}")


def _log_says(srv, *lines, within: float = 20):
    """Wait (bounded) for the server's log to show every line (the log comes through a pipe)."""
    import time

    deadline = time.monotonic() + within
    while not all(line in srv.log() for line in lines) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(line in srv.log() for line in lines), srv.log()[-2000:]


def _past():
    import pandas as pd

    from workbench import clock

    return (clock.now() - pd.Timedelta(minutes=1)).to_pydatetime()


# ------------------------------------------------------------------ serving

def test_a_foreign_host_header_is_refused(signin_server):
    srv = signin_server
    for host in ("evil.example", f"evil.example:{srv.port}", "127.0.0.1.nip.io"):
        r = requests.get(srv.base_url + "/login", headers={"Host": host}, timeout=TIMEOUT)
        assert r.status_code == 403 and "DNS 重绑定" in r.text, host
    for host in (f"localhost:{srv.port}", f"127.0.0.1:{srv.port}"):
        assert requests.get(srv.base_url + "/login", headers={"Host": host}, timeout=TIMEOUT).status_code == 200


def test_kernels_per_user_are_capped(signin_server):
    srv = signin_server  # kernels_per_user=2
    make_user(srv.env, "wang", "leader")
    s = session(srv, "wang")
    for _ in range(2):
        assert s.get(page_url(srv), timeout=120).status_code == 200
    r = s.get(page_url(srv), timeout=120)
    assert r.status_code == 429 and "每人最多 2 个" in r.text and "请先关闭其他看板页面" in r.text
    # another user is not affected
    make_user(srv.env, "zhao", "leader")
    other = session(srv, "zhao")
    r = other.get(page_url(srv), timeout=120)
    assert r.status_code == 200 and whoami(r) == "zhao|leader"
    other.post(srv.base_url + f"/voila/api/shutdown/{kernel_id(r)}", data={"_xsrf": other.cookies["_xsrf"]},
               timeout=TIMEOUT)


def test_another_users_kernel_is_refused(signin_server):
    import websocket

    srv = signin_server
    make_user(srv.env, "owner", "leader")
    make_user(srv.env, "intruder", "leader")
    mine, theirs = session(srv, "owner"), session(srv, "intruder")
    r = mine.get(page_url(srv), timeout=120)
    kid = kernel_id(r)
    assert mine.get(srv.base_url + f"/api/kernels/{kid}", timeout=TIMEOUT).status_code == 200
    r = theirs.get(srv.base_url + f"/api/kernels/{kid}", timeout=TIMEOUT)
    assert r.status_code == 403 and "不属于您" in r.json()["message"]
    cookie = "; ".join(f"{k}={v}" for k, v in theirs.cookies.items())
    with pytest.raises(websocket.WebSocketBadStatusException) as bad:
        websocket.create_connection(f"ws://127.0.0.1:{srv.port}/api/kernels/{kid}/channels", cookie=cookie, timeout=20)
    assert bad.value.status_code == 403
    r = theirs.post(srv.base_url + f"/voila/api/shutdown/{kid}", data={"_xsrf": theirs.cookies["_xsrf"]}, timeout=TIMEOUT)
    assert r.status_code == 403 and "不属于您" in r.json()["message"]
    # the owner's websocket connects
    ws = websocket.create_connection(f"ws://127.0.0.1:{srv.port}/api/kernels/{kid}/channels",
                                     cookie="; ".join(f"{k}={v}" for k, v in mine.cookies.items()), timeout=20)
    ws.close()
    r = mine.post(srv.base_url + f"/voila/api/shutdown/{kid}", data={"_xsrf": mine.cookies["_xsrf"]}, timeout=TIMEOUT)
    assert r.status_code == 204


# ------------------------------------------------------------------ evidence

def _violation(eng, vid, camera, district, canteen="C1", snapshot=None):
    import pandas as pd

    from workbench.store.schema import DATASETS

    with eng.begin() as conn:
        conn.execute(DATASETS["canteen_violations"].table.insert().values(
            violation_id=vid, ts=pd.Timestamp("2026-03-02 02:00").to_pydatetime(), camera_id=camera,
            canteen_id=canteen, district=district, violation_class="未戴口罩", snapshot=snapshot))


def test_evidence_is_served_by_role_and_unblurred_views_are_audited(signin_server):
    from workbench import audit
    from workbench.store import hub

    srv = signin_server
    eng = hub.engine(srv.env["WORKBENCH_DB_URL"])
    data = Path(srv.env["WORKBENCH_DATA_DIR"])
    folder = data / "evidence" / "cam-1" / "2026-03-02"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "V-ev1.jpg").write_bytes(b"\xff\xd8blurred")
    (folder / "V-ev1.clean.jpg").write_bytes(b"\xff\xd8clean")
    secret = data / "outside.jpg"
    secret.write_bytes(b"\xff\xd8outside")
    _violation(eng, "V-ev1", "cam-1", "荷塘区")
    _violation(eng, "V-ev2", "cam-1", "荷塘区", snapshot=str(secret))          # a path from data: never used
    (folder / "V-ev3.jpg").symlink_to(secret)                                  # a link out of the root
    _violation(eng, "V-ev3", "cam-1", "荷塘区")
    make_user(srv.env, "ev-staff", "staff", department="市场监管局")
    make_user(srv.env, "ev-lusong", "district", district="芦淞区")
    make_user(srv.env, "ev-hetang", "district", district="荷塘区")
    make_user(srv.env, "ev-review", "reviewer", department="市场监管局", name="复核员")
    url = srv.base_url + "/workbench/evidence/"
    staff, lusong, hetang, review = (session(srv, u) for u in ("ev-staff", "ev-lusong", "ev-hetang", "ev-review"))

    r = staff.get(url + "V-ev1", timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == b"\xff\xd8blurred" and r.headers["Content-Type"] == "image/jpeg"
    assert hetang.get(url + "V-ev1", timeout=TIMEOUT).status_code == 200
    r = lusong.get(url + "V-ev1", timeout=TIMEOUT)    # out of scope reads as unknown: no district told
    assert r.status_code == 404 and "没有该违规记录" in r.text and "荷塘区" not in r.text
    assert lusong.get(url + "V-nope", timeout=TIMEOUT).text == r.text
    r = staff.get(url + "V-ev1/original", params={"reason": "复核整改"}, timeout=TIMEOUT)
    assert r.status_code == 403 and "仅限抓拍复核员" in r.text
    for reason in (None, "", " 查 "):     # the unblurred frame needs a reason of 2 characters or more
        r = review.get(url + "V-ev1/original", params={"reason": reason} if reason is not None else None, timeout=TIMEOUT)
        assert r.status_code == 400 and "须说明原因" in r.text, reason
    assert not (audit.frame(eng, action="evidence.view")).shape[0]
    r = review.get(url + "V-ev1/original", params={"reason": "复核整改"}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == b"\xff\xd8clean"
    log = audit.frame(eng, action="evidence.view")
    assert len(log) == 1 and log.iloc[0]["target"] == "V-ev1" and "复核员（ev-review）" == log.iloc[0]["actor"]
    assert "复核整改" in log.iloc[0]["detail"]
    # never a path from data or from the request
    assert staff.get(url + "V-ev2", timeout=TIMEOUT).status_code == 404
    assert staff.get(url + "V-ev3", timeout=TIMEOUT).status_code == 404
    for bad in ("..%2F..%2Foutside", "%2E%2E", "V-ev1%2F..%2F..%2Foutside"):
        assert staff.get(url + bad, timeout=TIMEOUT).status_code == 404, bad
    assert requests.get(url + "V-ev1", allow_redirects=False, timeout=TIMEOUT).status_code in (302, 403)  # anonymous


# ------------------------------------------------------------------ the kernels' request info

def test_request_info_socket_needs_the_kernels_key_and_takes_one_connection(signin_server, monkeypatch):
    """/voila/query/<kernel id> (a preheated kernel waits there for its page's request, the signed
    user token among it): without the kernel's key refused, a second connection refused."""
    import time

    import websocket

    from workbench.ui.request import query_key

    srv = signin_server
    base = f"ws://127.0.0.1:{srv.port}/voila/query/"
    monkeypatch.setenv("WORKBENCH_DATA_DIR", srv.env["WORKBENCH_DATA_DIR"])   # the server's secret
    monkeypatch.delenv("WORKBENCH_SECRET", raising=False)

    def status(kid, key=None):
        try:
            ws = websocket.create_connection(base + kid + (f"?key={key}" if key is not None else ""), timeout=10)
        except websocket.WebSocketBadStatusException as exc:
            return exc.status_code
        ws.close()
        return 101

    assert status(str(uuid.uuid4())) == 403
    assert status(str(uuid.uuid4()), "0" * 64) == 403
    deadline, waiting = time.monotonic() + 90, None
    while waiting is None and time.monotonic() < deadline:   # the preheated kernel waiting now
        for kid in list(srv.waiting):
            if status(kid) == 403 and status(kid, "f" * 64) == 403 and status(kid, query_key(kid)) == 409:
                waiting = kid
                break
        else:
            time.sleep(1)
    assert waiting, srv.log()[-2000:]
    # the waiting kernel still gets its page's request: the page knows its user
    r = session(srv, srv.user).get(page_url(srv), timeout=120)
    assert r.status_code == 200 and whoami(r) == f"{srv.user}|leader"


def test_anonymous_template_folder_is_a_clean_404_and_the_server_writes_privately(signin_server):
    srv = signin_server
    for path in ("/voila/templates/city/static/", "/voila/templates/city/static", "/voila/templates/city/",
                 "/voila/templates/city/static/..%2F..%2Fconf.json"):
        r = requests.get(srv.base_url + path, allow_redirects=False, timeout=TIMEOUT)
        assert r.status_code in (302, 404), (path, r.status_code)
    assert requests.get(srv.base_url + "/voila/templates/city/static/city.css", timeout=TIMEOUT).status_code == 200
    status = Path(f"/proc/{srv.process.pid}/status").read_text()
    assert re.search(r"^Umask:\s+0077$", status, re.M), status   # files of the server and its kernels: 0600


# ------------------------------------------------------------------ single sign-on

PROXY_IP = "127.0.0.2"   # the trusted proxy connects from here; direct clients come from 127.0.0.1


def _start_proxy(upstream_port: int, user: str, secret: str | None = None):
    """A small real reverse proxy on loopback (tornado): adds X-Forwarded-User (and the shared
    secret header), connects upstream from PROXY_IP, as oauth2-proxy or nginx would."""
    import tornado.httpclient
    import tornado.httpserver
    import tornado.web

    from workbench.ui.server import free_port

    port = free_port()
    ready = threading.Event()
    state = {}

    class Proxy(tornado.web.RequestHandler):
        async def get(self):
            client = tornado.httpclient.AsyncHTTPClient()
            headers = {k: v for k, v in self.request.headers.get_all()
                       if k.lower() not in ("host", "x-forwarded-user")}
            headers["X-Forwarded-User"] = user
            headers.pop("X-Workbench-Proxy-Secret", None)
            if secret is not None:
                headers["X-Workbench-Proxy-Secret"] = secret
            headers["Host"] = f"127.0.0.1:{upstream_port}"
            resp = await client.fetch(f"http://127.0.0.1:{upstream_port}{self.request.uri}", headers=headers,
                                      network_interface=PROXY_IP, follow_redirects=False, raise_error=False,
                                      request_timeout=120)
            self.set_status(resp.code)
            for k in ("Content-Type", "Location"):
                if k in resp.headers:
                    self.set_header(k, resp.headers[k])
            self.finish(resp.body or b"")

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = tornado.web.Application([(r".*", Proxy)])
        server = tornado.httpserver.HTTPServer(app)
        server.listen(port, "127.0.0.1")
        state["loop"], state["server"] = loop, server
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)

    def stop():
        state["loop"].call_soon_threadsafe(state["loop"].stop)

    return port, stop


def test_single_sign_on_behind_a_trusted_proxy(tmp_path_factory):
    from workbench.ui.server import Security

    import os

    root = tmp_path_factory.mktemp("sso-hub")
    secret = "s3cr3t-" + uuid.uuid4().hex
    secret_file = root / "proxy.secret"
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (secret + "\n").encode())
    os.close(fd)
    sec = Security(auth="proxy", trusted_proxies=(PROXY_IP,), proxy_secret_file=str(secret_file))
    with _voila(_env(root), "sso", user="sso-user", role="leader", folder=_folder(tmp_path_factory), preheat=0,
                security=sec) as srv:
        make_user(srv.env, "sso-off", "leader")
        from workbench import users
        from workbench.store import hub

        users.update("sso-off", active=False, eng=hub.engine(srv.env["WORKBENCH_DB_URL"]))
        port, stop = _start_proxy(srv.port, "sso-user", secret)
        try:
            r = requests.get(f"http://127.0.0.1:{port}/voila/render/whoami.ipynb", timeout=120)
            assert r.status_code == 200 and whoami(r) == "sso-user|leader", r.text[-1500:]
        finally:
            stop()
        # from the proxy's own address, but without the shared secret (any local process could
        # connect from there) or with a wrong one: not believed
        for wrong in (None, "", secret[:-1], secret + "x"):
            port, stop = _start_proxy(srv.port, "sso-user", wrong)
            try:
                r = requests.get(f"http://127.0.0.1:{port}/voila/tree", timeout=TIMEOUT)
                assert r.status_code in (302, 403) and whoami(r) is None and "我是谁" not in r.text, wrong
            finally:
                stop()
        # the same header sent directly (not from the trusted proxy's address) is not believed
        r = requests.get(page_url(srv), headers={"X-Forwarded-User": "sso-user"}, timeout=TIMEOUT)
        assert r.status_code == 403 and "单点登录" in r.text
        r = requests.get(srv.base_url + "/voila/tree", headers={"X-Forwarded-User": "sso-user"},
                         allow_redirects=False, timeout=TIMEOUT)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login")
        # a name the hub does not know, or a disabled user, gets nothing through the proxy either
        for name in ("nobody-here", "sso-off"):
            port, stop = _start_proxy(srv.port, name, secret)
            try:
                r = requests.get(f"http://127.0.0.1:{port}/voila/tree", timeout=TIMEOUT)
                assert r.status_code in (302, 403) and whoami(r) is None, name
            finally:
                stop()


# ------------------------------------------------------------------ demo accounts

def test_users_demo_makes_one_account_per_role_and_keeps_them(sqlite_hub, tmp_path):
    import stat

    from click.testing import CliRunner

    from workbench import access, users
    from workbench.cli import main

    first = CliRunner().invoke(main, ["users", "demo"])
    assert first.exit_code == 0, first.output
    path = tmp_path / "data" / "demo-accounts.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    who = {u: users.principal(u, sqlite_hub) for u, *_ in rows}
    assert {p.role for p in who.values()} == set(access.ROLES)
    assert {p.department for p in who.values() if p.role == "staff"} == {
        "市场监管局", "城市管理和综合执法局", "应急管理局", "市城市运行管理服务中心"}
    assert who["demo-hetang"].district == "荷塘区" and who["demo-reviewer"].department == "市场监管局"
    assert all(pw in first.output for _, pw, *_ in rows)
    assert users.sign_in("demo-reviewer", dict((u, pw) for u, pw, *_ in rows)["demo-reviewer"], eng=sqlite_hub).principal
    again = CliRunner().invoke(main, ["users", "demo"])
    assert again.exit_code == 0 and users.count(sqlite_hub) == len(rows)
    assert [line.split("\t")[:2] for line in path.read_text(encoding="utf-8").splitlines()[1:]] == [r[:2] for r in rows]


def test_another_address_serves_preheated_pages(tmp_path_factory):
    """--host other than 127.0.0.1: the preheated kernel asks that address for its request."""
    root = tmp_path_factory.mktemp("addr-hub")
    with _voila(_env(root), "addr", host="127.0.0.3", folder=_folder(tmp_path_factory), preheat=1) as srv:
        assert srv.base_url.startswith("http://127.0.0.3:")
        r = session(srv, srv.user).get(page_url(srv), timeout=120)
        assert r.status_code == 200 and whoami(r) == f"{srv.user}|leader" and "Using pre-heated kernel" in srv.log()


# ------------------------------------------------------------------ TLS

def test_serving_options_are_checked_and_exposure_is_warned_about(tmp_path):
    from click.testing import CliRunner

    from workbench.cli import main
    from workbench.ui.server import Security, check_security, exposure_warnings

    assert exposure_warnings("127.0.0.1", Security()) == []
    loud = exposure_warnings("0.0.0.0", Security())
    assert any("明文" in w and "--certfile" in w for w in loud)
    assert not any("明文" in w for w in exposure_warnings("0.0.0.0", Security(certfile="c.pem", keyfile="k.pem")))
    assert "--trusted-proxy" in check_security("127.0.0.1", Security(auth="proxy"))
    assert "不是 IP" in check_security("127.0.0.1", Security(auth="proxy", trusted_proxies=("proxy.local",)))
    # proxy mode: one host per trusted proxy, and the proxy's shared secret in a 0600 file
    good = tmp_path / "proxy.secret"
    good.write_text("a" * 32)
    good.chmod(0o600)
    for net in ("0.0.0.0/0", "::/0", "10.0.0.0/8", "127.0.0.0/8", "192.168.1.0/31", "fd00::/127"):
        problem = check_security("127.0.0.1", Security(auth="proxy", trusted_proxies=(net,), proxy_secret_file=str(good)))
        assert problem and "网段" in problem and "单个地址" in problem, net
        assert "网段" in check_security("127.0.0.1", Security(trusted_proxies=(net,)))   # password mode too
    assert "--proxy-secret-file" in check_security("127.0.0.1", Security(auth="proxy", trusted_proxies=("127.0.0.2",)))
    loose = tmp_path / "loose.secret"
    loose.write_text("a" * 32)
    loose.chmod(0o644)
    short = tmp_path / "short.secret"
    short.write_text("abc")
    short.chmod(0o600)
    for f, says in ((loose, "chmod 600"), (short, "太短"), (tmp_path / "none.secret", "找不到")):
        problem = check_security("127.0.0.1", Security(auth="proxy", trusted_proxies=("127.0.0.2",), proxy_secret_file=str(f)))
        assert problem and says in problem, f
    for one in ("127.0.0.2", "10.1.2.3/32", "::1", "fd00::5/128"):
        assert check_security("127.0.0.1", Security(auth="proxy", trusted_proxies=(one,), proxy_secret_file=str(good))) is None
    r = CliRunner().invoke(main, ["serve", "--auth", "proxy"])
    assert r.exit_code == 2 and "--trusted-proxy" in r.output
    r = CliRunner().invoke(main, ["serve", "--auth", "proxy", "--trusted-proxy", "0.0.0.0/0", "--proxy-secret-file", str(good)])
    assert r.exit_code == 2 and "网段" in r.output
    r = CliRunner().invoke(main, ["serve", "--auth", "proxy", "--trusted-proxy", "127.0.0.1"])
    assert r.exit_code == 2 and "--proxy-secret-file" in r.output
    r = CliRunner().invoke(main, ["serve", "--certfile", "/nonexistent.pem", "--keyfile", "/nonexistent.key"])
    assert r.exit_code == 2 and "找不到证书文件" in r.output


def test_tls_serves_pages_with_a_secure_cookie(tmp_path_factory):
    """--certfile/--keyfile: HTTPS in Voilà's own server; the session cookie is Secure; a preheated
    kernel still gets its request (over wss on this machine)."""
    import shutil
    import subprocess

    import urllib3

    from workbench.ui.server import Security

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    urllib3.disable_warnings()
    root = tmp_path_factory.mktemp("tls-hub")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with _voila(_env(root), "tls", folder=_folder(tmp_path_factory), preheat=1,
                security=Security(certfile=str(cert), keyfile=str(key))) as srv:
        assert srv.base_url.startswith("https://")
        s = requests.Session()
        s.trust_env = False    # (a CA bundle from the environment would override verify=False)
        s.verify = False
        s.get(srv.base_url + "/login", timeout=TIMEOUT)
        r = s.post(srv.base_url + "/login", data={"username": srv.user, "password": TEST_PASSWORD,
                                                  "_xsrf": s.cookies.get("_xsrf")}, allow_redirects=False, timeout=TIMEOUT)
        assert r.status_code == 302 and "Secure" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        r = s.get(page_url(srv), timeout=120)
        assert r.status_code == 200 and whoami(r) == f"{srv.user}|leader", srv.log()[-2000:]
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{srv.port}/login", timeout=10)


def test_canteen_page_asks_the_reviewer_for_a_reason_before_the_unblurred_frame(tmp_path, monkeypatch):
    """The canteen card offers the unblurred frame to the reviewer only, as a form that requires
    a reason (the server refuses /original without one); others get no such form."""
    import types

    import pandas as pd

    from workbench import access
    from workbench.canteen.evidence import event_dir
    from workbench.ui.canteen_page import _thumb

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    ts = pd.Timestamp("2026-03-02 02:00").to_pydatetime()
    folder = tmp_path / event_dir("cam-1", ts)
    folder.mkdir(parents=True)
    (folder / "V-r1.jpg").write_bytes(b"\xff\xd8blurred")
    row = types.SimpleNamespace(violation_id="V-r1", camera_id="cam-1", ts=ts)
    reviewer = access.Principal("rev", "复核员", "reviewer", "市场监管局", None)
    staff = access.Principal("stf", "张三", "staff", "市场监管局", None)
    html = _thumb(row, reviewer)
    assert '/workbench/evidence/V-r1"' in html
    form = re.search(r'<form class="wb-cv-original"[^>]*action="([^"]+)"[^>]*>(.*?)</form>', html)
    assert form and form.group(1).endswith("/workbench/evidence/V-r1/original"), html
    assert 'name="reason"' in form.group(2) and "required" in form.group(2) and 'minlength="2"' in form.group(2)
    assert "wb-cv-original" not in _thumb(row, staff)
