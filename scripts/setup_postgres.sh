#!/usr/bin/env bash
# Install the PostgreSQL server that the tests of a PostgreSQL gradebook start by themselves.
#
#   scripts/setup_postgres.sh          # as root (or: sudo scripts/setup_postgres.sh)
#
# Debian's `postgresql` package puts initdb and postgres in /usr/lib/postgresql/VERSION/bin.
# Nothing is started here: each test runs its own server in a temporary directory on
# 127.0.0.1 (tests/test_batch_grading.py). Idempotent and quick when the server is installed.
# Courses that keep SQLite (the default) do not need it.
set -euo pipefail

NAME=setup_postgres
source "$(dirname "$0")/install_tool.sh"
INITDB_GLOB="/usr/lib/postgresql/*/bin/initdb"
install_tool "$INITDB_GLOB" postgresql "PostgreSQL server" \
    "the tests of a PostgreSQL gradebook cannot start a server" \
    "install the PostgreSQL server (initdb, postgres) by hand"
say "found $(compgen -G "$INITDB_GLOB" | sort -V | tail -1)"
