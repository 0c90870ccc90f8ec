#!/usr/bin/env bash
# Executor benchmark: builds the example guests and a native build of the thumbnail guest (the
# baseline), then runs the benchmark. Prints Markdown tables (medians, p99).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/build-guests.sh >/dev/null
cargo build --release --locked --manifest-path guests/Cargo.toml --target-dir guests/target \
  -p thumbnail
WASMESH_NATIVE_THUMBNAIL="$root/guests/target/release/thumbnail" \
  cargo bench --locked -p wasmesh-node --bench executor
