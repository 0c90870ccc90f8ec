#!/usr/bin/env bash
# Throughput and latency of a local invoke through a real `wasmesh node run` process (raw echo
# guest, 64-byte body), loaded by wrk from its own process, against a native axum echo handler
# measured in the same run. Prints a Markdown table of medians over ROUNDS rounds.
#
#   scripts/bench-gateway.sh            # ROUNDS=3 DURATION=5 by default
#   ROUNDS=5 DURATION=10 scripts/bench-gateway.sh
#   COMPARE=/tmp/wasmesh-before scripts/bench-gateway.sh   # also another build, in the same run
#
# Needs wrk (Debian package `wrk`; installed here if missing and apt-get is available).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
duration=${DURATION:-5}

if ! command -v wrk >/dev/null; then
  apt-get install -y -qq wrk >/dev/null || { echo "error: wrk is needed (apt-get install wrk)" >&2; exit 1; }
fi
cargo build --release --locked -q -p wasmesh-node --bin wasmesh --example native_echo
wasmesh=$PWD/target/release/wasmesh
native=$PWD/target/release/examples/native_echo
lua=$PWD/scripts/wrk-post64.lua

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"

wait_for() { for _ in $(seq 1 600); do if "$@"; then return 0; fi; sleep 0.05; done; echo "error: timed out: $*" >&2; exit 1; }

# Starts `$1 node run` in directory $2 with the echo guest published; sets `started_url`.
start_node() {
  local bin=$1 dir=$2 publisher
  mkdir -p "$dir"
  "$bin" keys gen --out "$dir/publisher.key" >/dev/null 2>&1
  publisher=$("$bin" keys show --key "$dir/publisher.key" | head -n 1)
  RUST_LOG=warn "$bin" node run --data-dir "$dir/node" --listen /ip4/127.0.0.1/udp/0/quic-v1 \
    --quic 127.0.0.1:0 --http 127.0.0.1:0 --trust "$publisher" >/dev/null 2>"$dir/node.log" &
  pids+=($!)
  wait_for grep -q "serving http" "$dir/node.log"
  started_url=$(grep -o 'serving http://[0-9.:]*' "$dir/node.log" | head -n 1 | cut -d' ' -f2)
  "$bin" publish "$OLDPWD/guests/fixtures/echo.wat" --name echo --version 1 \
    --key "$dir/publisher.key" --node "$started_url" 2>/dev/null >/dev/null
}

start_node "$wasmesh" this
node_url=$started_url
compare_url=""
if [ -n "${COMPARE:-}" ]; then
  start_node "$COMPARE" compare
  compare_url=$started_url
fi

"$native" 127.0.0.1:0 >native.log &
pids+=($!)
wait_for grep -q "listening on" native.log
native_url="http://$(sed -n 's/listening on //p' native.log)"

# One wrk run: prints "requests_per_second p50_us".
measure() {
  local url=$1 connections=$2 threads=2
  [ "$connections" -lt 2 ] && threads=1
  wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$lua" "$url/v1/invoke/echo" >wrk.out
  if grep -q "Non-2xx" wrk.out; then echo "error: non-2xx answers from $url" >&2; cat wrk.out >&2; exit 1; fi
  local rps p50
  rps=$(awk '/^Requests\/sec/ {print $2}' wrk.out)
  p50=$(awk '$1 == "50%" {print $2}' wrk.out)
  case "$p50" in
    *us) p50=${p50%us} ;;
    *ms) p50=$(awk -v v="${p50%ms}" 'BEGIN {print v * 1000}') ;;
    *s) p50=$(awk -v v="${p50%s}" 'BEGIN {print v * 1000000}') ;;
  esac
  echo "$rps $p50"
}

median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# Warm up (first instances, connection set-up).
measure "$node_url" 8 >/dev/null
measure "$native_url" 8 >/dev/null
if [ -n "$compare_url" ]; then measure "$compare_url" 8 >/dev/null; fi

if [ -n "$compare_url" ]; then
  echo "| connections | native axum echo req/s | \$COMPARE req/s | wasmesh req/s | share of native: \$COMPARE | share of native: wasmesh | native p50 | \$COMPARE p50 | wasmesh p50 |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
else
  echo "| connections | native axum echo req/s | wasmesh req/s | share of native | native p50 | wasmesh p50 |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
fi
for connections in 1 64; do
  : >native.txt; : >wasmesh.txt; : >compare.txt
  for _ in $(seq 1 "$rounds"); do
    measure "$native_url" "$connections" >>native.txt
    measure "$node_url" "$connections" >>wasmesh.txt
    if [ -n "$compare_url" ]; then measure "$compare_url" "$connections" >>compare.txt; fi
  done
  n_rps=$(cut -d' ' -f1 native.txt | median); w_rps=$(cut -d' ' -f1 wasmesh.txt | median)
  n_p50=$(cut -d' ' -f2 native.txt | median); w_p50=$(cut -d' ' -f2 wasmesh.txt | median)
  share=$(awk -v w="$w_rps" -v n="$n_rps" 'BEGIN {printf "%.2f", w / n}')
  if [ -n "$compare_url" ]; then
    c_rps=$(cut -d' ' -f1 compare.txt | median); c_p50=$(cut -d' ' -f2 compare.txt | median)
    c_share=$(awk -v w="$c_rps" -v n="$n_rps" 'BEGIN {printf "%.2f", w / n}')
    printf "| %s | %.0f | %.0f | %.0f | %s | %s | %.0f us | %.0f us | %.0f us |\n" "$connections" \
      "$n_rps" "$c_rps" "$w_rps" "$c_share" "$share" "$n_p50" "$c_p50" "$w_p50"
  else
    printf "| %s | %.0f | %.0f | %s | %.0f us | %.0f us |\n" "$connections" "$n_rps" "$w_rps" "$share" "$n_p50" "$w_p50"
  fi
done
