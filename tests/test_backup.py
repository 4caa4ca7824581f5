"""Backups and the restore drill, on a real SQLite file and a real PostgreSQL schema:
a hub filled with the sample city (every department's data, cases, alerts, audit rows, a
user, raw copies and evidence) is backed up, damaged, restored, and must come back with the
same row counts and the same content checksums, table by table and file by file."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest
import sqlalchemy as sa

from workbench import audit, backup as bk, config
from workbench.store import hub


def fill(eng) -> None:
    from workbench import users
    from workbench.synth import synth_city

    synth_city(days=7, seed=3, eng=eng, progress=False)
    users.create("wang", "correct-horse-9", role="admin", name="王管理", eng=eng)
    ev = config.data_dir() / "evidence" / "CAM-1" / "2026-01-02"
    ev.mkdir(parents=True, exist_ok=True)
    (ev / "a.jpg").write_bytes(os.urandom(2048))
    (ev / "a-clean.jpg").write_bytes(os.urandom(4096))


def files_digest() -> dict[str, str]:
    out = {}
    for sub in bk.FOLDERS:
        root = config.data_dir() / sub
        for p in sorted(root.rglob("*")) if root.is_dir() else []:
            if p.is_file():
                out[p.relative_to(config.data_dir()).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def damage(eng) -> None:
    with eng.begin() as conn:
        conn.execute(sa.text("DELETE FROM rapid_tests"))
        conn.execute(sa.text("UPDATE city_events SET description = 'changed'"))
        conn.execute(sa.text("DELETE FROM users"))
    raw = sorted((config.data_dir() / "raw").rglob("*.*"))
    raw[0].write_bytes(b"overwritten")
    raw[1].unlink()
    next((config.data_dir() / "evidence").rglob("a.jpg")).unlink()
    (config.data_dir() / "evidence" / "new.jpg").write_bytes(b"made after the backup")


def test_restore_drill(hub_engine, tmp_path):
    eng = hub_engine
    fill(eng)
    counts, digests, files = bk.table_counts(eng), bk.table_digests(eng), files_digest()
    assert counts["rapid_tests"] > 1000 and counts["users"] == 1 and counts["cases"] > 0
    assert len(files) > 20 and any(k.startswith("evidence/") for k in files)

    res = bk.backup(eng, tmp_path / "backups")
    assert res.tables == counts and res.files == len(files)
    folder = res.folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600) for p in folder.rglob("*"))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tables"] == counts and manifest["backend"] == eng.dialect.name
    assert {k[len("files/"):] for k in manifest["files"] if k.startswith("files/")} == set(files)
    assert audit.frame(eng, action="backup")["target"].tolist() == [str(folder)]

    damage(eng)
    assert bk.table_counts(eng)["rapid_tests"] == 0 and files_digest() != files
    from workbench.store import kept   # an analysis kept from the damaged rows …

    kept.save("overview_evaluation", {"made": "from the damaged rows"}, 1, eng)

    out = bk.restore(eng, folder)
    assert out.mismatched == {}
    assert kept.load("overview_evaluation", 1, eng) == (None, None)   # … is not read after the restore
    eng = hub.engine(eng.url.render_as_string(hide_password=False))
    after = bk.table_counts(eng)
    # the backup's log, the rows written since (the backup's own row) carried over, then the restore's
    assert after.pop("audit_log") == counts["audit_log"] + 2
    want = dict(counts)
    want.pop("audit_log")
    assert after == want
    now = bk.table_digests(eng)
    assert {t: d for t, d in now.items() if t != "audit_log"} == {t: d for t, d in digests.items() if t != "audit_log"}
    assert files_digest() == files
    log = audit.frame(eng, limit=5)
    assert log["action"].iloc[0] == "restore" and log["target"].iloc[0] == str(folder)
    assert log["action"].iloc[1] == "backup"   # written after the dump, carried over the restore
    # the hub as it was just before the restore was kept (a restore can be undone)
    before = [p for p in bk.listing(tmp_path / "backups") if p.name.endswith("before-restore")]
    assert len(before) == 1 and json.loads(log["detail"].iloc[0])["before_restore"] == str(before[0])


def test_a_changed_backup_is_refused_before_anything_is_touched(sqlite_hub, tmp_path):
    eng = sqlite_hub
    from workbench import users

    users.create("li", "correct-horse-9", role="admin", name="李管理", eng=eng)
    ev = config.data_dir() / "evidence" / "x.jpg"
    ev.parent.mkdir(parents=True)
    ev.write_bytes(b"evidence")
    res = bk.backup(eng, tmp_path / "b")
    users.create("zhao", "correct-horse-9", role="admin", name="赵管理", eng=eng)
    before = bk.table_digests(eng)
    target = res.folder / "files" / "evidence" / "x.jpg"
    target.chmod(0o600)
    target.write_bytes(b"tampered")
    with pytest.raises(bk.BackupError, match="已被改动 files/evidence/x.jpg"):
        bk.restore(eng, res.folder)
    target.write_bytes(b"evidence")
    (res.folder / "files" / "evidence" / "extra.jpg").write_bytes(b"x")
    with pytest.raises(bk.BackupError, match="多出"):
        bk.restore(eng, res.folder)
    (res.folder / "files" / "evidence" / "extra.jpg").unlink()
    # a file changed and its checksum rewritten in the manifest: the manifest's signature says so
    mf = res.folder / "manifest.json"
    m = json.loads(mf.read_text(encoding="utf-8"))
    target.write_bytes(b"forged")
    m["files"]["files/evidence/x.jpg"] = {"sha256": hashlib.sha256(b"forged").hexdigest(), "bytes": 6}
    mf.write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(bk.BackupError, match="签名不符"):
        bk.restore(eng, res.folder)
    assert bk.verify(res.folder, allow_unsigned=True)["files"]["files/evidence/x.jpg"]["bytes"] == 6
    (res.folder / "hub.sqlite").unlink()
    with pytest.raises(bk.BackupError, match="缺少 hub.sqlite"):
        bk.restore(eng, res.folder, allow_unsigned=True)
    assert bk.table_digests(eng) == before and ev.read_bytes() == b"evidence"


def test_cli_backup_and_restore(tmp_path):
    """`workbench backup` / `workbench restore` as an operator types them: the restore asks
    first (no answer: nothing changes), --yes restores, a tampered backup exits 2."""
    db = f"sqlite:///{tmp_path / 'city.db'}"
    env = {**os.environ, "WORKBENCH_DB_URL": db, "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    env.pop("WORKBENCH_USER", None)
    run = lambda *a, **kw: subprocess.run([sys.executable, "-m", "workbench.cli", *a], env=env,  # noqa: E731
                                          capture_output=True, text=True, timeout=120, **kw)
    eng = hub.engine(db)
    from workbench import users

    users.create("wu", "correct-horse-9", role="admin", name="吴管理", eng=eng)
    users.create("he", "correct-horse-9", role="analyst", name="何分析", eng=eng)
    r = run("backup", "--to", str(tmp_path / "bk"))
    assert r.returncode == 0, r.stderr
    assert "已备份" in r.stdout
    folder = bk.listing(tmp_path / "bk")[-1]
    r = run("--user", "he", "backup", "--to", str(tmp_path / "bk"))
    assert r.returncode == 2 and "无权备份" in r.stderr
    users.create("ma", "correct-horse-9", role="admin", name="马管理", eng=eng)
    r = run("restore", str(folder), input="n\n")
    assert r.returncode == 1 and "未做任何改动" in r.stderr
    assert bk.table_counts(eng)["users"] == 3
    r = run("restore", str(folder), "--yes")
    assert r.returncode == 0, r.stderr
    hub.dispose(db)
    eng = hub.engine(db)
    assert bk.table_counts(eng)["users"] == 2
    (folder / "hub.sqlite").chmod(0o600)
    with open(folder / "hub.sqlite", "ab") as f:
        f.write(b"x")
    r = run("restore", str(folder), "--yes")
    assert r.returncode == 2 and "备份校验失败" in r.stderr
    hub.dispose(db)


def test_a_hub_behind_head_is_backed_up_before_it_is_migrated(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'old.db'}"
    eng = hub.engine(url, migrate=False)
    hub.upgrade(eng, "0012")
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO grids (grid_id, district, street) VALUES ('G1', '荷塘区', '月塘街道')"))
    with caplog.at_level("WARNING", logger="workbench.store.hub"):
        hub.upgrade(eng)
    made = bk.listing(eng=eng)
    head = hub.head_revision()
    assert len(made) == 1 and made[0].name.endswith(f"before-{head}") and str(made[0]) in caplog.text
    m = bk.verify(made[0])
    assert m["revision"] == "0012" and m["tables"]["grids"] == 1
    assert audit.frame(eng, action="migrate")["target"].tolist() == [str(made[0])]
    assert m["with_files"] is False and not any(k.startswith("files/") for k in m["files"])
    # restoring a database-only backup leaves the data folder's files as they are
    kept = tmp_path / "data" / "raw" / "ab" / "kept.csv"
    kept.parent.mkdir(parents=True)
    kept.write_text("a,b\n")
    bk.restore(eng, made[0])
    assert kept.read_text() == "a,b\n" and hub.current_revision(eng) == "0012"
    hub.upgrade(eng)  # a backup of the older schema is migrated again (and backed up again first)
    # before-<head>, before-restore (the hub as it was when restored), before-<head> again
    assert hub.current_revision(eng) == head and len(bk.listing(eng=eng)) == 3
    made = bk.listing(eng=eng)
    # at head: nothing more; an empty hub: nothing; the setting off: nothing
    hub.upgrade(eng)
    other = hub.engine(f"sqlite:///{tmp_path / 'new.db'}", migrate=False)
    hub.upgrade(other)
    monkeypatch.setenv("WORKBENCH_BACKUP_BEFORE_MIGRATE", "0")
    third = hub.engine(f"sqlite:///{tmp_path / 'third.db'}", migrate=False)
    hub.upgrade(third, "0012")
    hub.upgrade(third)
    assert bk.listing(eng=eng) == made
    for e in (eng, other, third):
        e.dispose()
