#!/usr/bin/env bash
# Runs once, when the Postgres container initialises its data directory: Temporal's
# own login, which may create its two databases (temporal, temporal_visibility) and
# owns nothing of the feature store.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v password="${TEMPORAL_DB_PASSWORD:?set TEMPORAL_DB_PASSWORD}" <<'SQL'
create role temporal login createdb password :'password';
SQL
