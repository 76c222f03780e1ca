# Sourced by the scripts that run ragsync and PouchDB side by side. Expects $docs, $doc_bytes
# and $runs; sets $root, $peer (the PouchDB benchmark) and $bin (ragsync, built release),
# prints the machine, and defines `figure` and `median`.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
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
