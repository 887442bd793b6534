#!/usr/bin/env bash
# Web server, a Celery worker for both queues and Celery beat, on the embedded defaults.
# Ctrl-C (or SIGTERM) stops all of them and exits 0, so `make run` ends without an error line.
set -uo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-1}"
# shellcheck source=scripts/demo_env.sh
. scripts/demo_env.sh
PORT="${PORT:-8000}"
URL="http://127.0.0.1:$PORT/"
VENV=.venv/bin
START_TIMEOUT="${START_TIMEOUT:-120}"

if [ -z "${RUN_DEMO_SERVICES:-}" ] && [ -t 0 ]; then
  # At a terminal, Ctrl-C goes to every process of the foreground group, `make` included, and make
  # would die of it and report an error. With job control on, the services run as a foreground job
  # of their own: Ctrl-C reaches only them, they stop cleanly, and make sees an exit status of 0.
  set -m
  RUN_DEMO_SERVICES=$$ "$0" "$@"
  exit $?
fi
parent="${RUN_DEMO_SERVICES:-}"

pids=()
server=""
stopping=""
any_alive() {
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
all_alive() {
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
  return 0
}
wait_for_all() {  # up to $1 half-seconds for every service to end
  for _ in $(seq "$1"); do
    any_alive || return 0
    sleep 0.5
  done
  return 1
}
stop() {
  [ -n "$stopping" ] && return
  stopping=1
  trap '' PIPE  # whoever read the output may be gone: the services must still be stopped
  echo
  echo "Stopping Tuning Desk..."
  kill -TERM "$server" 2>/dev/null
  # After Ctrl-C at a terminal the worker and beat got the same interrupt and are already shutting down;
  # a second signal would interrupt their clean-up (Celery then prints tracebacks), so give them 5 s first.
  [ "${1:-}" = INT ] && wait_for_all 10
  kill -TERM "${pids[@]}" 2>/dev/null
  # Whatever has not stopped after 10 s (and the worker's pool processes) is stopped hard.
  wait_for_all 20 || {
    for pid in "${pids[@]}"; do pkill -KILL -P "$pid" 2>/dev/null; done
    kill -KILL "${pids[@]}" 2>/dev/null
  }
  wait 2>/dev/null
  echo "Stopped."
}
trap 'stop INT; exit 0' INT
trap 'stop; exit 0' TERM HUP
trap stop EXIT

# --quiet: no start-up banners, which would otherwise bury the address printed below.
$VENV/celery -A projectsite --quiet worker -Q default,gpu --concurrency 2 --max-memory-per-child 1500000 --loglevel WARNING &
pids+=($!)
$VENV/celery -A projectsite --quiet beat --loglevel WARNING &
pids+=($!)
$VENV/python manage.py runserver "127.0.0.1:$PORT" --noreload &
server=$!
pids+=("$server")

# The address is printed once the web server answers (any HTTP status counts), not before.
answers() {
  $VENV/python - "$URL" <<'PY' 2>/dev/null
import sys
import urllib.error
import urllib.request

try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass  # an answer, even if not 200
PY
}
waited=0
until answers; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "The web server did not start (see its message above; is port $PORT in use? Try PORT=8001 make run)." >&2
    exit 1
  fi
  if [ "$waited" -ge $((START_TIMEOUT * 2)) ]; then
    echo "The web server did not answer at $URL within $START_TIMEOUT s." >&2
    exit 1
  fi
  sleep 0.5
  waited=$((waited + 1))
done
echo
echo "Tuning Desk is running at $URL  (Ctrl-C stops the web server, worker and beat)"
echo "Sign in with one of the demo accounts printed above."

# Until a signal (the traps above), one of the services ending on its own, or the terminal wrapper going.
while all_alive; do
  if [ -n "$parent" ] && ! kill -0 "$parent" 2>/dev/null; then
    exit 0
  fi
  sleep 1
done
echo "A service stopped on its own (see its message above); stopping the others." >&2
exit 1
