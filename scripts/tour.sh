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
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# Waits (up to 30 s) until "$@" succeeds.
wait_for() {
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for: $*" >&2
  exit 1
}

# Starts node $1 (a data dir name) on loopback with OS-chosen ports; extra flags follow.
start_node() {
  local name="$1"; shift
  "$wasmesh" node run --data-dir "$name" --listen /ip4/127.0.0.1/udp/0/quic-v1 \
    --quic 127.0.0.1:0 --http 127.0.0.1:0 --trust "$publisher" "$@" 2>"$name.log" &
  pids+=($!)
  wait_for grep -q "serving http" "$name.log"
}

url_of() { grep -o 'serving http://[0-9.:]*' "$1.log" | head -n 1 | cut -d' ' -f2; }
p2p_of() { grep -o '/ip4/127.0.0.1/udp/[0-9]*/quic-v1/p2p/[A-Za-z0-9]*' "$1.log" | head -n 1; }
ready_on() { "$wasmesh" status --node "$(url_of "$1")" | grep -q "$2@.* ready "; }

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
echo "== 8. a three-node mesh on this machine: publish on one node, call through another"
start_node a
start_node b --bootstrap "$(p2p_of a)"
start_node c --bootstrap "$(p2p_of a)"
"$wasmesh" publish "$root/guests/fixtures/reverse.wat" --name reverse --version 1 \
  --key publisher.key --node "$(url_of a)"
for n in a b c; do wait_for ready_on "$n" reverse; done
"$wasmesh" status --node "$(url_of c)"
printf 'hello, mesh' | "$wasmesh" call reverse --node "$(url_of c)" -v
echo

echo
echo "== 9. stop node b; a and c keep serving; b restarts alone from its own store"
kill "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true
printf 'still here' | "$wasmesh" call reverse --node "$(url_of a)"
echo
mv b.log b-first.log
start_node b
wait_for ready_on b reverse
printf 'back again' | "$wasmesh" call reverse --node "$(url_of b)"
echo

echo
echo "tour complete"
