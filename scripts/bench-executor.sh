#!/usr/bin/env bash
# Executor benchmark: builds the example guests and a native build of the thumbnail guest (the
# baseline), then runs the benchmark. Prints Markdown tables (medians, p99). Arguments name the
# sections to run (sandbox, compile, thumbnail; all by default).
#
# When python3 can import wasmtime (`pip install wasmtime`), the thumbnail is also timed under
# wasmtime, a peer runtime, with scripts/bench-wasmtime.py.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/build-guests.sh >/dev/null
cargo build --release --locked --manifest-path guests/Cargo.toml --target-dir guests/target \
  -p thumbnail
if python3 -c "import wasmtime" 2>/dev/null; then
  export WASMESH_WASMTIME_BENCH="$root/scripts/bench-wasmtime.py"
else
  echo "(python3 cannot import wasmtime: the wasmtime row is left out)"
fi
WASMESH_NATIVE_THUMBNAIL="$root/guests/target/release/thumbnail" \
  cargo bench --locked -p wasmesh-node --bench executor -- "$@"
