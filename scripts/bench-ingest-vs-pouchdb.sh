#!/usr/bin/env bash
# Ingest throughput of ragsync and of PouchDB (the peer in ../shared/peers/pouchdb), measured
# one after the other in this one invocation, with the same documents count and size, and
# their ratio. Both write through HTTP in batches of 1,000, one request at a time, with request
# bodies built before the clock starts.
#
#   scripts/bench-ingest-vs-pouchdb.sh [DOCS] [DOC_BYTES] [RUNS]     (defaults 100000 1024 3)
#
# Runs alternate (ragsync, pouchdb, ragsync, ...) so both see the same machine state; the
# medians are compared. Needs Node.js >= 18 and npm for the peer.
set -euo pipefail

docs=${1:-100000}
doc_bytes=${2:-1024}
runs=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
peer=${RAGSYNC_PEERS_DIR:-$root/../shared/peers}/pouchdb

[ -f "$peer/bench.js" ] || { echo "no PouchDB benchmark at $peer (set RAGSYNC_PEERS_DIR)" >&2; exit 1; }
command -v node >/dev/null || { echo "Node.js is needed for the PouchDB peer" >&2; exit 1; }
if [ ! -d "$peer/node_modules" ]; then
  (cd "$peer" && npm ci --no-audit --no-fund >&2)
fi

cd "$root"
cargo build --release --quiet -p ragsync
bin=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/ragsync

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
echo "ragsync $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(node --version) for PouchDB; $docs docs of $doc_bytes bytes, $runs runs each"

# The value of figure NAME in the output of a run ("<system> NAME: VALUE UNIT").
figure() { awk -v n="$2:" '$2 == n {print $3}' <<<"$1"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

rs_rates=() ; pd_rates=() ; rs_rss=() ; pd_rss=()
for run in $(seq 1 "$runs"); do
  out=$("$bin" bench ingest --docs "$docs" --doc-bytes "$doc_bytes" 2>/dev/null)
  rs_rates+=("$(figure "$out" ingest_docs_per_s)"); rs_rss+=("$(figure "$out" ingest_server_peak_rss)")
  echo "run $run ragsync: ${rs_rates[-1]} docs/s, server peak RSS ${rs_rss[-1]} MiB"
  out=$(cd "$peer" && node bench.js --docs "$docs" --doc-bytes "$doc_bytes" --sync-sets '' --live-docs 0 2>/dev/null)
  pd_rates+=("$(figure "$out" ingest_docs_per_s)"); pd_rss+=("$(figure "$out" server_peak_rss)")
  echo "run $run pouchdb: ${pd_rates[-1]} docs/s, server peak RSS ${pd_rss[-1]} MiB"
done

rs=$(printf '%s\n' "${rs_rates[@]}" | median)
pd=$(printf '%s\n' "${pd_rates[@]}" | median)
echo "median ragsync ingest: $rs docs/s (durability full: every batch fsynced)"
echo "median pouchdb ingest: $pd docs/s (leveldb, no fsync per write)"
echo "max server peak RSS: ragsync $(printf '%s\n' "${rs_rss[@]}" | sort -g | tail -1) MiB, pouchdb $(printf '%s\n' "${pd_rss[@]}" | sort -g | tail -1) MiB"
awk -v a="$rs" -v b="$pd" 'BEGIN {printf "ratio ragsync/pouchdb: %.2fx\n", a / b}'
