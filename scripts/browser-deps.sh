#!/usr/bin/env bash
# Installs what the browser tests (tests/web) and scripts/screenshots.py need:
# Debian's Chromium, and the CJK and emoji fonts the Chinese UI and messages are
# drawn with (without them Chinese text is boxes in the screenshots).
# Playwright's own browser download is never used; the tests launch /usr/bin/chromium.
set -euo pipefail

missing=()
if [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
if [ ! -d /usr/share/fonts/opentype/noto ] || ! ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1; then
    missing+=(fonts-noto-cjk)
fi
if [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
    missing+=(fonts-noto-color-emoji)
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser-deps: ${missing[*]} missing and apt-get is not available;" \
         "install them by hand to run tests/web" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "browser-deps: need root (or sudo) to install ${missing[*]}" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}"
