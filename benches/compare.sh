#!/usr/bin/env bash
# Portrait vs ClickHouse (chdb) on the same generated data; writes BENCHMARKS.md at the repo root.
#
#   benches/compare.sh [--users N] [--seed S] [--min-runs K] [--report FILE] [--db-dir DIR]
#                      [--note TEXT]
#
# Defaults: 1,000,000 users, seed 42, 5 runs minimum, BENCHMARKS.md (this size's section; other
# sizes' sections are kept). Needs cargo and python3 (>= 3.9, with the venv module); installs
# chdb into benches/compare/.venv on first use. Parquet files are cached under
# $CARGO_TARGET_DIR/compare (default target/compare), keyed by users and seed; the two databases
# go to --db-dir (default the same directory) and are deleted after use. --note adds a sentence
# about the machine to the report. See benches/compare/README.md.
set -euo pipefail

users=1000000
seed=42
min_runs=5
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
report=$root/BENCHMARKS.md
db_dir=
note=
chdb_version=4.4.0

while [ $# -gt 0 ]; do
  case "$1" in
    --users) users=${2//_/}; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --min-runs) min_runs=$2; shift 2 ;;
    --report) report=$2; shift 2 ;;
    --db-dir) db_dir=$2; shift 2 ;;
    --note) note=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

target=${CARGO_TARGET_DIR:-$root/target}
work=$target/compare
data=$work/data-$users-seed$seed
db_dir=${db_dir:-$work}
mkdir -p "$work" "$db_dir"
step() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }
# The machine's busy and total CPU jiffies, and the CPU seconds this script's finished children
# used: the report subtracts the run's own CPU from the machine's to say how loaded it was.
cpu_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
# (`times` runs in this shell, not in a pipeline's subshell, whose counters start at zero.)
children_cpu() {
  times > "$work/.times"
  awk 'NR == 2 { t = 0; for (i = 1; i <= NF; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] }
                 printf "%.2f", t }' "$work/.times"
}

step "building release binaries"
cd "$root"
cargo build --release -p portrait-datagen --features parquet --bin gen-parquet
cargo build --release -p portrait-benches --bin compare
cargo build --release -p portrait-server --bin portraitd

cpu_start=$(cpu_jiffies)
children_cpu > "$work/.cpu"; ours_start=$(cat "$work/.cpu")

step "Parquet files ($users users, seed $seed)"
if [ -f "$data/users.parquet" ] && [ -f "$data/tags.parquet" ] && [ -f "$data/events.parquet" ] \
    && [ -f "$data/mapping.toml" ]; then
  echo "cached in $data"
else
  "$target/release/gen-parquet" --users "$users" --seed "$seed" --out "$data"
fi

step "Python environment"
venv=$root/benches/compare/.venv
python=${PYTHON:-python3}
if ! "$venv/bin/python" -c "import chdb" 2>/dev/null; then
  command -v "$python" >/dev/null || { echo "compare.sh: $python not found; set PYTHON=/path/to/python3" >&2; exit 1; }
  if ! "$python" -m venv "$venv"; then
    echo "compare.sh: could not create a venv at $venv with $python -m venv" >&2
    echo "  (on Debian/Ubuntu: apt-get install python3-venv; or set PYTHON to another python3)" >&2
    exit 1
  fi
  if ! "$venv/bin/pip" install --quiet "chdb==$chdb_version"; then
    echo "compare.sh: pip could not install chdb==$chdb_version into $venv (network? PyPI mirror?)" >&2
    exit 1
  fi
fi
"$venv/bin/python" -c "import chdb; print('chdb', chdb.__version__)"

step "Portrait: load, in-process, gRPC"
result=$work/portrait-$users-seed$seed.json
"$target/release/compare" --users "$users" --seed "$seed" --min-runs "$min_runs" --data "$data" \
  --db "$db_dir/portrait-$users-seed$seed" --portraitd "$target/release/portraitd" --out "$result"
rm -rf "$db_dir/portrait-$users-seed$seed"
children_cpu > "$work/.cpu"
ours=$(awk -v a="$(cat "$work/.cpu")" -v b="$ours_start" 'BEGIN { printf "%.2f", a - b }')

step "ClickHouse: load, queries, answer check, report"
"$venv/bin/python" "$root/benches/compare/compare.py" --data "$data" --portrait "$result" \
  --db "$db_dir/chdb-$users-seed$seed" --min-runs "$min_runs" --report "$report" \
  --json "$work/clickhouse-$users-seed$seed.json" \
  --cpu-start "$cpu_start" --cpu-ours "$ours" --note "$note" \
  --command "benches/compare.sh --users $users$([ "$seed" = 42 ] || echo " --seed $seed")"
rm -rf "$db_dir/chdb-$users-seed$seed"
step "done"
