"""Personal data (PIPL; GB/T 35273-2020 §7.2, display restriction): how it is masked.

Citizens' names, phone numbers and ID numbers reach the hub in hotline work orders and event
texts. At the door (workbench.store.ingest) a record's personal fields are kept apart, in the
protected `personal_data` table, and numbers typed into free text are masked in the record
itself; only the protected table keeps them whole.

Masks, as the standard's examples show them: phone 138****1234 (3 + **** + 4), ID number
430202********1234 (6 + ******** + 4), names 王* (the surname, then one * per character).
"""
from __future__ import annotations

import re

import pandas as pd

# a mainland mobile number (11 digits from 1[3-9]), not inside a longer run of digits; an
# 18-character resident ID number (17 digits + digit or X); a 15-digit old-style ID number
_MOBILE = r"(?<![\d+])(?:\+?86[ -]?)?(1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})(?!\d)"   # +86 / 86 prefix too
_ID18 = r"(?<![\dXx])(\d{6})(\d{8})(\d{3}[\dXx])(?![\dXx])"
_ID15 = r"(?<!\d)(\d{6})(\d{6})(\d{3})(?!\d)"
_LANDLINE = r"(?<!\d)(0\d{2,3})-?(\d{3,4})(\d{4})(?!\d)"
PHONE_OR_ID = re.compile("|".join((_ID18, _MOBILE, _ID15, _LANDLINE)))
_ANY = re.compile(re.sub(r"\((?!\?)", "(?:", PHONE_OR_ID.pattern))  # the same, without groups (for contains)


def mask_phone(value) -> str | None:
    """138****1234 (a +86 prefix dropped); a landline with its area code 0731****1234; a shorter
    number (a local 8-digit one) keeps only its last 4 digits: ****4455."""
    if value is None or value != value:
        return None
    digits = re.sub(r"\D", "", str(value))
    if len(digits) == 13 and digits.startswith("861"):
        digits = digits[2:]
    if len(digits) == 11 and digits.startswith("1"):
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) >= 11:   # area code + local number
        return f"{digits[:len(digits) - 8]}****{digits[-4:]}"
    if len(digits) >= 5:
        return f"****{digits[-4:]}"
    return "*" * max(len(digits) - 1, 1) + digits[-1:] if digits else "****"


def mask_id_number(value) -> str | None:
    """430202********1234 (6 + 8 masked + 4)."""
    if value is None or value != value:
        return None
    s = re.sub(r"\s", "", str(value))
    if len(s) >= 15:
        return f"{s[:6]}{'*' * (len(s) - 10)}{s[-4:]}"
    return "*" * len(s)


def mask_name(value) -> str | None:
    """王* / 欧阳** : the first character kept (compound surnames lose their second)."""
    if value is None or value != value:
        return None
    s = str(value).strip()
    if not s:
        return s
    return s[0] + "*" * max(len(s) - 1, 1)


def _mask_match(m: re.Match) -> str:
    text = m.group(0)
    digits = re.sub(r"\D", "", text)
    if len(digits) in (15, 18) or text[-1:] in "Xx":
        return mask_id_number(text)
    return mask_phone(text)


def mask_text(value) -> str | None:
    """Free text with phone and ID numbers masked (`请联系13812341234` → `请联系138****1234`)."""
    if value is None or value != value:
        return value
    return PHONE_OR_ID.sub(_mask_match, str(value))


def mask_text_series(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Masked texts, and where a text held a number (so its original is kept apart)."""
    text = s.astype("string")
    has = text.str.contains(_ANY, na=False)
    if not has.any():
        return s, has
    out = s.copy()
    out[has] = [mask_text(v) for v in text[has]]
    return out, has


MASKS = {"reporter_name": mask_name, "reporter_phone": mask_phone, "reporter_id_no": mask_id_number}


# ---------------------------------------------------------------------- unmasking (logged)

def _case_owners(table: str) -> set[str]:
    """The departments that own the case types whose cases live in `table` (the dispatch centre
    owns the city's events before they are sent anywhere)."""
    from workbench import cases

    try:
        cases._ensure_registered()
    except Exception:  # noqa: BLE001 - no departments: the dataset's own agency decides alone
        return set()
    return {ct.department for ct in cases.TYPES.values() if cases.STORES[ct.store].table == table}


def reveal(who, dataset: str, row_key: str, reason: str, eng=None) -> dict[str, str]:
    """The originals kept for one record in the protected table ({field: value}), for a
    principal allowed to read them (workbench.access), with a reason; the read is written to
    the audit log (who, which record, which fields, why). AccessDenied says why not.

    `row_key`: the record's natural key as the protected table writes it (ingest.row_keys);
    the record's department and district (when its dataset has them) decide who may read."""
    import json

    import sqlalchemy as sa

    from workbench import audit
    from workbench.access import AccessDenied
    from workbench.store import hub
    from workbench.store.schema import DATASETS, personal_data

    reason = (reason or "").strip()
    if len(reason) < 2:
        raise AccessDenied("查看个人信息原文须填写事由（将记入审计日志）")
    eng = eng or hub.engine()
    if who is None:
        raise AccessDenied("未登录")
    from workbench.cases import fresh

    who = fresh(who)   # a user disabled or changed since the page opened reads no more
    inner, key_text = dataset, row_key
    if dataset == "quarantine":   # a quarantined row's originals: [dataset, file sha256, line]
        try:
            inner = json.loads(row_key)[0]
        except (ValueError, IndexError, TypeError):
            inner = None
    ds = DATASETS.get(inner or "")
    if ds is None:
        raise AccessDenied(f"没有数据集“{inner}”的个人信息")
    owners = {ds.department} | _case_owners(ds.name)
    department = district = None
    if dataset != "quarantine":
        t = ds.table
        try:
            key = json.loads(key_text)
        except ValueError:
            raise AccessDenied("记录编号无效") from None
        cond = [t.c[k] == v for k, v in zip(ds.key, key)]
        cols = [t.c[c] for c in ("department", "district") if c in t.c]
        if cols:
            with eng.connect() as conn:
                row = conn.execute(sa.select(*cols).where(*cond)).mappings().first()
            if row is not None:
                department, district = row.get("department"), row.get("district")
    why = who.may_unmask(department=department, district=district, owners=owners)
    if why:
        raise AccessDenied(why)
    t = personal_data
    with eng.begin() as conn:
        got = {f: v for f, v in conn.execute(sa.select(t.c.field, t.c.value).where(
            t.c.dataset == dataset, t.c.row_key == row_key))}
        audit.record(conn, "unmask", who, subject=f"{dataset}:{row_key}", fields=sorted(got), reason=reason)
    return got
