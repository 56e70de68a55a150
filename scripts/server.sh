#!/usr/bin/env bash
# `make server`: a team tracking server. `mlflow server` keeps runs in a PostgreSQL database
# (scripts/postgres.sh) and serves artifacts from a local directory.
#
# Trial mode (make server): on 127.0.0.1, nobody asked for a password. Point quest at it from another shell:
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5001
# Secured mode (make server AUTH=1, i.e. QUEST_SERVER_AUTH=1): MLflow's basic-auth app, every user's rights set
# per experiment; TLS on the server's port; PostgreSQL asking a password (scram-sha-256) of every connection;
# the host and origin allow-lists set. Its secrets are generated on the first start into QUEST_SERVER_DIR/secrets
# (mode 0600, outside git), a self-made certificate into QUEST_SERVER_DIR/tls unless QUEST_SERVER_CERT and
# QUEST_SERVER_KEY name the team's own. The runbook: docs/team.md.
# Ctrl-C stops the server and the database; the data stays in QUEST_SERVER_DIR for the next start.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "server.sh: $*" >&2; exit 2; }

auth=${QUEST_SERVER_AUTH:-0}
[[ $auth == 0 || $auth == 1 ]] || die "QUEST_SERVER_AUTH (make server AUTH=...) must be 0 or 1 (got $auth)"
name=server; [[ $auth == 1 ]] && name=team-server  # a secured cluster is never a trial one made without passwords
if [[ $(id -u) -eq 0 ]]; then default_dir=/var/lib/quest/$name; else default_dir=${XDG_STATE_HOME:-$HOME/.local/state}/quest/$name; fi
state=${QUEST_SERVER_DIR:-$default_dir}
host=${QUEST_SERVER_HOST:-127.0.0.1}
port=${QUEST_SERVER_PORT:-5001}
pg_port=${QUEST_PG_PORT:-5433}
mkdir -p "$state/artifacts"

if [[ $auth == 0 ]]; then
  store=$(scripts/postgres.sh start "$state/postgres" "$pg_port")
  trap 'scripts/postgres.sh stop "$state/postgres"' EXIT
  echo "server: runs in $store, artifacts in $state/artifacts" >&2
  echo "server: export MLFLOW_TRACKING_URI=http://127.0.0.1:$port (Ctrl-C stops it)" >&2
  echo "server: for make sweep, set tune.storage: postgresql+psycopg://quest@127.0.0.1:$pg_port/optuna" >&2
  exec_args=(--host 127.0.0.1)
else
  secrets=$state/secrets
  (umask 077 && mkdir -p "$secrets")
  chmod 700 "$secrets"
  secret() {  # the file holding secret $1, made on the first start: 32 random bytes, URL-safe, mode 0600
    local file=$secrets/$1
    if [[ ! -s $file ]]; then
      (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' >"$file")
    fi
    chmod 600 "$file"
    echo "$file"
  }
  export QUEST_PG_PASSWORD_FILE
  QUEST_PG_PASSWORD_FILE=$(secret postgres-password)
  admin_file=$(secret admin-password)
  quest_file=$(secret quest-password)
  cert=${QUEST_SERVER_CERT:-$state/tls/cert.pem}
  key=${QUEST_SERVER_KEY:-$state/tls/key.pem}
  if [[ -z ${QUEST_SERVER_CERT:-} && ! -s $cert ]]; then  # a self-made certificate, to try the server out
    (umask 077 && mkdir -p "$state/tls")
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$host" -keyout "$key" -out "$cert" \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost$([[ $host != 127.0.0.1 ]] && echo ",DNS:$host")" \
      2>/dev/null || die "openssl could not make a certificate in $state/tls"
    chmod 600 "$key"
  fi
  [[ -r $cert ]] || die "QUEST_SERVER_CERT $cert: cannot read the certificate"
  [[ -r $key ]] || die "QUEST_SERVER_KEY $key: cannot read the certificate's key"
  openssl x509 -in "$cert" -noout 2>/dev/null || die "QUEST_SERVER_CERT $cert: not a PEM certificate"

  store=$(scripts/postgres.sh start "$state/postgres" "$pg_port")
  trap 'scripts/postgres.sh stop "$state/postgres"' EXIT
  # libpq reads the password from a file of its own format; the server and make sweep's workers use it.
  pgpass=$secrets/pgpass
  (umask 077 && printf '127.0.0.1:%s:*:quest:%s\n' "$pg_port" "$(<"$QUEST_PG_PASSWORD_FILE")" >"$pgpass")
  export PGPASSFILE=$pgpass

  # MLflow's auth app: users and permissions in PostgreSQL too; a new user sees nothing until granted.
  auth_config=$secrets/basic_auth.ini
  (umask 077 && cat >"$auth_config") <<INI
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = ${store%/mlflow}/mlflow_auth
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
  export MLFLOW_AUTH_CONFIG_PATH=$auth_config
  MLFLOW_AUTH_ADMIN_PASSWORD=$(<"$admin_file")  # read once, on the first start, to make the admin user
  MLFLOW_FLASK_SERVER_SECRET_KEY=$(<"$(secret flask-secret-key)")
  export MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY
  uri=https://$host:$port
  hosts="127.0.0.1:$port,localhost:$port"
  origins="https://127.0.0.1:$port,https://localhost:$port"
  if [[ $host != 127.0.0.1 ]]; then hosts="$host:$port,$hosts" origins="https://$host:$port,$origins"; fi
  exec_args=(--app-name basic-auth --host "$host" --allowed-hosts "$hosts" --cors-allowed-origins "$origins"
    --uvicorn-opts "--ssl-keyfile $key --ssl-certfile $cert")
  # Once it answers: the `quest` user, with EDIT on quest's experiments, is the one stages and sweeps log as.
  (.venv/bin/python -m quest.commands.team provision --state "$state" --uri "$uri" --cert "$cert" \
    || echo "server.sh: could not provision the quest user; see above" >&2) &
  cat >&2 <<SAY
server: secured; runs in $store, artifacts in $state/artifacts, secrets in $secrets (0600)
server: log to it as the quest user (Ctrl-C stops it):
  export MLFLOW_TRACKING_URI=$uri MLFLOW_TRACKING_SERVER_CERT_PATH=$cert
  export MLFLOW_TRACKING_USERNAME=quest MLFLOW_TRACKING_PASSWORD="\$(cat $quest_file)"
server: for make sweep, set tune.storage: postgresql+psycopg://quest@127.0.0.1:$pg_port/optuna and
  export PGPASSFILE=$pgpass
SAY
fi
.venv/bin/mlflow server --backend-store-uri "$store" --artifacts-destination "$state/artifacts" \
  --serve-artifacts --port "$port" --workers "${QUEST_SERVER_WORKERS:-2}" "${exec_args[@]}"
