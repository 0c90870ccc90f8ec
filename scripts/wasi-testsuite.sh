#!/usr/bin/env bash
# Runs the applicable tests of the WebAssembly wasi-testsuite under `wasmesh run`.
#
# Usage: scripts/wasi-testsuite.sh PATH-TO-WASI-TESTSUITE-CHECKOUT
#
# Applicable: the suite's Rust tests for wasm32-wasip1 that need no filesystem (no preopened
# directory: wasmesh guests get none). They are built here from the suite's sources, in a
# scratch cargo project under target/, with the crates the suite pins (libc, once_cell, wasip1),
# and each runs under a release `wasmesh run` with an empty stdin. The suite's code is not kept
# in this repository. Prints one line per test and exits non-zero if any failed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
suite="${1:?usage: $0 PATH-TO-WASI-TESTSUITE-CHECKOUT}"
src="$suite/tests/rust/wasm32-wasip1/src"
[ -f "$src/lib.rs" ] || { echo "no wasm32-wasip1 Rust tests under $suite" >&2; exit 2; }

tests=(big_random_buf clock_time_get sched_yield poll_oneoff_stdio)
work="$root/target/wasi-testsuite"
rm -rf "$work/src"
mkdir -p "$work/src/bin"
cp "$src/lib.rs" "$src/config.rs" "$work/src/"
for t in "${tests[@]}"; do cp "$src/bin/$t.rs" "$work/src/bin/"; done
cat > "$work/Cargo.toml" <<'TOML'
[workspace]

[package]
name = "wasi_tests"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
libc = "0.2"
once_cell = "1"
wasip1 = "1"
TOML

rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
# The suite's own warnings are printed, not fatal; its dependencies' lints cargo caps itself.
cargo build --release --quiet --target wasm32-wasip1 \
  --manifest-path "$work/Cargo.toml" \
  --target-dir "$work/target"
cargo build --release --quiet -p wasmesh-node --bin wasmesh --manifest-path "$root/Cargo.toml"
wasmesh="${CARGO_TARGET_DIR:-$root/target}/release/wasmesh"

failed=0
for t in "${tests[@]}"; do
  if out=$("$wasmesh" run "$work/target/wasm32-wasip1/release/$t.wasm" --input /dev/null 2>&1); then
    echo "pass  $t"
  else
    echo "FAIL  $t: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
    failed=1
  fi
done
exit "$failed"
