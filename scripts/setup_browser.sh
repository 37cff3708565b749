#!/usr/bin/env bash
# Install the headless browser that the browser tests of the grading pipeline use: Chromium.
#
#   scripts/setup_browser.sh          # as root (or: sudo scripts/setup_browser.sh)
#
# Idempotent and quick when Chromium is already installed. Exits non-zero, saying why and what
# to do, when Chromium is missing and cannot be installed, or cannot start headless.
# CHROMIUM names the executable to look for (default: chromium).
set -euo pipefail

CHROMIUM="${CHROMIUM:-chromium}"
say() { echo "setup_browser: $*"; }
fail() { echo "setup_browser: ERROR: $*" >&2; exit 1; }

if ! command -v "$CHROMIUM" >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        fail "Chromium ('$CHROMIUM') is not installed, and installing it needs root.
  Run:  sudo scripts/setup_browser.sh      (or: sudo apt-get install chromium)
  Without it, the browser tests (tests/test_sanitize_browser.py) fail."
    fi
    if command -v apt-get >/dev/null 2>&1; then
        say "installing chromium with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
            { apt-get -o DPkg::Lock::Timeout=300 update -qq && apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium; } ||
            fail "apt-get could not install chromium (no access to the package mirror?)"
    elif command -v dnf >/dev/null 2>&1; then
        dnf install -y -q chromium || fail "dnf could not install chromium"
    else
        fail "no apt-get or dnf here: install Chromium by hand and put 'chromium' on PATH"
    fi
    command -v "$CHROMIUM" >/dev/null 2>&1 || fail "Chromium was installed but '$CHROMIUM' is not on PATH"
fi

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
