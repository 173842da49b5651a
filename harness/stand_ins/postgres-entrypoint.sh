#!/bin/bash
# The official postgres image's first start, reduced to what docker-compose.yaml uses.
set -o errexit -o nounset -o pipefail

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password_file=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username="$POSTGRES_USER" --pwfile="$password_file" --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA"
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [ "${POSTGRES_DB:-$POSTGRES_USER}" != postgres ]; then
        createdb --username="$POSTGRES_USER" "${POSTGRES_DB:-$POSTGRES_USER}"
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec postgres -D "$PGDATA"
