#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) from its corpus (fuzz/corpus/<target>).
#
#   scripts/fuzz.sh --seconds 10        each target for 10 s (CI: a regression surfaces)
#   scripts/fuzz.sh --runs 1000000      each target for a million executions (FUZZING.md)
#   scripts/fuzz.sh --runs 1000000 wasi_host    one target
#
# cargo-fuzz drives libFuzzer with nightly-only rustc flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them, so no nightly toolchain is needed. No sanitizer (-s none): the code under
# test is safe Rust, and the executions per second are what reach the counts.
set -euo pipefail
cd "$(dirname "$0")/.."

budget=(-max_total_time=10)
case "${1:-}" in
    --seconds) budget=(-max_total_time="$2"); shift 2 ;;
    --runs) budget=(-runs="$2"); shift 2 ;;
esac
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(wire_decoders manifest_verify wasm_inspect status_and_sync wasi_host metered_guests)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
(cd fuzz && cargo fuzz build -s none -O)
for target in "${targets[@]}"; do
    echo "== $target"
    # The corpus grows in a scratch copy, so runs leave the committed seeds as they are.
    scratch=$(mktemp -d)
    cp -r "fuzz/corpus/$target/." "$scratch/"
    (cd fuzz && cargo fuzz run -s none -O "$target" "$scratch" -- "${budget[@]}" -print_final_stats=1 2>&1) \
        | grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|panicked|SUMMARY|Test unit written' \
        || { rm -rf "$scratch"; echo "fuzz target $target failed" >&2; exit 1; }
    rm -rf "$scratch"
done
