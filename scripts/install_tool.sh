# Shared by the set-up scripts (sourced, not run): their messages, and the installation of the
# system package that provides one executable, idempotent and quick when it is there.
#
#   NAME=setup_x; source "$(dirname "$0")/install_tool.sh"
#   install_tool EXECUTABLE PACKAGE LABEL WITHOUT_IT BY_HAND
#
# EXECUTABLE on PATH: nothing to do. Otherwise, as root, PACKAGE is installed with apt-get
# (the package lists are updated only when the first try fails) or dnf; without root, or when
# it cannot be installed, the script stops with a message saying what to do: WITHOUT_IT says
# what fails without it, BY_HAND how to install it where there is no apt-get or dnf.

say() { echo "$NAME: $*"; }
fail() { echo "$NAME: ERROR: $*" >&2; exit 1; }

install_tool() {
    local exe=$1 package=$2 label=$3 without=$4 by_hand=$5
    command -v "$exe" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -ne 0 ]; then
        fail "$label ('$exe') is not installed, and installing it needs root.
  Run:  sudo scripts/$NAME.sh      (or: sudo apt-get install $package)
  Without it, $without."
    fi
    if command -v apt-get >/dev/null 2>&1; then
        say "installing $package with apt-get"
        local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -qq)
        export DEBIAN_FRONTEND=noninteractive
        "${apt[@]}" install --no-install-recommends "$package" >/dev/null 2>&1 ||
            { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends "$package"; } ||
            fail "apt-get could not install $package (no access to the package mirror?)"
    elif command -v dnf >/dev/null 2>&1; then
        dnf install -y -q "$package" || fail "dnf could not install $package"
    else
        fail "no apt-get or dnf here: $by_hand"
    fi
    command -v "$exe" >/dev/null 2>&1 || fail "$label was installed but '$exe' is not on PATH"
}
