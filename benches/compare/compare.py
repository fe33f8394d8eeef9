"""ClickHouse's side of the Portrait comparison, the answer check, and BENCHMARKS.md.

Run by ``benches/compare.sh`` (see ``benches/compare/README.md``)::

    compare.py --data DIR --portrait FILE.json --db DIR --report BENCHMARKS.md [...]

1. Loads the Parquet files of ``DIR`` into chdb (ClickHouse in-process) in every modelling of
   ``suite.MODELLINGS`` (fresh database directory each run), timing each.
2. Runs every query of the suite in each modelling that can answer it: one warm-up, then at
   least ``--min-runs`` runs and about a second of them; median wall time of ``session.query``
   (the result is parsed outside the timing). The query cache and the query-condition cache are
   off, so every run does the work. Then merges every table into one part (``OPTIMIZE TABLE ...
   FINAL``, timed; see ``merge``), runs the queries again, and keeps each one's faster state.
   Sizes on disk (``system.parts``) are the merged tables'.
3. Compares each modelling's answer with Portrait's (the JSON written by the ``compare`` Rust
   binary). Any mismatch fails the run with a diff; the fastest matching modelling and state
   is reported.
4. Writes the report.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import chdb
from chdb import session as chs

import suite
from common import set_tags

NO_CACHES = {
    "use_query_cache": 0,
    "use_query_condition_cache": 0,
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_decimals": 1,
}


class Mismatch(Exception):
    pass


# The states of the tables the queries run in, in order (see `merge`).
STATES = ("as loaded", "merged")


class ClickHouse:
    def __init__(self, path: Path):
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        self.s = chs.Session(str(path))
        for k, v in NO_CACHES.items():
            self.s.query(f"SET {k} = {v}")
        for k, v in NO_CACHES.items():
            got = self.rows(f"SELECT getSetting('{k}')")[0][0]
            if int(got) != v:
                raise RuntimeError(f"setting {k} did not stick: {got}")

    def run(self, sql: str):
        return self.s.query(sql, "JSONCompact")

    def rows(self, sql: str):
        res = self.run(sql)
        raw = res.bytes()
        return json.loads(raw)["data"] if raw else []

    def version(self) -> str:
        return self.rows("SELECT version()")[0][0]

    def parts(self, tables: list[str]) -> dict[str, int]:
        """Active parts of each of ``tables``."""
        got = {
            t: int(n)
            for t, n in self.rows(
                "SELECT table, count() FROM system.parts "
                "WHERE active AND database = currentDatabase() GROUP BY table"
            )
        }
        return {t: got.get(t, 0) for t in tables}

    def sizes(self) -> dict[str, tuple[int, int]]:
        return {
            t: (int(b), int(r))
            for t, b, r in self.rows(
                "SELECT table, sum(bytes_on_disk), sum(rows) FROM system.parts "
                "WHERE active AND database = currentDatabase() GROUP BY table"
            )
        }


def measure(fn, min_runs: int):
    """Warm-up, then >= min_runs runs and ~1 s; returns (last result, median s, runs)."""
    out = fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < 1.0 and len(times) < 2000):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times), len(times)


def load(ch: ClickHouse, data: Path) -> list[dict]:
    """Loads every modelling (the inserts, timed) and counts the parts each table was left in."""
    results = []
    for m in suite.MODELLINGS:
        t = time.perf_counter()
        for sql in m["load"](str(data)):
            ch.run(sql)
        secs = time.perf_counter() - t
        inserted = ch.parts(m["tables"])
        # Sizes on disk are measured once merged (`merge`).
        results.append({"name": m["name"], "what": m["what"], "seconds": secs,
                        "parts_inserted": inserted})
        print(f"loaded {m['name']:<8} in {secs:7.2f} s, {sum(inserted.values())} parts",
              flush=True)
    return results


def merge(ch: ClickHouse, loads: list[dict]) -> None:
    """Merges every table into one part (``OPTIMIZE TABLE ... FINAL``), timed per modelling.

    chdb does not merge parts in the background while the benchmark runs: a bulk insert stays in
    hundreds of parts (760 for the long modelling at 10M users), and every query reads each
    part's index. A ClickHouse expert merges a bulk-loaded table before querying it, so the
    queries run again on merged tables and each keeps its faster state (``run_queries``). The
    load time compared with Portrait's stays the inserts' alone: the table answers queries as
    soon as they are done.
    """
    tables = {m["name"]: m["tables"] for m in suite.MODELLINGS}
    for x in loads:
        names = tables[x["name"]]
        t = time.perf_counter()
        for tb in names:
            ch.run(f"OPTIMIZE TABLE {tb} FINAL")
        x["merge_seconds"] = time.perf_counter() - t
        merged = ch.parts(names)
        if any(n != 1 for n in merged.values()):
            raise RuntimeError(f"OPTIMIZE FINAL left {merged} active parts, not one per table")
        sizes = ch.sizes()
        x["bytes"] = sum(sizes.get(tb, (0, 0))[0] for tb in names)
        x["tables"] = {tb: sizes.get(tb, (0, 0)) for tb in names}
        print(f"merged {x['name']:<8} in {x['merge_seconds']:7.2f} s, "
              f"{x['bytes'] / 2**20:8.1f} MiB", flush=True)


def run_queries(ch: ClickHouse, portrait: dict, min_runs: int, state: str,
                out: list[dict] | None = None) -> list[dict]:
    """Runs every query in every modelling that can answer it, in the tables' current `state`
    ("as loaded" or "merged"), checking each answer against Portrait's. With `out` (the rows of
    a run in another state), each modelling keeps the faster of its two states."""
    rows = {r["id"]: r for r in out or []}
    for q in portrait["queries"]:
        qid = q["id"]
        variants = suite.QUERIES.get(qid)
        if variants is None:
            raise RuntimeError(f"no ClickHouse form for query {qid}")
        expected = q["answer"]
        row = rows.setdefault(qid, {"id": qid, "title": q["title"], "modellings": {},
                                    "portrait": q})
        for v in variants:
            run = v["run"](q["params"])
            result, secs, runs = measure(lambda: run(ch), min_runs)
            answer = v["answer"](result, q["params"])
            problems = v.get("check", suite.check_equal)(ch, answer, expected, q["params"])
            if problems:
                raise Mismatch(f"query {qid}, modelling {v['modelling']} ({state}): ClickHouse "
                               f"and Portrait disagree:\n  " + "\n  ".join(problems))
            m = row["modellings"].setdefault(v["modelling"], {"states": {}})
            m["states"][state] = secs
            if "seconds" not in m or secs < m["seconds"]:
                m.update({"seconds": secs, "runs": runs, "state": state})
            print(f"{qid:<14} {v['modelling']:<8} {fmt(secs):>10}  ({runs} runs, {state}) ok",
                  flush=True)
        best = min(row["modellings"].items(), key=lambda kv: kv[1]["seconds"])
        row["best"] = {"modelling": best[0], **best[1]}
    return [rows[q["id"]] for q in portrait["queries"]]


def fmt(secs) -> str:
    if secs is None:
        return "—"
    if secs < 1e-6:
        return f"{secs * 1e9:.0f} ns"
    if secs < 1e-3:
        return f"{secs * 1e6:.1f} µs"
    if secs < 1:
        return f"{secs * 1e3:.2f} ms"
    return f"{secs:.2f} s"


def ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "—"
    r = a / b
    return f"{r:,.0f}×" if r >= 10 else f"{r:.1f}×"


def ns(t):
    return None if not t else t["ns"] / 1e9


def sh(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def machine() -> dict:
    cpu = "?"
    mem = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram": mem, "os": platform.platform()}


def mount_of(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts), e.g. ``ext4`` or ``tmpfs``."""
    best, kind = "", "?"
    try:
        target = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            f = line.split()
            if len(f) > 2 and (target == f[1] or target.startswith(f[1].rstrip("/") + "/")) \
                    and len(f[1]) > len(best):
                best, kind = f[1], f[2]
    except OSError:
        pass
    return kind


def cpu_jiffies():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = f
    return user + nice + system + irq + softirq + steal, sum(f)


def others_cpu(args):
    """CPU the rest of the machine used during the run: (core-seconds, share of all cores), or
    None. /proc/stat's busy time since compare.sh's snapshot, minus this run's own CPU time
    (compare.sh's children before this script, measured by the shell, plus this process and its
    children)."""
    if not args.cpu_start:
        return None
    now = cpu_jiffies()
    if now is None:
        return None
    busy0, total0 = (int(x) for x in args.cpu_start.split())
    hz = os.sysconf("SC_CLK_TCK")
    busy, total = (now[0] - busy0) / hz, (now[1] - total0) / hz
    import resource
    own = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                resource.getrusage(resource.RUSAGE_CHILDREN)))
    other = max(0.0, busy - own - args.cpu_ours)
    return other, other / total if total > 0 else 0.0, total / (os.cpu_count() or 1)


SECTION = "<!-- compare users={users} -->"
SECTION_END = "<!-- /compare users={users} -->"


def report(path: Path, args, portrait, ch_version, loads, rows, files):
    """Writes this size's section of the report, keeping the other sizes' sections."""
    users = portrait["users"]
    section = report_section(args, portrait, ch_version, loads, rows, files)
    while section and not section[-1].strip():
        section.pop()
    sections = {users: section}
    if path.exists():
        import re
        for m in re.finditer(r"<!-- compare users=(\d+) -->\n(.*?)<!-- /compare users=\1 -->",
                             path.read_text(), re.S):
            sections.setdefault(int(m.group(1)), m.group(2).rstrip("\n").split("\n"))
    L = ["# Benchmarks: Portrait vs ClickHouse\n"]
    L.append("Produced by `benches/compare.sh` (see `benches/compare/README.md`): the same generated "
             "data loaded into Portrait and into ClickHouse (chdb), the same queries timed on the "
             "same machine in the same run, and every answer checked (a mismatch fails the run). "
             "One section per data size; a run rewrites its own size's section and keeps the "
             "others.\n")
    L.append("Sizes: " + ", ".join(f"[{n:,} users](#{n}-users)"
                                    for n in sorted(sections)) + ".\n")
    for n in sorted(sections):
        L.append(SECTION.format(users=n))
        L.extend(sections[n])
        L.append("")
        L.append(SECTION_END.format(users=n) + "\n")
    path.write_text("\n".join(L))


def report_section(args, portrait, ch_version, loads, rows, files) -> list[str]:
    m = machine()
    repo = Path(__file__).resolve().parents[2]
    commit = sh(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    # The report itself does not count: a run after another (1M, then 10M) finds the first
    # one's section written.
    dirty = sh(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--",
                ".", ":(exclude)BENCHMARKS.md"])
    rustc = sh(["rustc", "--version"])
    users = portrait["users"]
    L = []
    L.append(f"## {users:,} users\n")
    L.append(f"Generated by `{args.command}` on "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.\n")
    L.append("### Setup\n")
    load_note = "The cores are shared with other work, so single numbers carry noise."
    others = others_cpu(args)
    if others is not None:
        secs, share, wall = others
        load_note = (f"The cores are shared: during the run ({wall / 60:.0f} min from data "
                     f"generation to the report) other processes used {secs / 60:.1f} "
                     f"core-minutes, **{share:.0%} of the machine's CPU** (`/proc/stat` busy "
                     "time minus this run's own CPU time), so single numbers carry noise.")
    if args.note:
        load_note += f" {args.note}"
    L.append(f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; {m['os']}. "
             + load_note)
    L.append(f"- **ClickHouse**: chdb {chdb.__version__} (ClickHouse {ch_version}, in-process, "
             "all cores), query cache and query-condition cache off.")
    L.append(f"- **Portrait**: commit `{commit}`{' (uncommitted changes)' if dirty else ''}, "
             f"{rustc}, release build; in-process = engine API in the runner; gRPC = "
             "`portraitd` on loopback + `portrait-client`, one connection, sequential calls.")
    L.append(f"- **Storage**: both databases on {mount_of(args.db)} "
             f"(`{args.db.parent}`); Parquet files on {mount_of(args.data)}.")
    L.append(f"- **Data**: {users:,} users (seed {portrait['seed']}), 9 attributes, 1,000 flag tags "
             f"({portrait['load']['tag_memberships']:,} memberships), 10 event types × 30 days. "
             "Parquet files: " + ", ".join(f"`{f['name']}` {f['rows']:,} rows / "
                                           f"{f['bytes'] / 2**20:.0f} MiB" for f in files) + ".")
    L.append("- **Timing**: median of ≥ 5 runs after one warm-up (more runs, up to ~1 s, for fast "
             "queries); wall time around the call (ClickHouse: `session.query`, result in "
             "JSONCompact; Portrait: the API call or the gRPC round trip, answer decoded).\n")

    L.append("### Queries\n")
    L.append("| query | ClickHouse best (modelling) | Portrait in-process | Portrait gRPC | "
             "kernel limit | CH / gRPC | CH / in-process | in-process / kernel |")
    L.append("|---|---|---|---|---|---|---|---|")
    grpc_ratios = []
    for r in rows:
        p = r["portrait"]
        ch = r["best"]["seconds"]
        ip, gr, k = ns(p["in_process"]), ns(p["grpc"]), ns(p["kernel"])
        if gr:
            grpc_ratios.append(ch / gr)
        L.append(f"| {r['title']} | {fmt(ch)} ({r['best']['modelling']}, {r['best']['state']}) | "
                 f"{fmt(ip)} | {fmt(gr)} | "
                 f"{fmt(k)} | {ratio(ch, gr)} | {ratio(ch, ip)} | {ratio(ip, k)} |")
    pl = portrait["load"]
    bm = sum(x["seconds"] for x in loads if x["name"] in ("bitmap", "events")) or None
    L.append(f"| bulk load of the same data (see Loads) | {fmt(bm)} (bitmap + events) | "
             f"{fmt(pl['seconds'])} | — | — | — | {ratio(bm, pl['seconds'])} | |")
    if grpc_ratios:
        L.append(f"\nOver the {len(grpc_ratios)} measured queries, ClickHouse's best / Portrait "
                 f"over gRPC: median **{statistics.median(grpc_ratios):,.0f}×**, "
                 f"minimum {min(grpc_ratios):,.1f}×.")
    L.append("\nKernel limit: the bare CRoaring operation on the same operand bitmaps, loaded as "
             "owned `croaring::Bitmap`s before timing (what each measures is listed below); "
             "`in-process / kernel` is how far the engine is from it.\n")

    L.append("#### Every ClickHouse modelling\n")
    L.append("Each cell: as loaded / merged into one part per table (see Loads).\n")
    names = []
    for r in rows:
        names += [n for n in r["modellings"] if n not in names]
    L.append("| query | " + " | ".join(names) + " | Portrait's answer |")
    L.append("|---|" + "---|" * (len(names) + 1))
    for r in rows:
        cells = [" / ".join(fmt(r["modellings"][n]["states"].get(s)) for s in STATES)
                 if n in r["modellings"] else "" for n in names]
        L.append(f"| {r['id']} | " + " | ".join(cells) + f" | {summary(r['portrait'])} |")

    L.append("\n#### What each query is\n")
    for r in rows:
        p = r["portrait"]
        params = json.dumps(p["params"], ensure_ascii=False)
        if len(params) > 300:
            params = params[:300] + "…"
        note = f" Kernel: {p['kernel_note']}." if p.get("kernel_note") else ""
        L.append(f"- **{r['id']}** — {r['title']}. `{params}`.{note}")
    L.append("- Behaviour queries (retention, funnel, frequency, active): Portrait's in-process "
             "answers equal an oracle computed naively from the generator (checked in the Rust "
             "runner), its gRPC answers (`BehaviourService`) equal the in-process ones, and "
             "ClickHouse's equal Portrait's.")

    L.append("\n### Loads\n")
    L.append("| system / modelling | what | load time | then merged (`OPTIMIZE FINAL`) | "
             "on disk |")
    L.append("|---|---|---|---|---|")
    fs = pl["files"]
    L.append(f"| Portrait | users (wide), tags (long), events: the engine's importer with "
             f"`mapping.toml`, as `portrait load` (cumulative: users {fs[0]['seconds']:.1f} s, "
             f"tags {fs[1]['seconds']:.1f} s, events {fs[2]['seconds']:.1f} s) | "
             f"{fmt(pl['seconds'])} | — (one segment per shard) | "
             f"{pl['bytes'] / 2**20:.0f} MiB |")
    for x in loads:
        parts = sum(x["parts_inserted"].values())
        L.append(f"| ClickHouse {x['name']} | {x['what']} | {fmt(x['seconds'])} | "
                 f"{fmt(x['merge_seconds'])} ({parts:,} parts → 1 per table) | "
                 f"{x['bytes'] / 2**20:.0f} MiB |")
    L.append("\nchdb leaves a bulk insert in many parts and does not merge them while the "
             "benchmark runs, and every query reads each part's index. So every query runs twice "
             "in every modelling: on the tables as loaded, then after each table is merged into "
             "one part (`OPTIMIZE TABLE ... FINAL`, as an expert would before querying), and "
             "ClickHouse's best above is the faster of the two. The load time compared with "
             "Portrait's is the inserts' alone: ClickHouse's most favourable figure on both "
             "counts.")
    L.append("\nBoth read the same Parquet files. ClickHouse derives its `UInt32` user id from the "
             "key's digits (`toUInt32(substring(key, 2))`, a shortcut this dataset's keys allow); "
             "Portrait resolves every key through its key dictionary, as it must for real keys.\n")
    return L


def summary(p) -> str:
    a = p["answer"]
    if "count" in a and "fnv" not in a:
        return f"{a['count']:,}"
    if "member" in a:
        return str(a["member"]).lower()
    if "fnv" in a:
        return f"{a['count']:,} keys"
    if "rows" in a:
        return f"{len(a['rows'])} rows"
    if "buckets" in a:
        return "/".join(str(b[2]) for b in a["buckets"])
    if "keys" in a:
        return f"{len(a['keys'])} keys"
    if "users" in a:
        return f"{min(a['users']):,}–{max(a['users']):,} a day"
    if "counts" in a:
        return "/".join(map(str, a["counts"]))
    if "reached" in a:
        return "/".join(map(str, a["reached"]))
    if "histogram" in a:
        return f"{sum(a['histogram']):,} users"
    if isinstance(a, list):
        return f"{len(a)} portraits"
    if "tags" in a:
        return f"{len(a['tags'])} tags"
    return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="directory of the Parquet files")
    ap.add_argument("--portrait", type=Path, required=True, help="JSON of the Rust runner")
    ap.add_argument("--db", type=Path, required=True, help="chdb database directory (recreated)")
    ap.add_argument("--report", type=Path, help="write BENCHMARKS.md here")
    ap.add_argument("--json", type=Path, help="write ClickHouse's times here")
    ap.add_argument("--min-runs", type=int, default=5)
    ap.add_argument("--command", default="benches/compare.sh", help="command shown in the report")
    ap.add_argument("--note", default="", help="a sentence about the machine for the report")
    ap.add_argument("--cpu-start", default="",
                    help="'busy total' jiffies of /proc/stat when the run started")
    ap.add_argument("--cpu-ours", type=float, default=0.0,
                    help="CPU seconds the run used before this script (generation, Portrait)")
    args = ap.parse_args()

    args.data = args.data.resolve()
    portrait = json.loads(args.portrait.read_text())
    files = []
    for name in ("users.parquet", "tags.parquet", "events.parquet"):
        f = args.data / name
        if not f.exists():
            sys.exit(f"{f} is missing: generate it with gen-parquet")
        files.append({"name": name, "bytes": f.stat().st_size, "rows": 0})
    ch = ClickHouse(args.db)
    for f in files:
        f["rows"] = ch.rows(f"SELECT count() FROM file('{args.data / f['name']}')")[0][0]
    if files[0]["rows"] != portrait["users"]:
        sys.exit(f"users.parquet has {files[0]['rows']} rows, Portrait loaded {portrait['users']} "
                 "users: different data sets")
    columns = [r[0] for r in ch.rows(f"DESCRIBE file('{args.data}/users.parquet')") if r[1] == "Bool"]
    set_tags(columns)
    version = ch.version()
    print(f"chdb {chdb.__version__}, ClickHouse {version}", flush=True)
    loads = load(ch, args.data)
    try:
        runs = max(5, args.min_runs)
        rows = run_queries(ch, portrait, runs, STATES[0])
        merge(ch, loads)
        rows = run_queries(ch, portrait, runs, STATES[1], rows)
    except Mismatch as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        sys.exit(1)
    if args.json:
        args.json.write_text(json.dumps({"clickhouse": version, "loads": loads,
                                         "queries": [{k: v for k, v in r.items() if k != "portrait"}
                                                     for r in rows]}, indent=1))
    if args.report:
        report(args.report, args, portrait, version, loads, rows, files)
        print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
