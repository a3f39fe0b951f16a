#!/usr/bin/env bash
# Starts a PostgreSQL server for the tests on 127.0.0.1:55432 (its own cluster
# under /var/tmp, owned by the `postgres` user), with a `gantry` superuser.
# Idempotent: does nothing when it already answers. Prints the URL to use.
set -euo pipefail

PORT=${GANTRY_TEST_PG_PORT:-55432}
DATA=/var/tmp/gantry-test-postgres
URL="postgres://gantry:gantry@127.0.0.1:${PORT}/postgres"

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed: run scripts/install-test-deps.sh" >&2
  exit 1
fi
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$*"; else sudo -u postgres sh -c "$*"; fi; }

if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  echo "$URL"
  exit 0
fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  mkdir -p "$DATA"
  chown postgres:postgres "$DATA"
  as_postgres "'$bin/initdb' -D '$DATA' -U postgres -A trust -E UTF8 >/dev/null"
fi
as_postgres "'$bin/pg_ctl' -D '$DATA' -l '$DATA/server.log' -o \"-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300\" -w start >/dev/null"
psql -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gantry') THEN
    CREATE ROLE gantry LOGIN SUPERUSER PASSWORD 'gantry';
  END IF;
END \$\$;
SQL
# Databases left by earlier test runs.
for db in $(psql -At -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'gantry_test_%'"); do
  psql -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null
done
echo "$URL"
