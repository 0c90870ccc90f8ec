#!/usr/bin/env bash
# A five-minute tour of the wasmesh command line, in a scratch folder:
# make a publisher key, sign a module manifest, verify it, and watch a tampered copy fail.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

echo "== building wasmesh (release)"
cargo build --release --locked -q -p wasmesh-node
wasmesh="$root/target/release/wasmesh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

echo
echo "== 1. a publisher key (mode 0600; never overwritten)"
"$wasmesh" keys gen --out publisher.key
publisher="$("$wasmesh" keys show --key publisher.key | head -n 1)"
"$wasmesh" keys show --key publisher.key

echo
echo "== 2. sign a manifest for the raw-ABI echo module"
"$wasmesh" manifest create "$root/guests/fixtures/echo.wat" \
  --name echo --version 1 --key publisher.key --timeout-ms 500 --out echo.manifest

echo
echo "== 3. verify it against the module and a trust list"
"$wasmesh" manifest verify echo.manifest --module "$root/guests/fixtures/echo.wat" --trust "$publisher"

echo
echo "== 4. a copy with one byte changed is refused"
cp echo.manifest tampered.manifest
printf '\x7f' | dd of=tampered.manifest bs=1 seek=20 conv=notrunc status=none
if "$wasmesh" manifest verify tampered.manifest; then
  echo "tampered manifest verified: this is a bug" >&2
  exit 1
fi

echo
echo "== 5. a module importing a host function outside its ABI is refused, naming it"
if "$wasmesh" manifest create "$root/guests/fixtures/unknown_import.wat" \
  --name sneaky --version 1 --key publisher.key --out sneaky.manifest; then
  echo "module with an unknown import was accepted: this is a bug" >&2
  exit 1
fi

echo
echo "== 6. run requests locally with the node's executor (fresh sandbox per request)"
printf 'hello, edge' | "$wasmesh" run "$root/guests/fixtures/echo.wat"
echo
printf 'hello, edge' | "$wasmesh" run "$root/guests/fixtures/reverse.wat"
echo
printf 'hello from WASI' | "$wasmesh" run "$root/guests/fixtures/wasi_echo.wat"
echo

echo
echo "== 7. hostile guests fail with a typed error, and nothing else happens"
"$wasmesh" run "$root/guests/fixtures/infinite_loop.wat" --fuel 1000000 </dev/null || true
"$wasmesh" run "$root/guests/fixtures/infinite_loop.wat" --fuel 1000000000000 --timeout-ms 100 </dev/null || true
"$wasmesh" run "$root/guests/fixtures/memory_bomb.wat" --memory-mib 8 </dev/null || true
"$wasmesh" run "$root/guests/fixtures/out_of_bounds.wat" </dev/null || true

echo
echo "tour complete"
