#!/usr/bin/env bash
# The project's test command: builds the example guests (installing the wasm32-wasip1 target if
# missing), installs the other tools the tests use if missing (promtool, chromium,
# playwright-core: scripts/install-test-tools.sh), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-guests.sh
scripts/install-test-tools.sh
cargo test --workspace --locked "$@"
