"""The ClickHouse side of the suite: how the Parquet files are modelled, and each query's SQL in
every modelling that can answer it, with the parser that turns its result into the answer shape
Portrait's runner (``benches/src/bin/compare.rs``) writes.

Modellings (what a ClickHouse expert would build for this workload):

- ``wide``: one MergeTree row per user, one ``Bool`` column per tag (named as in
  ``users.parquet``: the path with ``/`` → ``__``), ``LowCardinality`` enums, ORDER BY key
  (keys are ``u`` + the zero-padded dense id, so this is also id order). ``uid`` is the dense id.
- ``bitmap``: AggregatingMergeTree tables of ``groupBitmap`` states: one per tag
  (``tag_bitmaps``) and one per attribute value (``attr_bitmaps``: gender, age, city, province,
  channel, vip_level).
- ``long``: the user-major tables for lookups: the (tag, key) pairs twice, ORDER BY key
  (portraits) and ORDER BY (tag, key) (exports), and the attributes alone, ORDER BY key
  (``users_attrs``: a portrait's attributes without the ~1,000 columns of ``users_wide``, which
  made each lookup about twice as slow).
- ``events``: MergeTree ORDER BY (event, day, uid) with the per-day count, plus
  ``event_bitmaps``, a ``groupBitmap`` state per (event, day).
"""

from __future__ import annotations

from common import ATTRS, diff, normalize, tag_paths

UID = "toUInt32(substring(key, 2))"


def col(path: str) -> str:
    return path.replace("/", "__")


def q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


# The attribute columns of ``users.parquet`` (and of ``users_wide``) with their types.
ATTR_COLUMNS = [
    ("key", "String"), ("gender", "LowCardinality(String)"), ("age", "UInt8"),
    ("city", "LowCardinality(String)"), ("province", "LowCardinality(String)"),
    ("channel", "LowCardinality(String)"), ("registered", "Date"), ("vip_level", "UInt8"),
    ("total_spend", "Decimal(18, 2)"), ("last_active", "Date"),
]
# Their column definitions, for a CREATE TABLE.
ATTR_SCHEMA = ", ".join(f"{n} {t}" for n, t in ATTR_COLUMNS)


def load_wide(d):
    tags = tag_paths()
    cols = ",\n".join(f"  {col(t)} Bool" for t in tags)
    return [
        f"""CREATE TABLE users_wide (
  uid UInt32, {ATTR_SCHEMA},
{cols}
) ENGINE = MergeTree ORDER BY key""",
        f"INSERT INTO users_wide SELECT {UID} AS uid, * FROM file('{d}/users.parquet')",
    ]


def load_bitmap(d):
    return [
        """CREATE TABLE tag_bitmaps (tag LowCardinality(String),
             bm AggregateFunction(groupBitmap, UInt32))
           ENGINE = AggregatingMergeTree ORDER BY tag""",
        f"""INSERT INTO tag_bitmaps SELECT tag, groupBitmapState({UID})
            FROM file('{d}/tags.parquet') GROUP BY tag""",
        """CREATE TABLE attr_bitmaps (attr LowCardinality(String), value String,
             bm AggregateFunction(groupBitmap, UInt32))
           ENGINE = AggregatingMergeTree ORDER BY (attr, value)""",
        f"""INSERT INTO attr_bitmaps SELECT av.1, av.2, groupBitmapState({UID})
            FROM file('{d}/users.parquet')
            ARRAY JOIN [('gender', gender), ('age', toString(age)), ('city', city),
                        ('province', province), ('channel', channel),
                        ('vip_level', toString(vip_level))] AS av
            GROUP BY av.1, av.2""",
    ]


def load_long(d):
    names = ", ".join(n for n, _ in ATTR_COLUMNS)
    return [
        "CREATE TABLE tags_by_key (key String, tag LowCardinality(String)) "
        "ENGINE = MergeTree ORDER BY key",
        f"INSERT INTO tags_by_key SELECT key, tag FROM file('{d}/tags.parquet')",
        "CREATE TABLE tags_by_tag (tag LowCardinality(String), key String) "
        "ENGINE = MergeTree ORDER BY (tag, key)",
        f"INSERT INTO tags_by_tag SELECT tag, key FROM file('{d}/tags.parquet')",
        f"CREATE TABLE users_attrs ({ATTR_SCHEMA}) ENGINE = MergeTree ORDER BY key",
        f"INSERT INTO users_attrs SELECT {names} FROM file('{d}/users.parquet')",
    ]


def load_events(d):
    return [
        """CREATE TABLE events (event LowCardinality(String), day Date, uid UInt32,
             count UInt16) ENGINE = MergeTree ORDER BY (event, day, uid)""",
        f"""INSERT INTO events SELECT event, toDate(day), {UID}, toUInt16(count)
            FROM file('{d}/events.parquet')""",
        """CREATE TABLE event_bitmaps (event LowCardinality(String), day Date,
             bm AggregateFunction(groupBitmap, UInt32))
           ENGINE = AggregatingMergeTree ORDER BY (event, day)""",
        "INSERT INTO event_bitmaps SELECT event, day, groupBitmapState(uid) FROM events "
        "GROUP BY event, day",
    ]


MODELLINGS = [
    {"name": "wide", "what": "MergeTree, one Bool column per tag, ORDER BY key",
     "tables": ["users_wide"], "load": load_wide},
    {"name": "bitmap", "what": "AggregatingMergeTree groupBitmap per tag and per attribute value",
     "tables": ["tag_bitmaps", "attr_bitmaps"], "load": load_bitmap},
    {"name": "long", "what": "(key, tag) MergeTree ORDER BY key and ORDER BY (tag, key), and "
     "the attributes alone ORDER BY key",
     "tables": ["tags_by_key", "tags_by_tag", "users_attrs"], "load": load_long},
    {"name": "events", "what": "events MergeTree ORDER BY (event, day, uid) + groupBitmap per "
     "(event, day) (the bitmaps built from the table)",
     "tables": ["events", "event_bitmaps"], "load": load_events},
]


# ---- crowds: the suite's expressions as SQL conditions (wide) and bitmap expressions ----------

def T(tag):
    return f"(SELECT groupBitmapMergeState(bm) FROM tag_bitmaps WHERE tag = {q(tag)})"


def A(attr, cond):
    return f"(SELECT groupBitmapMergeState(bm) FROM attr_bitmaps WHERE attr = {q(attr)} AND {cond})"


def bm_and(parts):
    acc = parts[0]
    for p in parts[1:]:
        acc = f"bitmapAnd({acc}, {p})"
    return acc


def bm_andnot(acc, nots):
    for p in nots:
        acc = f"bitmapAndnot({acc}, {p})"
    return acc


COUNT3 = {
    "wide": "interest__sports AND device__android AND NOT risk__bot_suspect",
    "bitmap": bm_andnot(bm_and([T("interest/sports"), T("device/android")]),
                        [T("risk/bot_suspect")]),
}
# COUNT3 over the array `tags` of one user's tag paths.
COUNT3_OF_TAGS = ("has(tags, 'interest/sports') AND has(tags, 'device/android') "
                  "AND NOT has(tags, 'risk/bot_suspect')")
CITIES = ["city_000", "city_001", "city_002", "city_003"]
C10_TAGS = ["device/android", "content/live_stream", "marketing/campaign", "model/cross_sell/low",
            "marketing/email_opt_in"]
C10_NOT = ["lifecycle/uninstalled", "risk/bot_suspect"]
COUNT10 = {
    "wide": "gender = 'female' AND age BETWEEN 18 AND 35 AND city IN ("
            + ", ".join(map(q, CITIES)) + ") AND "
            + " AND ".join(col(t) for t in C10_TAGS) + " AND "
            + " AND ".join(f"NOT {col(t)}" for t in C10_NOT),
    "bitmap": bm_andnot(bm_and([A("gender", "value = 'female'"),
                                A("age", "toUInt8OrNull(value) BETWEEN 18 AND 35"),
                                A("city", "value IN (" + ", ".join(map(q, CITIES)) + ")")]
                               + [T(t) for t in C10_TAGS]),
                        [T(t) for t in C10_NOT]),
}
SPORTS = {"wide": "interest__sports", "bitmap": T("interest/sports")}
TOP_CROWD = {"wide": "age < 25 AND device__ios",
             "bitmap": bm_and([A("age", "toUInt8OrNull(value) < 25"), T("device/ios")])}


def first(rows):
    return rows[0][0]


def check_equal(ch, answer, expected, params):
    return diff(normalize(answer), normalize(expected))


def sql(text):
    """A query run: rows of JSONCompact."""
    return lambda ch: ch.rows(text)


# ---- the queries ---------------------------------------------------------------------------

def count_variants(crowd):
    return [
        {"modelling": "wide", "run": lambda p: sql(f"SELECT count() FROM users_wide WHERE {crowd['wide']}"),
         "answer": lambda r, p: {"count": first(r)}},
        {"modelling": "bitmap", "run": lambda p: sql(f"SELECT bitmapCardinality({crowd['bitmap']})"),
         "answer": lambda r, p: {"count": first(r)}},
    ]


def group_answer(r, p):
    return {"rows": sorted([g, pr, n] for g, pr, n in r if n > 0)}


GROUP = [
    {"modelling": "wide",
     "run": lambda p: sql(f"SELECT gender, province, count() FROM users_wide WHERE {SPORTS['wide']} "
                          "GROUP BY gender, province"),
     "answer": group_answer},
    {"modelling": "bitmap",
     "run": lambda p: sql(f"""
        WITH {SPORTS['bitmap']} AS c
        SELECT g.value, pr.value, bitmapAndCardinality(bitmapAnd(c, g.bm), pr.bm) AS n
        FROM (SELECT value, groupBitmapMergeState(bm) AS bm FROM attr_bitmaps
              WHERE attr = 'gender' GROUP BY value) AS g
        CROSS JOIN (SELECT value, groupBitmapMergeState(bm) AS bm FROM attr_bitmaps
              WHERE attr = 'province' GROUP BY value) AS pr"""),
     "answer": group_answer},
]


def top_answer(r, p):
    return {"rows": [[t, n] for t, n in r]}


def check_top(ch, answer, expected, params):
    """Counts must be equal row by row; paths too, except among rows tied at the k-th count."""
    a, e = answer["rows"], expected["rows"]
    if [n for _, n in a] != [n for _, n in e]:
        return [f"top-k counts: ClickHouse {a} vs Portrait {e}"]
    last = a[-1][1] if a else None
    if {t for t, n in a if n != last} != {t for t, n in e if n != last}:
        return [f"top-k tags: ClickHouse {a} vs Portrait {e}"]
    return []


def top_wide(p):
    tags = [t for t in tag_paths() if t.startswith(p["prefix"] + "/")]
    arr = ", ".join(f"({q(t)}, countIf({col(t)}))" for t in tags)
    return sql(f"""SELECT x.1 AS tag, x.2 AS n
                   FROM (SELECT [{arr}] AS arr FROM users_wide WHERE {TOP_CROWD['wide']})
                   ARRAY JOIN arr AS x ORDER BY n DESC, tag LIMIT {p['k']}""")


TOP = [
    {"modelling": "wide", "run": top_wide, "answer": top_answer, "check": check_top},
    {"modelling": "bitmap",
     "run": lambda p: sql(f"""WITH {TOP_CROWD['bitmap']} AS c
        SELECT tag, n FROM (SELECT tag, bitmapAndCardinality(c, groupBitmapMergeState(bm)) AS n
                            FROM tag_bitmaps WHERE startsWith(tag, {q(p['prefix'] + '/')})
                            GROUP BY tag)
        ORDER BY n DESC, tag LIMIT {p['k']}"""),
     "answer": top_answer, "check": check_top},
]

ATTR_SQL = ("gender, age, city, province, channel, toString(registered), vip_level, "
            "toString(total_spend), toString(last_active)")


def portrait_from(key, attrs, tags):
    return {"key": key, "tags": sorted(tags),
            "attrs": {path: v for (path, _), v in zip(ATTRS, attrs)}}


def wide_portrait(ch, key):
    tags = tag_paths()
    r = ch.rows(f"SELECT {ATTR_SQL}, {', '.join(col(t) for t in tags)} FROM users_wide "
                f"WHERE key = {q(key)}")
    row = r[0]
    return portrait_from(key, row[:len(ATTRS)],
                         [t for t, v in zip(tags, row[len(ATTRS):]) if v])


def long_portrait(ch, key):
    r = ch.rows(f"SELECT {ATTR_SQL}, (SELECT groupArray(tag) FROM tags_by_key WHERE key = {q(key)}) "
                f"FROM users_attrs WHERE key = {q(key)}")
    row = r[0]
    return portrait_from(key, row[:len(ATTRS)], row[len(ATTRS)])


PORTRAIT1 = [
    {"modelling": m, "run": (lambda f: lambda p: lambda ch: f(ch, p["key"]))(f),
     "answer": lambda r, p: r}
    for m, f in (("wide", wide_portrait), ("long", long_portrait))
]
# Only the long modelling loops: a wide portrait reads ~1,000 column files (~0.3 s a user at 1M
# users, see portrait1), so 1,000 of them times 6 runs would take half an hour.
PORTRAIT1000 = [
    {"modelling": "long", "run": lambda p: lambda ch: [long_portrait(ch, k) for k in p["keys"]],
     "answer": lambda r, p: r}
]

CONTAINS = [
    {"modelling": "wide",
     "run": lambda p: sql(f"SELECT {COUNT3['wide']} FROM users_wide WHERE key = {q(p['key'])}"),
     "answer": lambda r, p: {"member": bool(first(r))}},
    {"modelling": "bitmap",
     "run": lambda p: sql(f"SELECT bitmapContains({COUNT3['bitmap']}, toUInt32({int(p['key'][1:])}))"),
     "answer": lambda r, p: {"member": bool(first(r))}},
    # The user's tags from the table ordered by key (a point lookup that, unlike `wide`, does
    # not go through the ~1,000-column table); no tags at all gives an empty array, not a member.
    {"modelling": "long",
     "run": lambda p: sql(f"SELECT {COUNT3_OF_TAGS} FROM (SELECT groupArray(tag) AS tags "
                          f"FROM tags_by_key WHERE key = {q(p['key'])})"),
     "answer": lambda r, p: {"member": bool(first(r))}},
]


def buckets_answer(counts, bounds):
    """Portrait's bucket rows from per-bucket counts (index 0 = below bounds[0]); empty outer
    buckets omitted."""
    edges = [None] + list(bounds) + [None]
    out = []
    for i, n in enumerate(counts):
        if n == 0 and i in (0, len(counts) - 1):
            continue
        out.append([edges[i], edges[i + 1], n])
    return {"buckets": out}


def dist_wide(p):
    b = p["bounds"]
    cases = ", ".join(f"age < {x}, {i}" for i, x in enumerate(b))
    return sql(f"SELECT multiIf({cases}, {len(b)}) AS bucket, count() FROM users_wide "
               f"WHERE {SPORTS['wide']} GROUP BY bucket")


def dist_wide_answer(r, p):
    counts = [0] * (len(p["bounds"]) + 1)
    for b, n in r:
        counts[b] = n
    return buckets_answer(counts, p["bounds"])


def dist_bitmap(p):
    b = p["bounds"]
    edges = [None] + b + [None]
    conds = []
    for lo, hi in zip(edges, edges[1:]):
        c = ["1"]
        if lo is not None:
            c.append(f"toUInt8OrNull(value) >= {lo}")
        if hi is not None:
            c.append(f"toUInt8OrNull(value) < {hi}")
        conds.append(" AND ".join(c))
    cols = ", ".join(f"bitmapAndCardinality(c, {A('age', cond)})" for cond in conds)
    return sql(f"WITH {SPORTS['bitmap']} AS c SELECT {cols}")


DISTRIBUTION = [
    {"modelling": "wide", "run": dist_wide, "answer": dist_wide_answer},
    {"modelling": "bitmap", "run": dist_bitmap,
     "answer": lambda r, p: buckets_answer(r[0], p["bounds"])},
]


def fnv(keys):
    h = 0xCBF29CE484222325
    for k in keys:
        for b in k.encode() + b"\n":
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def export_answer(r, p):
    keys = sorted(k for (k,) in r)
    return {"count": len(keys), "fnv": fnv(keys), "first": keys[:5]}


EXPORT = [
    {"modelling": "wide", "run": lambda p: sql(f"SELECT key FROM users_wide WHERE {col(p['expr'])}"),
     "answer": export_answer},
    {"modelling": "long",
     "run": lambda p: sql(f"SELECT key FROM tags_by_tag WHERE tag = {q(p['expr'])}"),
     "answer": export_answer},
]


def check_sample(ch, answer, expected, params):
    """Samples are random: both must be n distinct members of the crowd."""
    problems = []
    n = params["n"]
    for who, keys in (("ClickHouse", answer["keys"]), ("Portrait", expected["keys"])):
        if len(keys) != n or len(set(keys)) != n:
            problems.append(f"{who}'s sample has {len(keys)} keys ({len(set(keys))} distinct), "
                            f"expected {n}")
            continue
        inside = first(ch.rows(f"SELECT count() FROM users_wide WHERE key IN "
                               f"({', '.join(map(q, keys))}) AND {COUNT3['wide']}"))
        if inside != n:
            problems.append(f"{who}'s sample: only {inside} of {n} keys are in the crowd")
    return problems


SAMPLE = [
    {"modelling": "wide",
     "run": lambda p: sql(f"SELECT key FROM users_wide WHERE {COUNT3['wide']} "
                          f"ORDER BY cityHash64(key, {p['seed']}) LIMIT {p['n']}"),
     "answer": lambda r, p: {"keys": sorted(k for (k,) in r)}, "check": check_sample},
]


# ---- behaviour ------------------------------------------------------------------------------

def retention_events(p):
    conds = ", ".join(f"day = toDate({q(p['day0'])}) + {k}" for k in range(p["days"] + 1))
    return sql(f"""SELECT sumForEach(r) FROM (
        SELECT uid, retention({conds}) AS r FROM events
        WHERE event = {q(p['event'])} AND day BETWEEN toDate({q(p['day0'])})
              AND toDate({q(p['day0'])}) + {p['days']}
        GROUP BY uid)""")


def E(event, day_sql):
    return (f"(SELECT groupBitmapMergeState(bm) FROM event_bitmaps "
            f"WHERE event = {q(event)} AND day = {day_sql})")


def retention_bitmap(p):
    d0 = f"toDate({q(p['day0'])})"
    cols = ", ".join(["bitmapCardinality(c)"] + [
        f"bitmapAndCardinality(c, {E(p['return_event'], f'{d0} + {k}')})"
        for k in range(1, p["days"] + 1)])
    return sql(f"WITH {E(p['event'], d0)} AS c SELECT [{cols}]")


RETENTION = [
    {"modelling": "events", "run": retention_events,
     "answer": lambda r, p: {"counts": first(r)}},
    {"modelling": "evbitmap", "run": retention_bitmap,
     "answer": lambda r, p: {"counts": first(r)}},
]


def funnel_events(p):
    s = p["steps"]
    lo, hi = f"toDate({q(p['first_from'])})", f"toDate({q(p['first_to'])})"
    conds = [f"event = {q(s[0])} AND day BETWEEN {lo} AND {hi}"] + [f"event = {q(e)}" for e in s[1:]]
    return sql(f"""SELECT level, count() FROM (
        SELECT uid, windowFunnel({p['window_days']})(day, {', '.join(conds)}) AS level
        FROM events
        WHERE event IN ({', '.join(map(q, s))}) AND day BETWEEN {lo} AND {hi} + {p['window_days']}
        GROUP BY uid) WHERE level > 0 GROUP BY level""")


def funnel_answer(r, p):
    by_level = dict((lvl, n) for lvl, n in r)
    steps = len(p["steps"])
    return {"reached": [sum(n for lvl, n in by_level.items() if lvl >= i + 1) for i in range(steps)]}


FUNNEL = [{"modelling": "events", "run": funnel_events, "answer": funnel_answer}]


def frequency_events(p):
    return sql(f"""WITH (SELECT count() FROM users_wide WHERE {col(p['expr'])}) AS crowd
        SELECT d, count(), any(crowd) FROM (
            SELECT uid, count() AS d FROM events
            WHERE event = {q(p['event'])} AND day BETWEEN toDate({q(p['from'])}) AND toDate({q(p['to'])})
              AND uid IN (SELECT uid FROM users_wide WHERE {col(p['expr'])})
            GROUP BY uid)
        GROUP BY d""")


def frequency_answer(r, p):
    from datetime import date
    days = (date.fromisoformat(p["to"]) - date.fromisoformat(p["from"])).days + 1
    hist = [0] * (days + 1)
    crowd = r[0][2] if r else None
    for d, n, _ in r:
        hist[d] = n
    if crowd is not None:
        hist[0] = crowd - sum(hist)
    return {"histogram": hist}


FREQUENCY = [{"modelling": "events", "run": frequency_events, "answer": frequency_answer}]


def active_answer(r, p):
    from datetime import date, timedelta
    first_day = date.fromisoformat(p["from"])
    days = (date.fromisoformat(p["to"]) - first_day).days + 1
    by_day = {d: n for d, n in r}
    return {"users": [by_day.get(str(first_day + timedelta(k)), 0) for k in range(days)]}


def active_where(p):
    return (f"event = {q(p['event'])} AND day BETWEEN toDate({q(p['from'])}) "
            f"AND toDate({q(p['to'])})")


# One events row per (event, day, uid), so count() is the number of distinct users of a day.
ACTIVE = [
    {"modelling": "events",
     "run": lambda p: sql(f"SELECT toString(day), count() FROM events WHERE {active_where(p)} "
                          "GROUP BY day"),
     "answer": active_answer},
    {"modelling": "evbitmap",
     "run": lambda p: sql(f"SELECT toString(day), groupBitmapMerge(bm) FROM event_bitmaps "
                          f"WHERE {active_where(p)} GROUP BY day"),
     "answer": active_answer},
]


QUERIES = {
    "count3": count_variants(COUNT3),
    "count10": count_variants(COUNT10),
    "group2": GROUP,
    "topk": TOP,
    "portrait1": PORTRAIT1,
    "portrait1000": PORTRAIT1000,
    "contains": CONTAINS,
    "distribution": DISTRIBUTION,
    "export": EXPORT,
    "sample": SAMPLE,
    "retention": RETENTION,
    "funnel": FUNNEL,
    "frequency": FREQUENCY,
    "active": ACTIVE,
}
