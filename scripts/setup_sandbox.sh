#!/usr/bin/env bash
# Install and check what the autograder's student sandbox needs: bubblewrap (bwrap).
#
#   scripts/setup_sandbox.sh          # as root (or: sudo scripts/setup_sandbox.sh)
#
# Idempotent and quick when bubblewrap is already installed. Exits non-zero, saying why and
# what to do, when bubblewrap is missing and cannot be installed, or cannot create a sandbox.
# BWRAP names the executable to look for (default: bwrap).
set -euo pipefail

BWRAP="${BWRAP:-bwrap}"
say() { echo "setup_sandbox: $*"; }
fail() { echo "setup_sandbox: ERROR: $*" >&2; exit 1; }

if ! command -v "$BWRAP" >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        fail "bubblewrap ('$BWRAP') is not installed, and installing it needs root.
  Run:  sudo scripts/setup_sandbox.sh      (or: sudo apt-get install bubblewrap)
  Without it, nbgrader autograde refuses to run student code."
    fi
    if command -v apt-get >/dev/null 2>&1; then
        say "installing bubblewrap with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq bubblewrap >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y -qq bubblewrap; } ||
            fail "apt-get could not install bubblewrap (no access to the package mirror?)"
    elif command -v dnf >/dev/null 2>&1; then
        dnf install -y -q bubblewrap || fail "dnf could not install bubblewrap"
    else
        fail "no apt-get or dnf here: install bubblewrap (https://github.com/containers/bubblewrap) by hand"
    fi
    command -v "$BWRAP" >/dev/null 2>&1 || fail "bubblewrap was installed but '$BWRAP' is not on PATH"
fi

say "found $(command -v "$BWRAP") ($("$BWRAP" --version 2>/dev/null || echo 'version unknown'))"

# Can it create the namespaces the sandbox uses? (As root no user namespace is needed;
# otherwise the kernel must allow unprivileged user namespaces.)
if [ "$(id -u)" -eq 0 ]; then
    userns=()
else
    userns=(--unshare-user)
fi
if ! out=$("$BWRAP" --ro-bind / / --dev /dev --proc /proc "${userns[@]}" \
        --unshare-pid --unshare-net --unshare-ipc --unshare-uts --die-with-parent true 2>&1); then
    fail "bubblewrap is installed but cannot create a sandbox here: ${out}
  In a container, run it with user namespaces allowed (e.g. docker --privileged, or
  --security-opt seccomp=unconfined); on a host, allow unprivileged user namespaces
  (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)."
fi
say "the student sandbox works"
