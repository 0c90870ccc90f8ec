#!/usr/bin/env bash
# Installs what the tests need beyond Rust, when it is missing: promtool (Debian package
# prometheus) for the metrics check, Debian's chromium for the live page's browser test, and
# playwright-core (npm, pinned by node/tests/browser/package-lock.json) to drive it, and nftables
# for the NAT harness's routers (its tests skip when not run as root). Debian packages need root
# (or sudo); everything else stays inside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v nft >/dev/null || missing+=(nftables)
command -v ip >/dev/null || missing+=(iproute2)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null; then
        as_root=(sudo)
    else
        echo "the tests need these Debian packages: ${missing[*]} (install them as root)" >&2
        exit 1
    fi
    echo "installing ${missing[*]}"
    install() {
        DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q \
            --no-install-recommends "${missing[@]}" >/dev/null
    }
    install || { "${as_root[@]}" apt-get update -q >/dev/null && install; }
fi

if [ ! -d node/tests/browser/node_modules/playwright-core ]; then
    echo "installing playwright-core for the browser test"
    (cd node/tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
