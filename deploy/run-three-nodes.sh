#!/usr/bin/env bash
# Three kefu nodes on one machine, sharing PostgreSQL and Redis (see docs/cluster.md).
#
#   deploy/run-three-nodes.sh            # nodes on :8081 :8082 :8083, Ctrl-C stops all
#
# Needs: pip install -e '.[cluster]', a PostgreSQL database and a Redis server.
# Override the addresses with KEFU_DATABASE_URL / KEFU_BROKER_URL, and set
# KEFU_SECRET to your own key (it must be the same on every node).
set -euo pipefail
cd "$(dirname "$0")/.."
KEFU="${KEFU:-.venv/bin/kefu}"

export KEFU_DATABASE_URL="${KEFU_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/kefu}"
export KEFU_BROKER_URL="${KEFU_BROKER_URL:-redis://127.0.0.1:6379/0}"
export KEFU_SECRET="${KEFU_SECRET:?set KEFU_SECRET to a long random string, the same on every node}"
export KEFU_ALLOWED_ORIGINS="${KEFU_ALLOWED_ORIGINS:-*}"

"$KEFU" db upgrade   # once; each node would also do it on start (safely, under a lock)

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 1 2 3; do
    KEFU_NODE_ID=$i "$KEFU" serve --host 127.0.0.1 --port "808$i" &
    pids+=($!)
done
echo "kefu nodes on :8081 :8082 :8083 (pids ${pids[*]}); put deploy/nginx.conf or"
echo "deploy/haproxy.cfg in front, or try: curl -s 127.0.0.1:8082/v1/ws/status"
wait
