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
# shellcheck source=scripts/pouchdb-side-by-side.sh
source "$(dirname "$0")/pouchdb-side-by-side.sh"

rs_rates=() ; pd_rates=() ; rs_rss=() ; pd_rss=()
for run in $(seq 1 "$runs"); do
  out=$("$bin" bench ingest --search off --docs "$docs" --doc-bytes "$doc_bytes" 2>/dev/null)
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
