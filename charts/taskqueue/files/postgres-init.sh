#!/bin/sh
# Runs once, at the bundled PostgreSQL's first start (docker-entrypoint-initdb.d), as its
# superuser: the broker's role owns its database and nothing else (no superuser, so no
# COPY ... TO PROGRAM, no new databases or roles). The superuser's password stays in the pod.
set -eu
: "${TQ_DB_NAME:=taskqueue}" "${TQ_DB_USER:=taskqueue}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     --set=db="$TQ_DB_NAME" --set=role="$TQ_DB_USER" --set=password="$TQ_DB_PASSWORD" <<'SQL'
CREATE ROLE :"role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"role";
SQL
