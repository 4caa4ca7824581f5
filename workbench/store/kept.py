"""Analyses kept between visits: a department's last analysis, saved whole in the data folder so
a dashboard's first visit reads it instead of analysing a year of rows (issue 15: < 3 s).

One file per analysis and hub (`<name>_<hash of the hub's URL>.pkl` under data/cache: a test hub
never reads the demo's), written whole or not at all (a page never reads half of one), with a
version: an unreadable file or one of another version reads as none (the caller analyses again).
What is kept is the caller's own result object, without rows a page does not need.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import threading
from pathlib import Path

import pandas as pd

from workbench import config


def _hub_key(eng=None) -> str:
    """The file-name suffix of the hub `eng`'s kept analyses (a hash of its URL)."""
    from workbench.store import hub

    eng = eng or hub.engine()
    url = eng.url.render_as_string(hide_password=True)
    return hashlib.sha256(url.encode()).hexdigest()[:12] + ".pkl"


def path(name: str, eng=None) -> Path:
    """Where analysis `name` of the hub `eng` is kept."""
    return config.data_dir() / "cache" / f"{name}_{_hub_key(eng)}"


def forget(eng=None) -> int:
    """Every analysis kept for the hub `eng` removed (a restore replaced the rows they were made
    from: the next visit analyses again). Returns how many files went."""
    key = _hub_key(eng)
    folder = config.data_dir() / "cache"
    gone = 0
    for p in folder.glob(f"*_{key}") if folder.is_dir() else ():
        try:
            p.unlink()
            gone += 1
        except OSError:
            pass
    return gone


def save(name: str, obj, version: int, eng=None) -> Path:
    p = path(name, eng)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")   # each writer its own, then one rename
    with open(tmp, "wb") as fh:
        pickle.dump({"version": version, "saved": pd.Timestamp.now(tz="UTC").tz_localize(None), "analysis": obj},
                    fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(p)  # whole or not at all
    return p


def load(name: str, version: int, eng=None):
    """(the kept analysis, when it was saved, naive UTC) or (None, None)."""
    p = path(name, eng)
    if not p.exists():
        return None, None
    try:
        with open(p, "rb") as fh:
            d = pickle.load(fh)
    except Exception:  # noqa: BLE001 - unreadable, or of older code: analysed again
        return None, None
    if not isinstance(d, dict) or d.get("version") != version:
        return None, None
    return d["analysis"], d["saved"]


def claim(name: str, eng=None, ttl: float = 600.0) -> Path | None:
    """Claim the analysis `name` of the hub `eng` for one process to redo (many dashboard kernels
    may find it old at once): the claim file, or None when another process holds a claim younger
    than `ttl` seconds. `release` it when done (a crashed holder's claim lapses after `ttl`)."""
    import time

    p = path(name, eng).with_suffix(".claim")
    p.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            try:
                if time.time() - p.stat().st_mtime < ttl:
                    return None
                p.unlink()          # lapsed: taken over
            except FileNotFoundError:
                pass
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return p
    return None


def release(claim: Path | None) -> None:
    if claim is not None:
        claim.unlink(missing_ok=True)


__all__ = ["path", "save", "load", "claim", "release"]
