#!/usr/bin/env bash
# Install and check what the autograder's student sandbox needs: bubblewrap (bwrap).
#
#   scripts/setup_sandbox.sh          # as root (or: sudo scripts/setup_sandbox.sh)
#
# Idempotent and quick when bubblewrap is already installed. Exits non-zero, saying why and
# what to do, when bubblewrap is missing and cannot be installed, or cannot create a sandbox.
# BWRAP names the executable to look for (default: bwrap).
set -euo pipefail

NAME=setup_sandbox
source "$(dirname "$0")/install_tool.sh"
BWRAP="${BWRAP:-bwrap}"
install_tool "$BWRAP" bubblewrap bubblewrap "nbgrader autograde refuses to run student code" \
    "install bubblewrap (https://github.com/containers/bubblewrap) by hand"

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
