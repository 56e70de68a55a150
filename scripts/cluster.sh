#!/usr/bin/env bash
# `make cluster`: a Dask cluster to try on one machine: a scheduler on 127.0.0.1 and QUEST_CLUSTER_WORKERS
# worker processes (default 2) of one thread each, every one with this checkout's code and lock. Point quest at
# it from another shell, and the comparison's fits, the learning curves' and each suite table's run there:
#   export QUEST_EXECUTOR=dask://127.0.0.1:8786      (or compare.executor in params.yaml)
# Ctrl-C stops the scheduler and the workers. Several machines: docs/team.md.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${QUEST_CLUSTER_PORT:-8786}
dashboard=${QUEST_CLUSTER_DASHBOARD:-8787}
workers=${QUEST_CLUSTER_WORKERS:-2}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export DASK_DISTRIBUTED__WORKER__DAEMON=False  # a worker may start processes of its own (a model library's)
# numpy capped at AVX2 as quest's stages cap it (quest.stages), so a worker computes as the stage would here.
cap=$(.venv/bin/python -c 'from quest.core.host import cpuinfo; from quest.tracking.machine import numpy_at_most_avx2 as cap
print(cap({}, set(cpuinfo().get("flags", "").split())) or "")')
if [[ -n $cap && -z ${NPY_DISABLE_CPU_FEATURES+set} ]]; then export NPY_DISABLE_CPU_FEATURES=$cap; fi

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM
.venv/bin/dask scheduler --host 127.0.0.1 --port "$port" --dashboard-address "127.0.0.1:$dashboard" &
pids+=($!)
.venv/bin/dask worker "tcp://127.0.0.1:$port" --host 127.0.0.1 --nworkers "$workers" --nthreads 1 \
  --no-dashboard &
pids+=($!)
echo "cluster: export QUEST_EXECUTOR=dask://127.0.0.1:$port (Ctrl-C stops it); dashboard http://127.0.0.1:$dashboard" >&2
wait
