"""Shared by the harness and the suite: the attribute columns, the tag list, answer diffs."""

from __future__ import annotations

import re
from decimal import Decimal

# Portrait's attribute paths and the users.parquet / users_wide columns holding them, in the
# order the portrait queries select them.
ATTRS = [
    ("demographic/gender", "gender"),
    ("demographic/age", "age"),
    ("geo/city", "city"),
    ("geo/province", "province"),
    ("acquisition/channel", "channel"),
    ("account/registered", "registered"),
    ("account/vip_level", "vip_level"),
    ("commerce/total_spend", "total_spend"),
    ("activity/last_active", "last_active"),
]

_TAGS: list[str] = []


def set_tags(columns: list[str]) -> None:
    """The tag paths, from the boolean columns of users.parquet (``/`` written as ``__``)."""
    _TAGS[:] = [c.replace("__", "/") for c in columns]


def tag_paths() -> list[str]:
    if not _TAGS:
        raise RuntimeError("tag list not set (read users.parquet first)")
    return _TAGS


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def normalize(x):
    """Decimal strings compare by value ("12.50" == "12.5", "10.00" == "10")."""
    if isinstance(x, dict):
        return {k: normalize(v) for k, v in x.items()}
    if isinstance(x, list):
        return [normalize(v) for v in x]
    if isinstance(x, str) and _NUMBER.match(x):
        s = format(Decimal(x), "f")
        return s.rstrip("0").rstrip(".") if "." in s else s
    return x


def diff(a, b, path="answer", out=None, limit=20):
    """Human-readable differences between ClickHouse's answer `a` and Portrait's `b`."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: ClickHouse {a.get(k, 'missing')!r} vs "
                           f"Portrait {b.get(k, 'missing')!r}")
            else:
                diff(a[k], b[k], f"{path}.{k}", out, limit)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: ClickHouse has {len(a)} items, Portrait {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out, limit)
    elif a != b:
        out.append(f"{path}: ClickHouse {a!r} vs Portrait {b!r}")
    return out
