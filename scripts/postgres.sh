#!/usr/bin/env bash
# Starts a private PostgreSQL cluster for the tests: a temp dir, 127.0.0.1 on a free port, trust
# auth, fsync on. Sourced by scripts/test; exports ATELIER_TEST_POSTGRES and stops the cluster
# when the sourcing shell exits. (Debian's postgresql package is installed by scripts/deps.sh.)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGTMP=$(mktemp -d /tmp/atelier-pg.XXXXXX)
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg() {
  # initdb and the server refuse to run as root: use the postgres account then
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" -eq 0 ] && chown postgres "$PGTMP"
as_pg "$PGBIN/initdb" -D "$PGTMP/data" -U atelier --auth=trust -E UTF8 >"$PGTMP/initdb.log" 2>&1 \
  || { cat "$PGTMP/initdb.log" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/server.log" -w -o "-p $PGPORT -k $PGTMP -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null \
  || { cat "$PGTMP/server.log" >&2; exit 1; }
export ATELIER_TEST_POSTGRES="postgres://atelier@127.0.0.1:$PGPORT/postgres"
stop_postgres() { as_pg "$PGBIN/pg_ctl" -D "$PGTMP/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$PGTMP"; }
trap stop_postgres EXIT
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') for the tests at 127.0.0.1:$PGPORT" >&2
