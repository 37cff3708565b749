#!/usr/bin/env bash
# Install the headless browser that the browser tests of the grading pipeline use: Chromium.
#
#   scripts/setup_browser.sh          # as root (or: sudo scripts/setup_browser.sh)
#
# Idempotent and quick when Chromium is already installed. Exits non-zero, saying why and what
# to do, when Chromium is missing and cannot be installed, or cannot start headless.
# CHROMIUM names the executable to look for (default: chromium).
set -euo pipefail

NAME=setup_browser
source "$(dirname "$0")/install_tool.sh"
CHROMIUM="${CHROMIUM:-chromium}"
install_tool "$CHROMIUM" chromium Chromium \
    "the browser tests (tests/test_sanitize_browser.py) fail" \
    "install Chromium by hand and put 'chromium' on PATH"

say "found $(command -v "$CHROMIUM") ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"

# Can it render a page headless? (--no-sandbox: as root Chromium's own sandbox refuses to start.)
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
if ! out=$(timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --dump-dom 'data:text/html,<p id=ok>ok</p>' 2>&1) ||
        ! grep -q '<p id="ok">ok</p>' <<<"$out"; then
    fail "Chromium is installed but cannot render a page headless: ${out}"
fi
say "headless Chromium works"
