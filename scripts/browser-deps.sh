#!/usr/bin/env bash
# Installs what the browser tests (tests/web) need: Debian's Chromium.
# Playwright's own browser download is never used; the tests launch /usr/bin/chromium.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser-deps: /usr/bin/chromium is missing and apt-get is not available;" \
         "install Chromium by hand to run tests/web" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "browser-deps: need root (or sudo) to install chromium" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium
