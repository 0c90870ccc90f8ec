#!/usr/bin/env bash
# Builds one static `wasmesh` binary for x86_64 Linux (musl libc): no shared libraries, so it
# runs on any x86_64 Linux from the same file. Installs the Rust target and Debian's musl-tools
# (the C compiler for the few C parts, such as ring's) when missing.
#
#   scripts/build-static.sh            # -> target/wasmesh-x86_64-linux-static (stripped)
#
# Everything builds for musl as it is: wasmer with Cranelift, libp2p, quinn with ring, and the
# rest. The binary runs guests (JIT code and its trap handlers included) and whole nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
if ! command -v musl-gcc >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo); fi
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends musl-tools >/dev/null
fi

CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --release --locked --target "$target" -p wasmesh-node --bin wasmesh

binary=target/wasmesh-x86_64-linux-static
strip -o "$binary" "target/$target/release/wasmesh"
if ldd "$binary" 2>&1 | grep -q "=>"; then
    echo "$binary links shared libraries:" >&2
    ldd "$binary" >&2
    exit 1
fi
"$binary" --version >/dev/null
echo "$binary: static, $(du -h "$binary" | cut -f1)"
