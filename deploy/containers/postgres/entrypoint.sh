#!/bin/sh
# First start: a cluster in $PGDATA with the superuser $POSTGRES_USER (default postgres)
# and its password (POSTGRES_PASSWORD, or the file POSTGRES_PASSWORD_FILE names), local
# connections trusted, others by password (scram-sha-256), listening everywhere. Then,
# as the official image does, every /docker-entrypoint-initdb.d/*.sh (run when
# executable, else sourced, in a subshell here) and *.sql in name order, against a
# server that listens on its socket only (so nothing outside sees it ready early), with
# POSTGRES_USER exported. A first start that fails is started over at the next one.
# Then, as the official image does: `postgres ARGS` (or `-c ...` alone) runs the server.
set -eu
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    echo "both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set: set one" >&2
    exit 1
  fi
  POSTGRES_PASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"
fi
POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_USER
incomplete="$PGDATA/water-first-start-incomplete"
if [ -e "$incomplete" ]; then
  echo "water-postgres: the first start did not finish: making the cluster again" >&2
  find "$PGDATA" -mindepth 1 -delete
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is not set: refusing to make a cluster without a password" >&2
    exit 1
  fi
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  : >"$incomplete"
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  started=""
  for file in /docker-entrypoint-initdb.d/*; do
    [ -f "$file" ] || continue
    if [ -z "$started" ]; then
      pg_ctl -D "$PGDATA" -w -s \
        -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" start
      started=yes
    fi
    case "$file" in
      *.sh)
        echo "water-postgres: running $file"
        # shellcheck source=/dev/null
        if [ -x "$file" ]; then "$file"; else (. "$file"); fi
        ;;
      *.sql)
        echo "water-postgres: running $file"
        psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres -f "$file"
        ;;
      *) echo "water-postgres: ignoring $file" ;;
    esac
  done
  [ -z "$started" ] || pg_ctl -D "$PGDATA" -w -s -m fast stop
  rm -f "$incomplete"
  echo "water-postgres: made a new cluster in $PGDATA"
fi
case "${1:-postgres}" in
  -*) exec postgres "$@" ;;
  postgres) shift; exec postgres "$@" ;;
  *) exec "$@" ;;
esac
