#!/bin/sh
# First start: a cluster in $PGDATA with the superuser `postgres` and POSTGRES_PASSWORD,
# local connections trusted, others by password (scram-sha-256), listening everywhere.
# Then, as the official image does: `postgres ARGS` (or `-c ...` alone) runs the server.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "POSTGRES_PASSWORD is not set: refusing to make a cluster without a password" >&2
    exit 1
  fi
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --username=postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  echo "water-postgres: made a new cluster in $PGDATA"
fi
case "${1:-postgres}" in
  -*) exec postgres "$@" ;;
  postgres) shift; exec postgres "$@" ;;
  *) exec "$@" ;;
esac
