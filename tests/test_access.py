"""Who is acting (issue 13): users and sessions in the hub, roles with department and district
scope, the actor of every case step taken from the identity, and the append-only audit log."""
from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from workbench import access, audit, cases, users
from workbench.access import AccessDenied, Principal
from workbench.store.schema import user_sessions

DEMO = {
    "label": "测试工单", "department": "测试局", "intake": "登记", "default_hours": 24,
    "transitions": {"登记": ["派发"], "派发": ["处置", "派发"], "处置": ["办结"], "办结": []},
    "closed": ["办结"], "actions": {"dispatch": "派发", "handle": "处置", "close": "办结"},
    "requires": {"派发": "department"},
}


@pytest.fixture
def demo_type():
    ct = cases.CaseType.from_dict("access_demo", DEMO, where="test")
    cases.register_type(ct)
    yield ct
    cases.TYPES.pop("access_demo", None)


def test_users_sign_in_lock_and_sessions(hub_engine):
    users.create("zhang", "correct-horse", role="staff", name="张三", department="测试局", eng=hub_engine)
    with pytest.raises(users.UserError, match="已存在"):
        users.create("zhang", "another-pass", role="staff", department="测试局", eng=hub_engine)
    with pytest.raises(users.UserError, match="至少"):
        users.create("li", "short", role="analyst", eng=hub_engine)
    with pytest.raises(users.UserError, match="没有区县"):
        users.create("li", "long-enough", role="district", district="长沙县", eng=hub_engine)
    with pytest.raises(users.UserError, match="没有角色"):
        users.create("li", "long-enough", role="root", eng=hub_engine)
    # the hash is argon2, never the password
    with hub_engine.connect() as conn:
        stored = conn.execute(sa.text("select password_hash from users where username='zhang'")).scalar()
    assert stored.startswith("$argon2id$") and "correct-horse" not in stored

    bad = users.sign_in("zhang", "wrong", eng=hub_engine)
    unknown = users.sign_in("nobody", "wrong", eng=hub_engine)
    assert bad.principal is None and bad.problem == unknown.problem
    assert bad.problem.startswith("用户名或密码不正确")
    ok = users.sign_in("zhang", "correct-horse", address="127.0.0.1", eng=hub_engine)
    assert ok.principal.actor == "张三（zhang）" and ok.token
    assert users.session_user(ok.token, hub_engine).username == "zhang"
    assert users.session_user("forged", hub_engine) is None
    # an expired session is no session
    with hub_engine.begin() as conn:
        conn.execute(user_sessions.update().values(expires_at=pd.Timestamp("2020-01-01").to_pydatetime()))
    assert users.session_user(ok.token, hub_engine) is None
    # five wrong passwords lock the account, even for the right one
    for _ in range(users.MAX_FAILED):
        users.sign_in("zhang", "nope", eng=hub_engine)
    locked = users.sign_in("zhang", "correct-horse", eng=hub_engine)
    # locked: refused even with the right password, with the same words as for an unknown name
    assert locked.principal is None and locked.problem == unknown.problem
    fails = audit.frame(hub_engine, action="login.failed")
    assert set(fails["actor"]) == {"匿名"} and "nobody" not in set(fails["target"])   # unknown names not logged
    # a new password unlocks and ends the sessions; disabling ends sign-in
    users.set_password("zhang", "battery-staple", eng=hub_engine)
    assert users.sign_in("zhang", "battery-staple", eng=hub_engine).principal is not None
    users.update("zhang", active=False, eng=hub_engine)
    assert users.sign_in("zhang", "battery-staple", eng=hub_engine).principal is None
    assert users.principal("zhang", hub_engine) is None
    acts = audit.frame(hub_engine)["action"].tolist()
    for a in ("user.create", "login", "login.failed", "user.password", "user.disable"):
        assert a in acts


def test_roles_scope_and_refusals_say_why(hub_engine, demo_type):
    t0 = pd.Timestamp("2026-03-02 01:00")
    cases.open_case(hub_engine, "access_demo", "A1", actor="系统自动", ts=t0, district="荷塘区")
    cases.open_case(hub_engine, "access_demo", "A2", actor="系统自动", ts=t0, district="天元区")
    staff = Principal("zhang", "张三", "staff", department="测试局")
    other = Principal("wang", "王五", "staff", department="应急管理局")
    analyst = Principal("zhao", "赵六", "analyst")
    hetang = Principal("chen", "陈七", "district", district="荷塘区")
    for p in (staff, other, analyst, hetang):   # who acts is read afresh from the hub
        users.create(p.username, "long-enough-1", role=p.role, name=p.name, department=p.department,
                     district=p.district, eng=hub_engine)
    ghost = Principal("ghost", "幽灵", "staff", department="测试局")
    with pytest.raises(AccessDenied, match="已停用或不存在"):
        cases.act(hub_engine, "A1", "dispatch", actor=ghost, department="城管")
    with pytest.raises(AccessDenied, match="只能查看"):
        cases.act(hub_engine, "A1", "dispatch", actor=analyst, department="城管")
    with pytest.raises(AccessDenied, match="由测试局办理"):
        cases.act(hub_engine, "A1", "dispatch", actor=other, department="城管")
    with pytest.raises(AccessDenied, match="属于天元区"):
        cases.act(hub_engine, "A2", "dispatch", actor=hetang, department="城管")
    ch = cases.act(hub_engine, "A1", "dispatch", actor=staff, department="城管", ts=t0 + pd.Timedelta(hours=1))
    assert ch.actor == "张三（zhang）"
    cases.act(hub_engine, "A1", "handle", actor=hetang, ts=t0 + pd.Timedelta(hours=2))
    users.update("zhang", active=False, eng=hub_engine)   # disabled while the page is open: acts no more
    with pytest.raises(AccessDenied, match="已停用"):
        cases.act(hub_engine, "A1", "close", actor=staff)
    h = cases.history("A1", hub_engine)
    assert list(h["actor"]) == ["系统自动", "张三（zhang）", "陈七（chen）"]
    # a district user reads its district only; rows without a district are nobody's
    f = pd.DataFrame({"district": ["荷塘区", "天元区", None], "n": [1, 2, 3]})
    assert access.scope(f, hetang)["n"].tolist() == [1]
    assert access.scope(f, analyst)["n"].tolist() == [1, 2, 3]
    assert hetang.may_unmask(district="天元区") and not hetang.may_unmask(district="荷塘区")
    assert analyst.may_unmask(department="测试局") and not staff.may_unmask(department="测试局")
    # a record not yet assigned: its owners' alone
    assert "尚未派往" in other.may_unmask(department=None, owners={"测试局"})
    assert not staff.may_unmask(department=None, owners={"测试局"})
    steps = audit.frame(hub_engine, action="case.step")
    assert len(steps) == 2 and set(steps["actor"]) == {"张三（zhang）", "陈七（chen）"}


def test_audit_log_is_append_only(hub_engine):
    audit.record(hub_engine, "backup", "命令行", subject="data/backups/x", files=3)
    assert audit.frame(hub_engine)["label"].tolist() == ["备份"]
    stmts = ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"]
    if hub_engine.dialect.name == "postgresql":
        stmts.append("TRUNCATE audit_log")
    for stmt in stmts:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with hub_engine.begin() as conn:
                conn.execute(sa.text(stmt))
    assert len(audit.frame(hub_engine)) == 1


def test_page_identity_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("WORKBENCH_SECRET", raising=False)
    tok = access.sign("zhang")
    assert access.verify(tok) == "zhang"
    assert (tmp_path / ".secret").stat().st_mode & 0o777 == 0o600
    name, exp, mac = tok.split("|")
    assert access.verify(f"admin|{exp}|{mac}") is None           # another name, same mac
    assert access.verify(access.sign("zhang", ttl=-1)) is None    # expired
    assert access.verify("") is None and access.verify("a|b") is None
