#!/usr/bin/env bash
# Replication of ragsync and of PouchDB (the peer in ../shared/peers/pouchdb), measured one after
# the other in this one invocation with the same document count and size, and their ratios:
# a full sync of DOCS documents to an empty peer over HTTP (PouchDB: its batch1000 set), then
# live propagation of 200 single writes, each timed until the peer has it. ragsync's run also
# syncs a second empty peer through a proxy adding 50 ms each way (PouchDB has no such phase).
#
#   scripts/bench-sync-vs-pouchdb.sh [DOCS] [DOC_BYTES] [RUNS]     (defaults 100000 1024 1)
set -euo pipefail

docs=${1:-100000}
doc_bytes=${2:-1024}
runs=${3:-1}
# shellcheck source=scripts/pouchdb-side-by-side.sh
source "$(dirname "$0")/pouchdb-side-by-side.sh"

rs_rate=(); rs_rss=(); rs_bytes=(); rs_p50=(); rs_p99=(); rs_far=(); rs_near=()
pd_rate=(); pd_rss=(); pd_bytes=(); pd_p50=(); pd_p99=()
for run in $(seq 1 "$runs"); do
  out=$("$bin" bench sync --docs "$docs" --doc-bytes "$doc_bytes" --live-docs 200 2>/dev/null)
  rs_rate+=("$(figure "$out" sync_docs_per_s)"); rs_rss+=("$(figure "$out" sync_receiver_peak_rss)")
  rs_bytes+=("$(figure "$out" sync_bytes_per_doc)")
  rs_p50+=("$(figure "$out" live_p50)"); rs_p99+=("$(figure "$out" live_p99)")
  rs_near+=("$(figure "$out" sync_seconds)"); rs_far+=("$(figure "$out" sync_seconds_50ms_each_way)")
  echo "run $run ragsync: ${rs_rate[-1]} docs/s, peer RSS ${rs_rss[-1]} MiB, ${rs_bytes[-1]} bytes/doc, live p50 ${rs_p50[-1]} ms p99 ${rs_p99[-1]} ms, full sync ${rs_near[-1]} s on loopback, ${rs_far[-1]} s at 50 ms each way"
  out=$(cd "$peer" && node bench.js --docs "$docs" --doc-bytes "$doc_bytes" --sync-sets batch1000 --live-docs 200 2>/dev/null)
  pd_rate+=("$(figure "$out" sync_batch1000_docs_per_s)"); pd_rss+=("$(figure "$out" sync_batch1000_peer_peak_rss)")
  rx=$(figure "$out" sync_batch1000_peer_bytes_received); tx=$(figure "$out" sync_batch1000_peer_bytes_sent)
  pd_bytes+=("$(awk -v rx="$rx" -v tx="$tx" -v n="$docs" 'BEGIN {printf "%.1f", (rx + tx) * 1e6 / n}')")
  pd_p50+=("$(figure "$out" live_p50)"); pd_p99+=("$(figure "$out" live_p99)")
  echo "run $run pouchdb: ${pd_rate[-1]} docs/s, peer RSS ${pd_rss[-1]} MiB, ${pd_bytes[-1]} bytes/doc (both ways), live p50 ${pd_p50[-1]} ms p99 ${pd_p99[-1]} ms"
done

m() { printf '%s\n' "$@" | median; }
r_rate=$(m "${rs_rate[@]}"); p_rate=$(m "${pd_rate[@]}")
echo "median ragsync full sync: $r_rate docs/s, peer peak RSS $(m "${rs_rss[@]}") MiB, $(m "${rs_bytes[@]}") bytes/doc, live p50 $(m "${rs_p50[@]}") ms, p99 $(m "${rs_p99[@]}") ms"
echo "median pouchdb full sync: $p_rate docs/s, peer peak RSS $(m "${pd_rss[@]}") MiB, $(m "${pd_bytes[@]}") bytes/doc, live p50 $(m "${pd_p50[@]}") ms, p99 $(m "${pd_p99[@]}") ms"
awk -v a="$r_rate" -v b="$p_rate" 'BEGIN {printf "ratio ragsync/pouchdb full sync: %.2fx\n", a / b}'
awk -v n="$(m "${rs_near[@]}")" -v f="$(m "${rs_far[@]}")" \
  'BEGIN {printf "ragsync full sync at 50 ms each way: %.2f s against a bound of %.2f s (2x loopback + 1 s)\n", f, 2 * n + 1}'
