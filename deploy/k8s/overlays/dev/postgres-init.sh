#!/bin/sh
# Development only (ConfigMap postgres-init, run by the postgres image's entrypoint once,
# when the data directory is new): each service's own login role, owning its own
# database and nothing else, as CloudNativePG's managed roles and Database resources
# make them in production. The role and its password come from the Secret
# water-db-<service>, mounted at /var/run/secrets/water/db/<service>/. PUBLIC loses
# CONNECT, so no other role (the superuser aside) can open the database.
set -eu
for service in inventory rental payment delivery; do
  secret="/var/run/secrets/water/db/$service"
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
    --set role="$(cat "$secret/username")" --set password="$(cat "$secret/password")" \
    --set database="water_$service" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"role";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
SQL
done
