#!/usr/bin/env bash
# Runs a command with throwaway test servers on loopback: a PostgreSQL 15 cluster with
# pgvector (DATABASE_URL), a streaming replica of it (DATABASE_READ_URL: same
# databases, read-only, for the read-replica tests) and the path of the OpenFGA
# server binary (OPENFGA_BIN; tests start their own processes). Everything started here is stopped on exit, also on
# failure or Ctrl-C.
set -euo pipefail
PGBIN=/usr/lib/postgresql/15/bin
dir=$(mktemp -d -t clearance-test.XXXX)
cleanup() {
  rc=$?
  if [ "$rc" != 0 ]; then
    # The servers' own words go with a failure: the directory is removed below.
    for l in "$dir/log" "$dir/replica.log"; do
      [ -f "$l" ] && { echo "--- last lines of $(basename "$l")" >&2; tail -n 15 "$l" >&2; }
    done
  fi
  for d in "$dir/replica" "$dir/data"; do
    if [ -f "$d/postmaster.pid" ]; then
      su postgres -c "$PGBIN/pg_ctl -D $d stop -m immediate" >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
chown postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)
su postgres -c "$PGBIN/initdb -D $dir/data -U postgres -A trust >/dev/null"
su postgres -c "$PGBIN/pg_ctl -D $dir/data -o '-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off' -l $dir/log -w start >/dev/null"
psql -h 127.0.0.1 -p "$port" -U postgres -qc 'create database test'
psql -h 127.0.0.1 -p "$port" -U postgres -d test -qc 'create extension vector'
export DATABASE_URL="postgres://postgres@127.0.0.1:$port/test?sslmode=disable"
# The replica streams from the primary (initdb's trust rules allow replication on
# loopback); databases the tests create on the primary appear on it once replayed.
# A physical slot keeps the primary's WAL until the replica has it: without one a
# replica that falls behind during other packages' bulk loads finds its next segment
# recycled and never catches up. fsync is off on both (throwaway data) so replay
# keeps pace on a busy disk.
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55433)
su postgres -c "$PGBIN/pg_basebackup -h 127.0.0.1 -p $port -U postgres -D $dir/replica -R -X stream -C -S test_replica -c fast"
su postgres -c "$PGBIN/pg_ctl -D $dir/replica -o '-p $rport -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c hot_standby_feedback=on -c fsync=off' -l $dir/replica.log -w start >/dev/null"
export DATABASE_READ_URL="postgres://postgres@127.0.0.1:$rport/test?sslmode=disable"
export OPENFGA_BIN="$(go env GOPATH)/bin/openfga"
echo "test servers: postgres on 127.0.0.1:$port (replica on :$rport), openfga binary $OPENFGA_BIN"
"$@"
