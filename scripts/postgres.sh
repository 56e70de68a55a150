#!/usr/bin/env bash
# A PostgreSQL cluster of quest's own, for the team tracking server: Debian's packages, 127.0.0.1 only.
#
#   scripts/postgres.sh start DIR PORT   create the cluster in DIR (first time), start it, print MLflow's URL
#                                        (its `optuna` database holds the studies `make sweep` shares)
#   scripts/postgres.sh stop DIR         stop it (the data stays in DIR)
#
# PostgreSQL refuses to run as root: as root, the cluster belongs to Debian's `postgres` user. Login is
# `trust` on the loopback interface only, which is right for trying the server out on one machine. With
# QUEST_PG_PASSWORD_FILE set (make server AUTH=1), the cluster is made with that file's password for its `quest`
# role and asks it of every connection (scram-sha-256); the password travels in PGPASSWORD, never in a URL.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 2; }

binaries() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -z "$found" ]]; then
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed; run as root once, or: sudo apt-get install postgresql"
    echo "postgres.sh: installing Debian's postgresql package" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    found=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$found"
}

as_owner() {  # run a PostgreSQL program as the cluster's owner
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local dir=$1 port=$2 bin
  bin=$(binaries)
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$dir" && chmod 700 "$dir"
    runuser -u postgres -- test -x "$dir" || die "$dir: the postgres user cannot reach it (a parent directory is private)"
  fi
  local secured=${QUEST_PG_PASSWORD_FILE:-}
  if [[ -n $secured ]]; then
    [[ -r $secured ]] || die "QUEST_PG_PASSWORD_FILE $secured: cannot read it"
    PGPASSWORD=$(<"$secured")
    export PGPASSWORD  # psql and createdb below, as the server's own processes, read it from the environment
  fi
  if [[ ! -f "$dir/PG_VERSION" ]]; then
    if [[ -n $secured ]]; then
      # initdb reads the password from a file its user can read: a copy in a private folder of its own.
      local private
      private=$(mktemp -d)
      (umask 077 && cat "$secured" >"$private/password")
      if [[ $(id -u) -eq 0 ]]; then chown -R postgres: "$private"; fi
      as_owner "$bin/initdb" -D "$dir" -U quest --auth=scram-sha-256 --pwfile="$private/password" --encoding=UTF8 \
        --no-instructions >/dev/null || { rm -rf "$private"; die "initdb failed in $dir"; }
      rm -rf "$private"
    else
      as_owner "$bin/initdb" -D "$dir" -U quest --auth=trust --encoding=UTF8 --no-instructions >/dev/null
    fi
  fi
  if [[ -n $secured ]] && grep -qE '^[^#]*[[:space:]]trust([[:space:]]|$)' "$dir/pg_hba.conf" 2>/dev/null; then
    die "$dir was made without passwords (make server's trial mode); give AUTH=1 its own QUEST_SERVER_DIR"
  fi
  if ! as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >/dev/null \
      || die "PostgreSQL did not start; see $dir/server.log"
  fi
  local database
  # MLflow's runs; the Optuna studies `make sweep` workers share; MLflow's users and permissions (AUTH=1)
  for database in mlflow optuna mlflow_auth; do
    local exists
    exists=$(as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U quest -d postgres -w -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$database'" 2>&1) \
      || die "PostgreSQL on port $port refused quest's login: ${exists%%$'\n'*}"
    if [[ $exists != 1 ]]; then
      as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U quest "$database"
    fi
  done
  echo "postgresql://quest@127.0.0.1:$port/mlflow"
}

stop() {
  local dir=$1 bin
  bin=$(binaries)
  [[ -f "$dir/PG_VERSION" ]] || die "$dir: no cluster here"
  as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
}

case "${1:-}" in
  start) [[ $# -eq 3 ]] || die "usage: postgres.sh start DIR PORT"; start "$2" "$3" ;;
  stop) [[ $# -eq 2 ]] || die "usage: postgres.sh stop DIR"; stop "$2" ;;
  *) die "usage: postgres.sh start DIR PORT | stop DIR" ;;
esac
