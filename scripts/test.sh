#!/usr/bin/env bash
# The project's test command: builds the example guests (installing the wasm32-wasip1 target if
# missing), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-guests.sh
cargo test --workspace --locked "$@"
