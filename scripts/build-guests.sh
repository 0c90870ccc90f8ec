#!/usr/bin/env bash
# Builds the example guests for wasm32-wasip1 (installing the target if missing) and copies
# them to guests/out/: echo.wasm (raw ABI), wasi-echo.wasm and thumbnail.wasm (WASI).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target=wasm32-wasip1

if ! rustup target list --installed | grep -qx "$target"; then
  echo "installing the $target target"
  rustup target add "$target"
fi

# From guests/, so that guests/.cargo/config.toml applies (SIMD). The guests' own target folder,
# whatever CARGO_TARGET_DIR says: they are copied from there.
cd "$root/guests"
cargo build --release --locked --target "$target" --manifest-path "$root/guests/Cargo.toml" \
  --target-dir "$root/guests/target" -p echo -p wasi-echo -p thumbnail

mkdir -p "$root/guests/out"
built="$root/guests/target/$target/release"
cp "$built/echo.wasm" "$built/wasi-echo.wasm" "$built/thumbnail.wasm" "$root/guests/out/"
ls -l "$root/guests/out"
