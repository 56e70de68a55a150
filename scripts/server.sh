#!/usr/bin/env bash
# `make server`: a team tracking server to try out on one machine. `mlflow server` keeps runs in a
# PostgreSQL database (scripts/postgres.sh) and serves artifacts from a local directory, on 127.0.0.1.
# Point quest at it from another shell; nothing else changes:
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5001
# Ctrl-C stops the server and the database; the data stays in QUEST_SERVER_DIR for the next start.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -eq 0 ]]; then default_dir=/var/lib/quest/server; else default_dir=${XDG_STATE_HOME:-$HOME/.local/state}/quest/server; fi
state=${QUEST_SERVER_DIR:-$default_dir}
port=${QUEST_SERVER_PORT:-5001}
pg_port=${QUEST_PG_PORT:-5433}

store=$(scripts/postgres.sh start "$state/postgres" "$pg_port")
trap 'scripts/postgres.sh stop "$state/postgres"' EXIT
mkdir -p "$state/artifacts"
echo "server: runs in $store, artifacts in $state/artifacts" >&2
echo "server: export MLFLOW_TRACKING_URI=http://127.0.0.1:$port (Ctrl-C stops it)" >&2
echo "server: for make sweep, set tune.storage: postgresql+psycopg://quest@127.0.0.1:$pg_port/optuna" >&2
.venv/bin/mlflow server --backend-store-uri "$store" --artifacts-destination "$state/artifacts" \
  --serve-artifacts --host 127.0.0.1 --port "$port" --workers "${QUEST_SERVER_WORKERS:-2}"
