#!/usr/bin/env bash
# Start the local services the test suite talks to, when they are down, and create the
# PostgreSQL test database (ORCHESTRATE_TEST_DB, default orchestrate_test) if missing.
set -uo pipefail
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
DB=${ORCHESTRATE_TEST_DB:-orchestrate_test}
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${DB}'" | grep -q 1; then
  echo "creating database ${DB}"
  psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE \"${DB}\"" || {
    # Another process may have created it meanwhile.
    psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${DB}'" | grep -q 1 ||
      { echo "cannot create database ${DB}" >&2; exit 1; }
  }
fi
exit 0
