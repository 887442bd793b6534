#!/usr/bin/env bash
# Web server, a Celery worker for both queues and Celery beat, on the embedded defaults.
# Ctrl-C stops all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-1}"
PORT="${PORT:-8000}"
VENV=.venv/bin

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping Tuning Desk..."
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 20); do
    kill -0 "${pids[@]}" 2>/dev/null || break
    sleep 0.5
  done
  # Whatever has not stopped after 10 s (and the worker's pool processes) is stopped hard.
  for pid in "${pids[@]}"; do pkill -KILL -P "$pid" 2>/dev/null || true; done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

$VENV/celery -A projectsite worker -Q default,gpu --concurrency 2 --max-memory-per-child 1500000 --loglevel WARNING &
pids+=($!)
$VENV/celery -A projectsite beat --loglevel WARNING &
pids+=($!)
$VENV/python manage.py runserver "127.0.0.1:$PORT" --noreload &
pids+=($!)

sleep 2
echo
echo "Tuning Desk is running at http://127.0.0.1:$PORT/  (Ctrl-C stops the web server, worker and beat)"
echo "Sign in with one of the demo accounts printed above."
wait -n "${pids[@]}"
